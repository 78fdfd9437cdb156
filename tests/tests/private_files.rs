//! Files that hold plates, keys or logs are private (issue 9.4), and a bad
//! config stops the process with the reason (issue 9.5): real `hub serve`
//! and `edge run` processes, real files and modes.
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use alpr_e2e::{bin, free_udp_port, wait_for, Edge, EdgeOptions, Hub, Pki};

const LIMIT: Duration = Duration::from_secs(120);

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Run `cmd` until it exits (killed, and the test failed, if it is still
/// running after a generous bound); returns (success, stderr).
fn run_to_exit(cmd: &mut Command, log: &Path) -> (bool, String) {
    let f = std::fs::File::create(log).expect("log");
    let mut child = cmd
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(f)
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} kept running instead of refusing to start: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (
        status.success(),
        std::fs::read_to_string(log).unwrap_or_default(),
    )
}

/// A hub.toml for `pki` in `dir`, with `extra` lines appended.
fn hub_toml(pki: &Pki, dir: &Path, extra: &str) -> std::path::PathBuf {
    let port = free_udp_port().expect("port");
    let ca = pki.ca_dir();
    let config = dir.join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = {:?}\nca_cert = {:?}\ncert = {:?}\nkey = {:?}\n{extra}\n",
            dir.join("hub-data"),
            ca.join("ca.crt"),
            ca.join("hub.crt"),
            ca.join("hub.key"),
        ),
    )
    .expect("write config");
    config
}

fn hub_serve(config: &Path, dir: &Path) -> (bool, String) {
    run_to_exit(
        Command::new(bin("hub").expect("hub built"))
            .args(["serve", "--config"])
            .arg(config),
        &dir.join("hub.log"),
    )
}

/// `edge status` run as the user `nobody` (with a world-readable copy of
/// the config); `None`, said loudly, where this test cannot switch users.
fn edge_status_as_nobody(config: &Path) -> anyhow::Result<Option<String>> {
    let shared = tempfile::Builder::new()
        .prefix("alpr-other-user")
        .tempdir()?;
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o755))?;
    let copy = shared.path().join("edge.toml");
    std::fs::copy(config, &copy)?;
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o644))?;
    let out = Command::new("runuser")
        .args(["-u", "nobody", "--"])
        .arg(bin("edge")?)
        .args(["status", "--config"])
        .arg(&copy)
        .output();
    match out {
        Ok(o) if !String::from_utf8_lossy(&o.stderr).contains("runuser:") => {
            assert!(!o.status.success(), "edge status as nobody succeeded");
            Ok(Some(String::from_utf8_lossy(&o.stderr).to_lowercase()))
        }
        other => {
            alpr_e2e::cannot_run(
                "edge status as another user",
                &format!("cannot run a command as another user here: {other:?}"),
            )?;
            Ok(None)
        }
    }
}

#[test]
fn data_folders_databases_and_the_socket_are_owner_only() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let node = pki.node("car-7")?;
    let mut hub = Hub::start(&pki, dir.path(), &[])?;
    let mut edge = Edge::start(
        &node,
        hub.addr,
        dir.path(),
        &EdgeOptions {
            generate: 5,
            ..EdgeOptions::default()
        },
    )?;
    edge.wait_synced(5, LIMIT)?;

    assert_eq!(mode(&hub.data), 0o700, "hub data folder");
    assert_eq!(mode(&hub.data.join("hub.redb")), 0o600, "hub.redb");
    assert_eq!(mode(&edge.data), 0o700, "edge data folder");
    assert_eq!(mode(&edge.data.join("edge.redb")), 0o600, "edge.redb");
    assert_eq!(mode(&edge.data.join("edge.sock")), 0o600, "edge.sock");

    // Another local user cannot ask the node, and is told why (not that
    // the node is not running).
    if let Some(text) = edge_status_as_nobody(&edge.config)? {
        assert!(
            text.contains("permission denied") && !text.contains("not running"),
            "edge status as another user: {text}"
        );
    }

    // An export of the hub's logs holds plates too.
    let export = dir.path().join("logs.bundle");
    let out = hub
        .as_user("auditor")?
        .args(["audit", "verify"])
        .arg("--export")
        .arg(&export)
        .output()?;
    assert!(
        out.status.success(),
        "hub audit verify --export: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&export), 0o600, "exported bundle");

    edge.proc.stop()?;
    // The edge removes its own socket when it stops…
    assert!(!edge.data.join("edge.sock").exists());
    // …and a stale one left by a kill -9 is replaced on the next start.
    edge.proc.start()?;
    wait_for(LIMIT, "the restarted edge's status", || edge.status())?;
    edge.proc.kill9();
    assert!(edge.data.join("edge.sock").exists(), "stale socket left");
    edge.proc.start()?;
    wait_for(LIMIT, "the edge to start over a stale socket", || {
        edge.status()
    })?;
    edge.proc.stop()?;
    hub.proc.stop()?;
    Ok(())
}

#[test]
fn the_edge_refuses_to_replace_a_file_at_its_socket_path() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let node = pki.node("car-8")?;
    let data = dir.path().join("edge-car-8");
    std::fs::create_dir_all(&data)?;
    let precious = data.join("edge.sock");
    std::fs::write(&precious, b"not a socket: keep me")?;
    let hub = ([127, 0, 0, 1], free_udp_port()?).into();
    let mut edge = Edge::start(&node, hub, dir.path(), &EdgeOptions::default())?;
    wait_for(
        Duration::from_secs(60),
        "the edge to refuse and exit",
        || (!edge.proc.is_running()).then_some(()),
    )?;
    let stopped = edge.proc.stop();
    assert!(stopped.is_err(), "the edge exited successfully");
    let log = edge.proc.log_text();
    assert!(
        log.contains("refusing to replace") && log.contains("edge.sock"),
        "{log}"
    );
    assert_eq!(std::fs::read(&precious)?, b"not a socket: keep me");
    Ok(())
}

#[test]
fn a_key_readable_by_others_is_refused() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;

    // The hub…
    let hub_key = pki.ca_dir().join("hub.key");
    std::fs::set_permissions(&hub_key, std::fs::Permissions::from_mode(0o644))?;
    let config = hub_toml(&pki, dir.path(), "");
    let (ok, err) = hub_serve(&config, dir.path());
    assert!(!ok, "the hub started with a 0644 key");
    assert!(
        err.contains("permissions 0644 for") && err.contains("hub.key") && err.contains("too open"),
        "{err}"
    );
    // …each of its signing keys…
    std::fs::set_permissions(&hub_key, std::fs::Permissions::from_mode(0o600))?;
    let export_key = pki.ca_dir().join("export.key");
    std::fs::set_permissions(&export_key, std::fs::Permissions::from_mode(0o644))?;
    let (ok, err) = hub_serve(&config, dir.path());
    assert!(!ok, "the hub started with a 0644 signing key");
    assert!(
        err.contains("permissions 0644 for") && err.contains("export.key"),
        "{err}"
    );

    // …and the edge.
    let node = pki.node("car-9")?;
    std::fs::set_permissions(&node.key, std::fs::Permissions::from_mode(0o640))?;
    let hub = ([127, 0, 0, 1], free_udp_port()?).into();
    let mut edge = Edge::start(&node, hub, dir.path(), &EdgeOptions::default())?;
    wait_for(
        Duration::from_secs(60),
        "the edge to refuse and exit",
        || (!edge.proc.is_running()).then_some(()),
    )?;
    assert!(edge.proc.stop().is_err(), "the edge exited successfully");
    let log = edge.proc.log_text();
    assert!(
        log.contains("permissions 0640 for") && log.contains("node.key"),
        "{log}"
    );
    Ok(())
}

#[test]
fn the_hub_refuses_to_start_beside_the_ca_key() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    std::fs::copy(
        pki.ca_dir().join("ca-private/ca.key"),
        pki.ca_dir().join("ca.key"),
    )?;
    let config = hub_toml(&pki, dir.path(), "");
    let (ok, err) = hub_serve(&config, dir.path());
    assert!(!ok, "the hub started beside the CA key");
    assert!(err.contains("CA private key"), "{err}");
    assert!(
        !dir.path().join("hub-data/hub.redb").exists(),
        "refused before opening anything"
    );
    Ok(())
}

#[test]
fn a_bad_config_stops_the_hub_with_the_reason() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    for (extra, says) in [
        (
            "max_connections = 0",
            "max_connections = 0 is not allowed: from 1 to 100000",
        ),
        (
            "idle_timeout = \"0s\"",
            "idle_timeout = \"0s\" is not allowed: from 1s to 1h",
        ),
        (
            "revoked = [\"not-hex\"]",
            "revoked = \"not-hex\" is not allowed",
        ),
    ] {
        let config = hub_toml(&pki, dir.path(), extra);
        let (ok, err) = hub_serve(&config, dir.path());
        assert!(!ok, "{extra}: the hub started");
        assert!(err.contains("hub.toml"), "{extra}: {err}");
        assert!(err.contains(says), "{extra}: {err}");
    }
    Ok(())
}
