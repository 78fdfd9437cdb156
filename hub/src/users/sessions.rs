//! Logging in and out, and who a session token names: each refusal is an\naccess record with its reason, throttled per account and per source; the\nofficer's signing key is learnt from the password as it passes.

use super::*;

impl Users {
    pub(super) fn refused(
        &self,
        username: &str,
        agency: &str,
        source: IpAddr,
        reason: &str,
    ) -> AccessRecord {
        AccessRecord {
            user: printable(username),
            agency: agency.to_owned(),
            action: AccessAction::LoginFailed,
            purpose: None,
            case: None,
            query: "login".into(),
            results: 0,
            outcome: AccessOutcome::Refused {
                reason: reason.chars().take(512).collect(),
            },
            source: source.to_string(),
        }
    }

    /// Log in: checks throttling, the password, the account and its
    /// training; every outcome is in the access log before the answer.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        source: IpAddr,
    ) -> Result<Login, UserError> {
        let now = UnixMillis::now();
        // Throttled and recorded under what can be recorded of it.
        let username = &printable(username);
        let locked = self.throttle.locked(username, source, now)?;
        if let Some(until) = locked {
            let message = format!("too many failed logins: locked until {until}; try again then",);
            self.access
                .record(self.refused(username, "", source, &message))
                .await?;
            return Err(UserError::Locked {
                message,
                retry_after: Duration::from_millis(until.0.saturating_sub(now.0).max(1000)),
            });
        }
        let user = self.get(username)?;
        let hash = user
            .as_ref()
            .map_or(self.dummy_hash.clone(), |u| u.password_hash.clone());
        let pw = password.to_owned();
        let matches = tokio::task::spawn_blocking(move || verify_password(&pw, &hash))
            .await
            .unwrap_or(false);
        let user = match user {
            Some(u) if matches => u,
            other => {
                let agency = other.map(|u| u.agency).unwrap_or_default();
                let lock = self.throttle.failed(username, source, now)?;
                self.access
                    .record(self.refused(username, &agency, source, "wrong username or password"))
                    .await?;
                if let Some((what, until)) = lock {
                    let mut r = self.refused(
                        username,
                        &agency,
                        source,
                        &format!("{what} locked until {until} after repeated failures"),
                    );
                    r.action = AccessAction::Lockout;
                    self.access.record(r).await?;
                }
                return Err(UserError::Unauthorized("wrong username or password".into()));
            }
        };
        if let Some(reason) = user.refusal(now) {
            self.access
                .record(self.refused(username, &user.agency, source, &reason))
                .await?;
            return Err(UserError::Forbidden(reason));
        }
        self.throttle.succeeded(username)?;
        if self.keys(&user.username).is_empty() {
            self.learn_key(&user.username, password).await;
        }
        let token = new_token();
        let session = SessionRecord {
            username: user.username.clone(),
            created: now,
            expires: UnixMillis(now.0.saturating_add(millis(self.config.session_max))),
            source: source.to_string(),
        };
        let caller = Caller {
            username: user.username.clone(),
            agency: user.agency.clone(),
            role: user.role,
            title: user.title.clone(),
            source: source.to_string(),
        };
        self.access
            .record(caller.record(AccessAction::Login, "login"))
            .await?;
        let hash = token_hash(&token);
        // Sessions that ended unused go with this one's commit.
        let idle = millis(self.config.session_idle);
        let ended: Vec<[u8; 32]> = self
            .sessions
            .lock()
            .map(|l| {
                l.iter()
                    .filter(|(_, (s, last))| now > s.expires || now.0.saturating_sub(last.0) > idle)
                    .map(|(h, _)| *h)
                    .collect()
            })
            .unwrap_or_default();
        let mut ops: Vec<WriteOp> = ended
            .iter()
            .map(|h| WriteOp::Session {
                hash: *h,
                session: None,
            })
            .collect();
        ops.push(WriteOp::Session {
            hash,
            session: Some(session.clone()),
        });
        self.storage.commit(ops)?;
        if let Ok(mut l) = self.sessions.lock() {
            for h in &ended {
                l.remove(h);
            }
        }
        if let Ok(mut l) = self.sessions.lock() {
            l.insert(hash, (session.clone(), now));
        }
        Ok(Login {
            token,
            expires: session.expires,
            user: user.view(now),
        })
    }

    /// The signing key of `username` (who has none yet), from the password
    /// that just logged them in. A failure costs the login nothing: the
    /// next login tries again.
    pub(super) async fn learn_key(&self, username: &str, password: &str) {
        let pw = password.to_owned();
        let made = tokio::task::spawn_blocking(move || OfficerKey::generate(&pw)).await;
        let key = match made {
            Ok(Ok((key, _secret))) => UserKey {
                key,
                since: UnixMillis::now(),
            },
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "deriving a user's signing key at login");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "deriving a user's signing key at login");
                return;
            }
        };
        let _guard = self.write.lock().await;
        match self.keep_key(username, key) {
            Ok(()) => self.changed(),
            Err(e) => tracing::warn!(error = %e, "storing a signing key learnt at login"),
        }
    }

    /// The caller a bearer token stands for, or why not: unknown, expired
    /// (idle or absolute), user disabled or training lapsed.
    pub fn authenticate(&self, token: &str, source: IpAddr) -> Result<Caller, UserError> {
        self.caller_of(token, source, true)
    }

    /// [`Users::authenticate`] without counting as activity: for a page
    /// that keeps itself up to date (the console's live alerts), which
    /// must end with its session but not keep it from idling out.
    pub fn still_authenticated(&self, token: &str, source: IpAddr) -> Result<Caller, UserError> {
        self.caller_of(token, source, false)
    }

    pub(super) fn caller_of(
        &self,
        token: &str,
        source: IpAddr,
        activity: bool,
    ) -> Result<Caller, UserError> {
        let now = UnixMillis::now();
        let hash = token_hash(token);
        let expired = || {
            UserError::Unauthorized(
                "no session or session expired: log in again (`hub login`)".into(),
            )
        };
        let cached = self
            .sessions
            .lock()
            .map_err(|_| UserError::Invalid("sessions poisoned".into()))?
            .get(&hash)
            .cloned();
        // Sessions from before a restart are read once; idle time then
        // counts from now.
        let (session, last) = match cached {
            Some(c) if !self.shared => c,
            Some((_, last)) => match self.storage.session(&hash)? {
                Some(stored) => (stored, last),
                None => {
                    if let Ok(mut l) = self.sessions.lock() {
                        l.remove(&hash);
                    }
                    return Err(expired());
                }
            },
            None => (self.storage.session(&hash)?.ok_or_else(expired)?, now),
        };
        let idle = millis(self.config.session_idle);
        let fresh = now <= session.expires && now.0.saturating_sub(last.0) <= idle;
        if !fresh {
            if let Ok(mut l) = self.sessions.lock() {
                l.remove(&hash);
            }
            let _ = self.storage.commit(vec![WriteOp::Session {
                hash,
                session: None,
            }]);
            return Err(expired());
        }
        if activity {
            if let Ok(mut l) = self.sessions.lock() {
                l.insert(hash, (session.clone(), now));
            }
        }
        let user = self.get(&session.username)?.ok_or_else(expired)?;
        if let Some(reason) = user.refusal(now) {
            return Err(UserError::Forbidden(reason));
        }
        Ok(Caller {
            username: user.username,
            agency: user.agency,
            role: user.role,
            title: user.title,
            source: source.to_string(),
        })
    }

    /// End the session of `token`.
    pub async fn logout(&self, caller: &Caller, token: &str) -> Result<(), UserError> {
        let hash = token_hash(token);
        self.access
            .record(caller.record(AccessAction::Logout, "logout"))
            .await?;
        if let Ok(mut l) = self.sessions.lock() {
            l.remove(&hash);
        }
        self.storage.commit(vec![WriteOp::Session {
            hash,
            session: None,
        }])?;
        Ok(())
    }
}
