//! The benchmark commands still run and measure what they say: a small
//! `alpr-bench hub ingest`, in process and through `hub serve` over QUIC, at
//! most speed and at a fixed rate, beside the machine's own limit; a short
//! catch-up over the emulated link; a small `alpr-bench hub search` over
//! thirteen months with images, its queries on plates of their own; a
//! retention purge of real-size photos with ingest running through it; a
//! list change applied on every simulated edge by the edge's own code; an
//! edge's cold start from disk; the state reader on the development crops.
//! Figures come from the real runs (`just
//! bench-*`); here only that each run completes, does the work it names
//! and reports the keys scripts read.

use std::process::Command;

use alpr_e2e::bin;

fn json_of(out: &std::process::Output) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[test]
fn hub_bench_ingest_runs_in_process_and_over_quic() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    for quic in [false, true] {
        let mut cmd = Command::new(bin("alpr-bench")?);
        cmd.args([
            "hub", "ingest", "--edges", "4", "--reads", "2000", "--json", "--rate", "4000",
        ])
        .args(["--allow-tmpfs", "--dir"])
        .arg(dir.path());
        if quic {
            cmd.arg("--quic");
        }
        let report = json_of(&cmd.output()?)?;
        assert_eq!(report["reads"], 2000, "{report}");
        assert!(report["reads_per_s"].as_f64() > Some(0.0), "{report}");
        for key in ["ack_p50_ms", "ack_p99_ms", "fs"] {
            assert!(!report[key].is_null(), "{key} missing: {report}");
        }
        // The machine's limit on the same entries, and the share of it.
        let limit = report["verify_limit_per_s"].as_f64().unwrap_or(0.0);
        let ratio = report["ratio_to_limit"].as_f64().unwrap_or(0.0);
        assert!(limit > 0.0 && ratio > 0.0, "{report}");
        let reads_per_s = report["reads_per_s"].as_f64().unwrap_or(0.0);
        assert!((reads_per_s / limit - ratio).abs() < 1e-9, "{report}");
        // The same path at a fixed offered rate, on a fresh store.
        let open = &report["open_loop"];
        assert_eq!(open["reads"], 2000, "{report}");
        assert!(open["offered_per_s"].as_f64() > Some(0.0), "{report}");
        assert!(open["ack_p99_ms"].as_f64() > Some(0.0), "{report}");
        assert_ne!(open["path"], report["path"], "{report}");
        // A second run in the same folder starts from an empty database.
        let again = json_of(&cmd.output()?)?;
        assert_eq!(again["reads"], 2000, "{again}");
    }
    Ok(())
}

#[test]
fn hub_bench_search_builds_a_store_once_and_times_every_kind_of_search() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let run = || -> anyhow::Result<serde_json::Value> {
        let out = Command::new(bin("alpr-bench")?)
            .args([
                "hub",
                "search",
                "--reads",
                "2000",
                "--queries",
                "5",
                "--images-every",
                "10",
                "--crop-bytes",
                "2000",
                "--overview-bytes",
                "15000",
                "--json",
            ])
            .args(["--allow-tmpfs", "--dir"])
            .arg(dir.path())
            .output()?;
        json_of(&out)
    };
    let report = run()?;
    assert_eq!(report["reads"], 2000, "{report}");
    assert_eq!(report["reused"], false, "{report}");
    assert!(report["distinct_plates"].as_u64() > Some(0), "{report}");
    // Thirteen months, and every 10th read of each node with its photos.
    assert_eq!(report["days"], 395, "{report}");
    assert_eq!(report["reads_with_images"], 200, "{report}");
    assert_eq!(report["image_bytes"], 200 * 17_000, "{report}");
    assert!(
        report["db_bytes"].as_u64() > Some(200 * 17_000),
        "the photos are in the store: {report}"
    );
    assert!(report["cache"]["ram_bytes"].as_u64() > Some(0), "{report}");
    for kind in ["exact", "wildcard", "tolerant", "canvass"] {
        for stat in ["p50_ms", "p99_ms"] {
            let key = format!("{kind}_{stat}");
            assert!(report[&key].as_f64() > Some(0.0), "{key}: {report}");
        }
    }
    // Each kind's queries (and the warm-up's) on plates of their own.
    assert_eq!(report["query_plates"], report["plate_queries"], "{report}");
    assert_eq!(report["plate_queries"], 4 * (5 + 20), "{report}");
    // Every search found reads that verify (the bench refuses otherwise),
    // and the exact plates, drawn by replaying the build rather than by
    // reading the store, are found.
    assert!(report["exact_hits_mean"].as_f64() >= Some(1.0), "{report}");
    // The second run reuses the store the first one built.
    let again = run()?;
    assert_eq!(again["reused"], true, "{again}");
    assert_eq!(again["reads"], 2000, "{again}");
    assert!(again["exact_hits_mean"].as_f64() >= Some(1.0), "{again}");
    Ok(())
}

#[test]
fn hub_bench_retention_purges_real_size_photos_while_ingest_runs_through_the_purge(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = Command::new(bin("alpr-bench")?)
        .args([
            "hub",
            "retention",
            "--reads",
            "300",
            "--edges",
            "4",
            "--ingest",
            "2000",
            "--pool",
            "200000",
            "--json",
        ])
        .args(["--allow-tmpfs", "--dir"])
        .arg(dir.path())
        .output()?;
    let report = json_of(&out)?;
    assert_eq!(report["purged"], 300, "{report}");
    assert_eq!(report["images_deleted"], 600, "{report}");
    // Photos of the size the issue names, really stored.
    assert_eq!(report["crop_bytes"], 20_000, "{report}");
    assert_eq!(report["overview_bytes"], 150_000, "{report}");
    assert!(
        report["db_bytes_before"].as_u64() > Some(300 * 170_000),
        "{report}"
    );
    // The edges were still sending when the purge ended.
    assert_eq!(report["ingest_covered_purge"], true, "{report}");
    assert!(report["ingest_ratio"].as_f64() > Some(0.0), "{report}");
    assert!(report["purge_s"].as_f64() > Some(0.0), "{report}");
    Ok(())
}

#[test]
fn hub_bench_push_applies_the_change_on_every_edge_with_the_edges_code() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = Command::new(bin("alpr-bench")?)
        .args([
            "hub", "push", "--edges", "3", "--rows", "3000", "--change", "40", "--json",
        ])
        .arg("--edge-bin")
        .arg(bin("alpr-bench")?)
        .args(["--allow-tmpfs", "--dir"])
        .arg(dir.path())
        .output()?;
    let report = json_of(&out)?;
    assert_eq!(report["edges"], 3, "{report}");
    assert!(
        report["fs"].as_str().is_some_and(|fs| !fs.is_empty()),
        "{report}"
    );
    // Every edge applied it (checked, stored, matcher rebuilt), after it
    // was delivered there.
    assert_eq!(report["applied_edges"], 3, "{report}");
    let delivered = report["delivered_max_ms"].as_f64().unwrap_or(0.0);
    let applied = report["applied_every_edge_ms"].as_f64().unwrap_or(0.0);
    assert!(delivered > 0.0 && applied >= delivered, "{report}");
    assert!(report["apply_p50_ms"].as_f64() > Some(0.0), "{report}");
    // Timed from the operator's request: the import's answer comes first.
    assert!(report["import_ms"].as_f64() > Some(0.0), "{report}");
    assert!(report["local_p99_ms"].as_f64() > Some(0.0), "{report}");
    Ok(())
}

#[test]
fn hub_bench_hotlist_times_the_import_from_the_operators_request() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = Command::new(bin("alpr-bench")?)
        .args([
            "hub",
            "hotlist",
            "--entries",
            "5000",
            "--changes",
            "50",
            "--json",
            "--allow-tmpfs",
            "--dir",
        ])
        .arg(dir.path())
        .output()?;
    let report = json_of(&out)?;
    assert!(
        report["fs"].as_str().is_some_and(|fs| !fs.is_empty()),
        "{report}"
    );
    let from_request = report["import_s"].as_f64().unwrap_or(0.0);
    let inside = report["hub_import_s"].as_f64().unwrap_or(f64::MAX);
    assert!(from_request > 0.0 && from_request >= inside, "{report}");
    assert!(report["delta_bytes"].as_u64() > Some(0), "{report}");
    Ok(())
}

#[test]
fn edge_bench_hotlist_starts_cold_from_disk_and_swaps_in_the_delta() -> anyhow::Result<()> {
    // On the target's disk: a cold start from tmpfs would read memory.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    let out = Command::new(bin("alpr-bench")?)
        .args([
            "edge",
            "hotlist",
            "--entries",
            "20000",
            "--changes",
            "100",
            "--reads",
            "200",
            "--wildcards",
            "20",
            "--json",
            "--allow-tmpfs",
            "--dir",
        ])
        .arg(dir.path())
        .output()?;
    let report = json_of(&out)?;
    assert!(report["cold_start_ms"].as_f64() > Some(0.0), "{report}");
    assert!(report["delta_apply_ms"].as_f64() > Some(0.0), "{report}");
    // Both generations held during the swap: more than one alone.
    let peak = report["swap_peak_rss_mb"].as_f64().unwrap_or(0.0);
    let resident = report["rss_mb"].as_f64().unwrap_or(f64::MAX);
    assert!(peak > resident, "{report}");
    // The list file was out of the page cache when the cold start began.
    match report["cached_bytes_at_start"].as_u64() {
        Some(cached) => assert_eq!(cached, 0, "{report}"),
        None => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(!ci, "fincore (util-linux) is missing in CI: {report}");
            eprintln!("\n!!!!!!!! NOT CHECKED: fincore is not installed, so what was cached at the cold start is unknown !!!!!!!!\n");
        }
    }
    Ok(())
}

#[test]
fn edge_bench_state_reports_every_figure_on_the_development_set() -> anyhow::Result<()> {
    let dir = alpr_e2e::shared_dir().join("data/plates/us-states");
    let out = Command::new(bin("alpr-bench")?)
        .args(["edge", "state", "--json"])
        .arg(&dir)
        .output()?;
    let report = json_of(&out)?;
    assert_eq!(report["crops"].as_u64(), Some(202), "{report}");
    for key in ["given", "right_of_given", "top1", "top3"] {
        let v = report[key].as_f64().unwrap_or(-1.0);
        assert!((0.0..=1.0).contains(&v), "{key}: {report}");
    }
    assert!(report["ms_p50"].as_f64() > Some(0.0), "{report}");
    assert!(
        report["ms_p99"].as_f64() >= report["ms_p50"].as_f64(),
        "{report}"
    );
    assert!(report["confusions"].is_array(), "{report}");
    // Of the states given, nearly all are right.
    assert!(report["right_of_given"].as_f64() >= Some(0.95), "{report}");
    Ok(())
}

#[test]
fn catchup_bench_reports_payload_and_wire_ratios() -> anyhow::Result<()> {
    let out = Command::new(bin("catchup-bench")?)
        .args(["300", "--json", "--rtt-ms", "20", "--loss", "0.01"])
        .output()?;
    let report = json_of(&out)?;
    assert_eq!(report["reads"], 300, "{report}");
    for key in ["seconds", "ratio_payload", "ratio_wire", "bytes_per_read"] {
        assert!(report[key].as_f64() > Some(0.0), "{key}: {report}");
    }
    Ok(())
}

#[test]
fn hub_bench_login_times_logins_through_the_api() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = Command::new(bin("alpr-bench")?)
        .args(["hub", "login", "--logins", "3", "--json", "--dir"])
        .arg(dir.path())
        .output()?;
    let report = json_of(&out)?;
    assert_eq!(report["logins"], 3, "{report}");
    for key in ["login_p50_ms", "login_p99_ms"] {
        assert!(report[key].as_f64() > Some(0.0), "{key}: {report}");
    }
    Ok(())
}

/// The product binaries carry no benchmark: `hub bench …` and `edge bench …`
/// are refused as unknown commands, and neither binary holds the code that
/// runs the throwaway PostgreSQL clusters as another user (`runuser`).
#[test]
fn the_product_binaries_carry_no_benchmarks() -> anyhow::Result<()> {
    for (name, args) in [("hub", ["bench", "ingest"]), ("edge", ["bench", "hotlist"])] {
        let out = Command::new(bin(name)?).args(args).output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} bench ran: {stderr}");
        assert!(
            stderr.contains("unrecognized subcommand 'bench'"),
            "{name}: {stderr}"
        );
        let bytes = std::fs::read(bin(name)?)?;
        assert!(
            !bytes.windows(b"runuser".len()).any(|w| w == b"runuser"),
            "{name} holds the throwaway cluster's runuser code"
        );
    }
    Ok(())
}
