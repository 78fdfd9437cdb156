//! An edge killed (-9) again and again while it recognises and stores real
//! photos ends with exactly the reads an uninterrupted run makes: every
//! photo's plates once, none lost, none twice, each read it reported in the
//! log at the entry it reported, from the photo (frame) it reported, and a
//! log that verifies from the CA.
//!
//! Most kills land right after a "read stored" log line, that is right after
//! a store commit — where a node that keeps its position apart from its
//! reads has stored a read but not yet moved past its photo. The others land
//! at a random moment. The seed is printed; `CRASH_SEED=N` replays a run.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use alpr_e2e::story::{frames_done, parse_read, LoggedRead};
use alpr_e2e::{bin, free_udp_port, wait_for, Edge, EdgeOptions, Pki, MIN_CONFIDENCE};
use alpr_shared::crypto::sha256;
use alpr_shared::log::verify::VerifyOptions;
use alpr_shared::log::verify_log;
use alpr_shared::types::{DeviceKind, Hash32};

const LIMIT: Duration = Duration::from_secs(180);

/// Reads the edge reported durable so far, in log order.
fn reported(log: &str) -> Vec<LoggedRead> {
    log.lines().filter_map(parse_read).collect()
}

/// xorshift64*: enough randomness for kill timing, replayable from a seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What an uninterrupted recognition of each photo finds: (file, plate) →
/// count, and the plates too close to the confidence threshold to insist on.
type Expected = (BTreeMap<(String, String), usize>, Vec<(String, String)>);

fn reference(photos: &std::path::Path, models: &std::path::Path) -> anyhow::Result<Expected> {
    let out = std::process::Command::new(bin("edge")?)
        .args(["recognize", "--json", "--workers", "1", "--models"])
        .arg(models)
        .arg(photos)
        .env("NO_COLOR", "1")
        .output()?;
    anyhow::ensure!(out.status.success(), "edge recognize failed: {out:?}");
    let mut want = BTreeMap::new();
    let mut borderline = Vec::new();
    for line in String::from_utf8(out.stdout)?.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let file = std::path::Path::new(v["file"].as_str().unwrap_or_default())
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        for p in v["plates"].as_array().into_iter().flatten() {
            let text = p["text"].as_str().unwrap_or_default().to_owned();
            let conf = p["confidence"].as_f64().unwrap_or_default();
            if (conf - MIN_CONFIDENCE).abs() < 0.001 {
                borderline.push((file.clone(), text));
            } else if conf >= MIN_CONFIDENCE {
                *want.entry((file.clone(), text)).or_insert(0) += 1;
            }
        }
    }
    Ok((want, borderline))
}

#[test]
fn a_killed_edge_reads_every_photo_once() -> anyhow::Result<()> {
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    let models = shared.join("models").canonicalize()?;
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    eprintln!("edge_crash seed {seed} (CRASH_SEED={seed} replays this run)");
    let mut rng = Rng(seed);

    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let node = pki.node_of_kind("pole-9", DeviceKind::Pole)?;
    let photos = dir.path().join("photos");
    std::fs::create_dir_all(&photos)?;
    let mut names: Vec<_> = std::fs::read_dir(shared.join("data/plates/us"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
        .collect();
    names.sort();
    let total = 24;
    // Each photo is known by its bytes: a read's overview hash names it.
    let mut photo_of: HashMap<Hash32, String> = HashMap::new();
    for p in names.iter().take(total) {
        let name = p.file_name().expect("name").to_string_lossy().into_owned();
        let bytes = std::fs::read(p)?;
        photo_of.insert(sha256(&bytes), name.clone());
        std::fs::write(photos.join(&name), bytes)?;
    }
    anyhow::ensure!(photo_of.len() == total, "two photos with the same bytes");
    let (want, borderline) = reference(&photos, &models)?;
    let want_reads: usize = want.values().sum();
    anyhow::ensure!(
        want_reads >= total / 2,
        "the reference read only {want_reads} plates"
    );

    // No hub: the node works offline and must still keep what it reads.
    let nowhere = ([127, 0, 0, 1], free_udp_port()?).into();
    let opts = EdgeOptions {
        generate: 0,
        extra_toml: format!(
            // Paced like a camera, so that kills land while photos remain
            // however fast this machine recognises them.
            "\n[capture]\npaths = [{photos:?}]\nmodels_dir = {models:?}\nsite_id = \"test-site\"\ninterval = \"250ms\"\n",
        ),
        ..EdgeOptions::default()
    };
    let mut edge = Edge::start(&node, nowhere, dir.path(), &opts)?;

    let started = Instant::now();
    let mut kills = 0;
    let mut after_commit = 0;
    while kills < 10 {
        let seen = reported(&edge.proc.log_text()).len();
        if rng.below(4) == 0 {
            // Anywhere: while loading the models, recognising, committing.
            std::thread::sleep(Duration::from_millis(300 + rng.below(1500)));
        } else {
            // Right after a commit: poll the log for the next read's line.
            let deadline = Instant::now() + LIMIT;
            while reported(&edge.proc.log_text()).len() <= seen
                && frames_done(&edge.proc.log_text()).is_none()
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_micros(rng.below(3) * 500));
            after_commit += 1;
        }
        if frames_done(&edge.proc.log_text()).is_some() {
            break;
        }
        edge.proc.kill9();
        kills += 1;
        edge.proc.start()?;
    }
    eprintln!(
        "{kills} kills ({after_commit} right after a commit) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let done = wait_for(LIMIT, "the replay to finish", || {
        frames_done(&edge.proc.log_text())
    })?;
    assert_eq!(
        done, total as u64,
        "the replay did not go on where it stopped"
    );
    edge.proc.stop()?;
    assert!(
        kills >= 5,
        "only {kills} kills landed before the replay ended"
    );

    let entries = edge.stored_entries()?;
    let report = verify_log(
        &pki.device_cert(&node)?,
        &entries,
        &[],
        VerifyOptions { from_start: true },
    );
    assert!(
        report.authentic(),
        "faults after kill -9: {:?}",
        report.faults
    );

    // What the log holds, by photo and plate.
    let mut held: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut by_seq = Vec::new();
    for e in &entries {
        let r = e.read().expect("every entry is a read");
        let photo = photo_of
            .get(&r.overview_hash)
            .cloned()
            .unwrap_or_else(|| format!("unknown photo {}", r.overview_hash));
        *held.entry((photo.clone(), r.plate.clone())).or_insert(0) += 1;
        by_seq.push((photo, r.plate.clone()));
    }
    // Every read the node reported is in the log where it said, from the
    // photo it was read from (a lost read whose number was reused fails
    // here): frame N is the node's N-th photo in its replay order.
    let order: Vec<String> = alpr_edge::capture::ImageReplay::open(std::slice::from_ref(&photos))?
        .paths()
        .filter_map(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
        .collect();
    for r in reported(&edge.proc.log_text()) {
        assert_eq!(
            by_seq.get(r.entry as usize).map(|(photo, _)| photo),
            order.get(r.frame as usize),
            "reported read {r} is not in the log at entry {}",
            r.entry
        );
    }
    let mut problems = Vec::new();
    for (key, n) in &held {
        let expected = want.get(key).copied().unwrap_or(0);
        let optional = borderline.contains(key);
        if *n > expected.max(usize::from(optional)) {
            problems.push(format!(
                "{} read {n} times from {} (an uninterrupted run reads it {expected} times)",
                key.1, key.0
            ));
        }
    }
    for (key, n) in &want {
        let got = held.get(key).copied().unwrap_or(0);
        if got < *n {
            problems.push(format!(
                "{} from {} lost ({got} of {n} stored)",
                key.1, key.0
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "seed {seed}: {} entries for {want_reads} reads of {total} photos:\n{}",
        entries.len(),
        problems.join("\n")
    );
    assert!(
        entries.len() >= want_reads && entries.len() <= want_reads + borderline.len(),
        "{} entries for {want_reads} reads",
        entries.len()
    );
    Ok(())
}
