//! Supervised, self-healing, observable: real `hub serve` and `edge run`
//! processes. A dead capture stops the edge non-zero; a failing source and
//! a failing store show on `edge status` at once; a full disk is survived
//! without loss; a corrupt database is a clear error at start, never a
//! panic; the metrics endpoints count what the logs hold.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use alpr_e2e::{bin, free_udp_port, wait_for, Edge, EdgeOptions, Hub, Pki};
use alpr_shared::log::verify::VerifyOptions;
use alpr_shared::log::verify_log;

const LIMIT: Duration = Duration::from_secs(120);

/// A free TCP port on loopback.
fn free_tcp_addr() -> anyhow::Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

/// Put `line` at the top of a TOML config (top-level keys must come before
/// the first table).
fn prepend(config: &Path, line: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(config)?;
    std::fs::write(config, format!("{line}\n{text}"))?;
    Ok(())
}

/// Run `bin args…` to its end (at most `limit`): exit status and stderr;
/// `None` if it was still running (then killed).
fn run_to_end(
    name: &str,
    args: &[&str],
    limit: Duration,
) -> anyhow::Result<Option<(ExitStatus, String)>> {
    let dir = tempfile::tempdir()?;
    let err_path = dir.path().join("stderr");
    let mut child = Command::new(bin(name)?)
        .args(args)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path)?)
        .spawn()?;
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(Some((st, std::fs::read_to_string(&err_path)?)));
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Flip `len` bytes of `path` at `offset`.
fn flip(path: &Path, offset: u64, len: usize) -> anyhow::Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let mut buf = vec![0u8; len];
    f.seek(SeekFrom::Start(offset))?;
    let n = f.read(&mut buf)?;
    for b in &mut buf[..n] {
        *b ^= 0xA5;
    }
    f.seek(SeekFrom::Start(offset))?;
    f.write_all(&buf[..n])?;
    f.sync_all()?;
    Ok(())
}

#[test]
fn a_corrupt_database_is_a_clear_error_at_start_never_a_panic() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let node = pki.node("pole-c")?;
    let mut hub = Hub::start(&pki, dir.path(), &[])?;
    let opts = EdgeOptions {
        generate: 400,
        images: true,
        ..EdgeOptions::default()
    };
    let mut edge = Edge::start(&node, hub.addr, dir.path(), &opts)?;
    edge.wait_synced(400, LIMIT)?;
    edge.proc.stop()?;
    hub.proc.stop()?;

    let cases: [(&str, PathBuf, PathBuf, Vec<&str>); 2] = [
        (
            "edge.redb",
            edge.data.join("edge.redb"),
            edge.config.clone(),
            vec!["run", "--config"],
        ),
        (
            "hub.redb",
            hub.data.join("hub.redb"),
            hub.config.clone(),
            vec!["serve", "--config"],
        ),
    ];
    for (name, db, config, args) in cases {
        let pristine = std::fs::read(&db)?;
        let len = pristine.len() as u64;
        let mut detected = 0;
        let offsets = [0, 600, len / 8, len / 4, len / 2, 3 * len / 4, len - 5000];
        for &offset in &offsets {
            std::fs::write(&db, &pristine)?;
            flip(&db, offset, 4096)?;
            let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            a.push(config.display().to_string());
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            let binary = if name == "edge.redb" { "edge" } else { "hub" };
            match run_to_end(binary, &a, Duration::from_secs(8))? {
                Some((st, err)) => {
                    assert!(!st.success(), "{name} @{offset}: exited 0:\n{err}");
                    assert!(
                        !err.contains("panicked at") && !err.contains("RUST_BACKTRACE"),
                        "{name} @{offset}: a panic reached the user:\n{err}"
                    );
                    assert!(
                        err.contains(&db.display().to_string()),
                        "{name} @{offset}: the error does not name the file:\n{err}"
                    );
                    eprintln!("{name} @{offset}: {}", err.lines().last().unwrap_or(""));
                    detected += 1;
                }
                None => eprintln!("{name} @{offset}: not detected (an unused page?)"),
            }
        }
        assert!(
            detected >= offsets.len() / 2,
            "{name}: only {detected} of {} corruptions detected at start",
            offsets.len()
        );
    }
    Ok(())
}

#[test]
fn a_replay_that_dies_stops_the_edge_non_zero_with_the_reason() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let node = pki.node("pole-r")?;
    let nowhere = ([127, 0, 0, 1], free_udp_port()?).into();
    let missing = dir.path().join("no-such-reads.jsonl");
    let opts = EdgeOptions {
        generate: 0,
        extra_toml: format!("file = {missing:?}\n"),
        ..EdgeOptions::default()
    };
    let mut edge = Edge::start(&node, nowhere, dir.path(), &opts)?;
    wait_for(LIMIT, "the edge to exit", || {
        (!edge.proc.is_running()).then_some(())
    })?;
    let log = edge.proc.log_text();
    assert!(
        log.contains("a critical task failed") && log.contains("no-such-reads.jsonl"),
        "the reason is not in the log:\n{log}"
    );
    // `stop` reports how the process ended: non-zero is an error.
    let ended = edge.proc.stop();
    assert!(
        ended
            .as_ref()
            .is_err_and(|e| e.to_string().contains("exit status: 1")),
        "the edge did not exit non-zero: {ended:?}"
    );
    Ok(())
}

#[test]
fn a_failing_capture_source_shows_on_edge_status_at_once() -> anyhow::Result<()> {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let node = pki.node("pole-s")?;
    let photos = dir.path().join("photos");
    std::fs::create_dir_all(&photos)?;
    let mut names: Vec<_> = std::fs::read_dir(shared.join("data/plates/us"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
        .collect();
    names.sort();
    for p in names.iter().take(40) {
        std::fs::copy(p, photos.join(p.file_name().expect("a file name")))?;
    }
    let nowhere = ([127, 0, 0, 1], free_udp_port()?).into();
    let opts = EdgeOptions {
        generate: 0,
        extra_toml: format!(
            "\n[capture]\npaths = [{:?}]\nmodels_dir = {:?}\ninterval = \"200ms\"\nsite_id = \"test-site\"\n",
            photos,
            shared.join("models").canonicalize()?
        ),
        ..EdgeOptions::default()
    };
    let mut edge = Edge::start(&node, nowhere, dir.path(), &opts)?;
    let running = wait_for(LIMIT, "capture running", || {
        let s = edge.status()?;
        (s["capture"]["frames"].as_u64()? >= 2).then_some(s)
    })?;
    assert_eq!(running["capture"]["state"], "running", "{running}");
    assert_eq!(
        running["problems"].as_array().map(Vec::len),
        Some(0),
        "{running}"
    );
    // The camera goes away: every later frame fails.
    std::fs::remove_dir_all(&photos)?;
    let failing = wait_for(LIMIT, "edge status to show the failing source", || {
        let s = edge.status()?;
        (s["capture"]["state"] == "failing").then_some(s)
    })?;
    let err = failing["capture"]["last_error"].as_str().unwrap_or("");
    assert!(
        err.contains("photos"),
        "the error does not say what failed: {failing}"
    );
    assert!(
        failing["problems"]
            .as_array()
            .is_some_and(|p| !p.is_empty()),
        "{failing}"
    );
    let health = Command::new(bin("edge")?)
        .args(["health", "--config"])
        .arg(&edge.config)
        .output()?;
    assert!(
        !health.status.success(),
        "edge health says ok while capture fails"
    );
    assert!(String::from_utf8_lossy(&health.stdout).contains("capture failing"));
    edge.proc.stop()?;
    Ok(())
}

#[test]
fn metrics_endpoints_count_what_the_logs_hold() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let node = pki.node("pole-m")?;
    let mut hub = Hub::start(&pki, dir.path(), &[])?;
    hub.proc.stop()?;
    let hub_metrics = free_tcp_addr()?;
    prepend(&hub.config, &format!("metrics_listen = \"{hub_metrics}\""))?;
    hub.restart()?;
    let n = 300;
    let opts = EdgeOptions {
        generate: n,
        images: true,
        ..EdgeOptions::default()
    };
    let mut edge = Edge::start(&node, hub.addr, dir.path(), &opts)?;
    edge.wait_synced(n, LIMIT)?;
    edge.proc.stop()?;
    let edge_metrics = free_tcp_addr()?;
    prepend(
        &edge.config,
        &format!("metrics_listen = \"{edge_metrics}\""),
    )?;
    edge.proc.start()?;
    let status = wait_for(LIMIT, "the edge up and linked", || {
        let s = edge.status()?;
        (s["link"] == "connected" && s["images_pending"].as_u64() == Some(0)).then_some(s)
    })?;

    let (code, text) = alpr_shared::metrics::get(edge_metrics, "/metrics")?;
    assert_eq!(code, 200);
    let v = |name: &str| alpr_shared::metrics::value(&text, name);
    assert_eq!(v("alpr_edge_log_entries"), Some(n as f64), "{text}");
    assert_eq!(v("alpr_edge_log_entries"), status["log_size"].as_f64());
    assert_eq!(v("alpr_edge_acked_entries"), Some(n as f64), "{text}");
    assert_eq!(v("alpr_edge_backlog_entries"), Some(0.0), "{text}");
    assert_eq!(v("alpr_edge_store_failing"), Some(0.0), "{text}");
    assert!(
        v("alpr_edge_disk_free_bytes").is_some_and(|b| b > 0.0),
        "{text}"
    );
    assert_eq!(alpr_shared::metrics::get(edge_metrics, "/healthz")?.0, 200);

    let (code, text) = alpr_shared::metrics::get(hub_metrics, "/metrics")?;
    assert_eq!(code, 200);
    let v = |name: &str| alpr_shared::metrics::value(&text, name);
    assert_eq!(v("alpr_hub_entries_stored_total"), Some(n as f64), "{text}");
    assert!(
        v("alpr_hub_images_stored_total").is_some_and(|i| i >= 2.0 * n as f64),
        "{text}"
    );
    assert_eq!(v("alpr_hub_nodes"), Some(1.0), "{text}");
    assert_eq!(v("alpr_hub_nodes_connected"), Some(1.0), "{text}");
    assert_eq!(v("alpr_hub_backlog_entries"), Some(0.0), "{text}");
    assert!(
        v("alpr_hub_commits_total").is_some_and(|c| c >= 1.0),
        "{text}"
    );
    assert_eq!(alpr_shared::metrics::get(hub_metrics, "/healthz")?.0, 200);

    for (name, config) in [("edge", &edge.config), ("hub", &hub.config)] {
        let out = Command::new(bin(name)?)
            .args(["health", "--config"])
            .arg(config)
            .output()?;
        assert!(
            out.status.success(),
            "{name} health: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    edge.proc.stop()?;
    hub.proc.stop()?;
    Ok(())
}

/// A small tmpfs mounted for one test, unmounted when dropped.
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    /// `None` where mounting is not permitted (the test then skips, and
    /// fails in CI: [`alpr_e2e::cannot_run`]).
    fn mount(test: &str, path: &Path, size: &str) -> anyhow::Result<Option<SmallDisk>> {
        std::fs::create_dir_all(path)?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output();
        let why = match out {
            Ok(o) if o.status.success() => {
                return Ok(Some(SmallDisk {
                    path: path.to_owned(),
                }))
            }
            Ok(o) => format!(
                "cannot mount a small tmpfs to fill ({}); run as root to test a full disk",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => format!("no mount command ({e}); cannot test a full disk"),
        };
        alpr_e2e::cannot_run(test, &why)?;
        Ok(None)
    }

    /// Write a file until the disk is full.
    fn fill(&self) -> anyhow::Result<PathBuf> {
        use std::io::Write;
        let filler = self.path.join("filler");
        let mut f = std::fs::File::create(&filler)?;
        let chunk = vec![0x5Au8; 64 * 1024];
        loop {
            if f.write_all(&chunk).is_err() {
                break;
            }
        }
        // And the last few bytes.
        while f.write_all(&[0x5A]).is_ok() {}
        Ok(filler)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

#[test]
fn after_a_full_disk_hub_and_edge_recover_by_themselves_and_lose_nothing() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    full_disk(&pki, dir.path()).map_err(|e| {
        let mut logs = String::new();
        for name in ["hub.log", "edge-patrol-full.log"] {
            let text = std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(25).collect();
            logs += &format!(
                "\n--- {name} ---\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        anyhow::anyhow!("{e:#}{logs}")
    })
}

fn full_disk(pki: &Pki, dir: &Path) -> anyhow::Result<()> {
    let Some(hub_disk) = SmallDisk::mount("full disk", &dir.join("hub-disk"), "12m")? else {
        return Ok(());
    };
    let Some(edge_disk) = SmallDisk::mount("full disk", &dir.join("edge-disk"), "12m")? else {
        return Ok(());
    };
    let node = pki.node("patrol-full")?;
    // Each database lives on its own small disk; configs and logs do not.
    std::os::unix::fs::symlink(&hub_disk.path, dir.join("hub-data"))?;
    std::os::unix::fs::symlink(&edge_disk.path, dir.join(format!("edge-{}", node.name)))?;
    let mut hub = Hub::start(pki, dir, &[])?;
    let n = 3000;
    let opts = EdgeOptions {
        generate: n,
        images: true,
        interval: Duration::from_millis(2),
        ..EdgeOptions::default()
    };
    let mut edge = Edge::start(&node, hub.addr, dir, &opts)?;
    wait_for(LIMIT, "some reads stored", || {
        (edge.status()?["acked"].as_u64()? >= 200).then_some(())
    })?;

    // The hub's disk fills: it acknowledges nothing more, says why, stays up.
    let hub_filler = hub_disk.fill()?;
    let nodes = wait_for(LIMIT, "hub nodes to report the failing database", || {
        let r = hub.nodes().ok()?;
        r["storage_error"].is_string().then_some(r)
    })?;
    assert!(
        nodes["problems"].as_array().is_some_and(|p| !p.is_empty()),
        "{nodes}"
    );
    let out = Command::new(bin("hub")?)
        .args(["health", "--config"])
        .arg(&hub.config)
        .output()?;
    assert!(!out.status.success(), "hub health says ok on a full disk");

    // Then the edge's: it stores nothing more, says why, stays up.
    let edge_filler = edge_disk.fill()?;
    let full = wait_for(LIMIT, "edge status to report the failing store", || {
        let s = edge.status()?;
        s["store_error"].is_string().then_some(s)
    })?;
    assert!(
        full["problems"].as_array().is_some_and(|p| !p.is_empty()),
        "{full}"
    );
    assert!(
        full["log_size"].as_u64().unwrap_or(n) < n,
        "the disk filled too late to test anything"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        edge.proc.is_running() && hub.proc.is_running(),
        "a process gave up"
    );

    // Space returns: both carry on by themselves, and nothing is lost.
    std::fs::remove_file(&hub_filler)?;
    std::fs::remove_file(&edge_filler)?;
    let done = edge.wait_synced(n, Duration::from_secs(300))?;
    assert!(done["store_error"].is_null(), "{done}");
    let nodes = wait_for(LIMIT, "the hub healthy again", || {
        let r = hub.nodes().ok()?;
        r["storage_error"].is_null().then_some(r)
    })?;
    assert_eq!(nodes["nodes"][0]["acked"].as_u64(), Some(n), "{nodes}");
    edge.proc.stop()?;
    hub.proc.stop()?;

    let at_edge = edge.stored_entries()?;
    let at_hub = hub.stored_entries(&node.name)?;
    assert_eq!(at_edge.len() as u64, n, "reads lost at the edge");
    assert!(
        at_hub == at_edge,
        "the hub's copy differs from the edge's log"
    );
    let report = verify_log(
        &pki.device_cert(&node)?,
        &at_hub,
        &[],
        VerifyOptions { from_start: true },
    );
    assert!(report.authentic(), "faults: {:?}", report.faults);
    drop((hub_disk, edge_disk));
    Ok(())
}

#[test]
fn a_dead_store_writer_stops_the_edge_non_zero_with_the_reason() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let Some(disk) = SmallDisk::mount("dead store writer", &dir.path().join("edge-disk"), "8m")?
    else {
        return Ok(());
    };
    let node = pki.node("pole-w")?;
    std::os::unix::fs::symlink(&disk.path, dir.path().join(format!("edge-{}", node.name)))?;
    let nowhere = ([127, 0, 0, 1], free_udp_port()?).into();
    let opts = EdgeOptions {
        generate: 100_000,
        images: true,
        interval: Duration::from_millis(1),
        ..EdgeOptions::default()
    };
    let mut edge = Edge::start(&node, nowhere, dir.path(), &opts)?;
    wait_for(LIMIT, "some reads stored", || {
        (edge.status()?["log_size"].as_u64()? >= 100).then_some(())
    })?;
    // The disk fills; while the writer waits for space, its file is
    // destroyed: reopening finds no database, and the writer gives up.
    let _filler = disk.fill()?;
    wait_for(LIMIT, "the store failing", || {
        edge.status()?["store_error"].is_string().then_some(())
    })?;
    flip(&disk.path.join("edge.redb"), 0, 4096)?;
    wait_for(LIMIT, "the edge to exit", || {
        (!edge.proc.is_running()).then_some(())
    })?;
    let log = edge.proc.log_text();
    assert!(
        log.contains("the store writer") && log.contains("edge.redb"),
        "the reason is not in the log:\n{log}"
    );
    let ended = edge.proc.stop();
    assert!(
        ended
            .as_ref()
            .is_err_and(|e| e.to_string().contains("exit status: 1")),
        "the edge did not exit non-zero: {ended:?}"
    );
    drop(disk);
    Ok(())
}

#[test]
fn the_shipped_configs_serve_metrics_on_loopback() -> anyhow::Result<()> {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let hub = alpr_hub::config::HubConfig::load(&deploy.join("hub.toml"))?;
    let edge = alpr_edge::config::EdgeConfig::load(&deploy.join("edge.toml"))?;
    for addr in [hub.metrics_listen, edge.metrics_listen] {
        assert!(
            addr.is_some_and(|a| a.ip().is_loopback()),
            "metrics must be on and on loopback: {addr:?}"
        );
    }
    for unit in ["alpr-hub.service", "alpr-edge.service"] {
        let text = std::fs::read_to_string(deploy.join("systemd").join(unit))?;
        for line in [
            "Restart=on-failure",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "PrivateTmp=yes",
            "StateDirectoryMode=0700",
        ] {
            assert!(text.contains(line), "{unit} lacks {line}");
        }
        assert!(!text.contains("User=root"), "{unit} runs as root");
    }
    Ok(())
}
