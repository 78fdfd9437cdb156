use super::*;
use crate::store::redb::RedbStore;

fn open(path: &std::path::Path) -> HoldsService {
    let storage: Arc<dyn HubStorage> = Arc::new(RedbStore::open(path).expect("open"));
    HoldsService::open(storage).expect("holds")
}

fn new(case: &str, plate: &str) -> NewHold {
    NewHold {
        case: case.into(),
        reason: "homicide investigation".into(),
        placed_by: "det.lee".into(),
        agency: "CA0349400".into(),
        scope: HoldScope {
            plates: vec![plate.into()],
            ..HoldScope::default()
        },
    }
}

#[tokio::test]
async fn holds_are_kept_across_restarts_and_released_one_by_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hub.redb");
    let (a, b) = {
        let svc = open(&path);
        let mut watch = svc.watch();
        watch.borrow_and_update();
        let a = svc.add(new("24-001", "7ABC123")).await.expect("add");
        assert!(watch.has_changed().expect("open"), "a change is published");
        let b = svc.add(new("24-002", "8XYZ999")).await.expect("add");
        svc.release(&a.id, "sgt.ray", "case closed")
            .await
            .expect("release");
        assert!(svc.release(&a.id, "sgt.ray", "again").await.is_err());
        assert!(svc.release("nope", "sgt.ray", "x").await.is_err());
        let mut empty = new("24-003", "X");
        empty.scope = HoldScope::default();
        assert!(svc.add(empty).await.is_err(), "an empty scope is refused");
        (a, b)
    };
    let svc = open(&path);
    assert_eq!(svc.holds().len(), 2);
    let active: Vec<String> = svc.active().into_iter().map(|h| h.id).collect();
    assert_eq!(active, vec![b.id.clone()]);
    let released = svc.get(&a.id).and_then(|h| h.released).expect("released");
    assert_eq!(released.by, "sgt.ray");
    assert_eq!(svc.for_case("24-002").len(), 1);
    assert!(svc.for_case("24-009").is_empty());
}

#[tokio::test]
async fn a_nodes_signed_hold_is_taken_and_its_release_of_another_is_not() {
    use alpr_shared::control::node_change::{check, Context, KnownOfficer};
    use alpr_shared::control::officer::{OfficerKey, OfficerSigner};
    use alpr_shared::types::DeviceKind;

    let dir = tempfile::tempdir().expect("tempdir");
    let svc = open(&dir.path().join("hub.redb"));
    let other = svc.add(new("24-001", "7ABC123")).await.expect("add");
    // The car got the hub's document, then its officer placed a hold
    // offline (signed) and released the hub's (which no node may do).
    let (key, secret) = OfficerKey::derive("pw", [1; 16], 64, 1).expect("key");
    let mut edge = HoldsDoc::load(&svc.saved()).expect("load");
    edge.sign_as(Arc::new(OfficerSigner::new("ofc.kim", "car-7", secret)));
    edge.add(Hold {
        id: "edge-1".into(),
        case: "24-005".into(),
        reason: "pursuit".into(),
        placed_by: "ofc.kim".into(),
        agency: "CA0349400".into(),
        placed_at: UnixMillis::now(),
        placed_on: "car-7".into(),
        scope: HoldScope {
            nodes: vec!["car-7".into()],
            ..HoldScope::default()
        },
        released: None,
    })
    .expect("edge add");
    edge.release(
        &other.id,
        Release {
            by: "ofc.kim".into(),
            at: UnixMillis::now(),
            reason: "done".into(),
        },
    )
    .expect("edge release");
    let rules = alpr_shared::control::policy::HotlistPolicy::default();
    let officer = |name: &str| {
        (name == "ofc.kim").then(|| KnownOfficer {
            agency: "CA0349400".into(),
            keys: vec![key.public],
        })
    };
    let ctx = Context {
        node: "car-7",
        kind: DeviceKind::Vehicle,
        now: UnixMillis::now(),
        rules: &rules,
        officer: &officer,
    };
    let mut watch = svc.watch();
    watch.borrow_and_update();
    let taken = svc
        .take_from_node(HoldsDoc::load(&edge.save()).expect("load"), |c| {
            check(c, &ctx)
        })
        .await
        .expect("take");
    let outcomes: Vec<(String, bool)> = taken
        .iter()
        .map(|(c, v)| (c.describe().1, v.outcome.is_ok()))
        .collect();
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    assert!(outcomes.contains(&("hold edge-1 placed on car-7".into(), true)));
    assert!(outcomes.contains(&(format!("hold {} released", other.id), false)));
    assert!(
        watch.has_changed().expect("open"),
        "what was taken is published"
    );
    let active: Vec<String> = svc.active().into_iter().map(|h| h.id).collect();
    let mut want = vec!["edge-1".to_string(), other.id.clone()];
    want.sort();
    assert_eq!(active, want, "the hub's hold is still in force");
    // Sent again: the hold is the hub's now, the release still refused.
    let again = svc
        .take_from_node(HoldsDoc::load(&edge.save()).expect("load"), |c| {
            check(c, &ctx)
        })
        .await
        .expect("take");
    assert_eq!(again.len(), 1);
    assert!(again[0].1.outcome.is_err());
}

#[tokio::test]
async fn holds_placed_and_released_through_the_service_stay_small_and_compact_away() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hub.redb");
    let svc = open(&path);
    let kept = svc.add(new("24-000", "1KEEP11")).await.expect("add");
    let empty = svc.saved().len();
    let mut last = None;
    for i in 0..200 {
        let h = svc
            .add(new(&format!("24-{i:03}"), "7ABC123"))
            .await
            .expect("add");
        svc.release(&h.id, "sgt.ray", "case closed")
            .await
            .expect("release");
        last = Some(h.id);
    }
    // Every change is written under the service's one actor: a change
    // costs its content, not a new actor each (about 19 bytes a change
    // here; an actor per change made it 39).
    let grown = svc.saved().len() - empty;
    assert!(grown < 400 * 25, "{grown} bytes for 400 changes");
    // A grace period past the releases and another past that, compaction
    // drops the released holds, keeps the active one, and is durable.
    let later = UnixMillis(UnixMillis::now().0 + 15 * 24 * 3600 * 1000);
    assert!(svc.compact(later).await.expect("compact"));
    assert!(
        !svc.compact(later).await.expect("compact"),
        "nothing left due"
    );
    let active: Vec<String> = svc.active().into_iter().map(|h| h.id).collect();
    assert_eq!(active, vec![kept.id.clone()]);
    // What is left: the active hold and 200 small tombstones.
    let compacted = svc.saved().len();
    assert!(compacted < empty + grown / 2, "{compacted} bytes");
    drop(svc);
    let svc = open(&path);
    assert_eq!(svc.holds().len(), 1);
    let doc = HoldsDoc::load(&svc.saved()).expect("load");
    assert_eq!(doc.epoch(), 1);
    // A released hold's id stays taken while its tombstone lasts.
    assert!(svc.get(&last.expect("placed")).is_none());
}
