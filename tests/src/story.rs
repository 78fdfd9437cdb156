//! The newcomer's story, as one function: a hub and two edges (a fixed pole
//! and a patrol vehicle) on loopback, a deployment CA made on the spot, real
//! photos replayed as their cameras; reads flow to the hub; the vehicle
//! loses its link, reads plates offline, and catches up; an operator's
//! hotlists raise an alert in the car that an officer verifies in stages;
//! `hub nodes`; and a final `hub audit verify` of every node log the hub
//! holds.
//!
//! `just demo` runs it with output for people (the `demo` binary); the
//! story test runs it quietly and asserts on the [`Outcome`].

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::relay::{LinkModel, Relay};
use crate::{bin, wait_for, Edge, EdgeOptions, Hub, Pki};

/// What to run the story on.
#[derive(Debug, Clone)]
pub struct StoryOptions {
    /// Folder of plate photos (`*.jpg`), split between the two cameras.
    pub photos: PathBuf,
    /// The plate models.
    pub models: PathBuf,
    /// Where everything goes; left in place at the end.
    pub out: PathBuf,
    /// At most this many photos in all (0: all).
    pub limit: usize,
    /// Pause between the vehicle's frames (so it is still driving when the
    /// link drops).
    pub vehicle_interval: Duration,
    /// Print the story for people.
    pub verbose: bool,
    /// At the end, start the hub again and keep it (and its web console)
    /// up until Ctrl-C.
    pub serve: bool,
}

/// The officer of the story.
pub const OFFICER: &str = "ofc-garcia";
/// The supervisor who holds and exports the case.
pub const SUPERVISOR: &str = "sgt-lee";
/// The case.
pub const CASE: &str = "26-004711";
/// The operator who imports and keeps the hotlists.
pub const OPERATOR: &str = "op-nguyen";

/// What happened to one node.
#[derive(Debug, Clone, Default)]
pub struct NodeOutcome {
    pub name: String,
    pub photos: usize,
    /// Frames the node finished (read or skipped).
    pub frames: u64,
    /// The reads the node logged (entry, confidence, frame), in order.
    pub reads: Vec<String>,
    /// Reads made while the link was cut.
    pub offline_reads: usize,
    /// The node's log size and what the hub acknowledged, at the end.
    pub log_size: u64,
    /// Read entries in the node's own log (the rest are its alerts,
    /// dispositions and officers' accesses).
    pub log_reads: usize,
    pub acked: u64,
}

/// The whole story's result.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub nodes: Vec<NodeOutcome>,
    /// `hub user list` as the administrator printed it, once the officer
    /// was added.
    pub users: String,
    /// The plate the officer searched for, `hub search` as printed, and
    /// whether it succeeded.
    pub searched_plate: String,
    pub search: String,
    pub search_ok: bool,
    /// The same search without a case number, for a purpose that needs
    /// one: the hub's refusal.
    pub refused_search: String,
    pub refused_search_ok: bool,
    /// `hub audit access --plate PLATE` as the auditor printed it.
    pub access_audit: String,
    /// The supervisor's `hub hold add` of the case, and whether it worked.
    pub hold: String,
    pub hold_ok: bool,
    /// `hub retention run` as printed.
    pub retention: String,
    /// An export of the case to a federal agency: refused, as printed.
    pub federal_export: String,
    pub federal_export_ok: bool,
    /// The export of the case to the county DA, `hub verify` of the
    /// bundle as printed, and whether both succeeded.
    pub export: String,
    pub export_ok: bool,
    pub evidence_verify: String,
    pub evidence_ok: bool,
    /// The bundle's HTML report, as written beside it.
    pub report_html: String,
    /// `hub nodes` as printed.
    pub hub_nodes: String,
    /// `hub audit verify` as printed, and whether it passed.
    pub audit: String,
    pub audit_ok: bool,
    /// `hub verify` of the exported bundle, as printed, and its result.
    pub offline: String,
    pub offline_ok: bool,
    /// After an orderly stop: for each node, whether the hub's stored copy
    /// equals the node's own log, entry for entry.
    pub hub_matches_edge: Vec<(String, bool)>,
    /// The hotlists: the import report, the local entry added, the plates
    /// listed from the car's photos.
    pub import: String,
    pub import_ok: bool,
    pub local_add_ok: bool,
    pub listed: Vec<String>,
    /// The car's alert as the officer saw it (`edge alert show`), the
    /// three disposition stages, and `hub alerts` once they synced.
    pub alert_show: String,
    pub dispositions_ok: bool,
    pub hub_alerts: String,
    /// pole-2's live RTSP camera: what it read against the video's truth.
    pub camera: String,
    pub camera_ok: bool,
    pub out: PathBuf,
}

struct Say {
    verbose: bool,
    step: usize,
    steps: usize,
}

impl Say {
    fn step(&mut self, what: &str) {
        self.step += 1;
        if self.verbose {
            println!("\n[{}/{}] {what}", self.step, self.steps);
        }
    }
    fn line(&self, what: &str) {
        if self.verbose {
            println!("      {what}");
        }
    }
}

/// Follows an edge's log and collects (and prints) its reads.
struct Follower {
    reads: Arc<Mutex<Vec<LoggedRead>>>,
    offline_mark: Arc<Mutex<Option<usize>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Follower {
    fn start(name: &str, log: PathBuf, verbose: bool) -> Follower {
        let reads = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s, name) = (reads.clone(), stop.clone(), name.to_owned());
        let offline_mark = Arc::new(Mutex::new(None::<usize>));
        let offline = offline_mark.clone();
        let thread = std::thread::spawn(move || {
            let mut pos = 0u64;
            let mut partial = String::new();
            while !s.load(Ordering::Relaxed) {
                if let Ok(mut f) = std::fs::File::open(&log) {
                    if f.seek(SeekFrom::Start(pos)).is_ok() {
                        let mut rd = BufReader::new(f);
                        let mut line = String::new();
                        while rd.read_line(&mut line).unwrap_or(0) > 0 {
                            pos += line.len() as u64;
                            if !line.ends_with('\n') {
                                partial.push_str(&line);
                                line.clear();
                                continue;
                            }
                            partial.push_str(&line);
                            if let Some(read) = parse_read(&partial) {
                                let cut = offline.lock().map(|m| m.is_some()).unwrap_or(false);
                                if verbose {
                                    let tag = if cut { "  (offline)" } else { "" };
                                    println!("      {name:<7} {read}{tag}");
                                }
                                if let Ok(mut v) = r.lock() {
                                    v.push(read);
                                }
                            }
                            partial.clear();
                            line.clear();
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Follower {
            reads,
            offline_mark,
            stop,
            thread: Some(thread),
        }
    }

    fn count(&self) -> usize {
        self.reads.lock().map(|v| v.len()).unwrap_or(0)
    }

    fn mark_offline(&self, on: bool) {
        if let Ok(mut m) = self.offline_mark.lock() {
            *m = on.then(|| self.count());
        }
    }

    fn first(&self) -> Option<LoggedRead> {
        self.reads.lock().ok()?.first().cloned()
    }

    fn finish(mut self) -> Vec<String> {
        std::thread::sleep(Duration::from_millis(250));
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.reads
            .lock()
            .map(|v| v.iter().map(LoggedRead::to_string).collect())
            .unwrap_or_default()
    }
}

/// One read as the edge logs it once it is durably stored, without its
/// plate or place (no log line names them): `… read stored entry=3
/// frame=5 confidence=97.1% time_source=ntp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRead {
    /// Its sequence number in the node's log.
    pub entry: u64,
    /// The frame it was read from: its position in the source (for a
    /// replay of photos, in `ImageReplay`'s order).
    pub frame: u64,
    pub confidence: String,
}

impl std::fmt::Display for LoggedRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "entry {:<4} {:>6}  from frame {}",
            self.entry, self.confidence, self.frame
        )
    }
}

/// The read an edge log line reports, if it reports one.
pub fn parse_read(line: &str) -> Option<LoggedRead> {
    let clean: String = strip_ansi(line);
    let rest = &clean[clean.find("read stored")? + "read stored".len()..];
    let field = |k: &str| {
        rest.split_whitespace()
            .find_map(|t| t.strip_prefix(&format!("{k}=")).map(str::to_owned))
    };
    Some(LoggedRead {
        entry: field("entry")?.parse().ok()?,
        frame: field("frame")?.parse().ok()?,
        confidence: field("confidence").unwrap_or_default(),
    })
}

/// The photo a node replaying the photos in `dir` read at `frame` (the
/// node's own replay order).
pub fn replayed_photo(dir: &Path, frame: u64) -> anyhow::Result<PathBuf> {
    let replay = alpr_edge::capture::ImageReplay::open(&[dir.to_path_buf()])?;
    let path = replay
        .paths()
        .nth(usize::try_from(frame)?)
        .with_context(|| format!("no frame {frame} in {}", dir.display()))?;
    Ok(path.to_path_buf())
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Frames an edge has finished, from its last `capture finished` log line.
pub fn frames_done(log: &str) -> Option<u64> {
    let clean = strip_ansi(log);
    let line = clean
        .lines()
        .rev()
        .find(|l| l.contains("capture finished"))?;
    line.split_whitespace()
        .find_map(|t| t.strip_prefix("frames="))
        .and_then(|v| v.parse().ok())
}

fn link_photos(photos: &[PathBuf], dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    for p in photos {
        let name = p.file_name().context("photo without a name")?;
        let dest = dir.join(name);
        if !dest.exists() {
            std::fs::copy(p, &dest).with_context(|| format!("copying {}", p.display()))?;
        }
    }
    Ok(())
}

/// Run a command for its JSON on stdout.
fn run_json(cmd: &mut Command) -> anyhow::Result<Vec<serde_json::Value>> {
    let out = cmd.env("NO_COLOR", "1").output()?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn run_cmd(cmd: &mut Command) -> anyhow::Result<(bool, String)> {
    let out = cmd.env("NO_COLOR", "1").output()?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text))
}

/// Run the story. Every wait has a generous limit so that a broken build
/// fails instead of hanging.
pub fn run(opts: &StoryOptions) -> anyhow::Result<Outcome> {
    let mut say = Say {
        verbose: opts.verbose,
        step: 0,
        steps: 14,
    };
    let started = Instant::now();
    std::fs::create_dir_all(&opts.out)?;
    let out = opts.out.canonicalize()?;
    if opts.verbose {
        println!("ALPR demo: a hub, a fixed pole camera and a patrol car, on loopback.");
        println!("Everything it makes goes to {}", out.display());
    }

    let mut photos: Vec<PathBuf> = std::fs::read_dir(&opts.photos)
        .with_context(|| format!("listing {}", opts.photos.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("jpg")))
        .collect();
    photos.sort();
    if opts.limit > 0 {
        photos.truncate(opts.limit);
    }
    anyhow::ensure!(
        photos.len() >= 8,
        "need at least 8 photos in {}",
        opts.photos.display()
    );
    let half = photos.len() / 2;
    let (pole_photos, car_photos) = photos.split_at(half);

    say.step("deployment CA and node certificates, made on the spot");
    let pki = Pki::create_in(&out.join("pki"))?;
    let pole = pki.node_of_kind("pole-1", alpr_shared::types::DeviceKind::Pole)?;
    let car = pki.node_of_kind("car-7", alpr_shared::types::DeviceKind::Vehicle)?;
    say.line(&format!("CA: {}", pki.ca_cert().display()));
    say.line("pole-1: fixed pole camera at main-st-north");
    say.line("car-7:  patrol vehicle (its link goes through a relay we can cut)");

    say.step("hub starts");
    // The HTTPS port gets a certificate browsers can use (ECDSA; they
    // refuse the deployment's Ed25519 keys), for the console.
    let console = crate::browser::console_toml(&pki)?;
    let hub = Hub::start_with(&pki, &out, &[], &format!("{console}{HOTLIST_SOURCES}"))?;
    say.line(&format!("hub listening on {} (QUIC, mutual TLS)", hub.addr));
    let relay = Relay::start(hub.addr, LinkModel::default(), 7)?;

    say.step("people: an administrator, users with training records");
    say.line(&format!(
        "people use the hub's HTTPS API at {} (`hub login`); nodes use QUIC only",
        hub.api
    ));
    say.line("`hub bootstrap` made the first administrator, `admin`, once, on the hub's machine");
    hub.add_user(OFFICER, "officer", crate::TRAINED)?;
    hub.login(OFFICER)?;
    let (_, users) = run_cmd(hub.as_user("admin")?.args(["user", "list"]))?;
    for l in users.lines() {
        say.line(l);
    }

    say.step("hotlists: the operator imports the state's stolen-vehicle extract and adds a partial plate");
    hub.add_user(OPERATOR, "operator", crate::TRAINED)?;
    hub.login(OPERATOR)?;
    // The cars some of car-7's photos show are on the list (by the plate
    // their photos' ground truth gives), among 20,000 generated rows.
    let listed: Vec<String> = car_photos
        .iter()
        .skip(car_photos.len() / 2)
        .take(4)
        .filter_map(|p| ground_truth(p))
        .collect();
    anyhow::ensure!(!listed.is_empty(), "no ground truth beside car-7's photos");
    let extract = out.join("ncic-extract.txt");
    let mut sample = Command::new(bin("hub")?);
    sample
        .args(["hotlist", "sample", "--format", "ncic", "--rows", "20000"])
        .arg(&extract);
    for p in &listed {
        sample.args(["--plant", p]);
    }
    let (ok, text) = run_cmd(&mut sample)?;
    anyhow::ensure!(ok, "hub hotlist sample: {text}");
    let (import_ok, import) = run_cmd(
        hub.as_user(OPERATOR)?
            .args(["hotlist", "import"])
            .arg(&extract)
            .args(["--source", "ca-svs", "--format", "ncic"]),
    )?;
    say.line("$ hub hotlist import ncic-extract.txt --source ca-svs --format ncic");
    for l in import.lines() {
        say.line(&format!("  {l}"));
    }
    // A partial plate from a witness: the pole's first car, first three
    // characters.
    let partial = pole_photos
        .first()
        .and_then(|p| ground_truth(p))
        .map(|p| format!("{}*", &p[..3.min(p.len())]))
        .context("no ground truth beside pole-1's photos")?;
    let (local_add_ok, local_add) = run_cmd(hub.as_user(OPERATOR)?.args([
        "hotlist",
        "add",
        &partial,
        "--reason",
        "hit and run, witness saw part of the plate",
        "--case",
        CASE,
        "--expires",
        "14d",
    ]))?;
    say.line(&format!(
        "$ hub hotlist add '{partial}' --reason \"hit and run, witness saw part of the plate\" --case {CASE} --expires 14d"
    ));
    for l in local_add.lines() {
        say.line(&format!("  {l}"));
    }

    say.step("edges read plates from their cameras (replayed photos) and sync");
    link_photos(pole_photos, &out.join("photos/pole-1"))?;
    link_photos(car_photos, &out.join("photos/car-7"))?;
    let models = opts
        .models
        .canonicalize()
        .with_context(|| format!("models directory {}", opts.models.display()))?;
    let capture = |dir: &Path, interval: Duration, place: &str| {
        format!(
            "\n[capture]\npaths = [{:?}]\nmodels_dir = {:?}\ninterval = \"{}ms\"\n{place}\n",
            dir,
            models,
            interval.as_millis()
        )
    };
    let pole_opts = EdgeOptions {
        generate: 0,
        extra_toml: capture(
            &out.join("photos/pole-1"),
            Duration::from_millis(100),
            "site_id = \"main-st-north\"",
        ),
        ..EdgeOptions::default()
    };
    let car_opts = EdgeOptions {
        generate: 0,
        metered: true,
        extra_toml: capture(
            &out.join("photos/car-7"),
            opts.vehicle_interval,
            "gps = { lat = 38.5816, lon = -121.4944, accuracy_m = 4.0 }",
        ),
        ..EdgeOptions::default()
    };
    let pole_edge = Edge::start(&pole, hub.addr, &out, &pole_opts)?;
    let car_edge = Edge::start(&car, relay.addr, &out, &car_opts)?;
    let pole_f = Follower::start("pole-1", pole_edge.proc.log.clone(), opts.verbose);
    let car_f = Follower::start("car-7", car_edge.proc.log.clone(), opts.verbose);
    let limit = Duration::from_secs(300);
    let edges = [&pole_edge, &car_edge];
    // Wait for `f`, failing at once if an edge process died.
    let wait = |what: &str, f: &mut dyn FnMut() -> Option<()>| -> anyhow::Result<()> {
        wait_for(limit, what, || {
            if edges.iter().any(|e| !e.proc.is_running()) {
                return Some(());
            }
            f()
        })?;
        for e in edges {
            anyhow::ensure!(
                e.proc.is_running(),
                "an edge stopped while waiting for {what}:\n{}",
                e.proc.log_tail(5)
            );
        }
        Ok(())
    };

    // Let the car read and sync a third of its photos before the link drops.
    let before = (car_photos.len() / 3).max(2);
    wait("the car's first reads", &mut || {
        (car_f.count() >= before).then_some(())
    })?;
    let n = car_f.count() as u64;
    wait("the car's first reads at the hub", &mut || {
        let s = car_edge.status()?;
        (s["acked"].as_u64()? >= n).then_some(())
    })?;

    say.step("car-7 drives out of coverage: its link is cut");
    relay.set_outage(true);
    car_f.mark_offline(true);
    let at_cut = car_f.count();
    // Until the car has noticed the link is gone and read a few plates
    // without it (or run out of photos).
    wait("reads made offline", &mut || {
        let s = car_edge.status()?;
        let noticed = s["link"].as_str() != Some("connected");
        let done = frames_done(&car_edge.proc.log_text()).is_some();
        (noticed && (car_f.count() >= at_cut + 5 || done)).then_some(())
    })?;
    let offline = car_edge.status().context("car-7 status")?;
    say.line(&format!(
        "car-7 read {} plates offline; {} reads wait for the hub (link: {})",
        car_f.count() - at_cut,
        offline["backlog"],
        offline["link"].as_str().unwrap_or("?")
    ));

    say.step("car-7 is back in coverage and catches up");
    relay.set_outage(false);
    car_f.mark_offline(false);
    let offline_reads = car_f.count() - at_cut;
    for (edge, photos, name) in [
        (&car_edge, car_photos.len(), "car-7"),
        (&pole_edge, pole_photos.len(), "pole-1"),
    ] {
        wait(&format!("{name} to finish its photos"), &mut || {
            frames_done(&edge.proc.log_text()).map(|_| ())
        })?;
        let frames = frames_done(&edge.proc.log_text()).unwrap_or(0);
        anyhow::ensure!(
            frames as usize == photos,
            "{name} finished {frames} of {photos} photos"
        );
        let s = wait_for(limit, &format!("{name} fully acknowledged"), || {
            let s = edge.status()?;
            (s["acked"] == s["log_size"]).then_some(s)
        })?;
        say.line(&format!(
            "{name}: all {} reads acknowledged by the hub",
            s["log_size"]
        ));
    }

    say.step("pole-2 watches a live IP camera: H.264 over RTSP, one read per vehicle pass");
    let (camera, camera_ok) = live_camera_pole(&pki, &hub, &out, &models, &say)?;

    say.step("an alert in car-7: the officer verifies it before acting (policy 426.3(f))");
    let alert_line = wait_for(limit, "car-7's alert", || {
        car_edge
            .proc
            .log_text()
            .lines()
            .find(|l| l.contains("ALERT"))
            .map(str::to_owned)
    })?;
    say.line(&format!("car-7: {}", alert_line.trim()));
    let car_cmd = |args: &[&str]| -> anyhow::Result<Command> {
        let mut c = Command::new(bin("edge")?);
        c.args(args)
            .arg("--config")
            .arg(&car_edge.config)
            .env("ALPR_PASSWORD", crate::password_of(OFFICER));
        Ok(c)
    };
    let edge_cmd =
        |args: &[&str]| -> anyhow::Result<(bool, String)> { run_cmd(&mut car_cmd(args)?) };
    let (ok, text) = edge_cmd(&["login", "--user", OFFICER])?;
    anyhow::ensure!(ok, "edge login: {text}");
    say.line(&format!(
        "$ edge login --user {OFFICER}        (offline-capable, against policy)"
    ));
    let (ok, text) = edge_cmd(&["alerts"])?;
    anyhow::ensure!(ok, "edge alerts: {text}");
    say.line("$ edge alerts");
    for l in text.lines() {
        say.line(&format!("  {l}"));
    }
    let alerts: Vec<serde_json::Value> = run_json(&mut car_cmd(&["alerts", "--json"])?)?;
    let id = alerts
        .iter()
        .find(|a| a["open"] == true)
        .and_then(|a| a["id"].as_u64())
        .context("no open alert in car-7")?
        .to_string();
    let (show_ok, alert_show) = edge_cmd(&["alert", "show", &id])?;
    anyhow::ensure!(show_ok, "edge alert show: {alert_show}");
    say.line(&format!("$ edge alert show {id}"));
    for l in alert_show.lines() {
        say.line(&format!("  {l}"));
    }
    let mut dispositions_ok = true;
    for stage in [
        ["--read", "correct"],
        ["--status", "active"],
        ["--action", "stop"],
    ] {
        let (ok, text) = edge_cmd(&[
            "alert",
            "dispose",
            &id,
            stage[0],
            stage[1],
            "--note",
            "checked with the state system by radio",
        ])?;
        say.line(&format!(
            "$ edge alert dispose {id} {} {}",
            stage[0], stage[1]
        ));
        for l in text.lines() {
            say.line(&format!("  {l}"));
        }
        dispositions_ok &= ok;
    }
    // The dispositions are entries of car-7's log: once at the hub, the
    // hub's alerts show them.
    let hub_alerts = wait_for(limit, "the dispositions at the hub", || {
        let v: Vec<serde_json::Value> =
            run_json(hub.as_user(OFFICER).ok()?.args(["alerts", "--json"])).ok()?;
        v.iter()
            .any(|a| {
                a["node"] == "car-7" && a["dispositions"].as_array().is_some_and(|d| d.len() == 3)
            })
            .then_some(())
    })
    .and_then(|()| run_cmd(hub.as_user(OFFICER)?.args(["alerts"])))
    .map(|(_, t)| t)?;
    say.line("$ hub alerts");
    for l in hub_alerts.lines() {
        say.line(&format!("  {l}"));
    }

    say.step("hub nodes");
    let (_, hub_nodes) = run_cmd(hub.as_user("auditor")?.args(["nodes"]))?;
    for l in hub_nodes.lines() {
        say.line(l);
    }

    // An officer looks for a plate the pole read, for a stated purpose:
    // the plate of the photo of its first read (no log line names it).
    let first = pole_f.first().context("the pole read no plate")?;
    let photo = replayed_photo(&out.join("photos/pole-1"), first.frame)?;
    let searched_plate = crate::recognised(&photo)?
        .into_iter()
        .find(|r| r.confidence >= crate::MIN_CONFIDENCE)
        .map(|r| r.text)
        .with_context(|| format!("{} reads no plate", photo.display()))?;
    say.step("an officer searches the hub for a plate: purpose and case number required");
    let (refused_search_ok, refused_search) =
        run_cmd(
            hub.as_user(OFFICER)?
                .args(["search", &searched_plate, "--purpose", "robbery"]),
        )?;
    say.line(&format!(
        "$ hub search {searched_plate} --purpose robbery        (no case number)"
    ));
    for l in refused_search.lines() {
        say.line(&format!("  {l}"));
    }
    let (search_ok, search) = run_cmd(hub.as_user(OFFICER)?.args([
        "search",
        &searched_plate,
        "--purpose",
        "robbery",
        "--case",
        "26-004711",
    ]))?;
    say.line(&format!(
        "$ hub search {searched_plate} --purpose robbery --case 26-004711"
    ));
    for l in search.lines() {
        say.line(&format!("  {l}"));
    }

    say.step("the auditor: who searched for this plate, when, and why");
    let (_, access_audit) =
        run_cmd(
            hub.as_user("auditor")?
                .args(["audit", "access", "--plate", &searched_plate]),
        )?;
    say.line(&format!("$ hub audit access --plate {searched_plate}"));
    for l in access_audit.lines() {
        say.line(&format!("  {l}"));
    }

    say.step("evidence: a supervisor holds the case; retention runs; the case goes to the DA");
    let agencies = out.join("agencies.toml");
    std::fs::write(
        &agencies,
        "[[agencies]]\nori = \"CA0340000\"\nname = \"Sacramento County District Attorney\"\nkind = \"in-state-public\"\n\n\
         [[agencies]]\nori = \"DCFBI0000\"\nname = \"Federal Bureau of Investigation\"\nkind = \"federal\"\n",
    )?;
    let (ok, text) = run_cmd(hub.as_user("admin")?.args(["policy", "set"]).arg(&agencies))?;
    anyhow::ensure!(ok, "hub policy set: {text}");
    say.line("the administrator lists the agencies that may receive evidence (policy set)");
    hub.add_user(SUPERVISOR, "supervisor", crate::TRAINED)?;
    hub.login(SUPERVISOR)?;
    let (hold_ok, hold) = run_cmd(hub.as_user(SUPERVISOR)?.args([
        "hold",
        "add",
        "--case",
        CASE,
        "--reason",
        "robbery at 5th and Main",
        "--plate",
        &searched_plate,
    ]))?;
    say.line(&format!(
        "$ hub hold add --case {CASE} --reason \"robbery at 5th and Main\" --plate {searched_plate}"
    ));
    for l in hold.lines() {
        say.line(&format!("  {l}"));
    }
    let (_, retention) = run_cmd(hub.as_user("admin")?.args(["retention", "run"]))?;
    say.line("$ hub retention run");
    for l in retention.lines() {
        say.line(&format!("  {l}"));
    }
    let bundle = out.join(format!("evidence-{CASE}.bundle"));
    let export_to = |to: &str| -> anyhow::Result<(bool, String)> {
        run_cmd(
            hub.as_user(SUPERVISOR)?
                .args([
                    "export",
                    "--case",
                    CASE,
                    "--to",
                    to,
                    "--purpose",
                    "robbery",
                    "--out",
                ])
                .arg(&bundle),
        )
    };
    let (federal_export_ok, federal_export) = export_to("DCFBI0000")?;
    say.line(&format!(
        "$ hub export --case {CASE} --to DCFBI0000 …   (a federal agency)"
    ));
    for l in federal_export.lines() {
        say.line(&format!("  {l}"));
    }
    // The node's next checkpoint must cover the read, and its photos be
    // at the hub: retry a little while they arrive.
    let mut exported = export_to("CA0340000")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !exported.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        exported = export_to("CA0340000")?;
    }
    let (export_ok, export) = exported;
    say.line(&format!(
        "$ hub export --case {CASE} --to CA0340000 --out {}",
        bundle.display()
    ));
    for l in export.lines() {
        say.line(&format!("  {l}"));
    }
    let (evidence_ok, evidence_verify) = run_cmd(
        Command::new(bin("hub")?)
            .args(["verify", "--ca"])
            .arg(pki.ca_cert())
            .arg(&bundle),
    )?;
    say.line("$ hub verify --ca ca.crt (offline, on another machine)");
    for l in evidence_verify.lines() {
        say.line(&format!("  {l}"));
    }
    let html = {
        let mut p = bundle.as_os_str().to_owned();
        p.push(".html");
        PathBuf::from(p)
    };
    let report_html = std::fs::read_to_string(&html).unwrap_or_default();
    say.line(&format!(
        "the court's report: {} ({} KB; open it in a browser)",
        html.display(),
        report_html.len() / 1024
    ));

    say.step("hub audit verify: every node log at the hub, checked from the CA certificate alone");
    let evidence = out.join("evidence.bundle");
    let (audit_ok, audit) = run_cmd(
        hub.as_user("auditor")?
            .args(["audit", "verify", "--export"])
            .arg(&evidence),
    )?;
    for l in audit.lines() {
        say.line(l);
    }
    if audit.contains("MISSING IMAGES: car-7") {
        say.line(
            "(car-7 is on a metered link: its photos wait in the car until it has Wi-Fi, \
             so the hub lists them as missing; its reads are all there and verify)",
        );
    }
    // The same logs, exported, verify on their own with only the CA.
    let (offline_ok, offline) = run_cmd(
        Command::new(bin("hub")?)
            .args(["verify", "--ca"])
            .arg(pki.ca_cert())
            .arg(&evidence),
    )?;
    say.line(&format!(
        "exported to {}; `hub verify --ca ca.crt` on it, offline: {}",
        evidence.display(),
        if offline_ok { "AUTHENTIC" } else { "FAILED" }
    ));

    let mut nodes = Vec::new();
    for (edge, follower, photos, name, off) in [
        (&pole_edge, pole_f, pole_photos.len(), "pole-1", 0),
        (&car_edge, car_f, car_photos.len(), "car-7", offline_reads),
    ] {
        let s = edge.status().context("status")?;
        nodes.push(NodeOutcome {
            // Counted once the node has stopped (its store is its own).
            log_reads: 0,
            name: name.into(),
            photos,
            frames: frames_done(&edge.proc.log_text()).unwrap_or(0),
            reads: follower.finish(),
            offline_reads: off,
            log_size: s["log_size"].as_u64().unwrap_or(0),
            acked: s["acked"].as_u64().unwrap_or(0),
        });
    }
    // Stop everything in order, then compare the hub's copy with each log.
    let (mut pole_edge, mut car_edge, mut hub) = (pole_edge, car_edge, hub);
    pole_edge.proc.stop()?;
    car_edge.proc.stop()?;
    hub.proc.stop()?;
    drop(relay);
    let mut hub_matches_edge = Vec::new();
    for (edge, name) in [(&pole_edge, "pole-1"), (&car_edge, "car-7")] {
        let entries = edge.stored_entries()?;
        let reads = entries
            .iter()
            .filter(|e| matches!(e.header.kind, alpr_shared::log::EntryKind::Read { .. }))
            .count();
        if let Some(n) = nodes.iter_mut().find(|n| n.name == name) {
            n.log_reads = reads;
        }
        let same = entries == hub.stored_entries(name)?;
        say.line(&format!(
            "{name}: the hub's copy {} the node's own log",
            if same { "matches" } else { "DIFFERS FROM" }
        ));
        hub_matches_edge.push((name.to_owned(), same));
    }
    if opts.verbose {
        println!(
            "\n{} in {:.0?}. Data left in {}",
            if audit_ok && offline_ok && hub_matches_edge.iter().all(|(_, same)| *same) {
                "Demo complete"
            } else {
                "Demo FAILED"
            },
            started.elapsed(),
            out.display()
        );
    }
    if opts.serve {
        hub.restart()?;
    }
    if opts.verbose {
        say_console(&hub, &pki, opts.serve);
    }
    if opts.serve {
        wait_for_ctrl_c()?;
        hub.proc.stop()?;
        if opts.verbose {
            println!("hub stopped.");
        }
    }
    Ok(Outcome {
        camera,
        camera_ok,
        nodes,
        users,
        searched_plate,
        search,
        search_ok,
        refused_search,
        refused_search_ok,
        access_audit,
        hold,
        hold_ok,
        retention,
        federal_export,
        federal_export_ok,
        export,
        export_ok,
        evidence_verify,
        evidence_ok,
        report_html,
        hub_nodes,
        audit,
        audit_ok,
        offline,
        offline_ok,
        hub_matches_edge,
        import,
        import_ok,
        local_add_ok,
        listed,
        alert_show,
        dispositions_ok,
        hub_alerts,
        out,
    })
}

/// Where the web console is and how to log in to it (the supervisor, who
/// sees most of its pages).
fn say_console(hub: &Hub, pki: &Pki, serving: bool) {
    println!("\nThe web console: {}/console/", hub.api);
    println!(
        "  log in as {SUPERVISOR} (supervisor, trained), password {}",
        crate::password_of(SUPERVISOR)
    );
    println!(
        "  the browser will warn about the certificate: the demo's CA ({}) was made on the spot",
        pki.ca_cert().display()
    );
    // Chromium can trust exactly the console's key instead.
    let cert = pki.ca_dir().join(alpr_hub::pki::CONSOLE_CERT);
    if let Ok(pin) = std::fs::read_to_string(&cert)
        .map_err(anyhow::Error::from)
        .and_then(|pem| alpr_hub::pki::spki_sha256(&pem))
    {
        println!(
            "  or trust only its key: chromium --ignore-certificate-errors-spki-list={pin} {}/console/",
            hub.api
        );
    }
    if serving {
        println!("The hub (and its console) stays up until Ctrl-C; the edges have stopped.");
    } else {
        println!("The hub has stopped: `just demo --serve` keeps it up for the console.");
    }
}

/// Block until the person at the terminal presses Ctrl-C (or the process
/// gets SIGTERM).
fn wait_for_ctrl_c() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            #[cfg(unix)]
            {
                use tokio::signal::unix::{signal, SignalKind};
                let mut term = signal(SignalKind::terminate())?;
                tokio::select! {
                    r = tokio::signal::ctrl_c() => r,
                    _ = term.recv() => Ok(()),
                }
            }
            #[cfg(not(unix))]
            tokio::signal::ctrl_c().await
        })?;
    Ok(())
}

/// The hotlist sources of the demo's hub.
const HOTLIST_SOURCES: &str = r#"
[[hotlist.sources]]
name = "ca-svs"
format = "ncic"
strategy = "ocr-equivalent"
alert_level = "urgent"
"#;

/// The plate a photo shows, from the `.txt` beside it (the data set's
/// ground truth: name, box, plate).
fn ground_truth(photo: &Path) -> Option<String> {
    let text = std::fs::read_to_string(photo.with_extension("txt")).ok()?;
    let plate = text.split_whitespace().last()?.to_ascii_uppercase();
    (plate.len() >= 2 && plate.chars().all(|c| c.is_ascii_alphanumeric())).then_some(plate)
}

/// pole-2: an IP camera (GStreamer's RTSP server playing a 1080p30 H.264
/// video of five vehicle passes made from the photos), read live until
/// each pass has given its read and the hub holds them; then stopped.
fn live_camera_pole(
    pki: &Pki,
    hub: &Hub,
    out: &Path,
    models: &Path,
    say: &Say,
) -> anyhow::Result<(String, bool)> {
    use crate::camera;
    if let Some(why) = camera::missing_tools() {
        let text = format!("no live camera: {why} (scripts/setup.sh installs it)");
        say.line(&text);
        return Ok((text, false));
    }
    let (video, passes) = camera::passes_video(5, "h264")?;
    let server = camera::CameraServer::rtsp(&video, None, out)?;
    say.line(&format!(
        "camera: {} (1920x1080, 30 fps, H.264 High with B-frames), a loop of {} passes",
        server.url,
        passes.len()
    ));
    let node = pki.node_of_kind("pole-2", alpr_shared::types::DeviceKind::Pole)?;
    let opts = EdgeOptions {
        generate: 0,
        extra_toml: format!(
            "\n[capture]\nmodels_dir = {models:?}\nsite_id = \"main-st-south\"\n{}",
            camera::camera_toml("north-cam", "front", &server.url, "")
        ),
        ..EdgeOptions::default()
    };
    let mut edge = Edge::start(&node, hub.addr, out, &opts)?;
    let truth: Vec<String> = passes.iter().map(|p| p.plate.clone()).collect();
    // One loop of the video and a little more: every pass seen whole.
    let loop_frames = (passes.last().map(|p| p.end + 1.0).unwrap_or(10.0) * 30.0 * 1.3) as u64;
    let _ = wait_for(Duration::from_secs(120), "pole-2's first loop", || {
        let s = edge.status()?;
        let c = camera::camera(&s, "north-cam")?;
        (c["frames_received"].as_u64()? >= loop_frames).then_some(())
    });
    let status = edge.status().unwrap_or_default();
    // The camera is switched off; the node's reads reach the hub.
    drop(server);
    let acked = wait_for(Duration::from_secs(60), "pole-2 acknowledged", || {
        let s = edge.status()?;
        (s["acked"].as_u64()? > 0 && s["acked"] == s["log_size"]).then_some(s)
    });
    let last = edge.status().unwrap_or_default();
    edge.proc.stop()?;
    let got: Vec<String> = edge
        .stored_entries()?
        .iter()
        .filter_map(|e| e.read().map(|r| r.plate.clone()))
        .collect();
    let cam = camera::camera(&status, "north-cam")
        .cloned()
        .unwrap_or_default();
    let mut text = format!(
        "north-cam {}: {} frames received, {} decoded, {} analysed, {} skipped (nothing moved), {} dropped (never a queue)",
        cam["link"].as_str().unwrap_or("?"),
        cam["frames_received"],
        cam["frames_decoded"],
        cam["frames_analysed"],
        cam["frames_still"],
        cam["frames_dropped"]
    );
    text.push_str(&format!("\nvideo's passes: {}", truth.join(" ")));
    text.push_str(&format!("\npole-2's reads: {}", got.join(" ")));
    let read = truth.iter().filter(|t| got.contains(t)).count();
    text.push_str(&format!(
        "\n{read} of {} passes read exactly; {}",
        truth.len(),
        match &acked {
            Ok(s) => format!("all {} reads acknowledged by the hub", s["log_size"]),
            Err(e) => format!(
                "not all acknowledged: {e}; pole-2: link {}, acked {} of {}, last error {}; log: {}; hub: {}",
                last["link"],
                last["acked"],
                last["log_size"],
                last["last_error"],
                edge.proc.log_tail(3),
                hub.proc
                    .log_text()
                    .lines()
                    .filter(|l| l.contains("pole-2") && (l.contains("refus") || l.contains("WARN")))
                    .take(3)
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        }
    ));
    for l in text.lines() {
        say.line(l);
    }
    Ok((text, acked.is_ok() && read + 1 >= truth.len()))
}
