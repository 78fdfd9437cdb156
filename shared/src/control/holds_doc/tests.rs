use std::collections::BTreeSet;

use proptest::prelude::*;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ROOT};

use super::*;
use crate::control::holds::HoldScope;
use crate::control::replica::ReplicatedDoc;
use crate::types::UnixMillis;

/// A time for merges that drop nothing (holds are placed at 1 s).
const T: UnixMillis = UnixMillis(10_000);

fn hold(id: &str, on: &str) -> Hold {
    Hold {
        id: id.into(),
        case: "24-001".into(),
        reason: "homicide investigation".into(),
        placed_by: "det.lee".into(),
        agency: "CA0349400".into(),
        placed_at: UnixMillis(1_000),
        placed_on: on.into(),
        scope: HoldScope {
            plates: vec!["7ABC123".into()],
            ..HoldScope::default()
        },
        released: None,
    }
}

fn release(by: &str) -> Release {
    Release {
        by: by.into(),
        at: UnixMillis(2_000),
        reason: "case closed".into(),
    }
}

fn copy(doc: &mut HoldsDoc) -> HoldsDoc {
    HoldsDoc::load(&doc.save()).expect("own save loads")
}

#[test]
fn a_hold_survives_save_load_and_is_active_until_released() {
    let mut doc = HoldsDoc::new();
    doc.add(hold("a", "hub")).expect("add");
    doc.add(hold("b", "hub")).expect("add");
    let mut back = copy(&mut doc);
    assert_eq!(back.holds(), doc.holds());
    back.release("a", release("sgt.ray")).expect("release");
    let ids: Vec<String> = back.active().into_iter().map(|h| h.id).collect();
    assert_eq!(ids, vec!["b".to_string()]);
    assert_eq!(
        back.get("a").and_then(|h| h.released),
        Some(release("sgt.ray"))
    );
    assert!(matches!(
        back.release("a", release("x")),
        Err(HoldsDocError::AlreadyReleased(_))
    ));
    assert!(matches!(
        back.release("zz", release("x")),
        Err(HoldsDocError::NoSuchHold(_))
    ));
}

#[test]
fn bad_holds_are_refused() {
    let mut doc = HoldsDoc::new();
    let mut empty = hold("a", "hub");
    empty.scope = HoldScope::default();
    assert!(matches!(doc.add(empty), Err(HoldsDocError::EmptyScope)));
    assert!(matches!(
        doc.add(hold("a/b", "hub")),
        Err(HoldsDocError::BadId(_))
    ));
    doc.add(hold("a", "hub")).expect("add");
    assert!(matches!(
        doc.add(hold("a", "hub")),
        Err(HoldsDocError::Exists(_))
    ));
    assert_eq!(doc.holds().len(), 1);
}

#[test]
fn garbage_and_oversize_documents_are_errors() {
    assert!(matches!(
        HoldsDoc::load(&vec![0u8; MAX_HOLDS_DOC_BYTES + 1]),
        Err(HoldsDocError::TooLarge(_))
    ));
    for junk in [
        &b""[..],
        b"not automerge",
        &[0x85, 0x6f, 0x4a, 0x83, 1, 2, 3, 4, 5],
    ] {
        // The empty document is a valid (empty) automerge save; anything
        // else here must fail cleanly.
        if let Ok(d) = HoldsDoc::load(junk) {
            assert!(d.holds().is_empty());
        }
    }
    // A valid automerge document with a foreign key is not a holds doc.
    let mut foreign = AutoCommit::new();
    foreign.put(ROOT, "hold/x", "text").expect("put");
    let bytes = foreign.save();
    assert!(matches!(
        HoldsDoc::load(&bytes),
        Err(HoldsDocError::BadEntry(_))
    ));
    let mut doc = HoldsDoc::new();
    doc.add(hold("a", "hub")).expect("add");
    assert!(doc.merge_bytes(&bytes, T).is_err());
    assert_eq!(doc.holds().len(), 1, "a bad peer document changes nothing");
}

#[test]
fn a_stale_copy_or_another_release_never_drops_a_hold() {
    let mut hub = HoldsDoc::new();
    hub.add(hold("other", "hub")).expect("add");
    let mut edge = copy(&mut hub);
    let mut stale = copy(&mut hub);
    // Offline edge places a hold; the hub meanwhile releases another one.
    edge.add(hold("mine", "car-7")).expect("add");
    hub.release("other", release("sgt.ray")).expect("release");
    hub.merge(&mut stale, T).expect("merge stale");
    hub.merge(&mut edge, T).expect("merge edge");
    edge.merge(&mut hub, T).expect("merge hub");
    assert_eq!(hub.holds(), edge.holds());
    let active: Vec<String> = edge.active().into_iter().map(|h| h.id).collect();
    assert_eq!(active, vec!["mine".to_string()]);
    assert!(edge.get("other").is_some_and(|h| !h.active()));
}

#[test]
fn concurrent_releases_of_one_hold_resolve_to_the_earliest_everywhere() {
    let mut hub = HoldsDoc::new();
    hub.add(hold("a", "hub")).expect("add");
    let mut edge = copy(&mut hub);
    let late = Release {
        at: UnixMillis(3_000),
        ..release("sgt.ray")
    };
    let early = Release {
        at: UnixMillis(2_500),
        ..release("det.lee")
    };
    // Each releases the hold without having seen the other's release.
    hub.release("a", late).expect("release");
    edge.release("a", early.clone()).expect("release");
    hub.merge(&mut copy(&mut edge), T).expect("merge edge");
    edge.merge(&mut copy(&mut hub), T).expect("merge hub");
    for doc in [&hub, &edge] {
        assert_eq!(doc.get("a").and_then(|h| h.released), Some(early.clone()));
    }
}

#[derive(Debug, Clone)]
enum Op {
    Add(usize),
    /// Writer releases the n-th (mod count) hold it knows and has not seen released.
    Release(usize, usize),
    /// First merges the second's document.
    Merge(usize, usize),
    /// Writer reloads from its own save (a restart).
    Restart(usize),
    /// The hub (writer 0) compacts.
    Compact,
    /// The clock moves on this many days (under a year in all, so no
    /// tombstone expires within a run).
    Wait(u8),
}

const WRITERS: usize = 3;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..WRITERS).prop_map(Op::Add),
        2 => (0..WRITERS, 0..8usize).prop_map(|(w, n)| Op::Release(w, n)),
        3 => (0..WRITERS, 0..WRITERS).prop_map(|(a, b)| Op::Merge(a, b)),
        1 => (0..WRITERS).prop_map(Op::Restart),
        1 => Just(Op::Compact),
        2 => (0..8u8).prop_map(Op::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Three replicas (the hub, which compacts, and two edges) converge
    /// whatever the order of merges; a hold never released is active
    /// everywhere, a released one is active nowhere (listed released, or
    /// compacted away).
    #[test]
    fn concurrent_writers_converge_and_lose_nothing(
        ops in proptest::collection::vec(op(), 1..40),
        order in Just((0..WRITERS).collect::<Vec<usize>>()).prop_shuffle(),
    ) {
        let names = ["hub", "car-7", "pole-1"];
        let mut docs: Vec<HoldsDoc> = (0..WRITERS).map(|_| HoldsDoc::new()).collect();
        let mut added = BTreeSet::new();
        let mut released = BTreeSet::new();
        let mut next = 0u32;
        let mut now = T;
        for op in ops {
            match op {
                Op::Add(w) => {
                    let id = format!("h{next:03}-{}", names[w]);
                    next += 1;
                    let mut h = hold(&id, names[w]);
                    h.placed_at = now;
                    docs[w].add(h).expect("add");
                    added.insert(id);
                }
                Op::Release(w, n) => {
                    let active = docs[w].active();
                    if !active.is_empty() {
                        let id = active[n % active.len()].id.clone();
                        let mut r = release(names[w]);
                        r.at = now;
                        docs[w].release(&id, r).expect("release");
                        released.insert(id);
                    }
                }
                Op::Merge(a, b) if a != b => {
                    let mut other = copy(&mut docs[b]);
                    docs[a].merge(&mut other, now).expect("merge");
                }
                Op::Merge(..) => {}
                Op::Restart(w) => docs[w] = copy(&mut docs[w]),
                Op::Compact => docs[0] = docs[0].compact(now).expect("compact"),
                Op::Wait(days) => now = UnixMillis(now.0 + u64::from(days) * DAY_MS),
            }
            // Whatever happened, a hold never released is active where
            // it is known.
            for d in &docs {
                for h in d.holds() {
                    prop_assert!(h.active() || released.contains(&h.id));
                }
            }
        }
        // Everyone exchanges, in a random order, until all have all.
        for _ in 0..3 {
            for &a in &order {
                for &b in &order {
                    if a != b {
                        let mut other = copy(&mut docs[b]);
                        docs[a].merge(&mut other, now).expect("merge");
                    }
                }
            }
        }
        let first = docs[0].holds();
        for d in &docs[1..] {
            prop_assert_eq!(d.epoch(), docs[0].epoch());
            prop_assert_eq!(&d.holds(), &first);
        }
        let active: BTreeSet<String> =
            first.iter().filter(|h| h.active()).map(|h| h.id.clone()).collect();
        let never_released: BTreeSet<String> = added.difference(&released).cloned().collect();
        prop_assert_eq!(&active, &never_released);
        for h in &first {
            prop_assert!(added.contains(&h.id));
        }
    }
}

#[test]
fn compaction_keeps_active_holds_and_a_stale_copy_cannot_bring_a_released_one_back() {
    let day = |d: u64| UnixMillis(T.0 + d * DAY_MS);
    let mut hub = HoldsDoc::new();
    for id in ["a", "b", "c"] {
        hub.add(hold(id, "hub")).expect("add");
    }
    // An offline edge holds the document from before the release, and
    // places a hold of its own.
    let mut stale = copy(&mut hub);
    stale.add(hold("mine", "car-7")).expect("add offline");
    let mut r = release("sgt.ray");
    r.at = day(1);
    hub.release("b", r).expect("release");
    let size_before = hub.save().len();
    assert!(
        !hub.needs_compaction(day(12)),
        "not a grace period past due"
    );
    assert!(hub.needs_compaction(day(16)));
    let mut compacted = hub.compact(day(9)).expect("compact");
    assert_eq!(compacted.epoch(), 1);
    let ids = |d: &HoldsDoc| d.active().into_iter().map(|h| h.id).collect::<Vec<_>>();
    assert_eq!(ids(&compacted), ["a", "c"]);
    assert!(compacted.get("b").is_none(), "dropped to a tombstone");
    assert!(
        compacted.save().len() < size_before,
        "compaction shrinks it"
    );
    assert!(!compacted.needs_compaction(day(9)));
    // The stale copy comes in: its new hold arrives, the released hold
    // does not come back.
    let mut s = copy(&mut stale);
    assert!(compacted.merge(&mut s, day(9)).expect("rebase"));
    assert_eq!(ids(&compacted), ["a", "c", "mine"]);
    assert!(compacted.get("b").is_none());
    // And the stale edge takes the new epoch the same way.
    let mut c = copy(&mut compacted);
    stale.merge(&mut c, day(9)).expect("take epoch");
    assert_eq!(stale.epoch(), 1);
    assert_eq!(stale.holds(), compacted.holds());
    assert!(matches!(
        compacted.add(hold("b", "hub")),
        Err(HoldsDocError::Exists(_))
    ));
    // Years on, active holds are all still there; the tombstone has
    // gone with its year.
    let later = day(3 * 365);
    assert!(compacted.needs_compaction(later));
    let mut again = compacted.compact(later).expect("compact");
    assert_eq!(again.epoch(), 2);
    assert_eq!(ids(&again), ["a", "c", "mine"]);
    let back = copy(&mut again);
    assert_eq!(back.holds(), again.holds());
}

/// 10,000 holds placed and released over about three years, at the rate
/// of a busy agency (nine a day, each released after 30 to 120 days; one
/// in a hundred kept throughout), the hub compacting whenever it is due:
/// the saved document stays loadable and far under the limit, and
/// a hold can still be placed at the end.
#[test]
fn ten_thousand_holds_over_years_stay_within_the_limit() {
    let total: u32 = std::env::var("ALPR_HOLDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let started = std::time::Instant::now();
    let per_day = 9u32;
    let mut doc = HoldsDoc::new();
    let mut placed: Vec<(String, UnixMillis, u64)> = Vec::new();
    let mut largest = 0usize;
    let mut compactions = 0u32;
    let mut n = 0u32;
    let mut day = 0u64;
    while n < total
        || placed
            .iter()
            .any(|(_, at, keep)| *keep < u64::MAX && at.0 > 0)
    {
        let now = UnixMillis(T.0 + day * DAY_MS);
        for _ in 0..per_day {
            if n >= total {
                break;
            }
            let id = format!("h{n:05}");
            let mut h = hold(&id, "hub");
            h.placed_at = now;
            doc.add(h).expect("place");
            let keep = if n.is_multiple_of(100) {
                u64::MAX
            } else {
                30 + u64::from(n % 91)
            };
            placed.push((id, now, keep));
            n += 1;
        }
        for (id, at, keep) in &mut placed {
            if *keep < u64::MAX && at.0 > 0 && at.0 + *keep * DAY_MS <= now.0 {
                let mut r = release("sgt.ray");
                r.at = now;
                doc.release(id, r).expect("release");
                *at = UnixMillis(0);
            }
        }
        // The hub looks hourly; a weekly look sees the same peaks (the
        // document only grows between compactions), checked before each.
        if day % 7 == 6 {
            let saved = doc.save();
            largest = largest.max(saved.len());
            assert!(
                saved.len() <= MAX_HOLDS_DOC_BYTES / 4,
                "day {day}: {} bytes",
                saved.len()
            );
            if day % 182 == 6 {
                HoldsDoc::load(&saved).expect("the saved document loads");
                eprintln!("day {day}: {} bytes, {:?}", saved.len(), started.elapsed());
            }
            if doc.needs_compaction(now) {
                let mut next = doc.compact(now).expect("compact");
                next.write_as(&doc);
                doc = next;
                compactions += 1;
            }
        }
        day += 1;
    }
    let active = doc.active().len();
    eprintln!(
        "{total} holds over {day} days: largest save {largest} bytes, {compactions} compactions, {active} active at the end"
    );
    assert_eq!(active, (total / 100) as usize, "every kept hold is active");
    let mut back = HoldsDoc::load(&doc.save()).expect("loads");
    let mut h = hold("last", "hub");
    h.placed_at = UnixMillis(T.0 + day * DAY_MS);
    back.add(h).expect("placing still works");
    assert_eq!(back.active().len(), active + 1);
}

/// The document this version writes: holds placed at the hub and on a
/// car, one released.
fn vector_doc() -> HoldsDoc {
    let mut doc = HoldsDoc::new();
    doc.add(hold("hub-a", "hub")).expect("add");
    let mut car = hold("car-b", "car-7");
    car.scope.nodes = vec!["car-7".into()];
    car.scope.from = Some(UnixMillis(500));
    doc.add(car).expect("add");
    doc.add(hold("hub-c", "hub")).expect("add");
    doc.release("hub-c", release("sgt.ray")).expect("release");
    doc
}

/// A document saved before compaction (no epoch, no tombstones) loads and
/// lists the same holds in every later version.
#[test]
fn format_v1_vector_still_loads() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/control/testdata/holds-v1.hex"
    );
    let mut doc = vector_doc();
    if std::env::var_os("ALPR_WRITE_VECTORS").is_some() {
        std::fs::write(path, hex::encode(doc.save()) + "\n").expect("write vector");
    }
    let stored = hex::decode(include_str!("../testdata/holds-v1.hex").trim()).expect("hex");
    let back = HoldsDoc::load(&stored).expect("old document loads");
    assert_eq!(back.holds(), doc.holds());
    let active: Vec<String> = back.active().into_iter().map(|h| h.id).collect();
    assert_eq!(active, vec!["car-b".to_string(), "hub-a".to_string()]);
}
