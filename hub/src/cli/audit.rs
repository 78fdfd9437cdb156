//! The `hub audit …` commands: clients of the hub's API.

use std::process::ExitCode;

use crate::api::client::api_get;
use crate::cli::audit_verify::{self as verify, AuditVerifyArgs};

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Re-verify every node log the hub holds, and the hub's own access
    /// log, from the CA certificate alone.
    Verify(AuditVerifyArgs),
    /// Who accessed what, when and why (auditors; supervisors: their agency).
    Access(AccessArgs),
    /// Users whose training lapsed, what they did before, and any access
    /// after a lapse (a violation).
    Training(TrainingArgs),
    /// Every evidence export (and refused attempt): who, which case, to
    /// which agency, how many reads (from the access log).
    Exports(crate::cli::export::ExportsArgs),
    /// Purges retention did (node, sequence ranges, when) and reads overdue.
    Retention {
        #[arg(long)]
        json: bool,
    },
    /// Every legal hold: who placed it and when, what it covers, who
    /// released it, when and why.
    Holds {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct AccessArgs {
    /// From (RFC 3339 UTC or YYYY-MM-DD); the beginning if absent.
    #[arg(long)]
    pub from: Option<String>,
    /// To (RFC 3339 UTC or YYYY-MM-DD); now if absent.
    #[arg(long)]
    pub to: Option<String>,
    #[arg(long)]
    pub user: Option<String>,
    /// Accesses whose query names this plate.
    #[arg(long)]
    pub plate: Option<String>,
    #[arg(long)]
    pub purpose: Option<String>,
    #[arg(long)]
    pub case: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct TrainingArgs {
    #[arg(long)]
    pub from: Option<String>,
    #[arg(long)]
    pub to: Option<String>,
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify(args) => verify::run(args),
        AuditCommand::Access(args) => access(args),
        AuditCommand::Training(args) => training(args),
        AuditCommand::Exports(args) => crate::cli::export::exports(args),
        AuditCommand::Retention { json } => crate::cli::retention::audit(json),
        AuditCommand::Holds { json } => crate::cli::holds::audit(json),
    }
}

fn time_arg(s: Option<&str>) -> anyhow::Result<Option<String>> {
    s.map(|s| {
        crate::users::parse_date(s)
            .map(|t| t.0.to_string())
            .map_err(|e| anyhow::anyhow!(e))
    })
    .transpose()
}

fn access(args: AccessArgs) -> anyhow::Result<ExitCode> {
    use crate::api::audit::AccessAudit;
    use crate::api::client::query;
    let q = query(&[
        ("from", time_arg(args.from.as_deref())?),
        ("to", time_arg(args.to.as_deref())?),
        ("user", args.user),
        ("plate", args.plate),
        ("purpose", args.purpose),
        ("case", args.case),
    ]);
    let a: AccessAudit = api_get(&format!("/api/v1/audit/access{q}"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&a)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:<12} {:<12} {:<10} {:<17} {:<16} {:<12} {:>7} {:<15} {:<40} OUTCOME",
        "TIME", "NODE", "USER", "AGENCY", "ACTION", "PURPOSE", "CASE", "RESULTS", "SOURCE", "QUERY"
    );
    for r in &a.rows {
        println!(
            "{:<24} {:<12} {:<12} {:<10} {:<17} {:<16} {:<12} {:>7} {:<15} {:<40} {}",
            r.time.to_string(),
            r.node,
            r.user,
            r.agency,
            r.action,
            r.purpose.as_deref().unwrap_or("-"),
            r.case.as_deref().unwrap_or("-"),
            r.results,
            r.source,
            r.query,
            r.outcome
        );
    }
    println!(
        "\n{} accesses from {} to {}{}",
        a.rows.len(),
        a.from,
        a.to,
        if a.truncated { " (more not shown)" } else { "" }
    );
    println!(
        "searches without a case number: {}",
        a.searches_without_case.len()
    );
    for r in &a.searches_without_case {
        println!(
            "  {}  {} ({})  purpose {}  {}",
            r.time,
            r.user,
            r.agency,
            r.purpose.as_deref().unwrap_or("-"),
            r.query
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn training(args: TrainingArgs) -> anyhow::Result<ExitCode> {
    use crate::api::audit::TrainingAudit;
    use crate::api::client::query;
    let q = query(&[
        ("from", time_arg(args.from.as_deref())?),
        ("to", time_arg(args.to.as_deref())?),
    ]);
    let a: TrainingAudit = api_get(&format!("/api/v1/audit/training{q}"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&a)?);
    } else {
        if a.users.is_empty() {
            println!("no user's training lapsed in the window or is lapsed now");
        }
        for u in &a.users {
            println!(
                "{} ({}, {}): training expired {}{}; {} accesses before, {} after the lapse",
                u.username,
                u.role,
                u.agency,
                u.training_expires,
                if u.lapsed_now { " (lapsed now)" } else { "" },
                u.before.len(),
                u.after_lapse.len()
            );
            for r in &u.before {
                println!("    {}  {}  {}  {}", r.time, r.action, r.outcome, r.query);
            }
            for r in &u.after_lapse {
                println!(
                    "    VIOLATION: {}  {} on {}  {}",
                    r.time, r.action, r.node, r.query
                );
            }
        }
        println!("violations (accesses after a lapse): {}", a.violations);
    }
    Ok(if a.violations == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
