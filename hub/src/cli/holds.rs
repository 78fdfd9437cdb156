//! `hub hold add|release|list|show`: legal holds through the hub's API,
//! as the logged-in user (operators and supervisors).

use std::process::ExitCode;

use alpr_shared::control::holds::{Hold, HoldScope};
use alpr_shared::types::UnixMillis;
use anyhow::Context;

use crate::api::client::{api_get, api_post, path_segment};
use crate::api::holds::{PlaceHold, ReleaseHold};

#[derive(Debug, clap::Subcommand)]
pub enum HoldCommand {
    /// Place a hold: reads it covers are kept from retention's purge until
    /// it is released. Name at least one plate, node, time bound or place.
    Add(AddArgs),
    /// Release one hold (only that one).
    Release {
        id: String,
        /// Why it is released (e.g. the case closed).
        #[arg(long)]
        reason: String,
    },
    /// The holds in force (with --all, released ones too).
    List {
        #[arg(long)]
        all: bool,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// One hold in full (JSON).
    Show { id: String },
}

/// What `hub hold add` takes: the shared hold arguments.
pub type AddArgs = alpr_shared::control::holds::HoldArgs;

/// One line per hold.
pub fn render(holds: &[Hold]) -> String {
    if holds.is_empty() {
        return "no holds\n".into();
    }
    let mut out = String::new();
    for h in holds {
        let state = match &h.released {
            None => "active".to_string(),
            Some(r) => format!("released by {} ({})", r.by, r.reason),
        };
        out.push_str(&format!(
            "{}  case {}  {}  placed by {} on {}  {}\n",
            h.id,
            h.case,
            state,
            h.placed_by,
            h.placed_on,
            describe(&h.scope)
        ));
    }
    out
}

fn describe(s: &HoldScope) -> String {
    let mut parts = Vec::new();
    if !s.plates.is_empty() {
        parts.push(format!("plates {}", s.plates.join(",")));
    }
    if !s.nodes.is_empty() {
        parts.push(format!("nodes {}", s.nodes.join(",")));
    }
    let t = |m: UnixMillis| {
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(m.0),
        )
        .to_string()
    };
    if let Some(f) = s.from {
        parts.push(format!("from {}", t(f)));
    }
    if let Some(to) = s.to {
        parts.push(format!("to {}", t(to)));
    }
    if let Some(p) = s.place {
        parts.push(format!(
            "within {} m of {:.5},{:.5}",
            p.radius_m,
            f64::from(p.lat_e7) / 1e7,
            f64::from(p.lon_e7) / 1e7
        ));
    }
    parts.join("; ")
}

pub fn run(cmd: HoldCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        HoldCommand::Add(args) => {
            let req = PlaceHold {
                case: args.case.clone(),
                reason: args.reason.clone(),
                scope: args.scope()?,
            };
            let hold: Hold = api_post("/api/v1/holds", &req)?;
            println!("hold {} placed for case {}", hold.id, hold.case);
        }
        HoldCommand::Release { id, reason } => {
            let hold: Hold = api_post(
                &format!("/api/v1/holds/{}/release", path_segment(&id, "a hold")?),
                &ReleaseHold { reason },
            )?;
            println!("hold {} released", hold.id);
        }
        HoldCommand::List { all, json } => {
            let holds: Vec<Hold> = api_get(&format!(
                "/api/v1/holds{}",
                if all { "?all=true" } else { "" }
            ))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&holds)?);
            } else {
                print!("{}", render(&holds));
            }
        }
        HoldCommand::Show { id } => {
            let hold: Hold = api_get(&format!("/api/v1/holds/{}", path_segment(&id, "a hold")?))?;
            println!(
                "{}",
                serde_json::to_string_pretty(&hold).context("printing the hold")?
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `hub audit holds`: every hold, placed and released (auditors).
pub fn audit(json: bool) -> anyhow::Result<ExitCode> {
    let holds: Vec<Hold> = api_get("/api/v1/audit/holds")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&holds)?);
    } else {
        print!("{}", render(&holds));
        let released = holds.iter().filter(|h| !h.active()).count();
        println!(
            "{} holds: {} in force, {released} released",
            holds.len(),
            holds.len() - released
        );
    }
    Ok(ExitCode::SUCCESS)
}
