//! The store's contract, by concern: Control documents: policy versions, what nodes hold, holds and local
//! entries.

use super::*;

contract_tests!(
    every_policy_version_is_kept_and_a_stale_one_fails_the_whole_commit,
    node_policies_and_hotlists_are_what_each_node_last_said,
    the_holds_and_local_entries_documents_are_kept,
);

fn every_policy_version_is_kept_and_a_stale_one_fails_the_whole_commit(store: &dyn HubStorage) {
    assert_eq!(store.policy().expect("read"), None);
    assert_eq!(store.policy_seed().expect("read"), None);
    let policy = |version: u64, seed: Option<Hash32>| WriteOp::Policy {
        version,
        encoded: format!("policy v{version}").into_bytes(),
        seed,
    };
    store
        .commit(vec![policy(1, Some(Hash32([1; 32])))])
        .expect("commit");
    store.commit(vec![policy(2, None)]).expect("commit");
    assert_eq!(store.policy().expect("read"), Some(b"policy v2".to_vec()));
    assert_eq!(
        store.policy_seed().expect("read"),
        Some(Hash32([1; 32])),
        "a version made by hand keeps the configuration's seed"
    );
    // Not newer: the commit fails, and nothing else in it is written.
    let r = store.commit(vec![
        WriteOp::User(user("ofc.lee", "Officer")),
        policy(2, None),
    ]);
    assert!(r.is_err(), "{r:?}");
    assert_eq!(store.user("ofc.lee").expect("read"), None);
    assert!(store.commit(vec![policy(1, None)]).is_err());
    assert_eq!(store.policy().expect("read"), Some(b"policy v2".to_vec()));
    store
        .commit(vec![policy(7, Some(Hash32([7; 32])))])
        .expect("commit");
    assert_eq!(store.policy().expect("read"), Some(b"policy v7".to_vec()));
    assert_eq!(store.policy_seed().expect("read"), Some(Hash32([7; 32])));
}

fn node_policies_and_hotlists_are_what_each_node_last_said(store: &dyn HubStorage) {
    let a = DeviceId::new("pole-a").expect("valid");
    let b = DeviceId::new("car-b").expect("valid");
    contact(store, &a, "0a", 0, 1);
    contact(store, &b, "0b", 0, 1);
    store
        .commit(vec![
            WriteOp::NodePolicy {
                device: a.clone(),
                version: 3,
            },
            WriteOp::NodePolicy {
                device: b.clone(),
                version: 1,
            },
            WriteOp::NodeHotlists {
                device: a.clone(),
                held: vec![("ncic".into(), 4)],
            },
        ])
        .expect("commit");
    store
        .commit(vec![
            WriteOp::NodePolicy {
                device: a.clone(),
                version: 4,
            },
            WriteOp::NodeHotlists {
                device: a.clone(),
                held: vec![("ncic".into(), 5), ("dmv".into(), 2)],
            },
            WriteOp::NodeHotlists {
                device: b.clone(),
                held: vec![],
            },
        ])
        .expect("commit");
    assert_eq!(
        sorted(store.node_policies().expect("read")),
        vec![(b.clone(), 1), (a.clone(), 4)]
    );
    assert_eq!(
        sorted(store.node_hotlists().expect("read")),
        vec![
            (b.clone(), vec![]),
            (a, vec![("ncic".to_owned(), 5), ("dmv".to_owned(), 2)])
        ]
    );
    // A node may say anything: an absurd version is kept (PostgreSQL:
    // up to its column's range) and never fails the commit it rides in.
    let applied = store
        .commit(vec![
            WriteOp::NodePolicy {
                device: b.clone(),
                version: u64::MAX,
            },
            WriteOp::NodeHotlists {
                device: b.clone(),
                held: vec![("ncic".into(), u64::MAX)],
            },
        ])
        .expect("an out-of-range version does not fail the commit");
    assert_eq!(applied.len(), 2);
    let held = store.node_policies().expect("read");
    assert!(
        held.iter().any(|(d, v)| *d == b && *v >= i64::MAX as u64),
        "{held:?}"
    );
}

fn the_holds_and_local_entries_documents_are_kept(store: &dyn HubStorage) {
    use alpr_shared::control::holds::{Hold, HoldScope};
    use alpr_shared::control::holds_doc::HoldsDoc;
    use alpr_shared::hotlist::local::{EntryFields, LocalEntriesDoc};
    assert_eq!(store.holds_doc().expect("read"), None);
    assert_eq!(store.local_entries_doc().expect("read"), None);
    let hold = |id: &str| Hold {
        id: id.into(),
        case: "24-001".into(),
        reason: "homicide investigation".into(),
        placed_by: "det.lee".into(),
        agency: "CA0349400".into(),
        placed_at: UnixMillis(1_000),
        placed_on: "hub".into(),
        scope: HoldScope {
            plates: vec!["7ABC123".into()],
            ..HoldScope::default()
        },
        released: None,
    };
    let mut holds = HoldsDoc::new();
    holds.add(hold("h-1")).expect("add");
    store
        .commit(vec![WriteOp::Holds(holds.save())])
        .expect("commit");
    holds.add(hold("h-2")).expect("add");
    store
        .commit(vec![WriteOp::Holds(holds.save())])
        .expect("commit");
    let saved = HoldsDoc::load(&store.holds_doc().expect("read").expect("saved")).expect("loads");
    assert_eq!(
        sorted(saved.holds().into_iter().map(|h| h.id).collect()),
        vec!["h-1", "h-2"]
    );

    let rules = alpr_shared::control::HotlistPolicy::default();
    let fields = |plate: &str| EntryFields {
        plate: Some(plate.into()),
        reason: Some("stolen from driveway".into()),
        ..EntryFields::default()
    };
    let now = UnixMillis(1_000);
    let mut local = LocalEntriesDoc::new();
    local
        .add(
            "e-1",
            fields("7ABC123"),
            "ofc.lee",
            "CA0000001",
            &rules,
            now,
        )
        .expect("add");
    store
        .commit(vec![WriteOp::LocalEntries(local.save())])
        .expect("commit");
    local
        .add(
            "e-2",
            fields("8XYZ999"),
            "ofc.lee",
            "CA0000001",
            &rules,
            now,
        )
        .expect("add");
    store
        .commit(vec![WriteOp::LocalEntries(local.save())])
        .expect("commit");
    let saved = LocalEntriesDoc::load(&store.local_entries_doc().expect("read").expect("saved"))
        .expect("loads");
    assert_eq!(
        sorted(saved.entries().into_iter().map(|e| e.plate).collect()),
        vec!["7ABC123", "8XYZ999"]
    );
}
