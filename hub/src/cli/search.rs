//! `hub search`: the arguments a person types and the table they read.
//! The command itself sends [`SearchArgs::to_query`] to the hub's API with
//! the purpose and case, and prints the answer with [`print_results`].

use alpr_shared::types::{Location, UnixMillis};

use crate::search::{Near, SearchQuery, SearchResults};

#[derive(Debug, Clone, clap::Args)]
pub struct SearchArgs {
    /// Plate: exact (`7ABC123`), wildcard (`*4?21*`: `*` any run, `?` one
    /// character), or with --tolerant confusable characters match.
    pub pattern: Option<String>,
    /// OCR-tolerant: 0/O/D/Q, 1/I, 2/Z, 5/S, 8/B, 6/G compare equal.
    #[arg(long)]
    pub tolerant: bool,
    /// Captured at or after (RFC 3339 UTC, e.g. 2026-11-28T16:00:00Z).
    #[arg(long)]
    pub from: Option<String>,
    /// Captured at or before (RFC 3339 UTC).
    #[arg(long)]
    pub to: Option<String>,
    /// Canvass around a point: LAT,LON in degrees (with --radius).
    #[arg(long, value_name = "LAT,LON", requires = "radius")]
    pub near: Option<String>,
    /// Canvass radius in metres.
    #[arg(long, value_name = "M", requires = "near")]
    pub radius: Option<f64>,
    /// Only reads of this node.
    #[arg(long)]
    pub node: Option<String>,
    /// Most reads to show (default 100, at most 1000).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Why (an offence type from the policy's list of purposes).
    #[arg(long)]
    pub purpose: String,
    /// Case number (required for some purposes by policy).
    #[arg(long)]
    pub case: Option<String>,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

impl SearchArgs {
    /// The query to send. Purpose and case travel beside it: they are
    /// the access's reason, not part of what is searched.
    pub fn to_query(&self) -> anyhow::Result<SearchQuery> {
        let time = |s: &Option<String>| -> anyhow::Result<Option<UnixMillis>> {
            s.as_deref().map(crate::config::parse_time).transpose()
        };
        let near = match (&self.near, self.radius) {
            (Some(p), Some(radius_m)) => {
                let (lat, lon) = alpr_shared::cli::parse_point(p)?;
                Some(Near { lat, lon, radius_m })
            }
            (None, None) => None,
            _ => anyhow::bail!("--near and --radius go together"),
        };
        let q = SearchQuery {
            plate: self.pattern.clone(),
            tolerant: self.tolerant,
            from: time(&self.from)?,
            to: time(&self.to)?,
            near,
            node: self.node.clone(),
            limit: self.limit,
        };
        // Say what is wrong before anything is sent.
        q.describe()?;
        Ok(q)
    }
}

fn place(loc: &Location) -> String {
    let deg = |e7: i32| f64::from(e7) / 1e7;
    match loc {
        Location::Gps { lat_e7, lon_e7, .. } => {
            format!("{:.5},{:.5} gps", deg(*lat_e7), deg(*lon_e7))
        }
        Location::Configured { lat_e7, lon_e7, .. } => {
            format!("{:.5},{:.5} configured", deg(*lat_e7), deg(*lon_e7))
        }
        Location::Site { site_id } => format!("site {site_id}"),
        Location::Unknown => "unknown".into(),
    }
}

/// The answer as a table for people.
pub fn print_results(r: &SearchResults) {
    print!("{}", format_results(r));
}

/// [`print_results`]' text.
pub fn format_results(r: &SearchResults) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "search: {}", r.query);
    let _ = writeln!(
        s,
        "{:<10} {:<24} {:<7} {:<32} {:<18} {:>5} {:<9} {:<4}",
        "PLATE", "CAPTURED (UTC)", "CLOCK", "PLACE", "NODE", "CONF", "SIGNATURE", "CROP"
    );
    for h in &r.hits {
        let mut place = place(&h.location);
        if let Some(d) = h.distance_m {
            let _ = write!(place, " {d:.0}m");
        }
        let _ = writeln!(
            s,
            "{:<10} {:<24} {:<7} {:<32} {:<18} {:>4}% {:<9} {:<4}",
            h.plate,
            h.captured_at.to_string(),
            format!("{:?}", h.time_source).to_lowercase(),
            place,
            format!("{}#{}", h.node, h.seq),
            h.confidence / 100,
            if h.signature { "ok" } else { "BAD" },
            if h.crop_held { "held" } else { "-" },
        );
        if let Some(p) = &h.signature_problem {
            let _ = writeln!(s, "  ! signature BAD: {p}");
        }
    }
    let _ = write!(
        s,
        "{}{} read(s) matched",
        if r.matched_capped { "at least " } else { "" },
        r.matched
    );
    if r.truncated {
        let _ = write!(s, "; the newest {} shown (raise --limit)", r.hits.len());
    }
    if let Some(p) = r.plates_matched {
        let _ = write!(s, "; {p} distinct plate(s)");
    }
    s.push('\n');
    if let Some(n) = r.unplaced.filter(|n| *n > 0) {
        let _ = writeln!(
            s,
            "{n} read(s) in the time window carry no coordinates (a site or an unknown position) and could not be placed"
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(flatten)]
        args: SearchArgs,
    }

    fn parse(args: &[&str]) -> Result<SearchArgs, clap::Error> {
        Cmd::try_parse_from(std::iter::once("search").chain(args.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn what_a_person_types_becomes_the_query_sent() {
        let a = parse(&[
            "*4?21*",
            "--from",
            "2026-11-01T00:00:00Z",
            "--near",
            "37.5,-122.25",
            "--radius",
            "500",
            "--node",
            "pole-1",
            "--purpose",
            "robbery",
            "--case",
            "26-0042",
        ])
        .expect("parses");
        assert_eq!(a.purpose, "robbery");
        assert_eq!(a.case.as_deref(), Some("26-0042"));
        let q = a.to_query().expect("query");
        assert_eq!(
            q.describe().expect("describe"),
            "plate=*4?21* mode=wildcard from=2026-11-01T00:00:00.000Z \
             near=37.500000,-122.250000 r=500m node=pole-1 limit=100"
        );
        // A purpose is required; --near needs --radius.
        assert!(parse(&["7ABC123"]).is_err());
        assert!(parse(&["--near", "37.5,-122.2", "--purpose", "p"]).is_err());
        // Wrong values are refused before anything is sent.
        let bad = |args: &[&str]| parse(args).expect("parses").to_query().is_err();
        assert!(bad(&["7ABC123", "--from", "yesterday", "--purpose", "p"]));
        assert!(bad(&["--near", "north", "--radius", "5", "--purpose", "p"]));
        assert!(bad(&["--node", "pole-1", "--purpose", "p"]));
    }
}
