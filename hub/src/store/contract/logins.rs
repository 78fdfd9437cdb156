//! The store's contract for failed logins and lock-outs (the rows behind
//! [`crate::users`]' throttle), on every backend.

use super::*;

contract_tests!(
    failed_logins_are_counted_per_key_since_a_time_and_pruned,
    a_lock_keeps_the_latest_end_forgets_failures_and_ended_locks_go,
);

fn fail(keys: &[&str], at: u64, keep_after: u64, max_rows: u64) -> WriteOp {
    WriteOp::LoginFailure {
        keys: keys.iter().map(|k| (*k).to_owned()).collect(),
        at: UnixMillis(at),
        keep_after: UnixMillis(keep_after),
        max_rows,
    }
}

fn failed_logins_are_counted_per_key_since_a_time_and_pruned(store: &dyn HubStorage) {
    let count =
        |key: &str, since: u64| store.login_failures(key, UnixMillis(since)).expect("count");
    assert_eq!(count("user:bob", 0), 0);
    store
        .commit(vec![
            fail(&["user:bob", "source:10.0.0.1"], 1_000, 0, 100),
            fail(&["user:bob", "source:10.0.0.1"], 1_000, 0, 100),
            fail(&["user:bob", "source:10.0.0.2"], 2_000, 0, 100),
        ])
        .expect("commit");
    assert_eq!(count("user:bob", 0), 3, "two at the same time both count");
    assert_eq!(count("user:bob", 1_001), 1);
    assert_eq!(count("source:10.0.0.1", 0), 2);
    assert_eq!(count("user:alice", 0), 0);
    // A success forgets the name's failures, not the source's.
    store
        .commit(vec![WriteOp::LoginCleared {
            key: "user:bob".into(),
        }])
        .expect("commit");
    assert_eq!(count("user:bob", 0), 0);
    assert_eq!(count("source:10.0.0.1", 0), 2);
    // Failures before `keep_after` go, then the oldest beyond `max_rows`.
    store
        .commit(
            (0..10)
                .map(|i| fail(&[&format!("user:u{i}")], 5_000 + i, 1_500, 6))
                .collect(),
        )
        .expect("commit");
    assert_eq!(count("source:10.0.0.1", 0), 0, "older than keep_after");
    let kept: u64 = (0..10).map(|i| count(&format!("user:u{i}"), 0)).sum();
    assert_eq!(kept, 6, "at most max_rows are kept");
    assert_eq!(count("user:u0", 0), 0, "the oldest went");
    assert_eq!(count("user:u9", 0), 1, "the newest stayed");
}

fn a_lock_keeps_the_latest_end_forgets_failures_and_ended_locks_go(store: &dyn HubStorage) {
    let lock = |key: &str, until: u64, at: u64, max_rows: u64| WriteOp::LoginLock {
        key: key.into(),
        until: UnixMillis(until),
        at: UnixMillis(at),
        max_rows,
    };
    let until = |key: &str| store.login_lock(key).expect("read").map(|u| u.0);
    assert_eq!(until("user:bob"), None);
    store
        .commit(vec![fail(&["user:bob", "source:10.0.0.1"], 1_000, 0, 100)])
        .expect("commit");
    store
        .commit(vec![lock("user:bob", 9_000, 1_000, 100)])
        .expect("commit");
    assert_eq!(until("user:bob"), Some(9_000));
    assert_eq!(
        store
            .login_failures("user:bob", UnixMillis(0))
            .expect("count"),
        0,
        "a lock forgets the failures that made it"
    );
    assert_eq!(
        store
            .login_failures("source:10.0.0.1", UnixMillis(0))
            .expect("count"),
        1
    );
    // Another hub locking the same name sooner does not shorten it.
    store
        .commit(vec![lock("user:bob", 5_000, 1_100, 100)])
        .expect("commit");
    assert_eq!(until("user:bob"), Some(9_000));
    // Locks that ended go; beyond max_rows the soonest to end go.
    store
        .commit(vec![lock("user:carol", 20_000, 10_000, 2)])
        .expect("commit");
    assert_eq!(until("user:bob"), None, "ended by then");
    store
        .commit(vec![
            lock("user:dan", 30_000, 10_000, 2),
            lock("user:erin", 25_000, 10_000, 2),
        ])
        .expect("commit");
    assert_eq!(until("user:carol"), None, "the soonest to end went");
    assert_eq!(until("user:dan"), Some(30_000));
    assert_eq!(until("user:erin"), Some(25_000));
}
