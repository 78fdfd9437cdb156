use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ScalarValue, ROOT};

use super::*;

const T0: u64 = 1_800_000_000_000;

fn rules() -> HotlistPolicy {
    HotlistPolicy::default()
}

fn at(days: u64) -> UnixMillis {
    UnixMillis(T0 + days * DAY_MS)
}

fn fields(plate: &str, reason: &str) -> EntryFields {
    EntryFields {
        plate: Some(plate.into()),
        reason: Some(reason.into()),
        ..EntryFields::default()
    }
}

fn copy(doc: &mut LocalEntriesDoc) -> LocalEntriesDoc {
    LocalEntriesDoc::load(&doc.save()).expect("own save loads")
}

fn removal(by: &str, now: UnixMillis) -> Removal {
    Removal {
        by: by.into(),
        at: now,
        reason: "vehicle recovered".into(),
    }
}

#[test]
fn an_entry_is_normalised_defaulted_and_survives_save_load() {
    let mut doc = LocalEntriesDoc::new();
    let e = doc
        .add(
            "a",
            fields("7ab-c1*", "shooting suspect"),
            "op.kim",
            "CA0349400",
            &rules(),
            at(0),
        )
        .expect("add");
    assert_eq!(e.plate, "7ABC1*");
    assert_eq!(e.category, Category::Suspect);
    assert_eq!(e.level, AlertLevel::Standard);
    assert_eq!(e.expires_at, at(30), "policy's default expiry");
    let back = copy(&mut doc);
    assert_eq!(back.entries(), vec![e.clone()]);
    assert_eq!(back.active(at(29)), vec![e]);
    assert!(back.active(at(30)).is_empty(), "expired by time alone");
}

#[test]
fn bad_entries_are_refused() {
    let mut doc = LocalEntriesDoc::new();
    let r = rules();
    let add = |doc: &mut LocalEntriesDoc, id: &str, f: EntryFields| {
        doc.add(id, f, "op.kim", "CA", &r, at(0))
    };
    assert!(matches!(
        add(&mut doc, "a/b", fields("7ABC123", "x")),
        Err(LocalDocError::BadId(_))
    ));
    assert!(matches!(
        add(&mut doc, "a", fields("7", "x")),
        Err(LocalDocError::BadPlate(..))
    ));
    assert!(matches!(
        add(&mut doc, "a", fields("7A$C", "x")),
        Err(LocalDocError::BadPlate(..))
    ));
    assert!(matches!(
        add(&mut doc, "a", fields("7ABC123", " ")),
        Err(LocalDocError::Missing)
    ));
    let mut f = fields("7ABC123", "x");
    f.state = Some("CAL".into());
    assert!(matches!(
        add(&mut doc, "a", f),
        Err(LocalDocError::BadState(_))
    ));
    let mut f = fields("7ABC123", "x");
    f.expires_at = Some(at(0));
    assert!(matches!(
        add(&mut doc, "a", f),
        Err(LocalDocError::ExpiryPast)
    ));
    let mut f = fields("7ABC123", "x");
    f.expires_at = Some(at(500));
    let e = add(&mut doc, "a", f).expect("add");
    assert_eq!(e.expires_at, at(100), "clamped to policy's maximum");
    assert!(matches!(
        add(&mut doc, "a", fields("7ABC123", "x")),
        Err(LocalDocError::Exists(_))
    ));
    assert_eq!(doc.entries().len(), 1);
}

#[test]
fn concurrent_removals_of_one_entry_resolve_to_the_earliest_everywhere() {
    let mut hub = LocalEntriesDoc::new();
    hub.add(
        "a",
        fields("7ABC123", "stolen"),
        "op.kim",
        "CA",
        &rules(),
        at(0),
    )
    .expect("add");
    let mut edge = copy(&mut hub);
    // Each removes the entry without having seen the other's removal.
    hub.remove("a", removal("op.kim", at(2))).expect("remove");
    edge.remove("a", removal("ofc.diaz", at(1)))
        .expect("remove");
    hub.merge(&mut copy(&mut edge), at(3)).expect("merge edge");
    edge.merge(&mut copy(&mut hub), at(3)).expect("merge hub");
    for doc in [&hub, &edge] {
        let removed = doc.get("a").and_then(|e| e.removed);
        assert_eq!(removed, Some(removal("ofc.diaz", at(1))));
    }
}

#[test]
fn edits_of_different_fields_both_survive_and_a_removal_beats_a_concurrent_edit() {
    let mut hub = LocalEntriesDoc::new();
    hub.add(
        "a",
        fields("7ABC123", "stolen"),
        "op.kim",
        "CA",
        &rules(),
        at(0),
    )
    .expect("add");
    hub.add(
        "b",
        fields("8XYZ99", "stolen"),
        "op.kim",
        "CA",
        &rules(),
        at(0),
    )
    .expect("add");
    let mut edge = copy(&mut hub);
    hub.edit(
        "a",
        EntryFields {
            make: Some("Honda".into()),
            ..EntryFields::default()
        },
        "op.kim",
        &rules(),
        at(1),
    )
    .expect("edit");
    edge.edit(
        "a",
        EntryFields {
            colour: Some("blue".into()),
            ..EntryFields::default()
        },
        "ofc.ray",
        &rules(),
        at(1),
    )
    .expect("edit");
    // The edge edits b while the hub removes it.
    edge.edit(
        "b",
        EntryFields {
            level: Some(AlertLevel::Urgent),
            expires_at: Some(at(90)),
            ..EntryFields::default()
        },
        "ofc.ray",
        &rules(),
        at(2),
    )
    .expect("edit");
    hub.remove("b", removal("op.kim", at(1))).expect("remove");
    let mut e2 = copy(&mut edge);
    hub.merge(&mut e2, at(3)).expect("merge");
    let mut h2 = copy(&mut hub);
    edge.merge(&mut h2, at(3)).expect("merge");
    assert_eq!(hub.entries(), edge.entries());
    let a = hub.get("a").expect("a");
    assert_eq!((a.make.as_str(), a.colour.as_str()), ("Honda", "blue"));
    let b = hub.get("b").expect("b");
    assert!(b.removed.is_some() && !b.active(at(3)), "the removal wins");
    assert!(matches!(
        edge.edit(
            "b",
            EntryFields {
                case: Some("1".into()),
                ..EntryFields::default()
            },
            "x",
            &rules(),
            at(4)
        ),
        Err(LocalDocError::Removed(_))
    ));
}

#[test]
fn compaction_drops_old_entries_and_a_stale_peer_cannot_resurrect_them() {
    let mut hub = LocalEntriesDoc::new();
    for id in ["keep", "gone", "old"] {
        hub.add(
            id,
            fields("7ABC123", "stolen"),
            "op.kim",
            "CA",
            &rules(),
            at(0),
        )
        .expect("add");
    }
    let mut f = fields("5DEF456", "shooting");
    f.expires_at = Some(at(50));
    hub.edit(
        "keep",
        EntryFields {
            expires_at: Some(at(90)),
            ..EntryFields::default()
        },
        "op.kim",
        &rules(),
        at(1),
    )
    .expect("edit");
    // An offline edge holds the document from before the removal.
    let mut stale = copy(&mut hub);
    stale
        .add("offline", f, "ofc.ray", "CA", &rules(), at(2))
        .expect("add offline");
    stale
        .edit(
            "gone",
            EntryFields {
                reason: Some("still wanted".into()),
                ..EntryFields::default()
            },
            "ofc.ray",
            &rules(),
            at(2),
        )
        .expect("stale edit");
    hub.remove("gone", removal("op.kim", at(2)))
        .expect("remove");
    let size_before = hub.save().len();
    // 40 days on: "old" expired at day 30 (+ grace), "gone" removed at 2.
    let now = at(40);
    assert!(hub.needs_compaction(now));
    let mut compacted = hub.compact(now).expect("compact");
    assert_eq!(compacted.epoch(), 1);
    let ids: Vec<String> = compacted.entries().into_iter().map(|e| e.id).collect();
    assert_eq!(ids, vec!["keep".to_string()]);
    assert!(
        compacted.save().len() < size_before,
        "compaction shrinks the document"
    );
    assert!(!compacted.needs_compaction(now));
    // The stale edge's document comes in: its new entry arrives, its
    // edit of the removed entry does not bring it back.
    let mut s = copy(&mut stale);
    assert!(compacted.merge(&mut s, now).expect("rebase"));
    let ids: Vec<String> = compacted.entries().into_iter().map(|e| e.id).collect();
    assert_eq!(ids, vec!["keep".to_string(), "offline".to_string()]);
    // And the stale edge takes the new epoch the same way.
    let mut c = copy(&mut compacted);
    stale.merge(&mut c, now).expect("take epoch");
    assert_eq!(stale.epoch(), 1);
    assert_eq!(stale.entries(), compacted.entries());
    assert!(matches!(
        compacted.add("gone", fields("7ABC123", "x"), "op", "CA", &rules(), now),
        Err(LocalDocError::Exists(_))
    ));
}

#[test]
fn garbage_and_oversize_documents_are_errors() {
    assert!(matches!(
        LocalEntriesDoc::load(&vec![0u8; MAX_LOCAL_DOC_BYTES + 1]),
        Err(LocalDocError::TooLarge(_))
    ));
    for junk in [
        &b"not automerge"[..],
        &[0x85, 0x6f, 0x4a, 0x83, 1, 2, 3, 4, 5],
    ] {
        if let Ok(d) = LocalEntriesDoc::load(junk) {
            assert!(d.entries().is_empty());
        }
    }
    let mut foreign = AutoCommit::new();
    foreign.put(ROOT, "entry/x", "text").expect("put");
    assert!(matches!(
        LocalEntriesDoc::load(&foreign.save()),
        Err(LocalDocError::BadEntry(_))
    ));
    let mut orphan = AutoCommit::new();
    orphan
        .put(ROOT, "removed/x", ScalarValue::Bytes(vec![1]))
        .expect("put");
    let orphan = orphan.save();
    assert!(LocalEntriesDoc::load(&orphan).is_err());
    let mut doc = LocalEntriesDoc::new();
    doc.add("a", fields("7ABC123", "x"), "op", "CA", &rules(), at(0))
        .expect("add");
    assert!(doc.merge_bytes(&orphan, at(0)).is_err());
    assert_eq!(
        doc.entries().len(),
        1,
        "a bad peer document changes nothing"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn loading_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = LocalEntriesDoc::load(&bytes);
        let mut prefixed = vec![0x85, 0x6f, 0x4a, 0x83];
        prefixed.extend_from_slice(&bytes);
        let _ = LocalEntriesDoc::load(&prefixed);
    }
}

#[derive(Debug, Clone)]
enum Op {
    Add(usize, u8),
    /// Writer edits the n-th live entry it knows: a field and a value.
    Edit(usize, usize, u8, u8),
    Remove(usize, usize),
    /// First merges the second's document.
    Merge(usize, usize),
    /// The hub (writer 0) compacts.
    Compact,
    /// Writer reloads from its own save (a restart).
    Restart(usize),
    /// The clock moves on this many days.
    Wait(u8),
}

const WRITERS: usize = 3;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..WRITERS, 1..120u8).prop_map(|(w, d)| Op::Add(w, d)),
        3 => (0..WRITERS, 0..8usize, 0..4u8, 0..200u8).prop_map(|(w, n, f, v)| Op::Edit(w, n, f, v)),
        2 => (0..WRITERS, 0..8usize).prop_map(|(w, n)| Op::Remove(w, n)),
        3 => (0..WRITERS, 0..WRITERS).prop_map(|(a, b)| Op::Merge(a, b)),
        1 => Just(Op::Compact),
        1 => (0..WRITERS).prop_map(Op::Restart),
        2 => (0..25u8).prop_map(Op::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Three replicas (the hub and two edges offline at random times)
    /// converge to the same entries whatever the order of merges; a
    /// removal anywhere is final; an entry never removed is either kept
    /// or was past every expiry it was ever given.
    #[test]
    fn concurrent_histories_converge_and_removals_win(
        ops in proptest::collection::vec(op(), 1..50),
        order in Just((0..WRITERS).collect::<Vec<usize>>()).prop_shuffle(),
    ) {
        let names = ["hub", "car-7", "pole-1"];
        let r = rules();
        let mut docs: Vec<LocalEntriesDoc> = (0..WRITERS).map(|_| LocalEntriesDoc::new()).collect();
        let mut now = at(0);
        let mut removed = BTreeSet::new();
        // Expiry as added, and the entries whose expiry was edited since.
        let mut max_expiry: BTreeMap<String, UnixMillis> = BTreeMap::new();
        let mut expiry_edited = BTreeSet::new();
        let mut next = 0u32;
        for op in ops {
            match op {
                Op::Add(w, days) => {
                    let id = format!("e{next:03}-{}", names[w]);
                    next += 1;
                    let mut f = fields("7AB*12", "suspect");
                    f.expires_at = Some(UnixMillis(now.0 + u64::from(days) * DAY_MS));
                    let e = docs[w].add(&id, f, names[w], "CA", &r, now).expect("add");
                    max_expiry.insert(id, e.expires_at);
                }
                Op::Edit(w, n, field, v) => {
                    let live = docs[w].active(now);
                    if !live.is_empty() {
                        let id = live[n % live.len()].id.clone();
                        let f = match field {
                            0 => EntryFields { make: Some(format!("make{v}")), ..EntryFields::default() },
                            1 => EntryFields { colour: Some(format!("c{v}")), ..EntryFields::default() },
                            2 => EntryFields { level: Some(AlertLevel::Urgent), ..EntryFields::default() },
                            _ => EntryFields {
                                expires_at: Some(UnixMillis(now.0 + (u64::from(v) + 1) * DAY_MS)),
                                ..EntryFields::default()
                            },
                        };
                        if field == 3 {
                            expiry_edited.insert(id.clone());
                        }
                        docs[w].edit(&id, f, names[w], &r, now).expect("edit");
                    }
                }
                Op::Remove(w, n) => {
                    let live: Vec<LocalEntry> = docs[w].entries().into_iter().filter(|e| e.removed.is_none()).collect();
                    if !live.is_empty() {
                        let id = live[n % live.len()].id.clone();
                        docs[w].remove(&id, removal(names[w], now)).expect("remove");
                        removed.insert(id);
                    }
                }
                Op::Merge(a, b) if a != b => {
                    let mut other = copy(&mut docs[b]);
                    docs[a].merge(&mut other, now).expect("merge");
                }
                Op::Merge(..) => {}
                Op::Compact => docs[0] = docs[0].compact(now).expect("compact"),
                Op::Restart(w) => docs[w] = copy(&mut docs[w]),
                Op::Wait(days) => now = UnixMillis(now.0 + u64::from(days) * DAY_MS),
            }
            // Expiry holds on every replica, merged or not.
            for d in &docs {
                for e in d.active(now) {
                    prop_assert!(e.expires_at > now);
                    prop_assert!(e.removed.is_none());
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
        let first = docs[0].entries();
        for d in &docs[1..] {
            prop_assert_eq!(d.epoch(), docs[0].epoch());
            prop_assert_eq!(&d.entries(), &first);
        }
        let present: BTreeMap<String, LocalEntry> =
            first.into_iter().map(|e| (e.id.clone(), e)).collect();
        for id in &removed {
            prop_assert!(present.get(id).is_none_or(|e| e.removed.is_some()), "{} came back", id);
        }
        for (id, max) in &max_expiry {
            if removed.contains(id) {
                continue;
            }
            match present.get(id) {
                Some(e) => prop_assert!(e.removed.is_none()),
                // Never removed, expiry as added: only expiry drops it.
                None if !expiry_edited.contains(id) => {
                    prop_assert!(*max <= now, "{} lost while live", id)
                }
                None => {}
            }
        }
    }
}

/// The document this version writes: an entry added and edited, one
/// removed, one compacted away to a tombstone, in epoch 1.
fn vector_doc() -> LocalEntriesDoc {
    let mut doc = LocalEntriesDoc::new();
    let mut f = fields("7ABC*", "shooting on 5th");
    f.case = Some("24-77".into());
    f.state = Some("ca".into());
    doc.add("hub-a", f, "op.kim", "CA0349400", &rules(), at(0))
        .expect("add");
    doc.add(
        "car-b",
        fields("5XY?12", "pursuit"),
        "ofc.ray",
        "CA",
        &rules(),
        at(0),
    )
    .expect("add");
    doc.add(
        "car-c",
        fields("8KL123", "stolen"),
        "ofc.ray",
        "CA",
        &rules(),
        at(0),
    )
    .expect("add");
    doc.edit(
        "hub-a",
        EntryFields {
            colour: Some("red".into()),
            level: Some(AlertLevel::Urgent),
            ..EntryFields::default()
        },
        "op.kim",
        &rules(),
        at(1),
    )
    .expect("edit");
    doc.remove("car-b", removal("op.kim", at(1)))
        .expect("remove");
    doc.remove("car-c", removal("op.kim", at(1)))
        .expect("remove");
    let mut compacted = doc.compact(at(9)).expect("compact");
    compacted
        .add(
            "car-d",
            fields("6GH*", "robbery"),
            "ofc.ray",
            "CA",
            &rules(),
            at(9),
        )
        .expect("add");
    compacted
}

/// A document saved by this version loads, lists the same entries and
/// keeps its tombstone in every later one.
#[test]
fn format_v1_vector_still_loads() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/hotlist/testdata/local-v1.hex"
    );
    let mut doc = vector_doc();
    if std::env::var_os("ALPR_WRITE_VECTORS").is_some() {
        std::fs::write(path, hex::encode(doc.save()) + "\n").expect("write vector");
    }
    let stored = hex::decode(include_str!("../testdata/local-v1.hex").trim()).expect("hex");
    let mut back = LocalEntriesDoc::load(&stored).expect("old document loads");
    assert_eq!(back.epoch(), 1);
    assert_eq!(back.entries(), doc.entries());
    let a = back.get("hub-a").expect("hub-a");
    assert_eq!(
        (a.colour.as_str(), a.level, a.state.as_str()),
        ("red", AlertLevel::Urgent, "CA")
    );
    assert!(matches!(
        back.add(
            "car-c",
            fields("8KL123", "again"),
            "x",
            "CA",
            &rules(),
            at(9)
        ),
        Err(LocalDocError::Exists(_))
    ));
}

/// Many wildcard entries, each edited once and a tenth removed, fit in
/// one document a peer accepts (`ALPR_LOCAL_ENTRIES` sets how many; 1,000
/// saved to 15 KB).
#[test]
fn many_entries_fit_the_limit() {
    let n: u32 = std::env::var("ALPR_LOCAL_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut doc = LocalEntriesDoc::new();
    for i in 0..n {
        let mut f = fields(
            &format!("{}{:03}*", (b'A' + (i % 26) as u8) as char, i),
            "partial plate from a robbery, witness saw a dark sedan",
        );
        f.case = Some(format!("24-{i:05}"));
        f.make = Some("Toyota".into());
        doc.add(
            &format!("hub-{i:016x}"),
            f,
            "op.kim",
            "CA0349400",
            &rules(),
            at(0),
        )
        .expect("add");
        doc.edit(
            &format!("hub-{i:016x}"),
            EntryFields {
                colour: Some("black".into()),
                ..EntryFields::default()
            },
            "op.kim",
            &rules(),
            at(1),
        )
        .expect("edit");
        if i % 10 == 0 {
            doc.remove(&format!("hub-{i:016x}"), removal("op.kim", at(1)))
                .expect("remove");
        }
    }
    let t = std::time::Instant::now();
    let listed = doc.entries().len();
    eprintln!("{n} entries: entries() {:?}", t.elapsed());
    assert_eq!(listed as u32, n);
    let started = std::time::Instant::now();
    let saved = doc.save();
    let mut back = LocalEntriesDoc::load(&saved).expect("loads");
    let mut peer = LocalEntriesDoc::new();
    peer.merge(&mut back, at(2)).expect("merge");
    eprintln!(
        "{n} entries: {} bytes saved, save+load+merge {:?}",
        saved.len(),
        started.elapsed()
    );
    assert!(saved.len() < MAX_LOCAL_DOC_BYTES, "{} bytes", saved.len());
    assert_eq!(peer.active(at(2)).len() as u32, n - n.div_ceil(10));
}
