//! The store's contract, by concern: Nodes and their chains: ingest, checkpoints, certificates, contacts,
//! refusals, losses, revocations, entries.

use super::*;

contract_tests!(
    ingest_is_idempotent_and_refuses_forks_and_gaps,
    a_checkpoint_is_kept_when_it_extends_and_a_conflicting_one_is_refused,
    every_certificate_is_kept_and_a_new_one_takes_effect_on_the_chain,
    a_contact_updates_the_node_and_nodes_lists_every_node,
    refusals_are_kept_newest_last_and_counted_on_the_node,
    unauthenticated_refusals_are_pruned_by_age_and_count_and_spare_nodes,
    a_signed_loss_moves_the_chain_past_the_lost_entries_only_from_where_it_stands,
    the_earliest_revocation_wins,
    entries_and_entries_at_return_the_stored_bytes,
);

// ------------------------------------------------------------ the chain

fn ingest_is_idempotent_and_refuses_forks_and_gaps(store: &dyn HubStorage) {
    let mut n = Node::new("p-1", 3);
    let first = n.reads(100, 5_000);
    let i = ingest(store, &n, first.clone());
    assert_eq!(
        (i.appended, i.duplicates, i.progress.next_seq),
        (100, 0, 100)
    );
    // The same upload again: nothing appended, all counted as duplicates.
    let i = ingest(store, &n, first.clone());
    assert_eq!(
        (i.appended, i.duplicates, i.progress.next_seq),
        (0, 100, 100)
    );
    // An overlapping upload appends only what is new.
    let more = n.reads(5, 200_000);
    let mut overlap = first[95..].to_vec();
    overlap.extend(more);
    let i = ingest(store, &n, overlap);
    assert_eq!((i.appended, i.duplicates, i.progress.next_seq), (5, 5, 105));
    // A gap: entries 155.. while 105 is due.
    let _unsent = n.reads(50, 300_000);
    let later = n.reads(10, 400_000);
    assert_eq!(
        refused(ingest_with(store, &n, later, None)),
        RefusalCode::Gap
    );
    // A fork: another history from 0 under the same key.
    let mut fork = Node::new("p-1", 3);
    let other = fork.reads(5, 6_000);
    assert_eq!(
        refused(ingest_with(store, &fork, other, Some(fork.checkpoint()))),
        RefusalCode::Fork
    );
    let rec = node_record(store, &n.device);
    assert_eq!(rec.next_seq, 105);
    assert_eq!(rec.head, stored(store, &n.device)[104].hash());
    assert_eq!(rec.duplicates, 105);
    let held = stored(store, &n.device);
    assert_eq!(held.len(), 105, "refused uploads stored nothing");
    assert!(held.iter().enumerate().all(|(i, e)| e.seq() == i as u64));
    assert_eq!(
        held[..100],
        first[..],
        "the stored entries are the signed ones"
    );
    let hits = store
        .reads_of_plate(&crate::sample::sample_read(7).plate, ALL_TIME.0, ALL_TIME.1)
        .expect("index");
    assert!(hits.contains(&(n.device.clone(), 7)), "{hits:?}");
}

fn a_checkpoint_is_kept_when_it_extends_and_a_conflicting_one_is_refused(store: &dyn HubStorage) {
    let mut n = Node::new("p-c", 4);
    assert_eq!(store.checkpoint(&n.device).expect("read"), None);
    let first = n.reads(5, 5_000);
    let cp5 = n.checkpoint();
    ingest(store, &n, first.clone());
    assert_eq!(
        store.checkpoint(&n.device).expect("read"),
        Some(cp5.clone())
    );
    let second = n.reads(3, 10_000);
    ingest(store, &n, second);
    let cp8 = store.checkpoint(&n.device).expect("read").expect("kept");
    assert_eq!(cp8.checkpoint.size, 8);
    // A replay of the first upload with its own (older) checkpoint: fine,
    // and the newer checkpoint stays.
    let i = ok(ingest_with(store, &n, first.clone(), Some(cp5)));
    assert_eq!(i.appended, 0);
    assert_eq!(
        store.checkpoint(&n.device).expect("read"),
        Some(cp8.clone())
    );
    // One naming another head at the size the hub holds, sent with a
    // replay of entries it holds: a second history.
    let two_faced = alpr_shared::wire::sign_checkpoint(
        &SecretKey::from_bytes(&[4; 32]),
        n.device.clone(),
        8,
        Hash32([7; 32]),
        UnixMillis(2),
    );
    let replay = Entries::from_log(first[..3].to_vec(), None).expect("consecutive");
    let v = verify_batch(&n.key, &n.device, Validity::ALWAYS, replay).expect("verifies");
    let r = commit1(
        store,
        WriteOp::Ingest {
            device: n.device.clone(),
            entries: v.entries,
            checkpoint: Some(two_faced),
            new_key: None,
            at: UnixMillis(2),
        },
    );
    assert_eq!(refused(r), RefusalCode::Fork);
    assert_eq!(store.checkpoint(&n.device).expect("read"), Some(cp8));
    assert_eq!(node_record(store, &n.device).next_seq, 8);
}

fn every_certificate_is_kept_and_a_new_one_takes_effect_on_the_chain(store: &dyn HubStorage) {
    let mut n = Node::new("p-2", 5);
    assert!(store.certificates(&n.device).expect("read").is_empty());
    assert_eq!(store.certificate(&n.device).expect("read"), None);
    contact(store, &n.device, "aa", 0, 10);
    let certs = store.certificates(&n.device).expect("read");
    assert_eq!(certs.len(), 1);
    assert_eq!(
        (
            certs[0].serial.as_str(),
            certs[0].der.as_slice(),
            certs[0].first_seen,
            certs[0].effective_from
        ),
        ("aa", b"aa".as_slice(), UnixMillis(10), None),
        "a new certificate vouches for nothing yet"
    );
    let log = n.reads(5, 5_000);
    ok(ingest_new_key(store, &n, log, "aa"));
    // A second certificate that only says hello replaces nothing.
    contact(store, &n.device, "bb", 5, 20);
    let certs = store.certificates(&n.device).expect("read");
    assert_eq!(
        certs
            .iter()
            .map(|c| (c.serial.as_str(), c.effective_from))
            .collect::<Vec<_>>(),
        vec![("aa", Some(0)), ("bb", None)]
    );
    assert_eq!(
        store.certificate(&n.device).expect("read"),
        Some(b"aa".to_vec())
    );
    // Its first entry placed on the chain makes it effective there.
    let new = SecretKey::from_bytes(&[6; 32]);
    let mut renewed = Node {
        key: new.public(),
        w: LogWriter::resume(new, n.device.clone(), n.w.len(), n.w.head()),
        device: n.device.clone(),
    };
    let log = renewed.reads(3, 10_000);
    let i = ok(ingest_new_key(store, &renewed, log, "bb"));
    assert_eq!(i.appended, 3);
    let certs = store.certificates(&n.device).expect("read");
    assert_eq!(
        certs
            .iter()
            .map(|c| (c.serial.as_str(), c.effective_from))
            .collect::<Vec<_>>(),
        vec![("aa", Some(0)), ("bb", Some(5))]
    );
    assert_eq!(
        store.certificate(&n.device).expect("read"),
        Some(b"bb".to_vec())
    );
    // A certificate the node never presented is refused, and places nothing.
    let log = renewed.reads(2, 20_000);
    let r = ingest_new_key(store, &renewed, log, "cc");
    assert_eq!(refused(r), RefusalCode::UnknownNode);
    assert_eq!(node_record(store, &n.device).next_seq, 8);
}

fn a_contact_updates_the_node_and_nodes_lists_every_node(store: &dyn HubStorage) {
    let a = DeviceId::new("pole-a").expect("valid");
    let b = DeviceId::new("car-b").expect("valid");
    assert_eq!(store.node(&a).expect("read"), None);
    contact(store, &a, "0a", 40, 1_000);
    contact(store, &b, "0b", 7, 2_000);
    // A hello delivered late does not move the last contact back.
    contact(store, &a, "0a", 50, 500);
    let rec = node_record(store, &a);
    assert_eq!(rec.serial, "0a");
    assert_eq!(rec.reported_size, 50);
    assert_eq!(rec.last_contact, UnixMillis(1_000));
    assert_eq!(rec.backlog(), 50, "the node has 50 entries the hub lacks");
    let nodes = store.nodes().expect("nodes");
    assert_eq!(
        nodes.iter().map(|(d, _)| d.as_str()).collect::<Vec<_>>(),
        vec!["car-b", "pole-a"],
        "by name"
    );
    assert_ne!(nodes[0].1.id, nodes[1].1.id, "each node has its own id");
}

// ------------------------------------------------------------- refusals

fn refusals_are_kept_newest_last_and_counted_on_the_node(store: &dyn HubStorage) {
    let a = DeviceId::new("pole-r").expect("valid");
    contact(store, &a, "01", 0, 1);
    let refusal = |at: u64, device: Option<&str>| RefusalRecord {
        at: UnixMillis(at),
        device: device.map(str::to_owned),
        peer: "127.0.0.1:4433".into(),
        code: "bad-signature".into(),
        seq: Some(at),
        detail: format!("refusal at {at}"),
    };
    let all: Vec<RefusalRecord> = (1..=5)
        .map(|i| refusal(i * 10, (i % 2 == 1).then_some("pole-r")))
        .collect();
    store
        .commit(all.iter().cloned().map(WriteOp::Refusal).collect())
        .expect("commit");
    assert_eq!(store.refusals(100).expect("read"), all);
    assert_eq!(
        store.refusals(2).expect("read"),
        all[3..],
        "the newest, newest last"
    );
    assert_eq!(node_record(store, &a).refusals, 3);
}

fn unauthenticated_refusals_are_pruned_by_age_and_count_and_spare_nodes(store: &dyn HubStorage) {
    let node = RefusalRecord {
        at: UnixMillis(10),
        device: Some("stolen-1".into()),
        peer: "127.0.0.1:1".into(),
        code: "revoked".into(),
        seq: None,
        detail: "revoked".into(),
    };
    store
        .commit(vec![WriteOp::Refusal(node.clone())])
        .expect("commit");
    let row = |at: u64| WriteOp::SourceRefusal {
        record: SourceRefusalRecord {
            at: UnixMillis(at),
            source: format!("10.0.0.{}", at % 250),
            code: "unknown-node".into(),
            count: 3,
            detail: "TLS handshake failed".into(),
        },
        keep_after: UnixMillis(at.saturating_sub(100)),
        max_rows: 20,
    };
    store
        .commit((1_000..1_100).map(row).collect())
        .expect("commit");
    let kept = store.source_refusals(1_000).expect("read");
    assert_eq!(kept.len(), 20, "at most max_rows are kept");
    assert_eq!(
        kept.iter().map(|r| r.at.0).collect::<Vec<_>>(),
        (1_080..1_100).collect::<Vec<_>>(),
        "the newest, newest last"
    );
    assert_eq!(kept[19].source, "10.0.0.99");
    assert_eq!(store.source_refusals(5).expect("read"), kept[15..]);
    // Far later: everything older than the retention goes.
    store.commit(vec![row(100_000)]).expect("commit");
    assert_eq!(store.source_refusals(1_000).expect("read").len(), 1);
    assert_eq!(store.refusals(50).expect("read"), vec![node]);
}

// ------------------------------------------------------------ loss, revoke

fn a_signed_loss_moves_the_chain_past_the_lost_entries_only_from_where_it_stands(
    store: &dyn HubStorage,
) {
    let mut n = Node::new("pole-s", 8);
    let log = n.reads(3, 5_000);
    ingest(store, &n, log);
    let skip = |first: u64, last: u64| {
        commit1(
            store,
            WriteOp::Skip {
                device: n.device.clone(),
                first,
                last,
                head: Hash32([5; 32]),
                at: UnixMillis(2),
            },
        )
    };
    assert_eq!(
        refused(skip(5, 5)),
        RefusalCode::Gap,
        "the chain stands at 3"
    );
    assert_eq!(ok(skip(3, 4)).progress.next_seq, 5);
    let rec = node_record(store, &n.device);
    assert_eq!((rec.next_seq, rec.head), (5, Hash32([5; 32])));
    // A replay of the same statement changes nothing.
    assert_eq!(ok(skip(3, 4)).progress.next_seq, 5);
    assert_eq!(store.entries(&n.device, 0, 100).expect("read").len(), 3);
}

fn the_earliest_revocation_wins(store: &dyn HubStorage) {
    let revoke = |serial: &str, at: u64| {
        WriteOp::Revoke(alpr_shared::cert::Revocation {
            serial: serial.into(),
            effective_at: UnixMillis(at),
            reason: format!("lost at {at}"),
        })
    };
    assert!(store.revocations().expect("read").is_empty());
    store.commit(vec![revoke("aa", 50)]).expect("commit");
    store.commit(vec![revoke("aa", 80)]).expect("commit");
    let aa = |store: &dyn HubStorage| {
        store
            .revocations()
            .expect("read")
            .into_iter()
            .find(|r| r.serial == "aa")
            .map(|r| r.effective_at)
    };
    assert_eq!(
        aa(store),
        Some(UnixMillis(50)),
        "a repeat never pushes it later"
    );
    store
        .commit(vec![revoke("aa", 30), revoke("bb", 10)])
        .expect("commit");
    assert_eq!(aa(store), Some(UnixMillis(30)));
    let mut serials: Vec<String> = store
        .revocations()
        .expect("read")
        .into_iter()
        .map(|r| r.serial)
        .collect();
    serials.sort();
    assert_eq!(serials, vec!["aa", "bb"]);
}

fn entries_and_entries_at_return_the_stored_bytes(store: &dyn HubStorage) {
    let mut a = Node::new("pole-a", 51);
    let mut b = Node::new("pole-b", 52);
    let log_a = a.reads(20, 5_000);
    let log_b = b.reads(3, 5_000);
    ingest(store, &a, log_a.clone());
    ingest(store, &b, log_b.clone());
    let bytes = |log: &[SignedEntry]| log.iter().map(SignedEntry::encode).collect::<Vec<_>>();
    assert_eq!(
        store.entries(&a.device, 0, 100).expect("read"),
        bytes(&log_a)
    );
    assert_eq!(
        store.entries(&a.device, 5, 3).expect("read"),
        bytes(&log_a[5..8])
    );
    assert_eq!(
        store.entries(&a.device, 18, 100).expect("read"),
        bytes(&log_a[18..])
    );
    assert!(store.entries(&a.device, 20, 100).expect("read").is_empty());
    let unknown = DeviceId::new("unknown").expect("valid");
    assert!(store.entries(&unknown, 0, 100).expect("read").is_empty());
    assert_eq!(
        store
            .entries_at(&[
                (a.device.clone(), 7),
                (b.device.clone(), 2),
                (a.device.clone(), 99),
                (unknown, 0),
                (a.device.clone(), 0),
            ])
            .expect("read"),
        vec![
            Some(log_a[7].encode()),
            Some(log_b[2].encode()),
            None,
            None,
            Some(log_a[0].encode())
        ]
    );
}
