//! The store's contract, by concern: Accounts and sessions.

use super::*;

contract_tests!(
    users_are_created_replaced_and_listed,
    every_signing_key_of_a_user_is_kept_once,
    a_session_is_kept_under_its_hash_until_ended,
);

fn users_are_created_replaced_and_listed(store: &dyn HubStorage) {
    assert_eq!(store.user("ofc.lee").expect("read"), None);
    store
        .commit(vec![
            WriteOp::User(user("ofc.lee", "Officer")),
            WriteOp::User(user("adm.kim", "Administrator")),
        ])
        .expect("commit");
    let mut changed = user("ofc.lee", "Sergeant");
    changed.disabled = true;
    store
        .commit(vec![WriteOp::User(changed.clone())])
        .expect("commit");
    assert_eq!(store.user("ofc.lee").expect("read"), Some(changed.clone()));
    assert_eq!(
        store.users().expect("read"),
        vec![user("adm.kim", "Administrator"), changed],
        "by username"
    );
}

fn every_signing_key_of_a_user_is_kept_once(store: &dyn HubStorage) {
    use alpr_shared::control::officer::OfficerKey;
    let key = |seed: u8, since: u64| crate::store::UserKey {
        key: OfficerKey::derive("correct horse", [seed; 16], 64, 1)
            .expect("derive")
            .0,
        since: UnixMillis(since),
    };
    assert!(store.user_keys().expect("read").is_empty());
    let uk = |name: &str, key: crate::store::UserKey| WriteOp::UserKey {
        username: name.into(),
        key,
    };
    store
        .commit(vec![
            uk("ofc.lee", key(1, 1_000)),
            uk("adm.kim", key(2, 1_000)),
        ])
        .expect("commit");
    // A password change adds a key; the same key again changes nothing.
    store
        .commit(vec![
            uk("ofc.lee", key(3, 2_000)),
            uk("ofc.lee", key(1, 9_000)),
        ])
        .expect("commit");
    let mut kept = store.user_keys().expect("read");
    kept.sort_by_key(|(name, k)| (name.clone(), k.since));
    assert_eq!(
        kept,
        vec![
            ("adm.kim".to_string(), key(2, 1_000)),
            ("ofc.lee".to_string(), key(1, 1_000)),
            ("ofc.lee".to_string(), key(3, 2_000)),
        ]
    );
}

fn a_session_is_kept_under_its_hash_until_ended(store: &dyn HubStorage) {
    let s = |name: &str| crate::store::SessionRecord {
        username: name.into(),
        created: UnixMillis(1_000),
        expires: UnixMillis(9_000),
        source: "127.0.0.1".into(),
    };
    let (one, two) = ([1u8; 32], [2u8; 32]);
    store
        .commit(vec![
            WriteOp::Session {
                hash: one,
                session: Some(s("ofc.lee")),
            },
            WriteOp::Session {
                hash: two,
                session: Some(s("adm.kim")),
            },
        ])
        .expect("commit");
    assert_eq!(store.session(&one).expect("read"), Some(s("ofc.lee")));
    store
        .commit(vec![WriteOp::Session {
            hash: one,
            session: None,
        }])
        .expect("commit");
    assert_eq!(store.session(&one).expect("read"), None, "logged out");
    assert_eq!(store.session(&two).expect("read"), Some(s("adm.kim")));
    assert_eq!(store.session(&[3; 32]).expect("read"), None);
}
