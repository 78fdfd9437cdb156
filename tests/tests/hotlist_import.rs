//! Bulk hotlist import end to end: a real `hub serve`, the real `hub`
//! command as an operator. An NCIC extract listing a real photo's plate is
//! imported over the HTTPS API as a signed generation (a bad row reported
//! with its line number, immigration rows excluded by policy); the plate
//! is listed; a CA DOJ file whose footer does not match its records is
//! refused (and taken only when forced); the generations are listed; an
//! officer may not import; every import attempt is in the access log.

use alpr_e2e::output_text as out;
use std::path::Path;

use alpr_e2e::{Hub, Pki, TRAINED};
use alpr_shared::hotlist::{sample, Category};

const SOURCES: &str = r#"
[hotlist]
max_change = 0.5
max_file_bytes = 2000000

[[hotlist.sources]]
name = "ncic"
format = "ncic"
strategy = "ocr-equivalent"
max_substitutions = 1
skip = ["0", "000"]
alert_level = "standard"

[[hotlist.sources]]
name = "ca-svs"
format = "ca-doj"
category = "stolen-vehicle"
strategy = "exact"
"#;

fn json(o: &std::process::Output) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(o.status.success(), "failed: {}", out(o));
    Ok(serde_json::from_slice(&o.stdout)?)
}

/// The plate of the first US photo (its ground truth).
fn real_plate() -> anyhow::Result<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/plates/us");
    let dir = if dir.exists() {
        dir
    } else {
        Path::new("/work/shared/data/plates/us").to_path_buf()
    };
    let mut names: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    names.sort();
    let first = names
        .first()
        .ok_or_else(|| anyhow::anyhow!("no photos in {}", dir.display()))?;
    let line = std::fs::read_to_string(first)?;
    let plate = line
        .split('\t')
        .nth(5)
        .map(str::trim)
        .ok_or_else(|| anyhow::anyhow!("no plate in {}", first.display()))?;
    Ok(plate.to_owned())
}

#[test]
fn operator_imports_lists_over_the_api_and_officers_may_not() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = Pki::create_in(dir.path())?;
    let hub = Hub::start_with(&pki, dir.path(), &[], SOURCES)?;
    hub.add_user("op1", "operator", TRAINED)?;
    hub.login("op1")?;
    hub.add_user("ofc1", "officer", TRAINED)?;
    hub.login("ofc1")?;

    // An NCIC extract of 20,000 rows (1.2 MB: more than the API's usual
    // body limit) with a real photo's plate in it, one immigration row,
    // and one row whose plate is not a plate.
    let plate = real_plate()?;
    let mut rows = sample::entries(20_000, 12);
    rows.retain(|e| e.category != Category::Immigration);
    sample::plant(
        &mut rows,
        vec![
            sample::planted(&plate, "CA", Category::StolenVehicle, 1),
            sample::planted("9IMM001", "CA", Category::Immigration, 2),
        ],
        3,
    );
    let mut text = String::from_utf8(sample::ncic(&rows))?;
    let bad_line = 101;
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.insert(
        bad_line - 1,
        "V000000999CA019420020261101AB#12     CA2027".to_owned(),
    );
    text = lines.join("\n") + "\n";
    let file = dir.path().join("ncic-extract.txt");
    std::fs::write(&file, &text)?;
    let file_arg = file.to_string_lossy().to_string();

    // An officer may not import (403), and nothing is published.
    let o = hub.run_as(
        "ofc1",
        &[
            "hotlist", "import", &file_arg, "--source", "ncic", "--format", "ncic",
        ],
    )?;
    assert!(!o.status.success(), "an officer imported: {}", out(&o));
    assert!(out(&o).contains("HTTP 403"), "{}", out(&o));

    // An unknown source is refused.
    let o = hub.run_as(
        "op1",
        &[
            "hotlist", "import", &file_arg, "--source", "nope", "--format", "ncic",
        ],
    )?;
    assert!(!o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("no hotlist source"), "{}", out(&o));

    let report = json(&hub.run_as(
        "op1",
        &[
            "hotlist", "import", &file_arg, "--source", "ncic", "--format", "ncic", "--json",
        ],
    )?)?;
    let rec = &report["record"];
    assert_eq!(rec["info"]["number"], 1, "{report}");
    assert_eq!(
        rec["info"]["source_rows"],
        rows.len() as u64 + 1,
        "{report}"
    );
    assert_eq!(rec["info"]["rows"], rows.len() as u64 - 1, "{report}");
    assert_eq!(rec["bad_rows"], 1, "{report}");
    assert_eq!(report["bad"][0]["line"], bad_line as u64, "{report}");
    assert!(report["bad"][0]["reason"]
        .as_str()
        .is_some_and(|r| r.contains('#')));
    assert_eq!(
        rec["excluded"],
        serde_json::json!([["immigration", 1]]),
        "{report}"
    );
    assert_eq!(rec["imported_by"], "op1");

    // The people's output says the same.
    let o = hub.run_as("op1", &["hotlist", "generations", "ncic"])?;
    assert!(o.status.success() && out(&o).contains("op1"), "{}", out(&o));

    // The real plate is listed (an officer may look); the excluded one not.
    let shown = json(&hub.run_as("ofc1", &["hotlist", "show", "ncic", &plate, "--json"])?)?;
    let listed = shown["entries"].as_array().cloned().unwrap_or_default();
    assert_eq!(listed.len(), 1, "{shown}");
    assert_eq!(listed[0]["category"], "stolen-vehicle");
    let shown = json(&hub.run_as("op1", &["hotlist", "show", "ncic", "9IMM001", "--json"])?)?;
    assert_eq!(shown["entries"], serde_json::json!([]), "{shown}");

    // A CA DOJ file whose footer says more records than it has: refused,
    // nothing published; taken when forced, with the warning recorded.
    let svs = dir.path().join("svs.tbl");
    let short: Vec<_> = rows
        .iter()
        .filter(|e| e.plate.len() <= 8)
        .take(50)
        .cloned()
        .collect();
    let mut doj = String::from_utf8(sample::ca_doj(&short, "11/27/2026 23:05"))?;
    doj = doj.replace("TOTAL RECORD 0000050", "TOTAL RECORD 0000051");
    std::fs::write(&svs, doj)?;
    let svs_arg = svs.to_string_lossy().to_string();
    let o = hub.run_as(
        "op1",
        &[
            "hotlist", "import", &svs_arg, "--source", "ca-svs", "--format", "ca-doj",
        ],
    )?;
    assert!(!o.status.success(), "a wrong footer was taken: {}", out(&o));
    assert!(out(&o).contains("footer says 51 records"), "{}", out(&o));
    let gens = json(&hub.run_as("op1", &["hotlist", "generations", "ca-svs", "--json"])?)?;
    assert_eq!(gens, serde_json::json!([]), "{gens}");
    let forced = json(&hub.run_as(
        "op1",
        &[
            "hotlist", "import", &svs_arg, "--source", "ca-svs", "--format", "ca-doj", "--force",
            "--json",
        ],
    )?)?;
    assert_eq!(forced["record"]["info"]["rows"], 50, "{forced}");
    assert_eq!(forced["record"]["forced"], true, "{forced}");

    // A second NCIC file replacing most of the list is refused as too big
    // a change.
    let other = dir.path().join("other.txt");
    std::fs::write(&other, sample::ncic(&sample::entries(20_000, 99)))?;
    let o = hub.run_as(
        "op1",
        &[
            "hotlist",
            "import",
            &other.to_string_lossy(),
            "--source",
            "ncic",
        ],
    )?;
    assert!(!o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("max_change"), "{}", out(&o));

    // A file larger than the hub takes is refused before its upload.
    let big = dir.path().join("big.txt");
    std::fs::write(&big, sample::ncic(&sample::entries(40_000, 5)))?;
    let o = hub.run_as(
        "op1",
        &[
            "hotlist",
            "import",
            &big.to_string_lossy(),
            "--source",
            "ncic",
        ],
    )?;
    assert!(!o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("at most 2000000"), "{}", out(&o));

    // The list of sources and the generations.
    let list = json(&hub.run_as("op1", &["hotlist", "list", "--json"])?)?;
    let names: Vec<&str> = list
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["ncic", "ca-svs"], "{list}");
    assert_eq!(list[0]["current"]["number"], 1, "{list}");
    let gens = json(&hub.run_as("op1", &["hotlist", "generations", "ncic", "--json"])?)?;
    assert_eq!(gens.as_array().map(Vec::len), Some(1), "{gens}");
    assert_eq!(gens[0]["kept"], true, "{gens}");

    // Every import attempt is in the access log, refused ones too.
    let audit = json(&hub.run_as("auditor", &["audit", "access", "--json"])?)?;
    let imports: Vec<&serde_json::Value> = audit["rows"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|r| r["action"] == "hotlist-import")
                .collect()
        })
        .unwrap_or_default();
    let by = |u: &str| imports.iter().filter(|r| r["user"] == u).count();
    // (The unknown source was refused before its upload: nothing imported,
    // nothing to log.)
    assert_eq!(by("op1"), 4, "{imports:?}");
    assert_eq!(
        by("ofc1"),
        0,
        "refused by role before anything: {imports:?}"
    );
    Ok(())
}
