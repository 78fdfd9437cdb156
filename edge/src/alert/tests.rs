use super::*;
use alpr_shared::control::{EdgeOfficer, Policy, SignedPolicy, POLICY_FORMAT};
use alpr_shared::crypto::SecretKey;
use alpr_shared::hotlist::generation::{Generation, GenerationInfo};
use alpr_shared::hotlist::{Category, ListSettings, MatchKind};
use alpr_shared::log::EntryKind;
use alpr_shared::signer::dev::throwaway;
use alpr_shared::types::{DeviceId, Hash32, Location, ReadContent, TimeSource};

const DAY: u64 = 86_400_000;

fn cheap_hash(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(b"0123456789abcdef").expect("salt");
    let params = argon2::Params::new(64, 1, 1, None).expect("params");
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .expect("hash")
        .to_string()
}

fn policy() -> SignedPolicy {
    Policy {
        format: POLICY_FORMAT,
        version: 1,
        issued_at: UnixMillis::now(),
        hub_retention_days: 365,
        edge_retention_days: 30,
        max_stale_ms: 3_600_000,
        officers: vec![EdgeOfficer {
            username: "ofc.diaz".into(),
            agency: "CA0190000".into(),
            title: "Officer".into(),
            password_hash: cheap_hash("pw"),
            training_expires: UnixMillis(UnixMillis::now().0 + 365 * DAY),
            key: None,
        }],
        agencies: Vec::new(),
        revoked_nodes: Vec::new(),
        hotlists: Default::default(),
        purposes: vec![alpr_shared::control::Purpose {
            code: "stolen-vehicle".into(),
            label: "Stolen vehicle".into(),
            case_required: false,
        }],
    }
    .sign(&throwaway().expect("a policy key"))
    .expect("valid")
}

fn read(plate: &str) -> ReadContent {
    ReadContent {
        location: Location::Site {
            site_id: "main-st".into(),
        },
        camera: "front".into(),
        plate: plate.into(),
        confidence: 9500,
        char_confidence: vec![9500; plate.len()],
        issuer: Default::default(),
        detector_model: "det".into(),
        ocr_model: "ocr".into(),
        crop_hash: Hash32::ZERO,
        overview_hash: Hash32::ZERO,
    }
}

fn generation(number: u64, issued_at: UnixMillis, plates: &[(&str, Category)]) -> Arc<Generation> {
    let entries = plates
        .iter()
        .map(|(p, c)| HotEntry {
            plate: (*p).into(),
            state: "CA".into(),
            category: *c,
            make: "HOND".into(),
            model: "CIV".into(),
            colour: "BLU".into(),
            nic: format!("V{p}"),
            ..HotEntry::default()
        })
        .collect();
    let info = GenerationInfo {
        source: "ncic".into(),
        number,
        issued_at,
        source_sha256: Hash32::ZERO,
        source_rows: plates.len() as u64,
        rows: 0,
        categories: Vec::new(),
        settings: ListSettings::default(),
    };
    Arc::new(Generation::build(info, entries, &throwaway().expect("a hotlist key")).expect("built"))
}

struct Node {
    _dir: tempfile::TempDir,
    store: StoreHandle,
    access: EdgeAccess,
}

async fn node() -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = SecretKey::from_bytes(&[9; 32]);
    let public = key.public();
    let (store, _join) = StoreHandle::open(
        &dir.path().join("edge.redb"),
        key,
        DeviceId::new("veh-1").expect("valid"),
    )
    .expect("store");
    store
        .store_policy(&policy(), UnixMillis::now())
        .await
        .expect("policy");
    let access = EdgeAccess::new(store.clone(), public);
    Node {
        _dir: dir,
        store,
        access,
    }
}

async fn store_read(store: &StoreHandle, plate: &str) -> u64 {
    store
        .append_read(
            read(plate),
            UnixMillis::now(),
            TimeSource::Ntp,
            format!("crop {plate}").into_bytes(),
            b"overview".to_vec(),
        )
        .await
        .expect("stored")
        .seq
}

fn access_records(store: &StoreHandle) -> Vec<AccessRecord> {
    store
        .entries_from(0, 10_000)
        .expect("entries")
        .into_iter()
        .filter_map(|e| match e.header.kind {
            EntryKind::Access(r) => Some(r),
            _ => None,
        })
        .collect()
}

/// The state the recogniser gave decides the kind: the listed state read
/// is `exact`, another state read is `state differs` (with the state read),
/// no state read is `state not read`, never `state differs`.
#[tokio::test]
async fn the_state_read_makes_an_exact_plate_exact_or_state_differs() {
    let n = node().await;
    let source = MatcherSource::new();
    source.set_bulk(vec![generation(
        1,
        UnixMillis::now(),
        &[("7ABC123", Category::StolenVehicle)],
    )]);
    let alerter = Alerter::new(n.store.clone(), &source);
    let mut reads = Vec::new();
    for state in [Some("CA"), Some("AZ"), None] {
        reads.push(StoredRead {
            seq: store_read(&n.store, "7ABC123").await,
            best: "7ABC123".into(),
            alternatives: Vec::new(),
            state: state.map(str::to_owned),
        });
    }
    let seqs = tokio::task::spawn_blocking(move || alerter.check_blocking(&reads))
        .await
        .expect("joined")
        .expect("checked");
    let kinds: Vec<MatchKind> = seqs
        .iter()
        .map(|s| {
            let e = n.store.entries_from(*s, 1).expect("entries").remove(0);
            e.alert().expect("an alert").kind.clone()
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            MatchKind::Exact,
            MatchKind::StateDiffers {
                read_state: "AZ".into()
            },
            MatchKind::StateUnread,
        ]
    );
}

#[tokio::test]
async fn a_listed_plate_raises_an_alert_that_is_disposed_in_stages() {
    let n = node().await;
    let source = MatcherSource::new();
    // Two days old: older than policy's 24 h, so flagged stale.
    let issued = UnixMillis(UnixMillis::now().0 - 2 * DAY);
    source.set_bulk(vec![generation(
        3,
        issued,
        &[
            ("7ABC123", Category::StolenVehicle),
            ("5XYZ999", Category::Amber),
        ],
    )]);
    let alerter = Alerter::new(n.store.clone(), &source);
    let listed = store_read(&n.store, "7A8C123").await;
    let other = store_read(&n.store, "4QQQ444").await;
    let (a, s) = (alerter.clone(), [listed, other]);
    let seqs = tokio::task::spawn_blocking(move || {
        a.check_blocking(&[
            StoredRead {
                seq: s[0],
                // The best text misread B as 8, or the car is another one:
                // the first alternative is the listed plate.
                best: "7A8C123".into(),
                alternatives: vec![("7ABC123".into(), 2_100)],
                state: None,
            },
            StoredRead {
                seq: s[1],
                best: "4QQQ444".into(),
                alternatives: Vec::new(),
                state: None,
            },
        ])
    })
    .await
    .expect("joined")
    .expect("checked");
    assert_eq!(seqs.len(), 1, "one alert, for the listed plate only");
    let id = seqs[0];
    let entry = n.store.entries_from(id, 1).expect("entries").remove(0);
    let r = entry.alert().expect("an alert entry");
    assert_eq!(r.read_seq, listed);
    assert_eq!(r.entry.plate, "7ABC123");
    assert_eq!(
        r.kind,
        MatchKind::Alternative {
            best: "7A8C123".into(),
            rank: 1,
            probability: 2_100,
            how: Box::new(MatchKind::StateUnread),
        },
        "the alternative matched exactly (the state was not read), and the \
         alert says it was an alternative of the plate read 7A8C123"
    );
    assert_eq!(r.matched_text, "7ABC123");
    assert!(r.list_age_ms >= 2 * DAY && r.list_stale);
    assert!(matches!(r.list, ListRef::Bulk { generation: 3, .. }));

    // The officer sees it, waiting for a disposition.
    let token = n.access.login("ofc.diaz", "pw").await.expect("login").token;
    let open = list(
        &n.access,
        AlertListRequest {
            token: token.clone(),
            all: false,
            after: None,
        },
    )
    .await
    .expect("list");
    assert_eq!(open.len(), 1);
    assert!(open[0].open && open[0].list_stale);
    assert_eq!(open[0].plate_read, "7A8C123", "the plate as read");
    let alt = open[0]
        .alternative
        .as_ref()
        .expect("the alternative, beside it");
    assert_eq!((alt.text.as_str(), alt.rank), ("7ABC123", 1));
    assert!(alt.notice().contains("compare the crop"));
    assert_eq!(
        open[0].match_kind,
        "alternative reading #1 (21.0%), plate exact, state not read (check it)"
    );

    // Out of order: refused, and the refusal is in the access log.
    let req =
        |read: Option<&str>, status: Option<&str>, action: Option<&str>| AlertDisposeRequest {
            token: token.clone(),
            id,
            read: read.map(Into::into),
            status: status.map(Into::into),
            action: action.map(Into::into),
            note: String::new(),
        };
    let e = dispose(&n.access, req(None, None, Some("stop")))
        .await
        .expect_err("no action before the status check");
    assert!(e.contains("status"), "{e}");
    dispose(&n.access, req(Some("correct"), None, None))
        .await
        .expect("read");
    dispose(&n.access, req(None, Some("active"), None))
        .await
        .expect("status");
    let done = dispose(&n.access, req(None, None, Some("stop")))
        .await
        .expect("action");
    assert!(done.progress.closed() && done.refused.is_none());

    // Three signed stages in the log, by the officer.
    let stages: Vec<DispositionRecord> = n
        .store
        .entries_from(0, 1000)
        .expect("entries")
        .into_iter()
        .filter_map(|e| e.disposition().cloned())
        .collect();
    assert_eq!(stages.len(), 3);
    assert!(stages
        .iter()
        .all(|d| d.user == "ofc.diaz" && d.alert_seq == id));

    // Disposed: gone from the open list, shown with --all and by show.
    let open = list(
        &n.access,
        AlertListRequest {
            token: token.clone(),
            all: false,
            after: None,
        },
    )
    .await
    .expect("list");
    assert!(open.is_empty());
    let detail = show(
        &n.access,
        AlertShowRequest {
            token: token.clone(),
            id,
            images: true,
        },
    )
    .await
    .expect("show");
    assert_eq!(detail.dispositions.len(), 3);
    assert_eq!(detail.read_plate.as_deref(), Some("7A8C123"));
    assert!(detail.crop.is_some() && detail.overview.is_some());
    assert!(detail.reminder.contains("state system"));

    let views_before = access_records(&n.store).len();
    let newer = list(
        &n.access,
        AlertListRequest {
            token: token.clone(),
            all: true,
            after: Some(id),
        },
    )
    .await
    .expect("follow");
    assert!(newer.is_empty());
    assert_eq!(
        access_records(&n.store).len(),
        views_before,
        "a follow poll that shows nothing is not an access"
    );

    let log = access_records(&n.store);
    let dispositions: Vec<_> = log
        .iter()
        .filter(|r| r.action == AccessAction::AlertDisposition)
        .collect();
    assert_eq!(dispositions.len(), 4, "three stages and the refused one");
    assert!(!dispositions[0].allowed());
    assert!(log
        .iter()
        .any(|r| r.action == AccessAction::View && r.query.contains("with photos")));
}

#[tokio::test]
async fn covert_hits_are_logged_but_never_shown_in_the_car() {
    let n = node().await;
    let source = MatcherSource::new();
    let mut g = generation(1, UnixMillis::now(), &[("6COV666", Category::Gang)]);
    {
        // A covert list: rebuild with covert settings.
        let info = GenerationInfo {
            settings: ListSettings {
                covert: true,
                ..ListSettings::default()
            },
            ..g.info().clone()
        };
        let entries = (0..g.len()).map(|i| g.entry(i)).collect();
        g = Arc::new(
            Generation::build(info, entries, &throwaway().expect("a hotlist key")).expect("built"),
        );
    }
    source.set_bulk(vec![g]);
    let alerter = Alerter::new(n.store.clone(), &source);
    let seq = store_read(&n.store, "6COV666").await;
    let seqs = tokio::task::spawn_blocking(move || {
        alerter.check_blocking(&[StoredRead {
            seq,
            best: "6COV666".into(),
            alternatives: Vec::new(),
            state: None,
        }])
    })
    .await
    .expect("joined")
    .expect("checked");
    assert_eq!(seqs.len(), 1, "the hit is logged");
    let token = n.access.login("ofc.diaz", "pw").await.expect("login").token;
    let shown = list(
        &n.access,
        AlertListRequest {
            token: token.clone(),
            all: true,
            after: None,
        },
    )
    .await
    .expect("list");
    assert!(shown.is_empty(), "covert alerts are not shown to officers");
    assert!(show(
        &n.access,
        AlertShowRequest {
            token,
            id: seqs[0],
            images: false
        }
    )
    .await
    .is_err());
}

#[tokio::test]
async fn a_new_entry_raises_a_past_match_on_a_read_stored_before_it() {
    let n = node().await;
    let source = MatcherSource::new();
    let now = UnixMillis::now();
    source.set_bulk(vec![generation(
        1,
        now,
        &[("1AAA111", Category::StolenPlate)],
    )]);
    assert!(
        source.take_change().is_none(),
        "the first lists held are no change"
    );
    let earlier = store_read(&n.store, "8NEW888").await;
    store_read(&n.store, "1AAA111").await;
    source.set_bulk(vec![generation(
        2,
        now,
        &[
            ("1AAA111", Category::StolenPlate),
            ("8NEW888", Category::StolenVehicle),
        ],
    )]);
    let change = source.take_change().expect("a change");
    let found = back_match(&n.store, &change.old, &change.new).expect("back-match");
    assert_eq!(
        found.len(),
        1,
        "only the new entry, not the one held before"
    );
    assert_eq!(found[0].0, earlier);
    let seqs = record_past_matches(&n.store, found)
        .await
        .expect("recorded");
    let e = n.store.entries_from(seqs[0], 1).expect("entries").remove(0);
    let r = e.alert().expect("alert");
    assert!(r.past_match && r.read_seq == earlier);
    let access = access_records(&n.store);
    let system: Vec<_> = access
        .iter()
        .filter(|r| r.action == AccessAction::PastMatch)
        .collect();
    assert_eq!(system.len(), 1);
    assert_eq!(system[0].user, SYSTEM_USER);
    assert_eq!(system[0].purpose.as_deref(), Some(BACK_MATCH_PURPOSE));
    assert_eq!(system[0].query, "plate=8NEW888");
    assert_eq!(system[0].results, 1);
}

#[test]
fn dispose_stages_parse_in_order_and_refuse_unknown_words() {
    assert_eq!(
        stages_of(Some("correct"), Some("inactive"), Some("no-stop")).expect("stages"),
        vec![
            Stage::Read(ReadCheck::Correct),
            Stage::Status(StatusCheck::NoLongerActive),
            Stage::Action(ActionTaken::NoStop)
        ]
    );
    assert!(stages_of(None, None, None).is_err());
    assert!(stages_of(Some("maybe"), None, None).is_err());
}

#[tokio::test]
async fn policy_excluded_categories_never_alert() {
    let n = node().await;
    let source = MatcherSource::new();
    source.set_bulk(vec![generation(
        1,
        UnixMillis::now(),
        &[("9IMM999", Category::Immigration)],
    )]);
    let alerter = Alerter::new(n.store.clone(), &source);
    let seq = store_read(&n.store, "9IMM999").await;
    let seqs = tokio::task::spawn_blocking(move || {
        alerter.check_blocking(&[StoredRead {
            seq,
            best: "9IMM999".into(),
            alternatives: Vec::new(),
            state: None,
        }])
    })
    .await
    .expect("joined")
    .expect("checked");
    assert!(seqs.is_empty(), "policy excludes immigration by default");
    assert_eq!(source.excluded(), vec![Category::Immigration]);
}

#[tokio::test]
async fn the_lists_follow_published_generations_and_local_entries() {
    let source = MatcherSource::new();
    let cancel = tokio_util::sync::CancellationToken::new();
    let (tx, rx) = watch::channel(Arc::new(Vec::<Arc<Generation>>::new()));
    source.follow_bulk(rx, cancel.clone());
    let mut m = source.watch();
    let g = generation(1, UnixMillis::now(), &[("2FOL222", Category::StolenPlate)]);
    tx.send_replace(Arc::new(vec![g]));
    m.changed().await.expect("rebuilt");
    let mut hits = Vec::new();
    source
        .current()
        .match_read("2FOL222", &[], None, UnixMillis::now(), &mut hits);
    assert_eq!(hits.len(), 1, "the new generation is matched");
    assert!(
        source.take_change().is_some(),
        "a second generation is a change"
    );

    let (bump, changes) = watch::channel(0u64);
    let entries = Arc::new(std::sync::Mutex::new(
        Vec::<alpr_shared::hotlist::LocalEntry>::new(),
    ));
    let read = {
        let entries = entries.clone();
        move || Ok(entries.lock().expect("lock").clone())
    };
    source.follow_local(changes, read, cancel.clone());
    // The entries held now were loaded at once (none).
    m.borrow_and_update();
    let now = UnixMillis::now();
    entries
        .lock()
        .expect("lock")
        .push(alpr_shared::hotlist::LocalEntry {
            id: "e1".into(),
            plate: "7AB*".into(),
            state: String::new(),
            category: Category::Suspect,
            reason: "hit and run".into(),
            case: "24-1".into(),
            level: alpr_shared::hotlist::AlertLevel::Urgent,
            make: String::new(),
            model: String::new(),
            colour: String::new(),
            expires_at: UnixMillis(now.0 + DAY),
            author: "op1".into(),
            agency: "CA0190000".into(),
            created_at: now,
            updated_at: now,
            removed: None,
        });
    bump.send_replace(1);
    m.changed().await.expect("rebuilt");
    hits.clear();
    source
        .current()
        .match_read("7ABX99", &[], None, UnixMillis::now(), &mut hits);
    assert!(
        hits.iter()
            .any(|h| matches!(h.kind, MatchKind::Wildcard { .. })),
        "the partial plate matches: {hits:?}"
    );
    cancel.cancel();
}
