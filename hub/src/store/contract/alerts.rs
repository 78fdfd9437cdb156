//! The store's contract, by concern: Alerts: nodes' alerts indexed at ingest, the hub's past matches and
//! dispositions.

use super::*;

contract_tests!(
    hub_alerts_are_numbered_from_one_and_listed_newest_first,
    hub_dispositions_keep_each_alerts_order,
    alerts_and_their_stages_are_indexed_at_ingest,
);

fn hub_alerts_are_numbered_from_one_and_listed_newest_first(store: &dyn HubStorage) {
    assert!(store.hub_alerts(10).expect("read").is_empty());
    let node = DeviceId::new("pole-h").expect("valid");
    let alert = |seq: u64| HubAlert {
        node: node.clone(),
        at: UnixMillis(1_000 + seq),
        record: AlertRecord {
            past_match: true,
            ..crate::sample::sample_alert(seq, "7ABC123", false)
        },
    };
    store
        .commit(vec![WriteOp::HubAlerts(vec![alert(4), alert(9)])])
        .expect("commit");
    store
        .commit(vec![WriteOp::HubAlerts(vec![alert(12)])])
        .expect("commit");
    assert_eq!(
        store.hub_alerts(10).expect("read"),
        vec![(3, alert(12)), (2, alert(9)), (1, alert(4))]
    );
    assert_eq!(store.hub_alerts(1).expect("read"), vec![(3, alert(12))]);
}

fn hub_dispositions_keep_each_alerts_order(store: &dyn HubStorage) {
    let d = |stage: Stage, seq: u64| HubDisposition {
        at: UnixMillis(1_000 + seq),
        stage,
        user: "disp.ray".into(),
        agency: "CA0000001".into(),
        note: format!("stage {seq}"),
        access_seq: seq,
    };
    let one = [
        d(Stage::Read(ReadCheck::Correct), 1),
        d(Stage::Status(StatusCheck::ConfirmedActive), 3),
        d(Stage::Action(ActionTaken::Stop), 4),
    ];
    let other = d(Stage::Read(ReadCheck::Misread), 2);
    let op = |alert: &str, disposition: &HubDisposition| WriteOp::HubDisposition {
        alert: alert.into(),
        disposition: disposition.clone(),
    };
    store
        .commit(vec![op("car-9#4", &one[0]), op("hub#1", &other)])
        .expect("commit");
    store.commit(vec![op("car-9#4", &one[1])]).expect("commit");
    store.commit(vec![op("car-9#4", &one[2])]).expect("commit");
    let of_one: Vec<HubDisposition> = store
        .hub_dispositions(Some("car-9#4"))
        .expect("read")
        .into_iter()
        .map(|(id, d)| {
            assert_eq!(id, "car-9#4");
            d
        })
        .collect();
    assert_eq!(of_one, one, "in the order recorded");
    assert_eq!(
        store.hub_dispositions(Some("hub#1")).expect("read"),
        vec![("hub#1".to_owned(), other.clone())]
    );
    assert!(store
        .hub_dispositions(Some("hub#2"))
        .expect("read")
        .is_empty());
    let all = store.hub_dispositions(None).expect("read");
    assert_eq!(all.len(), 4);
    let of_one_in_all: Vec<HubDisposition> = all
        .iter()
        .filter(|(id, _)| id == "car-9#4")
        .map(|(_, d)| d.clone())
        .collect();
    assert_eq!(of_one_in_all, one, "each alert's stages in order");
}

fn alerts_and_their_stages_are_indexed_at_ingest(store: &dyn HubStorage) {
    let mut n = Node::new("car-9", 4);
    let read = n.read(read_of(0, "7ABC123", site()), 5_000);
    let stage = |w: &mut LogWriter, alert_seq: u64, stage: Stage| {
        w.append_disposition(
            DispositionRecord {
                alert_seq,
                stage,
                user: "ofc.diaz".into(),
                agency: "CA0190000".into(),
                note: "plate and car match".into(),
            },
            UnixMillis(7_000),
            TimeSource::Ntp,
        )
        .expect("valid")
    };
    let a =
        n.w.append_alert(
            crate::sample::sample_alert(0, "7ABC123", false),
            UnixMillis(5_100),
            TimeSource::Ntp,
        )
        .expect("alert");
    let covert =
        n.w.append_alert(
            crate::sample::sample_alert(0, "7ABC123", true),
            UnixMillis(5_100),
            TimeSource::Ntp,
        )
        .expect("alert");
    let s1 = stage(&mut n.w, a.seq(), Stage::Read(ReadCheck::Correct));
    ingest(store, &n, vec![read, a.clone(), covert.clone(), s1.clone()]);
    let rows = store.alerts(None, 100).expect("alerts");
    assert_eq!(
        rows.iter().map(|r| (r.seq, r.covert)).collect::<Vec<_>>(),
        vec![(a.seq(), false), (covert.seq(), true)]
    );
    assert_eq!(rows[0].progress.read, Some(ReadCheck::Correct));
    assert_eq!(rows[0].dispositions, vec![s1.seq()]);
    // The next stages arrive in a later upload; a stage the rules refuse
    // (a second read check) stays in the log and is not counted.
    let s2 = stage(
        &mut n.w,
        a.seq(),
        Stage::Status(StatusCheck::ConfirmedActive),
    );
    let bad = stage(&mut n.w, a.seq(), Stage::Read(ReadCheck::Misread));
    let s3 = stage(&mut n.w, a.seq(), Stage::Action(ActionTaken::Stop));
    ingest(store, &n, vec![s2.clone(), bad, s3.clone()]);
    let row = store
        .alert(&n.device, a.seq())
        .expect("read")
        .expect("indexed");
    assert!(row.progress.closed());
    assert_eq!(row.progress.read, Some(ReadCheck::Correct));
    assert_eq!(row.dispositions, vec![s1.seq(), s2.seq(), s3.seq()]);
    assert_eq!(
        store.alert(&n.device, 0).expect("read"),
        None,
        "a read is no alert"
    );
    // Another node's alerts, and the per-node filter and limit.
    let mut m = Node::new("car-1", 5);
    let r = m.read(read_of(1, "8XYZ999", site()), 5_000);
    let other =
        m.w.append_alert(
            crate::sample::sample_alert(0, "8XYZ999", false),
            UnixMillis(5_100),
            TimeSource::Ntp,
        )
        .expect("alert");
    ingest(store, &m, vec![r, other]);
    assert_eq!(store.alerts(None, 100).expect("read").len(), 3);
    let of_m = store.alerts(Some(&m.device), 100).expect("read");
    assert_eq!(
        of_m.iter()
            .map(|r| (r.node.as_str(), r.seq))
            .collect::<Vec<_>>(),
        vec![("car-1", 1)]
    );
    assert_eq!(store.alerts(Some(&n.device), 1).expect("read").len(), 1);
    let unknown = DeviceId::new("other").expect("valid");
    assert!(store.alerts(Some(&unknown), 10).expect("read").is_empty());
    assert_eq!(store.alert(&unknown, 1).expect("read"), None);
}
