use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;
use crate::control::holds::HoldScope;
use crate::types::UnixMillis;

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
    assert!(doc.merge_bytes(&bytes).is_err());
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
    hub.merge(&mut stale).expect("merge stale");
    hub.merge(&mut edge).expect("merge edge");
    edge.merge(&mut hub).expect("merge hub");
    assert_eq!(hub.holds(), edge.holds());
    let active: Vec<String> = edge.active().into_iter().map(|h| h.id).collect();
    assert_eq!(active, vec!["mine".to_string()]);
    assert!(edge.get("other").is_some_and(|h| !h.active()));
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
}

const WRITERS: usize = 3;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..WRITERS).prop_map(Op::Add),
        2 => (0..WRITERS, 0..8usize).prop_map(|(w, n)| Op::Release(w, n)),
        3 => (0..WRITERS, 0..WRITERS).prop_map(|(a, b)| Op::Merge(a, b)),
        1 => (0..WRITERS).prop_map(Op::Restart),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

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
        for op in ops {
            match op {
                Op::Add(w) => {
                    let id = format!("h{next:03}-{}", names[w]);
                    next += 1;
                    docs[w].add(hold(&id, names[w])).expect("add");
                    added.insert(id);
                }
                Op::Release(w, n) => {
                    let active = docs[w].active();
                    if !active.is_empty() {
                        let id = active[n % active.len()].id.clone();
                        docs[w].release(&id, release(names[w])).expect("release");
                        released.insert(id);
                    }
                }
                Op::Merge(a, b) if a != b => {
                    let mut other = copy(&mut docs[b]);
                    docs[a].merge(&mut other).expect("merge");
                }
                Op::Merge(..) => {}
                Op::Restart(w) => docs[w] = copy(&mut docs[w]),
            }
        }
        // Everyone exchanges, in a random order, until all have all.
        for _ in 0..2 {
            for &a in &order {
                for &b in &order {
                    if a != b {
                        let mut other = copy(&mut docs[b]);
                        docs[a].merge(&mut other).expect("merge");
                    }
                }
            }
        }
        let first = docs[0].holds();
        for d in &docs[1..] {
            prop_assert_eq!(&d.holds(), &first);
        }
        let ids: BTreeSet<String> = first.iter().map(|h| h.id.clone()).collect();
        prop_assert_eq!(&ids, &added);
        let gone: BTreeSet<String> =
            first.iter().filter(|h| !h.active()).map(|h| h.id.clone()).collect();
        prop_assert_eq!(&gone, &released);
    }
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
