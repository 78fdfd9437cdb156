//! `hub alerts`, `hub alert show NODE#SEQ`, `hub alert dispose NODE#SEQ
//! --stage read:correct`: through the hub's API as the logged-in user.

use std::process::ExitCode;
use std::time::Duration;

use crate::alerts::{AlertDetail, AlertView};
use crate::api::alerts::DisposeRequest;
use crate::api::client::{api_get, api_post};

#[derive(Debug, clap::Args)]
pub struct AlertsArgs {
    /// Only alerts still awaiting a disposition stage.
    #[arg(long)]
    pub open: bool,
    /// Only this node's alerts.
    #[arg(long)]
    pub node: Option<String>,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum AlertCommand {
    /// One alert with its read and every disposition stage.
    Show {
        /// `node#seq` or `hub#N`, as `hub alerts` lists it.
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Record a disposition stage at the hub (dispatchers, supervisors):
    /// the read, then the status check, then the action.
    Dispose {
        /// `node#seq` or `hub#N`, as `hub alerts` lists it.
        id: String,
        /// `read:correct|wrong-state|misread|dismissed`,
        /// `status:active|inactive`, `action:stop|no-stop|unable`.
        #[arg(long)]
        stage: String,
        #[arg(long, default_value = "")]
        note: String,
        #[arg(long)]
        json: bool,
    },
}

/// The API path of alert `id` (`node#seq` or `hub#N`).
fn alert_path(id: &str) -> anyhow::Result<String> {
    match crate::alerts::parse_id(id) {
        Some((node, n)) if node.as_str() == "hub" => Ok(format!("/api/v1/hub-alerts/{n}")),
        Some((node, seq)) => Ok(format!("/api/v1/alerts/{node}/{seq}")),
        None => anyhow::bail!("{id:?} is not an alert id (node#seq or hub#N)"),
    }
}

fn age(ms: u64) -> String {
    humantime::format_duration(Duration::from_secs(ms / 1000)).to_string()
}

/// One line per alert (the plate read, and beside it the alternative
/// that matched instead, if one did), then its dispositions indented.
pub fn render(alerts: &[AlertView]) -> String {
    if alerts.is_empty() {
        return "no alerts\n".into();
    }
    let mut out = String::new();
    for a in alerts {
        out.push_str(&format!(
            "{:<16} {}  {:<8}{} listed {} {} ({})  {}  copy aged {}{}{}{}  [{}]\n",
            a.id,
            a.raised_at,
            a.plate_read,
            a.alternative
                .as_ref()
                .map_or(String::new(), |alt| format!("  ({})", alt.notice())),
            a.entry.plate,
            a.entry.state,
            a.entry.category,
            a.match_kind,
            age(a.list_age_ms),
            if a.list_stale { " STALE" } else { "" },
            if a.past_match { " PAST MATCH" } else { "" },
            if a.covert { " COVERT" } else { "" },
            a.status
        ));
        for d in &a.dispositions {
            out.push_str(&format!(
                "    {}  {} by {} ({}{}){}\n",
                d.at,
                d.stage,
                d.user,
                d.agency,
                if d.by == "hub" { ", at the hub" } else { "" },
                if d.note.is_empty() {
                    String::new()
                } else {
                    format!(": {}", d.note)
                }
            ));
        }
    }
    out
}

pub fn alerts(a: AlertsArgs) -> anyhow::Result<ExitCode> {
    let mut query = Vec::new();
    if a.open {
        query.push("open=true".to_string());
    }
    if let Some(n) = &a.node {
        let n = alpr_shared::types::DeviceId::new(n.as_str())
            .map_err(|e| anyhow::anyhow!("node {n:?}: {e}"))?;
        query.push(format!("node={n}"));
    }
    let path = if query.is_empty() {
        "/api/v1/alerts".to_string()
    } else {
        format!("/api/v1/alerts?{}", query.join("&"))
    };
    let list: Vec<AlertView> = api_get(&path)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        print!("{}", render(&list));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn alert(cmd: AlertCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AlertCommand::Dispose {
            id,
            stage,
            note,
            json,
        } => {
            let path = format!("{}/dispose", alert_path(&id)?);
            let d: AlertDetail = api_post(&path, &DisposeRequest { stage, note })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                print!("{}", render(std::slice::from_ref(&d.alert)));
            }
            Ok(ExitCode::SUCCESS)
        }
        AlertCommand::Show { id, json } => {
            let d: AlertDetail = api_get(&alert_path(&id)?)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&d)?);
                return Ok(ExitCode::SUCCESS);
            }
            print!("{}", render(std::slice::from_ref(&d.alert)));
            println!("  {}", d.reminder);
            println!(
                "  read {} at {} ({}) on {}",
                d.read_plate.as_deref().unwrap_or("(content purged)"),
                d.read_at.map_or("?".into(), |t| t.to_string()),
                d.read_location.as_deref().unwrap_or("?"),
                d.camera.as_deref().unwrap_or("?")
            );
            let e = &d.alert.entry;
            println!(
                "  entry {} {} · {} {} {} {} · {} · NIC {} ORI {} · {}",
                e.plate,
                e.state,
                e.vehicle_year,
                e.make,
                e.model,
                e.colour,
                e.category,
                e.nic,
                e.ori,
                e.note
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
