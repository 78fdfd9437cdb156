//! The HTML report of an evidence bundle: one self-contained page a court
//! clerk opens in a browser. Photos are inline `data:` URIs; there is no
//! script, stylesheet link, font or any other external resource. Every
//! text from the data is escaped.

use std::fmt::Write as _;

use base64::Engine as _;

use super::{EvidenceReport, ExportInfo, ReadVerdict};

/// Escape text for HTML element content and quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn yes(b: bool) -> &'static str {
    if b {
        "verified"
    } else {
        "FAILED"
    }
}

/// The report's start: the export, the holds, any problem found; then
/// the reads' sections ([`section`]) and [`TAIL`].
pub(super) fn head(info: &ExportInfo, report: &EvidenceReport) -> String {
    let mut h = String::with_capacity(4096);
    let case = escape(&info.case);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">\
         <title>ALPR evidence: case {case}</title>\
         <style>body{{font-family:sans-serif;max-width:60em;margin:auto}}\
         section{{border-top:1px solid #888;padding:1em 0}}img{{max-width:28em;margin:0.3em}}\
         .bad{{color:#b00;font-weight:bold}}table td{{padding:0 1em 0 0;vertical-align:top}}</style>\
         </head><body>\n<h1>ALPR evidence export — case {case}</h1>\n<table>\
         <tr><td>Recipient</td><td>{} ({})</td></tr>\
         <tr><td>Purpose</td><td>{}</td></tr>\
         <tr><td>Exported by</td><td>{} ({})</td></tr>\
         <tr><td>Exported at</td><td>{}</td></tr>\
         <tr><td>Signed by hub</td><td>{}</td></tr>\
         <tr><td>Reads</td><td>{}</td></tr>\
         <tr><td>Nodes</td><td>{}</td></tr></table>\n",
        escape(&info.recipient_name),
        escape(&info.recipient_ori),
        escape(info.purpose.as_deref().unwrap_or("—")),
        escape(&info.exported_by),
        escape(&info.agency),
        info.created_at,
        escape(report.hub.as_deref().unwrap_or("?")),
        report.reads.len(),
        escape(&report.nodes.join(", ")),
    );
    h.push_str(
        "<p>This page was written by the hub with the bundle file it came with. \
         To check that the bundle is authentic, run <code>hub verify --ca ca.crt FILE</code> \
         with the deployment's CA certificate: it checks every signature offline.</p>\n",
    );
    if !report.holds.is_empty() {
        h.push_str("<h2>Legal holds</h2><ul>\n");
        for hold in &report.holds {
            let _ = writeln!(
                h,
                "<li>{} — case {}, placed by {} ({}) at {}: {}{}</li>",
                escape(&hold.id),
                escape(&hold.case),
                escape(&hold.placed_by),
                escape(&hold.agency),
                hold.placed_at,
                escape(&hold.reason),
                if hold.active() { "" } else { " (released)" }
            );
        }
        h.push_str("</ul>\n");
    }
    if !report.faults.is_empty() {
        h.push_str("<h2 class=\"bad\">Problems found when the bundle was written</h2><ul>\n");
        for f in &report.faults {
            let _ = writeln!(h, "<li class=\"bad\">{}</li>", escape(&f.to_string()));
        }
        h.push_str("</ul>\n");
    }
    h.push_str("<h2>Reads</h2>\n");
    h
}

/// The report's end.
pub(super) const TAIL: &str = "</body></html>\n";

/// One read's section, with its photos inline, written to `out`.
pub(super) fn section(
    out: &mut dyn std::io::Write,
    i: usize,
    r: &ReadVerdict,
    crop: &[u8],
    overview: &[u8],
) -> std::io::Result<u64> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut h = String::with_capacity((crop.len() + overview.len()) / 3 * 4 + 2048);
    let placed = match r.placed_by_checkpoint {
        Some(size) => format!("verified: in the node's signed log of {size} entries"),
        None => "FAILED: not placed under a signed checkpoint".into(),
    };
    let verdict = if r.ok() { "verified" } else { "FAILED" };
    let _ = write!(
        h,
        "<section id=\"read-{i}\"><h3>{}. Plate {}</h3><table>\
             <tr><td>Time</td><td>{} (source: {})</td></tr>\
             <tr><td>Place</td><td>{}</td></tr>\
             <tr><td>Camera</td><td>{}</td></tr>\
             <tr><td>Node</td><td>{}, entry #{}</td></tr>\
             <tr><td>Confidence</td><td>{}.{:02}%</td></tr>\
             <tr><td>Signature</td><td>{}</td></tr>\
             <tr><td>Content</td><td>{}</td></tr>\
             <tr><td>Photos</td><td>crop {}, overview {}</td></tr>\
             <tr><td>Place in log</td><td>{}</td></tr>\
             <tr><td>Result</td><td class=\"{}\">{}</td></tr></table>",
        i + 1,
        escape(&r.plate),
        r.captured_at,
        escape(&r.time_source),
        escape(&r.location),
        escape(&r.camera),
        escape(&r.node),
        r.seq,
        r.confidence / 100,
        r.confidence % 100,
        yes(r.signature),
        yes(r.content),
        yes(r.crop),
        yes(r.overview),
        escape(&placed),
        if r.ok() { "ok" } else { "bad" },
        verdict,
    );
    h.push('\n');
    for (what, bytes) in [("plate crop", crop), ("overview", overview)] {
        let _ = write!(
            h,
            "<img alt=\"{what} of plate {}\" src=\"data:image/jpeg;base64,",
            escape(&r.plate)
        );
        b64.encode_string(bytes, &mut h);
        h.push_str("\">\n");
    }
    h.push_str("</section>\n");
    out.write_all(h.as_bytes())?;
    Ok(h.len() as u64)
}
