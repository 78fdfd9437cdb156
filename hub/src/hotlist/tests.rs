use std::sync::Arc;

use alpr_shared::crypto::SecretKey;
use alpr_shared::hotlist::import::Format;
use alpr_shared::hotlist::{sample, Category};

use super::*;
use crate::store::redb::RedbStore;

fn config(keep: u64) -> HotlistConfig {
    HotlistConfig {
        sources: vec![
            SourceConfig {
                name: "ncic".into(),
                format: Format::Ncic,
                category: None,
                strategy: StrategyName::OcrEquivalent,
                max_substitutions: 1,
                skip: vec!["000".into()],
                alert_level: AlertLevel::Standard,
                covert: false,
            },
            SourceConfig {
                name: "ca-svs".into(),
                format: Format::CaDoj,
                category: Some(Category::StolenVehicle),
                strategy: StrategyName::Exact,
                max_substitutions: 1,
                skip: Vec::new(),
                alert_level: AlertLevel::Urgent,
                covert: true,
            },
        ],
        keep,
        ..HotlistConfig::default()
    }
}

fn request(source: &str, force: bool) -> ImportRequest {
    ImportRequest {
        source: source.into(),
        format: None,
        columns: Default::default(),
        category: None,
        force,
        user: "op1".into(),
        excluded: vec![Category::Immigration],
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    storage: Arc<dyn HubStorage>,
    key: HotlistKeys,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage: Arc<dyn HubStorage> =
        Arc::new(RedbStore::open(&dir.path().join("hub.redb")).expect("store"));
    Fixture {
        _dir: dir,
        storage,
        key: HotlistKeys::throwaway().expect("keys"),
    }
}

#[tokio::test]
async fn an_import_is_durable_before_it_is_published() {
    let f = fixture();
    let service = HotlistService::open(f.storage.clone(), f.key.clone(), config(4)).expect("open");
    let mut rx = service.watch();
    assert!(rx.borrow_and_update().is_empty());
    let rows = sample::entries(500, 1);
    let immigration = rows
        .iter()
        .filter(|e| e.category == Category::Immigration)
        .count() as u64;
    let report = service
        .import(request("ncic", false), sample::ncic(&rows))
        .await
        .expect("import");
    assert_eq!(report.record.info.number, 1);
    assert_eq!(report.record.info.rows, 500 - immigration);
    assert_eq!(report.record.info.source_rows, 500);
    assert_eq!(report.delta_bytes, None, "nothing to make a delta from");
    assert!(rx.has_changed().expect("open"));
    let published = rx.borrow_and_update().clone();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].info().source, "ncic");
    assert!(published[0]
        .info()
        .settings
        .skip
        .contains(&"000".to_string()));
    // Reopened from the store: the same generation, checked under the key.
    let again = HotlistService::open(f.storage.clone(), f.key.clone(), config(4)).expect("reopen");
    let cur = again.current();
    assert_eq!(cur.len(), 1);
    assert_eq!(cur[0].bytes(), published[0].bytes());
    // Under another deployment's CA the stored generation does not verify.
    assert!(HotlistService::open(
        f.storage.clone(),
        HotlistKeys::throwaway().expect("keys"),
        config(4)
    )
    .is_err());
}

/// A generation the hub stored before it had a key per purpose (format 1,
/// signed with its TLS key then) is checked under that key and signed again
/// with the hotlist key as it loads: edges get it in the current format.
/// Without the old key it is refused, not served.
#[tokio::test]
async fn a_generation_signed_with_the_single_hub_key_is_signed_again_at_load() {
    let f = fixture();
    let v1 =
        hex::decode(include_str!("../../../shared/src/hotlist/testdata/generation-v1.hex").trim())
            .expect("hex");
    let legacy = SecretKey::from_bytes(&[7; 32]).public();
    let keys = HotlistKeys {
        legacy: Some(legacy),
        ..f.key.clone()
    };
    let info = Generation::resign_format1(&v1, &legacy, &keys.key)
        .expect("the vector")
        .info()
        .clone();
    let record = GenerationRecord {
        info,
        format: Format::Ncic,
        imported_by: "op1".into(),
        bytes: v1.len() as u64,
        bad_rows: 0,
        excluded: Vec::new(),
        added: 0,
        removed: 0,
        forced: false,
        warnings: Vec::new(),
    };
    f.storage
        .store_generation(
            "ncic",
            3,
            &v1,
            &postcard::to_allocvec(&record).expect("record"),
            4,
        )
        .expect("stored");
    let service = HotlistService::open(f.storage.clone(), keys, config(4)).expect("open");
    let g = service.latest("ncic").expect("loaded");
    assert_eq!(g.info().number, 3);
    let again = Generation::open(g.bytes().to_vec(), &f.key.anchor).expect("current format");
    assert_eq!(again.len(), g.len());
    assert!(matches!(
        HotlistService::open(f.storage.clone(), f.key.clone(), config(4)),
        Err(HotlistError::Generation(GenerationError::Format1))
    ));
}

#[tokio::test]
async fn deltas_take_an_old_generation_to_the_new_one_and_old_bytes_go() {
    let f = fixture();
    let service = HotlistService::open(f.storage.clone(), f.key.clone(), config(2)).expect("open");
    let mut rows = sample::entries(1000, 2);
    for i in 0..3u64 {
        let report = service
            .import(request("ncic", false), sample::ncic(&rows))
            .await
            .expect("import");
        assert_eq!(report.record.info.number, i + 1);
        if i > 0 {
            assert!(
                report.record.added > 0 && report.record.removed > 0,
                "{report:?}"
            );
            assert!(report.delta_bytes.is_some());
        }
        rows = sample::change(&rows, 20, 10 + i);
    }
    let g3 = service.latest("ncic").expect("current");
    assert_eq!(g3.info().number, 3);
    let g2 = service
        .generation("ncic", 2)
        .await
        .expect("read")
        .expect("kept");
    let d = service
        .delta("ncic", 2, 3)
        .await
        .expect("delta")
        .expect("made");
    let applied = alpr_shared::hotlist::delta::apply(&g2, &d, service.anchor()).expect("apply");
    assert_eq!(applied.bytes(), g3.bytes());
    // keep = 2: generation 1's bytes are gone, its record stays.
    assert!(service.generation("ncic", 1).await.expect("read").is_none());
    assert!(service.delta("ncic", 1, 3).await.expect("delta").is_none());
    assert!(service.delta("ncic", 3, 2).await.expect("delta").is_none());
    assert!(service.delta("nope", 1, 2).await.expect("delta").is_none());
    let history = service.history("ncic").await.expect("history");
    let kept: Vec<(u64, bool)> = history
        .iter()
        .map(|g| (g.record.info.number, g.kept))
        .collect();
    assert_eq!(kept, [(1, false), (2, true), (3, true)]);
}

#[tokio::test]
async fn refused_imports_change_nothing() {
    let f = fixture();
    let service = HotlistService::open(f.storage.clone(), f.key.clone(), config(4)).expect("open");
    service
        .import(
            request("ncic", false),
            sample::ncic(&sample::entries(400, 3)),
        )
        .await
        .expect("import");
    let rx = service.watch();
    // Most of the list replaced: refused unless forced.
    let other = sample::ncic(&sample::entries(400, 4));
    let e = service
        .import(request("ncic", false), other.clone())
        .await
        .expect_err("too big a change");
    assert!(matches!(e, HotlistError::Refused(_)), "{e}");
    assert!(e.to_string().contains("--force"), "{e}");
    // A CA DOJ file with a wrong footer.
    let mut doj = sample::ca_doj(&sample::entries(10, 5)[..3], "11/27/2026 23:05");
    let text = String::from_utf8(doj.clone()).expect("ascii");
    doj = text.replace("0000003", "0000004").into_bytes();
    let e = service
        .import(request("ca-svs", false), doj.clone())
        .await
        .expect_err("footer");
    assert!(
        matches!(e, HotlistError::Parse(ImportError::FooterMismatch { .. })),
        "{e}"
    );
    let e = service
        .import(request("elsewhere", false), doj.clone())
        .await
        .expect_err("unknown");
    assert!(matches!(e, HotlistError::UnknownSource(_)), "{e}");
    assert!(!rx.has_changed().expect("open"), "nothing was published");
    assert_eq!(service.history("ncic").await.expect("history").len(), 1);
    // Forced, both are taken and say so.
    let r = service
        .import(request("ncic", true), other)
        .await
        .expect("forced");
    assert!(r.record.forced);
    let r = service
        .import(request("ca-svs", true), doj)
        .await
        .expect("forced");
    assert!(r.record.forced && !r.record.warnings.is_empty());
    assert!(r.record.info.settings.covert);
    let names: Vec<String> = service
        .current()
        .iter()
        .map(|g| g.info().source.clone())
        .collect();
    assert_eq!(names, ["ncic", "ca-svs"], "configuration order");
}

#[test]
fn bad_configurations_are_refused() {
    let mut c = config(4);
    assert!(c.validate().is_ok());
    c.sources[0].name = "NCIC list".into();
    assert!(c.validate().is_err());
    let mut c = config(4);
    c.sources[1].name = "ncic".into();
    assert!(c.validate().is_err(), "twice");
    let mut c = config(4);
    c.sources[0].max_substitutions = 3;
    assert!(c.validate().is_err());
    let c: crate::config::HubConfig = toml::from_str(
        "[[hotlist.sources]]\nname = \"ncic\"\nformat = \"ncic\"\nstrategy = \"exact\"\n",
    )
    .expect("parses");
    assert_eq!(
        c.hotlist.sources[0].settings().strategy,
        MatchStrategy::Exact
    );
    assert!(toml::from_str::<crate::config::HubConfig>(
        "[[hotlist.sources]]\nname = \"ncic\"\nformat = \"ncic\"\nbogus = 1\n"
    )
    .is_err());
}

#[tokio::test]
async fn a_restored_hub_learns_a_newer_generation_a_node_shows_and_imports_past_it() {
    let f = fixture();
    let svc = HotlistService::open(f.storage.clone(), f.key.clone(), config(4)).expect("open");
    let rows = sample::entries(200, 1);
    svc.import(request("ncic", false), sample::ncic(&rows))
        .await
        .expect("import 1");
    // What a node holds: generation 3 of ncic, signed with this
    // deployment's hotlist key before the hub's restore (the store lost 2 and 3).
    let info = GenerationInfo {
        number: 3,
        ..svc.latest("ncic").expect("current").info().clone()
    };
    let held = Generation::build(info, rows.clone(), &f.key.key).expect("builds");
    let learned = svc.learn(held.signed_header()).await.expect("learned");
    assert_eq!(learned, Some(("ncic".to_owned(), 3)));
    assert_eq!(f.storage.generation_floor("ncic").expect("read"), 3);
    // Shown again, or an older one: nothing more.
    assert_eq!(svc.learn(held.signed_header()).await.expect("ok"), None);
    // The next import goes past what the node holds.
    let report = svc
        .import(request("ncic", false), sample::ncic(&rows))
        .await
        .expect("import");
    assert_eq!(report.record.info.number, 4);
    assert_eq!(svc.latest("ncic").expect("current").info().number, 4);
}

#[tokio::test]
async fn a_header_the_hub_did_not_sign_or_of_an_unknown_list_moves_no_number() {
    let f = fixture();
    let svc = HotlistService::open(f.storage.clone(), f.key.clone(), config(4)).expect("open");
    let rows = sample::entries(50, 2);
    svc.import(request("ncic", false), sample::ncic(&rows))
        .await
        .expect("import 1");
    let base = svc.latest("ncic").expect("current").info().clone();
    let forged = Generation::build(
        GenerationInfo {
            number: u64::MAX,
            ..base.clone()
        },
        rows.clone(),
        &HotlistKeys::throwaway().expect("another deployment").key,
    )
    .expect("builds");
    assert!(matches!(
        svc.learn(forged.signed_header()).await,
        Err(HotlistError::NotOurs(_))
    ));
    let unknown = Generation::build(
        GenerationInfo {
            source: "elsewhere".into(),
            number: 9,
            ..base
        },
        rows.clone(),
        &f.key.key,
    )
    .expect("builds");
    assert_eq!(svc.learn(unknown.signed_header()).await.expect("ok"), None);
    assert_eq!(f.storage.generation_floor("ncic").expect("read"), 0);
    let report = svc
        .import(request("ncic", false), sample::ncic(&rows))
        .await
        .expect("import");
    assert_eq!(report.record.info.number, 2);
}
