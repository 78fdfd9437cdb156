use super::*;
use crate::store::redb::RedbStore;
use crate::store::{WriteOp, WriteResult};
use alpr_shared::crypto::SecretKey;
use alpr_shared::hotlist::{AlertLevel, Category};
use alpr_shared::log::alert::{ActionTaken, ReadCheck, Stage, StatusCheck};
use alpr_shared::log::{AlertRecord, DispositionRecord, LogWriter};
use alpr_shared::sync::{verify_batch, Validity};
use alpr_shared::types::TimeSource;
use alpr_shared::wire::Entries;

fn ingest(store: &RedbStore, w: &mut LogWriter, log: Vec<SignedEntry>) {
    let device = w.device().clone();
    let e = Entries::from_log(log, Some(w.checkpoint(UnixMillis(9_000)))).expect("consecutive");
    let v = verify_batch(&w.public_key(), &device, Validity::ALWAYS, e).expect("verifies");
    let r = store
        .commit(vec![WriteOp::Ingest {
            device,
            entries: v.entries,
            checkpoint: v.checkpoint,
            new_key: v.new_key,
            at: UnixMillis(1),
        }])
        .expect("commit")
        .remove(0);
    assert!(matches!(r, WriteResult::Ingested(Ok(_))));
}

fn alert(read_seq: u64, plate: &str, covert: bool) -> AlertRecord {
    AlertRecord {
        read_seq,
        list: ListRef::Bulk {
            source: "ncic".into(),
            generation: 2,
            issued_at: UnixMillis(1_000),
        },
        entry: HotEntry {
            plate: plate.into(),
            state: "CA".into(),
            category: Category::StolenVehicle,
            ..HotEntry::default()
        },
        kind: MatchKind::StateUnread,
        matched_text: plate.into(),
        level: AlertLevel::Standard,
        covert,
        list_age_ms: 3_600_000,
        list_stale: false,
        past_match: false,
    }
}

fn stage(w: &mut LogWriter, alert_seq: u64, stage: Stage) -> SignedEntry {
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
}

#[test]
fn alerts_and_their_stages_are_indexed_at_ingest() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = RedbStore::open(&dir.path().join("h.redb")).expect("open");
    let device = DeviceId::new("car-9").expect("valid");
    let mut w = LogWriter::new(SecretKey::from_bytes(&[4; 32]), device.clone());
    let read = w
        .append_read(
            crate::bench::sample_read(0),
            UnixMillis(5_000),
            TimeSource::Ntp,
        )
        .expect("read");
    let plate = read.read().expect("content").plate.clone();
    let a = w
        .append_alert(alert(0, &plate, false), UnixMillis(5_100), TimeSource::Ntp)
        .expect("alert");
    let covert = w
        .append_alert(alert(0, &plate, true), UnixMillis(5_100), TimeSource::Ntp)
        .expect("alert");
    let s1 = stage(&mut w, a.seq(), Stage::Read(ReadCheck::Correct));
    ingest(&store, &mut w, vec![read, a.clone(), covert.clone(), s1]);
    let rows = store.alerts(None, 100).expect("alerts");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].seq, a.seq());
    assert_eq!(rows[0].progress.read, Some(ReadCheck::Correct));
    assert!(rows[1].covert);

    // The next stages arrive in a later upload.
    let s2 = stage(&mut w, a.seq(), Stage::Status(StatusCheck::ConfirmedActive));
    let s3 = stage(&mut w, a.seq(), Stage::Action(ActionTaken::Stop));
    ingest(&store, &mut w, vec![s2, s3]);
    let row = store
        .alert(&device, a.seq())
        .expect("read")
        .expect("indexed");
    assert!(row.progress.closed());
    assert_eq!(row.dispositions.len(), 3);

    let v = views(&store, std::slice::from_ref(&row)).expect("views");
    assert_eq!(v[0].id, format!("car-9#{}", a.seq()));
    assert_eq!(v[0].dispositions.len(), 3);
    assert_eq!(v[0].dispositions[2].stage, "action: stop");
    assert!(!v[0].open);
    let d = detail(&store, &row).expect("detail").expect("found");
    assert_eq!(d.read_plate.as_deref(), Some(plate.as_str()));
    assert!(render(&v).contains("action: stop by ofc.diaz"));
    assert!(store
        .alerts(Some(&DeviceId::new("other").expect("v")), 10)
        .expect("none")
        .is_empty());
}

#[test]
fn alert_ids_parse() {
    assert_eq!(
        parse_id("car-9#12"),
        Some((DeviceId::new("car-9").expect("v"), 12))
    );
    assert_eq!(parse_id("car-9"), None);
    assert_eq!(parse_id("car 9#1"), None);
}
