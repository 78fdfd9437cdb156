//! The console's search, read and export pages over HTTPS against a real
//! hub fed by a real edge, as a browser would use them: log in with the
//! form, keep the session cookie, send the CSRF value the pages carry.
//!
//! - a search without a purpose is refused on the page and in the access
//!   log; with one it lists the reads; a read opens with its photos and a
//!   valid signature, and the view is logged with its plate;
//! - a supervisor's export downloads a bundle that `hub verify` accepts;
//!   an export to a federal agency is refused on the page.

use std::time::Duration;

use alpr_e2e::{bin, output_text, Edge, EdgeOptions, Hub, Pki, TRAINED};
use alpr_hub::console::client::field_in;

const LIMIT: Duration = Duration::from_secs(120);
const CASE: &str = "26-0200";

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// A hub with one pole camera's six reads (GEN00001…) and their photos.
fn hub_with_reads(dir: &std::path::Path, pki: &Pki) -> anyhow::Result<(Hub, Edge)> {
    let hub = Hub::start(pki, dir, &[])?;
    let node = pki.node("pole-7")?;
    let edge = Edge::start(
        &node,
        hub.addr,
        dir,
        &EdgeOptions {
            generate: 6,
            images: true,
            ..EdgeOptions::default()
        },
    )?;
    edge.wait_synced(6, LIMIT)?;
    Ok((hub, edge))
}

/// The access log's rows, as the auditor reads them.
fn access_rows(hub: &Hub) -> anyhow::Result<Vec<serde_json::Value>> {
    let out = hub.run_as("auditor", &["audit", "access", "--json"])?;
    anyhow::ensure!(out.status.success(), "{}", output_text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(v["rows"].as_array().cloned().unwrap_or_default())
}

#[test]
fn a_search_needs_a_purpose_and_a_read_opens_with_its_photos_and_a_valid_signature(
) -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let (hub, _edge) = hub_with_reads(dir.path(), &pki)?;
    hub.add_user("ofc1", "officer", TRAINED)?;
    runtime()?.block_on(async {
        let mut c = hub.console("ofc1").await?;
        let page = c.get("/console/search").await?;
        let csrf = c.csrf()?;
        assert_eq!(page.status, 200);
        let text = &page.body;
        for id in [
            "page-search",
            "search-form",
            "pick-map",
            "purpose",
            "case",
            "plate",
        ] {
            assert!(
                text.contains(&format!("id=\"{id}\"")),
                "#{id} missing: {text}"
            );
        }
        assert!(
            text.contains("<option value=\"pole-7\">"),
            "the node is suggested: {text}"
        );

        // No purpose: refused on the page, and the refusal is logged.
        let refused = c
            .post_form(
                "/console/search",
                &[
                    ("csrf", &csrf),
                    ("purpose", ""),
                    ("case", ""),
                    ("plate", "GEN00002"),
                    ("mode", "exact"),
                ],
            )
            .await?;
        let text = &refused.body;
        assert_eq!(refused.status, 400, "{text}");
        assert!(text.contains("id=\"error\""), "{text}");
        assert!(text.contains("a purpose is required"), "{text}");
        assert!(!text.contains("class=\"hit\""), "results without a purpose");
        let rows = access_rows(&hub)?;
        assert!(
            rows.iter().any(|r| r["user"] == "ofc1"
                && r["action"] == "search"
                && r["outcome"].as_str().is_some_and(|o| o.contains("refused"))),
            "no refused search in {rows:?}"
        );

        // With a purpose: every read of the pattern, newest first.
        let found = c
            .post_form(
                "/console/search",
                &[
                    ("csrf", &csrf),
                    ("purpose", "stolen-vehicle"),
                    ("case", ""),
                    ("plate", "GEN0000*"),
                    ("mode", "wildcard"),
                    ("from", ""),
                    ("to", ""),
                    ("lat", ""),
                    ("lon", ""),
                    ("radius_m", "500"),
                    ("node", "pole-7"),
                ],
            )
            .await?;
        let text = &found.body;
        assert_eq!(found.status, 200, "{text}");
        assert_eq!(text.matches("<tr class=\"hit\">").count(), 6, "{text}");
        assert!(text.contains("id=\"results-map\""), "{text}");
        assert!(
            text.contains("a surveyed site"),
            "place source shown: {text}"
        );

        // A canvass: the pole's reads name a surveyed site, not
        // coordinates, and the page says why none is in the circle.
        let canvass = c
            .post_form(
                "/console/search",
                &[
                    ("csrf", &csrf),
                    ("purpose", "stolen-vehicle"),
                    ("lat", "38.58160"),
                    ("lon", "-121.49440"),
                    ("radius_m", "400"),
                ],
            )
            .await?;
        let text = &canvass.body;
        assert_eq!(canvass.status, 200, "{text}");
        assert_eq!(text.matches("<tr class=\"hit\">").count(), 0, "{text}");
        assert!(
            text.contains("6 read(s) of the time window carry no coordinates"),
            "{text}"
        );
        assert!(
            text.contains("class=\"radius\""),
            "the circle on the map: {text}"
        );

        // One plate exactly; open its read.
        let one = c
            .post_form(
                "/console/search",
                &[
                    ("csrf", &csrf),
                    ("purpose", "stolen-vehicle"),
                    ("plate", "gen00002"),
                    ("mode", "exact"),
                ],
            )
            .await?;
        let text = &one.body;
        assert_eq!(text.matches("<tr class=\"hit\">").count(), 1, "{text}");
        let row = &text[text.find("<tr class=\"hit\">").expect("a row")..];
        let seq = field_in(row, "seq").expect("the row's seq");
        assert!(
            row.contains("class=\"ok\">Valid"),
            "the row's signature: {row}"
        );
        let mut read = None;
        for _ in 0..LIMIT.as_secs() {
            let page = c
                .post_form(
                    "/console/read",
                    &[
                        ("csrf", &csrf),
                        ("node", "pole-7"),
                        ("seq", &seq),
                        ("purpose", "stolen-vehicle"),
                        ("case", ""),
                    ],
                )
                .await?;
            if page.body.contains("class=\"photo\"") {
                read = Some(page);
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let read = read.expect("the read's photos at the hub within two minutes");
        let text = &read.body;
        assert_eq!(read.status, 200, "{text}");
        assert!(text.contains("id=\"page-read\""), "{text}");
        assert!(
            text.contains("<span id=\"signature\" class=\"ok\">Valid"),
            "{text}"
        );
        // The replayed read's own crop, inline: base64 of "synthetic crop of read 2".
        assert!(
            text.contains("src=\"data:image/jpeg;base64,c3ludGhldGljIGNyb3Agb2YgcmVhZCAy\""),
            "{text}"
        );
        assert!(text.contains(">GEN00002</dd>"), "{text}");
        assert!(
            text.contains("id=\"read-location-source\">a surveyed site"),
            "{text}"
        );

        // A read without a purpose is refused; an officer has no export page.
        let no_purpose = c
            .post_form(
                "/console/read",
                &[("csrf", &csrf), ("node", "pole-7"), ("seq", &seq)],
            )
            .await?;
        assert_eq!(no_purpose.status, 400, "{}", no_purpose.body);
        assert!(no_purpose.body.contains("id=\"error\""));
        let export = c.get("/console/export").await?;
        assert_eq!(export.status, 403, "{}", export.body);
        assert!(!c
            .get("/console/search")
            .await?
            .body
            .contains("id=\"nav-export\""));
        anyhow::Ok(())
    })?;

    // The views are in the access log with the plate and the purpose.
    let rows = access_rows(&hub)?;
    assert!(
        rows.iter().any(|r| r["user"] == "ofc1"
            && r["action"] == "view"
            && r["purpose"] == "stolen-vehicle"
            && r["query"].as_str().is_some_and(|q| q.contains("GEN00002"))),
        "no view of GEN00002 in {rows:?}"
    );
    Ok(())
}

#[test]
fn a_supervisor_downloads_a_case_bundle_that_verifies_offline() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let (hub, _edge) = hub_with_reads(dir.path(), &pki)?;
    hub.hold_case_for_export(dir.path(), CASE, "GEN00003")?;

    let bundle = runtime()?.block_on(async {
        let mut c = hub.console("sup1").await?;
        let page = c.get("/console/export").await?;
        let csrf = c.csrf()?;
        let text = &page.body;
        assert_eq!(page.status, 200, "{text}");
        assert!(
            text.contains("<option value=\"CA0020000\">County District Attorney"),
            "{text}"
        );
        assert!(
            text.contains("<option value=\"DCFBI0000\" disabled>"),
            "a federal agency is offered: {text}"
        );

        // A forged choice of the federal agency: refused with the statute.
        let refused = c
            .post_form(
                "/console/export",
                &[
                    ("csrf", &csrf),
                    ("case", CASE),
                    ("to", "DCFBI0000"),
                    ("purpose", "robbery"),
                ],
            )
            .await?;
        let text = &refused.body;
        assert_eq!(refused.status, 403, "{text}");
        assert!(
            text.contains("id=\"error\"") && text.contains("1798.90.55"),
            "{text}"
        );
        assert!(
            text.contains("id=\"export-form\""),
            "the form again: {text}"
        );

        // The case, once its photos and checkpoint are at the hub.
        let mut last = String::new();
        for _ in 0..120 {
            let answer = c
                .post_form(
                    "/console/export",
                    &[
                        ("csrf", &csrf),
                        ("case", CASE),
                        ("to", "CA0020000"),
                        ("purpose", "robbery"),
                    ],
                )
                .await?;
            if answer.status == 200 {
                let disposition: Vec<&str> = answer
                    .headers
                    .get_all("content-disposition")
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect();
                assert_eq!(
                    disposition,
                    [format!("attachment; filename=\"{CASE}.alprbundle\"").as_str()]
                );
                return anyhow::Ok(answer.bytes.to_vec());
            }
            last = answer.body.clone();
            assert!(
                last.contains("not at the hub yet") || last.contains("checkpoint"),
                "{}: {last}",
                answer.status
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        anyhow::bail!("no bundle within two minutes: {last}")
    })?;

    let path = dir.path().join(format!("{CASE}.alprbundle"));
    std::fs::write(&path, &bundle)?;
    let out = std::process::Command::new(bin("hub")?)
        .arg("verify")
        .arg("--ca")
        .arg(pki.ca_cert())
        .arg(&path)
        .output()?;
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("evidence AUTHENTIC"),
        "{}",
        output_text(&out)
    );
    assert!(
        output_text(&out).contains("1 reads (1 verified)"),
        "{}",
        output_text(&out)
    );
    Ok(())
}
