//! `scripts/setup.sh` installs what `just test` needs (issue 9.14): run in
//! its `--dry-run` mode with a `cargo` that has or lacks the nextest
//! subcommand, so the machine's own tools are never touched.
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Run the script with only `fake` and the system folders on PATH, where
/// `fake/cargo` answers `cargo nextest --version` with `nextest_status`
/// and, when `missing` names packages, `fake/dpkg` says those are not
/// installed (and every other one is).
fn dry_run_with(nextest_status: u8, missing: &[&str]) -> String {
    let fake = tempfile::tempdir().expect("tmp");
    let script = |name: &str, text: String| {
        let path = fake.path().join(name);
        std::fs::write(&path, text).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    };
    script(
        "cargo",
        format!("#!/bin/sh\nif [ \"$1\" = nextest ]; then exit {nextest_status}; fi\nexit 0\n"),
    );
    if !missing.is_empty() {
        script(
            "dpkg",
            format!(
                "#!/bin/sh\ncase \"$2\" in {}) exit 1 ;; esac\nexit 0\n",
                missing.join("|")
            ),
        );
    }
    let out = Command::new("bash")
        .arg(repo().join("scripts/setup.sh"))
        .arg("--dry-run")
        .env("PATH", format!("{}:/usr/bin:/bin", fake.path().display()))
        .output()
        .expect("bash");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "setup.sh --dry-run failed: {text}");
    text
}

fn dry_run(nextest_status: u8) -> String {
    dry_run_with(nextest_status, &[])
}

#[test]
fn setup_installs_chromium_and_its_driver_for_the_browser_tests() {
    let missing = dry_run_with(0, &["chromium", "chromium-driver"]);
    assert!(
        missing.contains("setup: installing chromium chromium-driver")
            && missing.contains("apt-get install -y -qq chromium chromium-driver"),
        "{missing}"
    );
    let present = dry_run_with(0, &["gpsd"]);
    assert!(!present.contains("chromium"), "{present}");
}

#[test]
fn setup_installs_ffmpeg_and_gstreamers_rtsp_server_for_the_camera_tests() {
    let missing = dry_run_with(
        0,
        &[
            "ffmpeg",
            "gir1.2-gst-rtsp-server-1.0",
            "gstreamer1.0-plugins-bad",
        ],
    );
    assert!(
        missing.contains(
            "apt-get install -y -qq ffmpeg gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-bad"
        ),
        "{missing}"
    );
    let present = dry_run_with(0, &["gpsd"]);
    assert!(
        !present.contains("ffmpeg") && !present.contains("gst-rtsp"),
        "{present}"
    );
}

#[test]
fn setup_installs_cargo_nextest_only_where_it_is_missing() {
    let missing = dry_run(101);
    assert!(
        missing.contains("would run: cargo install --locked --quiet cargo-nextest"),
        "{missing}"
    );
    let present = dry_run(0);
    assert!(!present.contains("cargo-nextest"), "{present}");
}

#[test]
fn setup_refuses_unknown_arguments() {
    let out = Command::new("bash")
        .arg(repo().join("scripts/setup.sh"))
        .arg("--bogus")
        .output()
        .expect("bash");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown argument '--bogus'"));
}
