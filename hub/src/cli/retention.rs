//! `hub retention status|run` and `hub audit retention`, through the API
//! with the saved session.

use std::process::ExitCode;

use crate::api::client::{api_get, api_post};
use crate::api::retention::{RetentionAudit, RetentionStatus};

use crate::retention::RunReport;

#[derive(Debug, clap::Subcommand)]
pub enum RetentionCommand {
    /// Reads due for purging now, reads kept under a hold, the last run.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Purge now what is past retention and under no hold (administrators).
    Run {
        #[arg(long)]
        json: bool,
    },
}

fn print_run(r: &RunReport) {
    println!(
        "retention {} days (cutoff {}): {} reads purged, {} images, {} plates dropped, {} kept under a hold; {} purge records signed",
        r.retention_days, r.cutoff, r.purged, r.images, r.plates, r.held, r.records
    );
}

pub fn run(cmd: RetentionCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RetentionCommand::Status { json } => {
            let s: RetentionStatus = api_get("/api/v1/retention")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!(
                    "retention {} days, every {} s: {} reads due, {} kept under a hold",
                    s.retention_days, s.interval_s, s.due, s.held
                );
                match &s.last {
                    Some(r) => {
                        print!("last run {}: ", r.at);
                        print_run(r);
                    }
                    None => println!("no run since the hub started"),
                }
            }
        }
        RetentionCommand::Run { json } => {
            let r: RunReport = api_post("/api/v1/retention/run", &serde_json::json!({}))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print_run(&r);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `hub audit retention`.
pub fn audit(json: bool) -> anyhow::Result<ExitCode> {
    let a: RetentionAudit = api_get("/api/v1/audit/retention")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&a)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "retention {} days: {} purges recorded; {} reads overdue, {} kept under a hold",
        a.retention_days,
        a.purges.len(),
        a.overdue,
        a.held
    );
    for p in &a.purges {
        let ranges: Vec<String> = p
            .ranges
            .iter()
            .map(|r| {
                if r.first == r.last {
                    r.first.to_string()
                } else {
                    format!("{}-{}", r.first, r.last)
                }
            })
            .collect();
        println!(
            "  {} {}: {} reads ({}) [hub log entry {}; {}]",
            p.at,
            p.node,
            p.reads,
            ranges.join(","),
            p.record,
            p.reason
        );
    }
    Ok(ExitCode::SUCCESS)
}
