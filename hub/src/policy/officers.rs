//! The officers who may log in on edges follow the hub's users: every
//! enabled user with the officer role, with their password hash, current
//! signing key and training expiry, joins the officers written in
//! `[policy]` (a user of the same name wins, so disabling the user removes
//! the officer).
//! Supervisors work in the field too and are listed with the officers. Each
//! change of the users makes the next policy version, which the sync side
//! pushes to every edge: an officer disabled at the hub cannot log in on
//! an edge once it has synced.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use alpr_shared::control::officer::OfficerKey;
use alpr_shared::control::EdgeOfficer;
use tokio_util::sync::CancellationToken;

use super::PolicyService;
use crate::users::{Role, UserRecord, Users};

/// The officer list from the configured officers and the users (with
/// each user's current signing key from `keys`).
pub fn officers(
    seeded: &[EdgeOfficer],
    users: &[UserRecord],
    keys: &HashMap<String, OfficerKey>,
) -> Vec<EdgeOfficer> {
    let mut by_name: BTreeMap<String, Option<EdgeOfficer>> = seeded
        .iter()
        .map(|o| (o.username.clone(), Some(o.clone())))
        .collect();
    for u in users {
        let officer =
            (matches!(u.role, Role::Officer | Role::Supervisor) && !u.disabled).then(|| {
                EdgeOfficer {
                    username: u.username.clone(),
                    agency: u.agency.clone(),
                    title: u.title.clone(),
                    password_hash: u.password_hash.clone(),
                    training_expires: u.training_expires,
                    key: keys.get(&u.username).cloned(),
                }
            });
        if officer.is_some() || by_name.contains_key(&u.username) {
            by_name.insert(u.username.clone(), officer);
        }
    }
    by_name.into_values().flatten().collect()
}

/// Keep the policy's officers in step with the users until `cancel`.
pub async fn follow_users(
    users: Arc<Users>,
    policy: PolicyService,
    seeded: Vec<EdgeOfficer>,
    cancel: CancellationToken,
) {
    let mut changes = users.subscribe();
    loop {
        match users.list() {
            Ok(list) => match policy
                .set_officers(officers(&seeded, &list, &users.current_keys()))
                .await
            {
                Ok(Some(p)) => {
                    tracing::info!(version = p.version(), "policy: officers changed")
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "policy: the officers could not be updated"),
            },
            Err(e) => tracing::error!(error = %e, "policy: the users could not be read"),
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alpr_shared::types::UnixMillis;

    fn user(name: &str, role: Role, disabled: bool) -> UserRecord {
        UserRecord {
            username: name.into(),
            agency: "CA0010000".into(),
            title: "Officer".into(),
            role,
            password_hash: format!("hash-of-{name}"),
            training_completed: UnixMillis(0),
            training_expires: UnixMillis(1_000),
            disabled,
            created: UnixMillis(0),
            updated: UnixMillis(0),
        }
    }

    #[test]
    fn enabled_officers_join_the_configured_ones_and_a_disabled_user_leaves() {
        let seeded = vec![EdgeOfficer {
            username: "seeded".into(),
            agency: "CA0010000".into(),
            title: "Deputy".into(),
            password_hash: "h".into(),
            training_expires: UnixMillis(5),
            key: None,
        }];
        let users = [
            user("alice", Role::Officer, false),
            user("bob", Role::Officer, true),
            user("carol", Role::Auditor, false),
        ];
        let key = OfficerKey::derive("correct horse", [1; 16], 64, 1)
            .expect("derive")
            .0;
        let keys = HashMap::from([("alice".to_string(), key.clone())]);
        let listed = officers(&seeded, &users, &keys);
        let names: Vec<&str> = listed.iter().map(|o| o.username.as_str()).collect();
        assert_eq!(names, ["alice", "seeded"]);
        assert_eq!(listed[0].key, Some(key), "a user's current key goes along");
        let disabled = [user("seeded", Role::Officer, true)];
        assert!(officers(&seeded, &disabled, &keys).is_empty());
    }
}
