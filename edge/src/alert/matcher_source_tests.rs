use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use alpr_shared::hotlist::generation::GenerationInfo;
use alpr_shared::hotlist::{delta, sample, AlertLevel, HotEntry, ListSettings};
use alpr_shared::signer::{dev::Deployment, HotlistSigning, HubKey};
use alpr_shared::types::{Hash32, UnixMillis};

use super::*;
use crate::hotlist::generations::Generations;

const SOURCE: &str = "ncic";
/// Generations applied one after the other (2 to this), alternating
/// between two sets of rows that share half of them.
const LAST: u64 = 41;
/// The category the policy writer excludes and includes in turn.
const TOGGLED: Category = Category::Immigration;

fn generation(number: u64, rows: &[HotEntry], hub: &HubKey<HotlistSigning>) -> Generation {
    let info = GenerationInfo {
        source: SOURCE.into(),
        number,
        issued_at: UnixMillis(1_795_868_054_000 + number),
        source_sha256: Hash32([number as u8; 32]),
        source_rows: rows.len() as u64,
        rows: 0,
        categories: Vec::new(),
        settings: ListSettings::default(),
    };
    Generation::build(info, rows.to_vec(), hub).expect("builds")
}

fn local(k: u64) -> LocalEntry {
    let now = UnixMillis::now();
    LocalEntry {
        id: format!("l{k}"),
        plate: format!("9LOC{:03}", k % 1000),
        state: String::new(),
        category: Category::Suspect,
        reason: "seen leaving a robbery".into(),
        case: String::new(),
        level: AlertLevel::Urgent,
        make: String::new(),
        model: String::new(),
        colour: String::new(),
        expires_at: UnixMillis(now.0 + 86_400_000),
        author: "ofc".into(),
        agency: "CA0190000".into(),
        created_at: now,
        updated_at: now,
        removed: None,
    }
}

/// The generation numbers of the bulk lists a matcher holds.
fn numbers(m: &Matcher) -> Vec<u64> {
    m.generations().map(|g| g.info().number).collect()
}

fn hits(m: &Matcher, plate: &str) -> bool {
    let mut out = Vec::new();
    m.match_read(plate, &[], None, UnixMillis::now(), &mut out);
    out.iter().any(|h| h.entry.plate == plate)
}

/// The edge's own swap path, as sync and the pipeline drive it: each
/// generation is applied to the node's store (`Generations::apply_delta`:
/// checked, written durably, published), `follow_bulk` rebuilds the
/// matcher, while other writers change the local entries and the excluded
/// categories at the same time, and a reader matches from the matcher the
/// pipeline takes (`MatcherSource::watch`). A plate listed in every
/// generation is never missed, the reader never goes back to an older
/// generation than one it matched against, and once the swaps stop the
/// newest generation is the one in force.
#[test]
fn matching_during_generation_swaps_never_misses_an_entry_in_both() {
    let dir = tempfile::tempdir().expect("tmp");
    let deployment = Deployment::new().expect("deployment");
    let hub: HubKey<HotlistSigning> = deployment.key("hub").expect("hotlist key");
    let all = sample::entries(4500, 7);
    let (a, b) = (&all[..3000], &all[1500..]);
    let both: Vec<String> = all[1500..3000]
        .iter()
        .filter(|e| e.category != TOGGLED)
        .map(|e| e.plate.clone())
        .collect();
    let rows = |n: u64| if n % 2 == 1 { a } else { b };
    let generations = Generations::open(dir.path(), deployment.anchor.clone()).expect("open");
    let first = generation(1, rows(1), &hub);
    generations
        .apply_full(SOURCE, 1, first.bytes().to_vec())
        .expect("first generation");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let cancel = tokio_util::sync::CancellationToken::new();
    let source = MatcherSource::new();
    {
        let _in_rt = rt.enter();
        source.follow_bulk(generations.watch(), cancel.clone());
    }
    assert_eq!(numbers(&source.current()), [1]);

    let swapping = AtomicBool::new(true);
    let (misses, went_back, reads) = std::thread::scope(|s| {
        s.spawn(|| {
            let mut prev = first;
            for n in 2..=LAST {
                let next = generation(n, rows(n), &hub);
                let d = delta::diff(&prev, &next);
                generations
                    .apply_delta(SOURCE, n - 1, n, &d)
                    .expect("delta applied");
                prev = next;
            }
            swapping.store(false, Ordering::SeqCst);
        });
        // The other inputs change at the same time, from their own threads
        // (the local entries' follower, the pipeline's policy check).
        s.spawn(|| {
            let mut k = 0;
            while swapping.load(Ordering::SeqCst) {
                source.set_local((k..k + 3).map(local).collect());
                k += 1;
            }
        });
        s.spawn(|| {
            let mut on = false;
            while swapping.load(Ordering::SeqCst) {
                on = !on;
                source.set_excluded(if on { vec![TOGGLED] } else { Vec::new() });
                std::thread::yield_now();
            }
        });
        let rx = source.watch();
        let (mut misses, mut went_back, mut reads, mut newest) = (Vec::new(), 0, 0, 1);
        let mut round = 0;
        while swapping.load(Ordering::SeqCst) {
            for p in both.iter().skip(round % 7).step_by(7).take(50) {
                let m = rx.borrow().clone();
                let held = numbers(&m);
                match held.as_slice() {
                    [n] if *n < newest => went_back += 1,
                    [n] => newest = *n,
                    _ => {}
                }
                reads += 1;
                if !hits(&m, p) {
                    misses.push((p.clone(), held));
                }
            }
            round += 1;
        }
        (misses, went_back, reads)
    });
    assert!(reads > 0);
    assert!(
        misses.is_empty(),
        "{} of {reads} reads missed a plate listed in every generation: {:?}",
        misses.len(),
        &misses[..misses.len().min(5)]
    );
    assert_eq!(
        went_back, 0,
        "a read was matched against an older generation than one before it"
    );

    // Once the swaps stop, the node matches the newest generation (given
    // time for the last rebuild; a lost update never gets there).
    let limit = Instant::now() + Duration::from_secs(30);
    while numbers(&source.current()) != [LAST] && Instant::now() < limit {
        std::thread::sleep(Duration::from_millis(10));
    }
    let now = source.current();
    assert_eq!(numbers(&now), [LAST], "the newest generation is in force");
    let only_last = rows(LAST)
        .iter()
        .find(|e| e.category != TOGGLED && !rows(LAST - 1).iter().any(|o| o.plate == e.plate))
        .expect("a row of the last generation only");
    assert!(hits(&now, &only_last.plate));
    cancel.cancel();
}
