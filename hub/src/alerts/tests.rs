use super::*;
use crate::cli::alerts::render;
use crate::sample::sample_alert as alert;
use crate::store::redb::RedbStore;
use crate::store::{AccessLogStore, AlertStore, WriteOp, WriteResult};
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

/// A hub store, and node car-9's log writer with its first read (not yet
/// ingested).
fn car_with_a_read() -> (
    tempfile::TempDir,
    RedbStore,
    DeviceId,
    LogWriter,
    SignedEntry,
) {
    let dir = tempfile::tempdir().expect("tmp");
    let store = RedbStore::open(&dir.path().join("h.redb")).expect("open");
    let device = DeviceId::new("car-9").expect("valid");
    let mut w = LogWriter::new(SecretKey::from_bytes(&[4; 32]), device.clone());
    let read = w
        .append_read(
            crate::sample::sample_read(0),
            UnixMillis(5_000),
            TimeSource::Ntp,
        )
        .expect("read");
    (dir, store, device, w, read)
}

#[test]
fn alerts_and_their_stages_are_indexed_at_ingest() {
    let (_dir, store, device, mut w, read) = car_with_a_read();
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

/// An alert raised by an alternative reading: `hub alerts` shows the plate
/// as read, and beside it the alternative that matched and that the crop
/// comes first.
#[test]
fn an_alternative_reading_is_never_shown_as_the_plate_read() {
    let (_dir, store, device, mut w, read) = car_with_a_read();
    let best = read.read().expect("content").plate.clone();
    let record = AlertRecord {
        kind: MatchKind::Alternative {
            best: best.clone(),
            rank: 2,
            probability: 1_250,
            how: Box::new(MatchKind::Wildcard {
                pattern: "YG9*".into(),
            }),
        },
        matched_text: "YG9E4F".into(),
        ..alert(0, "YG9*", false)
    };
    let a = w
        .append_alert(record, UnixMillis(5_100), TimeSource::Ntp)
        .expect("alert");
    ingest(&store, &mut w, vec![read, a.clone()]);
    let row = store
        .alert(&device, a.seq())
        .expect("read")
        .expect("indexed");
    let v = views(&store, std::slice::from_ref(&row)).expect("views");
    assert_eq!(v[0].plate_read, best, "the plate as read");
    assert_eq!(v[0].matched_text, "YG9E4F");
    let alt = v[0].alternative.as_ref().expect("the alternative");
    assert_eq!(
        (alt.text.as_str(), alt.rank, alt.probability),
        ("YG9E4F", 2, 1_250)
    );
    assert_eq!(
        v[0].match_kind,
        "alternative reading #2 (12.5%), wildcard YG9*"
    );
    let line = render(&v);
    let shown_first = line.split_whitespace().nth(2);
    assert_eq!(shown_first, Some(best.as_str()), "{line}");
    assert!(
        line.contains(
            "ALTERNATIVE READING YG9E4F matched, not the plate as read: compare the crop"
        ),
        "{line}"
    );
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

fn generation(
    number: u64,
    plates: &[&str],
) -> std::sync::Arc<alpr_shared::hotlist::generation::Generation> {
    use alpr_shared::hotlist::generation::{Generation, GenerationInfo};
    let entries = plates
        .iter()
        .map(|p| HotEntry {
            plate: (*p).into(),
            state: "CA".into(),
            category: Category::StolenVehicle,
            ..HotEntry::default()
        })
        .collect();
    let info = GenerationInfo {
        source: "ncic".into(),
        number,
        issued_at: UnixMillis(1_000),
        source_sha256: alpr_shared::types::Hash32::ZERO,
        source_rows: plates.len() as u64,
        rows: 0,
        categories: Vec::new(),
        settings: Default::default(),
    };
    std::sync::Arc::new(
        Generation::build(
            info,
            entries,
            &crate::keys::throwaway().expect("a hotlist key"),
        )
        .expect("built"),
    )
}

#[tokio::test]
async fn a_new_generation_row_finds_reads_stored_before_it() {
    use super::back_match::{BackMatcher, BACK_MATCH_PURPOSE, SYSTEM_USER};
    use crate::store::HubStorage;
    use std::sync::Arc;
    let dir = tempfile::tempdir().expect("tmp");
    let store = Arc::new(RedbStore::open(&dir.path().join("h.redb")).expect("open"));
    let device = DeviceId::new("pole-2").expect("valid");
    let mut w = LogWriter::new(SecretKey::from_bytes(&[4; 32]), device.clone());
    let now = UnixMillis::now();
    let read = w
        .append_read(crate::sample::sample_read(0), now, TimeSource::Ntp)
        .expect("read");
    let plate = read.read().expect("content").plate.clone();
    ingest(&store, &mut w, vec![read]);

    let old = vec![generation(1, &["1OLD111"])];
    let new = vec![generation(2, &["1OLD111", plate.as_str()])];
    let entries = BackMatcher::changed(&old, &new);
    assert_eq!(entries.len(), 1, "only the new row");
    assert!(
        BackMatcher::changed(&[], &new).is_empty(),
        "a source first seen is a baseline"
    );

    let ca = alpr_shared::pki::new_ca("Test PD", 30).expect("ca");
    let anchor = alpr_shared::cert::TrustAnchor::from_pem(ca.cert_pem.as_bytes()).expect("anchor");
    let storage: Arc<dyn HubStorage> = store.clone();
    let access = crate::access::AccessLog::start(
        storage.clone(),
        crate::keys::throwaway().expect("a log key"),
    )
    .expect("access log");
    let matcher = BackMatcher {
        storage: storage.clone(),
        searcher: crate::search::Searcher::new(storage.clone(), anchor),
        access,
    };
    let found = matcher
        .entries(entries, 30, &[], UnixMillis(now.0 + 1))
        .await
        .expect("run");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].node, device);
    assert!(found[0].record.past_match && found[0].record.read_seq == 0);
    let held = store.hub_alerts(10).expect("read");
    assert_eq!(held.len(), 1);
    assert_eq!(hub_view(held[0].0, &held[0].1, Vec::new()).id, "hub#1");
    let accesses: Vec<_> = store
        .hub_access_entries(0, 100)
        .expect("access")
        .iter()
        .filter_map(|b| SignedEntry::decode(b).ok())
        .filter_map(|e| e.access().cloned())
        .collect();
    assert!(accesses.iter().any(|a| a.user == SYSTEM_USER
        && a.purpose.as_deref() == Some(BACK_MATCH_PURPOSE)
        && a.query == format!("plate={plate}")
        && a.results == 1));
    // A new local entry, a partial plate: found by pattern, once.
    let local = |id: &str, pattern: String| alpr_shared::hotlist::LocalEntry {
        id: id.into(),
        plate: pattern,
        state: String::new(),
        category: Category::Suspect,
        reason: "hit and run".into(),
        case: "24-77".into(),
        level: AlertLevel::Urgent,
        make: String::new(),
        model: String::new(),
        colour: String::new(),
        expires_at: UnixMillis(now.0 + 86_400_000),
        author: "op1".into(),
        agency: "CA0000001".into(),
        created_at: now,
        updated_at: now,
        removed: None,
    };
    let mut known = std::collections::HashSet::from(["old".to_string()]);
    let pattern = format!("{}*", &plate[..3]);
    let list = vec![local("old", "ZZZ*".into()), local("new", pattern.clone())];
    let new_entries = BackMatcher::new_local(&mut known, &list, now);
    assert_eq!(new_entries.len(), 1);
    assert!(
        BackMatcher::new_local(&mut known, &list, now).is_empty(),
        "once"
    );
    let found = matcher
        .entries(new_entries, 30, &[], UnixMillis(now.0 + 1))
        .await
        .expect("run");
    assert_eq!(found.len(), 1);
    assert!(matches!(
        &found[0].record.kind,
        MatchKind::Wildcard { pattern: p } if *p == pattern
    ));
    assert_eq!(found[0].record.entry.oca, "24-77");
    // Out of the back-match window: nothing found, nothing logged.
    let later = UnixMillis(now.0 + 40 * 86_400_000);
    let again = matcher
        .entries(BackMatcher::changed(&old, &new), 30, &[], later)
        .await
        .expect("run");
    assert!(again.is_empty());
}

#[test]
fn hub_stages_merge_with_the_nodes_in_time_order_under_the_same_rules() {
    use crate::store::HubDisposition;
    let dir = tempfile::tempdir().expect("tmp");
    let store = RedbStore::open(&dir.path().join("h.redb")).expect("open");
    let device = DeviceId::new("car-7").expect("valid");
    let mut w = LogWriter::new(SecretKey::from_bytes(&[4; 32]), device.clone());
    let read = w
        .append_read(
            crate::sample::sample_read(0),
            UnixMillis(5_000),
            TimeSource::Ntp,
        )
        .expect("read");
    let plate = read.read().expect("content").plate.clone();
    let a = w
        .append_alert(alert(0, &plate, false), UnixMillis(5_100), TimeSource::Ntp)
        .expect("alert");
    // The officer in the car checks the read (at 7 000).
    let s1 = stage(&mut w, a.seq(), Stage::Read(ReadCheck::Correct));
    ingest(&store, &mut w, vec![read, a.clone(), s1]);
    let id = format!("car-7#{}", a.seq());

    // The dispatcher checks the state system at the hub, later.
    let at_hub = |stage, at| WriteOp::HubDisposition {
        alert: id.clone(),
        disposition: HubDisposition {
            at: UnixMillis(at),
            stage,
            user: "disp.lee".into(),
            agency: "CA0190000".into(),
            note: "CLETS: still stolen".into(),
            access_seq: 3,
        },
    };
    store
        .commit(vec![at_hub(
            Stage::Status(StatusCheck::ConfirmedActive),
            8_000,
        )])
        .expect("stored");
    let row = store
        .alert(&device, a.seq())
        .expect("read")
        .expect("indexed");
    let d = detail(&store, &row).expect("detail").expect("found");
    let v = &d.alert;
    let by: Vec<(&str, &str)> = v
        .dispositions
        .iter()
        .map(|d| (d.by.as_str(), d.stage.as_str()))
        .collect();
    assert_eq!(
        by,
        [("node", "read: correct"), ("hub", "status: active")],
        "the node's stage, then the hub's, in time order"
    );
    assert_eq!(v.status, "awaiting action");
    assert!(v.open);
    assert_eq!(
        next_stages(v.progress),
        [
            Stage::Action(ActionTaken::Stop),
            Stage::Action(ActionTaken::NoStop),
            Stage::Action(ActionTaken::Unable)
        ],
        "only an action is left to record"
    );
    assert!(v
        .progress
        .check(Stage::Status(StatusCheck::NoLongerActive))
        .is_err());

    // The action closes it; the list says so, and `hub alerts` shows who.
    store
        .commit(vec![at_hub(Stage::Action(ActionTaken::NoStop), 9_000)])
        .expect("stored");
    let all = views(&store, &store.alerts(None, 10).expect("rows")).expect("views");
    assert!(!all[0].open);
    assert_eq!(all[0].dispositions.len(), 3);
    assert!(render(&all).contains("action: no-stop by disp.lee (CA0190000, at the hub)"));
    assert_eq!(
        store.hub_dispositions(Some(&id)).expect("stored").len(),
        2,
        "one alert's stages, in the order recorded"
    );
    assert!(store
        .hub_dispositions(Some("car-7#999"))
        .expect("none")
        .is_empty());
}

#[test]
fn stage_names_parse_as_forms_and_views_write_them() {
    for s in Stage::ALL {
        assert_eq!(parse_stage(&stage_name(s)), Some(s));
        assert_eq!(parse_stage(&s.to_string()), Some(s), "{s}");
    }
    assert_eq!(parse_stage("read"), None);
    assert_eq!(parse_stage("action:arrest"), None);
    assert_eq!(next_stages(Progress::default()).len(), 4, "the read first");
}
