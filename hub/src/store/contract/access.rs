//! The store's contract, by concern: The access logs: the hub's own and the index of nodes' accesses.

use super::*;

contract_tests!(
    the_hub_access_log_grows_only_by_its_next_entry,
    node_accesses_are_listed_in_time_order,
);

// ---------------------------------------------------- the hub's own log

fn the_hub_access_log_grows_only_by_its_next_entry(store: &dyn HubStorage) {
    assert_eq!(store.hub_access_head().expect("read"), (0, Hash32::ZERO));
    let mut w = hub_log();
    let access = |w: &mut LogWriter, user: &str| {
        w.append_access(
            access_record(user),
            UnixMillis(1_000),
            TimeSource::LocalClock,
        )
        .expect("valid")
    };
    let a = access(&mut w, "a");
    let b = access(&mut w, "b");
    store
        .commit(vec![WriteOp::HubAccess(vec![a.clone(), b.clone()])])
        .expect("commit");
    assert_eq!(store.hub_access_head().expect("read"), (2, b.hash()));
    // The same entry again, or another log's entry 2: refused, nothing
    // changes.
    assert!(store
        .commit(vec![WriteOp::HubAccess(vec![b.clone()])])
        .is_err());
    let mut other = hub_log();
    access(&mut other, "x");
    access(&mut other, "y");
    let stranger = access(&mut other, "z");
    assert!(store
        .commit(vec![WriteOp::HubAccess(vec![stranger])])
        .is_err());
    assert_eq!(store.hub_access_head().expect("read"), (2, b.hash()));
    let c = access(&mut w, "c");
    store
        .commit(vec![WriteOp::HubAccess(vec![c.clone()])])
        .expect("commit");
    assert_eq!(store.hub_access_head().expect("read"), (3, c.hash()));
    assert_eq!(
        store.hub_access_entries(0, 10).expect("read"),
        vec![a.encode(), b.encode(), c.encode()]
    );
    assert_eq!(
        store.hub_access_entries(1, 1).expect("read"),
        vec![b.encode()]
    );
    assert!(store.hub_access_entries(3, 10).expect("read").is_empty());
}

fn node_accesses_are_listed_in_time_order(store: &dyn HubStorage) {
    let mut a = Node::new("car-a", 11);
    let mut b = Node::new("car-b", 12);
    let mut log_a = a.reads(1, 50);
    log_a.extend([a.access(100), a.access(300)]);
    let log_b = vec![b.access(200), b.access(400)];
    ingest(store, &a, log_a);
    ingest(store, &b, log_b);
    let (ad, bd) = (a.device.clone(), b.device.clone());
    assert_eq!(
        store
            .node_accesses(UnixMillis(0), UnixMillis(1_000), 100)
            .expect("read"),
        vec![
            (ad.clone(), 1),
            (bd.clone(), 0),
            (ad.clone(), 2),
            (bd.clone(), 1)
        ]
    );
    assert_eq!(
        store
            .node_accesses(UnixMillis(150), UnixMillis(300), 100)
            .expect("read"),
        vec![(bd.clone(), 0), (ad.clone(), 2)],
        "the window is inclusive"
    );
    assert_eq!(
        store
            .node_accesses(UnixMillis(0), UnixMillis(1_000), 3)
            .expect("read"),
        vec![(ad.clone(), 1), (bd, 0), (ad, 2)]
    );
}
