//! The hub's check of nodes' changes, on real documents: what an officer
//! signs on their car counts, and nothing else a node sends does.

use std::sync::Arc;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ScalarValue, ROOT};

use super::*;
use crate::control::holds::{HoldScope, Release};
use crate::control::holds_doc::HoldsDoc;
use crate::control::officer::{OfficerKey, OfficerSigner};
use crate::hotlist::local::{EntryFields, LocalEntriesDoc};

const T0: u64 = 1_800_000_000_000;
const CAR: &str = "car-7";
const BOB: &str = "ofc.bob";
const ANN: &str = "ofc.ann";
const AGENCY: &str = "CA0349400";

fn now() -> UnixMillis {
    UnixMillis(T0)
}

fn key(salt: u8) -> (OfficerKey, crate::crypto::SecretKey) {
    OfficerKey::derive("correct horse", [salt; 16], 64, 1).expect("derive")
}

fn signer(officer: &str, node: &str, salt: u8) -> Arc<OfficerSigner> {
    Arc::new(OfficerSigner::new(officer, node, key(salt).1))
}

/// The hub's officers: Bob (key of salt 1) and Ann (salt 2).
fn officers(name: &str) -> Option<KnownOfficer> {
    let salt = match name {
        BOB => 1,
        ANN => 2,
        _ => return None,
    };
    Some(KnownOfficer {
        agency: AGENCY.into(),
        keys: vec![key(salt).0.public],
    })
}

fn verdicts(
    changes: &[NodeChange],
    kind: DeviceKind,
    node: &str,
) -> Vec<(String, Result<(), String>)> {
    let rules = HotlistPolicy::default();
    let ctx = Context {
        node,
        kind,
        now: now(),
        rules: &rules,
        officer: &officers,
    };
    changes
        .iter()
        .map(|c| {
            let v = check(c, &ctx);
            (c.describe().1, v.outcome.map(|_| ()))
        })
        .collect()
}

fn refused_for(v: &[(String, Result<(), String>)], what: &str, why: &str) {
    let found = v
        .iter()
        .find(|(w, _)| w.contains(what))
        .unwrap_or_else(|| panic!("no change {what} in {v:?}"));
    match &found.1 {
        Err(reason) => assert!(reason.contains(why), "{what}: {reason} (wanted {why})"),
        Ok(()) => panic!("{what} was accepted: {v:?}"),
    }
}

fn fields(plate: &str) -> EntryFields {
    EntryFields {
        plate: Some(plate.into()),
        reason: Some("armed robbery".into()),
        ..EntryFields::default()
    }
}

/// The hub's entries (one by Ann on her car), and a car's copy of them.
fn entries() -> (LocalEntriesDoc, LocalEntriesDoc) {
    let rules = HotlistPolicy::default();
    let mut ann = LocalEntriesDoc::new();
    ann.sign_as(signer(ANN, "car-9", 2));
    ann.add("car-9-ann", fields("7ANN111"), ANN, AGENCY, &rules, now())
        .expect("add");
    let mut hub = LocalEntriesDoc::load(&ann.save()).expect("load");
    let car = LocalEntriesDoc::load(&hub.save()).expect("load");
    (hub, car)
}

#[test]
fn an_officers_own_signed_entry_edit_and_removal_are_taken() {
    let (mut hub, mut car) = entries();
    let rules = HotlistPolicy::default();
    car.sign_as(signer(BOB, CAR, 1));
    car.add("car-7-bob", fields("7BOB222"), BOB, AGENCY, &rules, now())
        .expect("add");
    car.edit(
        "car-7-bob",
        EntryFields {
            colour: Some("red".into()),
            ..EntryFields::default()
        },
        BOB,
        &rules,
        UnixMillis(T0 + 1000),
    )
    .expect("edit");
    let changes = hub.changes_from(&car, now());
    let v = verdicts(&changes, DeviceKind::Vehicle, CAR);
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(v.iter().all(|(_, r)| r.is_ok()), "{v:?}");
    let rules_ctx = HotlistPolicy::default();
    let ctx = Context {
        node: CAR,
        kind: DeviceKind::Vehicle,
        now: now(),
        rules: &rules_ctx,
        officer: &officers,
    };
    for c in &changes {
        let sig = check(c, &ctx).outcome.expect("accepted");
        hub.apply(c, &sig).expect("apply");
    }
    let got = hub.get("car-7-bob").expect("taken");
    assert_eq!((got.author.as_str(), got.colour.as_str()), (BOB, "red"));
    assert!(
        hub.changes_from(&car, now()).is_empty(),
        "nothing left to take"
    );
    // The hub's copy keeps the signatures: a peer hub or audit can check them.
    let again = LocalEntriesDoc::load(&hub.save()).expect("load");
    assert!(again.get("car-7-bob").is_some());
}

#[test]
fn a_pole_an_unsigned_a_forged_a_moved_and_anothers_removal_are_refused() {
    let (hub, mut car) = entries();
    let rules = HotlistPolicy::default();
    // Bob removes Ann's entry, signed with his own key.
    let mut bob = LocalEntriesDoc::load(&car.save()).expect("load");
    bob.sign_as(signer(BOB, CAR, 1));
    bob.remove(
        "car-9-ann",
        Removal {
            by: BOB.into(),
            at: now(),
            reason: "not needed".into(),
        },
    )
    .expect("remove");
    let v = verdicts(&hub.changes_from(&bob, now()), DeviceKind::Vehicle, CAR);
    refused_for(&v, "entry car-9-ann removed", "only the entries they added");
    // Nobody signed.
    let mut unsigned = LocalEntriesDoc::load(&car.save()).expect("load");
    unsigned
        .add("car-7-x", fields("7XXX333"), BOB, AGENCY, &rules, now())
        .expect("add");
    let v = verdicts(
        &hub.changes_from(&unsigned, now()),
        DeviceKind::Vehicle,
        CAR,
    );
    refused_for(&v, "entry car-7-x added", "not signed");
    // Signed in Bob's name with a key that is not his.
    let mut forged = LocalEntriesDoc::load(&car.save()).expect("load");
    forged.sign_as(signer(BOB, CAR, 9));
    forged
        .add("car-7-f", fields("7FFF444"), BOB, AGENCY, &rules, now())
        .expect("add");
    let v = verdicts(&hub.changes_from(&forged, now()), DeviceKind::Vehicle, CAR);
    refused_for(&v, "entry car-7-f added", "does not know");
    // Signed by Bob on another car, sent by this one.
    let mut moved = LocalEntriesDoc::load(&car.save()).expect("load");
    moved.sign_as(signer(BOB, "car-8", 1));
    moved
        .add("car-7-m", fields("7MMM555"), BOB, AGENCY, &rules, now())
        .expect("add");
    let v = verdicts(&hub.changes_from(&moved, now()), DeviceKind::Vehicle, CAR);
    refused_for(&v, "entry car-7-m added", "not on car-7");
    // An entry signed by Bob, in Ann's name.
    let mut posing = LocalEntriesDoc::load(&car.save()).expect("load");
    posing.sign_as(signer(BOB, CAR, 1));
    posing
        .add("car-7-p", fields("7PPP666"), ANN, AGENCY, &rules, now())
        .expect("add");
    let v = verdicts(&hub.changes_from(&posing, now()), DeviceKind::Vehicle, CAR);
    refused_for(&v, "entry car-7-p added", "not the officer who signed");
    // A pole changes nothing, even signed.
    let mut pole = LocalEntriesDoc::load(&car.save()).expect("load");
    pole.sign_as(signer(BOB, "pole-1", 1));
    pole.add("pole-1-a", fields("7POL777"), BOB, AGENCY, &rules, now())
        .expect("add");
    let v = verdicts(&hub.changes_from(&pole, now()), DeviceKind::Pole, "pole-1");
    refused_for(&v, "entry pole-1-a added", "poles change no");
}

#[test]
fn a_far_future_stamp_and_an_epoch_beyond_the_hubs_are_refused() {
    let (mut hub, mut car) = entries();
    let rules = HotlistPolicy::default();
    let mut bob = LocalEntriesDoc::load(&car.save()).expect("load");
    bob.sign_as(signer(BOB, CAR, 1));
    bob.add("car-7-bob", fields("7BOB222"), BOB, AGENCY, &rules, now())
        .expect("add");
    // The entry is the hub's now; then Bob edits it stamped year 9999
    // (it would win every later edit).
    let taken: Vec<NodeChange> = hub.changes_from(&bob, now());
    let ctx_rules = HotlistPolicy::default();
    let ctx = Context {
        node: CAR,
        kind: DeviceKind::Vehicle,
        now: now(),
        rules: &ctx_rules,
        officer: &officers,
    };
    for c in &taken {
        let sig = check(c, &ctx).outcome.expect("accepted");
        hub.apply(c, &sig).expect("apply");
    }
    // Bob edits it stamped a day ahead of the hub's clock (it would win
    // every edit of the coming day), and adds one stamped year 9999.
    bob.edit(
        "car-7-bob",
        EntryFields {
            reason: Some("far future".into()),
            ..EntryFields::default()
        },
        BOB,
        &rules,
        UnixMillis(T0 + 24 * 3600 * 1000),
    )
    .expect("edit");
    let year_9999 = UnixMillis(253_370_764_800_000);
    bob.add(
        "car-7-far",
        fields("7FAR999"),
        BOB,
        AGENCY,
        &rules,
        year_9999,
    )
    .expect("add");
    let v = verdicts(&hub.changes_from(&bob, now()), DeviceKind::Vehicle, CAR);
    refused_for(
        &v,
        "entry car-7-bob edited reason",
        "ahead of the hub's clock",
    );
    refused_for(&v, "entry car-7-far added", "ahead of the hub's clock");
    // A copy claiming epoch u64::MAX: only the hub compacts.
    let mut raw = AutoCommit::load(&car.save()).expect("automerge");
    raw.put(ROOT, "epoch", ScalarValue::Uint(u64::MAX))
        .expect("put");
    let maxed = LocalEntriesDoc::load(&raw.save()).expect("still a document");
    let v = verdicts(&hub.changes_from(&maxed, now()), DeviceKind::Vehicle, CAR);
    refused_for(&v, "of epoch 18446744073709551615", "only the hub compacts");
    let mut raw = AutoCommit::load(&HoldsDoc::new().save()).expect("automerge");
    raw.put(ROOT, "epoch", ScalarValue::Uint(u64::MAX))
        .expect("put");
    let maxed = HoldsDoc::load(&raw.save()).expect("still a document");
    let v = verdicts(
        &HoldsDoc::new().changes_from(&maxed, now()),
        DeviceKind::Vehicle,
        CAR,
    );
    refused_for(&v, "of epoch 18446744073709551615", "only the hub compacts");
}

fn hold(id: &str, by: &str, on: &str) -> Hold {
    Hold {
        id: id.into(),
        case: "24-001".into(),
        reason: "homicide investigation".into(),
        placed_by: by.into(),
        agency: AGENCY.into(),
        placed_at: now(),
        placed_on: on.into(),
        scope: HoldScope {
            plates: vec!["7ABC123".into()],
            nodes: vec!["pole-1".into(), "pole-2".into()],
            ..HoldScope::default()
        },
        released: None,
    }
}

#[test]
fn a_nodes_release_or_narrowing_of_a_hold_is_refused_and_an_officers_hold_taken() {
    let mut hub = HoldsDoc::new();
    hub.add(hold("h1", "det.lee", "hub")).expect("add");
    let release = Release {
        by: BOB.into(),
        at: now(),
        reason: "case closed".into(),
    };
    // A pole releases the hub's hold.
    let mut pole = HoldsDoc::load(&hub.save()).expect("load");
    pole.release("h1", release.clone()).expect("release");
    let v = verdicts(&hub.changes_from(&pole, now()), DeviceKind::Pole, "pole-1");
    refused_for(&v, "hold h1 released", "poles change no");
    // A car's officer releases it, signed: no release from a node.
    let mut car = HoldsDoc::load(&hub.save()).expect("load");
    car.sign_as(signer(BOB, CAR, 1));
    car.release("h1", release).expect("release");
    let v = verdicts(&hub.changes_from(&car, now()), DeviceKind::Vehicle, CAR);
    refused_for(&v, "hold h1 released", "released only at the hub");
    // A node narrows its scope (writes the hold again without pole-2).
    let mut narrowed = hold("h1", "det.lee", "hub");
    narrowed.scope.nodes = vec!["pole-1".into()];
    let mut raw = AutoCommit::load(&hub.save()).expect("automerge");
    raw.put(
        ROOT,
        "hold/h1",
        ScalarValue::Bytes(postcard::to_allocvec(&narrowed).expect("encode")),
    )
    .expect("put");
    let narrowing = HoldsDoc::load(&raw.save()).expect("load");
    let v = verdicts(
        &hub.changes_from(&narrowing, now()),
        DeviceKind::Vehicle,
        CAR,
    );
    refused_for(&v, "hold h1 rewritten", "never rewritten");
    // Bob's own hold, placed offline on his car, is taken.
    let mut car = HoldsDoc::load(&hub.save()).expect("load");
    car.sign_as(signer(BOB, CAR, 1));
    car.add(hold("h2", BOB, CAR)).expect("add");
    let changes = hub.changes_from(&car, now());
    let v = verdicts(&changes, DeviceKind::Vehicle, CAR);
    assert_eq!(v, vec![("hold h2 placed on car-7".to_string(), Ok(()))]);
    let rules = HotlistPolicy::default();
    let ctx = Context {
        node: CAR,
        kind: DeviceKind::Vehicle,
        now: now(),
        rules: &rules,
        officer: &officers,
    };
    let sig = check(&changes[0], &ctx).outcome.expect("accepted");
    hub.apply(&changes[0], &sig).expect("apply");
    assert!(hub.holds().iter().all(Hold::active));
    assert_eq!(hub.holds().len(), 2);
    // The hub still has h1 whole, in force, with both poles.
    let h1 = hub.holds().into_iter().find(|h| h.id == "h1").expect("h1");
    assert_eq!(h1.scope.nodes.len(), 2);
}
