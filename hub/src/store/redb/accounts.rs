//! Accounts and sessions in redb ([`AccountStore`]); the login
//! throttle's tables are in `logins`.

use super::*;

impl AccountStore for RedbStore {
    fn user(&self, username: &str) -> Result<Option<crate::store::UserRecord>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(USERS).map_err(db_err)?;
        t.get(username)
            .map_err(db_err)?
            .map(|v| decode_row(v.value(), "users-v1"))
            .transpose()
    }

    fn users(&self) -> Result<Vec<crate::store::UserRecord>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(USERS).map_err(db_err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(db_err)? {
            let (_, v) = row.map_err(db_err)?;
            out.push(decode_row(v.value(), "users-v1")?);
        }
        Ok(out)
    }

    fn user_keys(&self) -> Result<Vec<(String, crate::store::UserKey)>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(USER_KEYS).map_err(db_err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            out.push((
                k.value().0.to_owned(),
                decode_row(v.value(), "user-keys-v1")?,
            ));
        }
        Ok(out)
    }

    fn session(&self, hash: &[u8; 32]) -> Result<Option<crate::store::SessionRecord>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(SESSIONS).map_err(db_err)?;
        t.get(hash)
            .map_err(db_err)?
            .map(|v| decode_row(v.value(), "sessions-v1"))
            .transpose()
    }

    fn login_failures(&self, key: &str, since: UnixMillis) -> Result<u64, StoreError> {
        logins::failures(&self.db, key, since)
    }

    fn login_lock(&self, key: &str) -> Result<Option<UnixMillis>, StoreError> {
        logins::locked_until(&self.db, key)
    }
}

/// [`WriteOp::User`]: create or replace a user account.
pub(super) fn user(
    b: &mut Batch<'_>,
    u: crate::store::UserRecord,
) -> Result<WriteResult, StoreError> {
    b.users
        .insert(u.username.as_str(), encode(&u).as_slice())
        .map_err(db_err)?;
    Ok(WriteResult::Done)
}

/// [`WriteOp::UserKey`]: keep a user's signing key (one kept stays).
pub(super) fn user_key(
    b: &mut Batch<'_>,
    username: &str,
    key: crate::store::UserKey,
) -> Result<WriteResult, StoreError> {
    let at = (username, &key.key.public);
    if b.user_keys.get(at).map_err(db_err)?.is_none() {
        b.user_keys
            .insert(at, encode(&key).as_slice())
            .map_err(db_err)?;
    }
    Ok(WriteResult::Done)
}

/// [`WriteOp::Session`]: keep a session, or end it.
pub(super) fn session(
    b: &mut Batch<'_>,
    hash: [u8; 32],
    session: Option<crate::store::SessionRecord>,
) -> Result<WriteResult, StoreError> {
    match session {
        Some(s) => {
            b.sessions
                .insert(&hash, encode(&s).as_slice())
                .map_err(db_err)?;
        }
        None => {
            b.sessions.remove(&hash).map_err(db_err)?;
        }
    }
    Ok(WriteResult::Done)
}
