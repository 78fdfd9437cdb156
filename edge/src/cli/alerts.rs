//! `edge alerts`, `edge alert show|dispose`: through the running node's
//! local socket, as the officer logged in with `edge login`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;

use crate::alert::{
    AlertDetail, AlertDisposeRequest, AlertListRequest, AlertShowRequest, AlertSummary, Disposed,
};
use crate::cli::officer::{read_token, session_path};
use crate::config::EdgeConfig;
use crate::local::{local_request, LocalRequest};

#[derive(Debug, clap::Args)]
pub struct AlertsArgs {
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Also alerts already disposed.
    #[arg(long)]
    pub all: bool,
    /// Keep watching and print each new alert as it is raised.
    #[arg(long)]
    pub follow: bool,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum AlertCommand {
    /// One alert: the entry beside the read, the match, the list's age,
    /// the dispositions so far (logged as a view).
    Show {
        id: u64,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Save the plate crop and the overview photo in this folder.
        #[arg(long)]
        save: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Record the next stage(s) of an alert's disposition, in order:
    /// --read, then --status (after checking the state system), then
    /// --action.
    Dispose {
        id: u64,
        #[arg(long)]
        config: Option<PathBuf>,
        /// correct | wrong-state | misread | dismissed
        #[arg(long)]
        read: Option<String>,
        /// active | inactive (as the state system says)
        #[arg(long)]
        status: Option<String>,
        /// stop | no-stop | unable
        #[arg(long)]
        action: Option<String>,
        #[arg(long, default_value = "")]
        note: String,
        #[arg(long)]
        json: bool,
    },
}

fn age(ms: u64) -> String {
    humantime::format_duration(Duration::from_secs(ms / 1000)).to_string()
}

/// Beside the plate read: the alternative that matched instead, if one
/// did.
fn beside(alternative: Option<&alpr_shared::log::alert::AlternativeMatch>) -> String {
    alternative.map_or(String::new(), |alt| format!("  ({})", alt.notice()))
}

fn line(a: &AlertSummary) -> String {
    format!(
        "#{:<6} {}  {:<8}{}  listed {} {} ({})  {}  list {} aged {}{}{}  [{}]",
        a.id,
        a.raised_at,
        a.plate_read,
        beside(a.alternative.as_ref()),
        a.listed_plate,
        a.state,
        a.category,
        a.match_kind,
        a.list,
        age(a.list_age_ms),
        if a.list_stale { " STALE" } else { "" },
        if a.past_match { " PAST MATCH" } else { "" },
        a.status
    )
}

pub fn alerts(a: AlertsArgs) -> anyhow::Result<ExitCode> {
    let config = EdgeConfig::load_or_default(a.config.as_deref())?;
    let token = read_token(&session_path(&config))?;
    let mut after = None;
    loop {
        let req = LocalRequest::AlertList(AlertListRequest {
            token: token.clone(),
            all: a.all,
            after,
        });
        let v = match local_request(&config, &req) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("refused: {e:#}");
                return Ok(ExitCode::FAILURE);
            }
        };
        let list: Vec<AlertSummary> =
            serde_json::from_value(v.clone()).context("the node's answer")?;
        if !a.follow {
            if a.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else if list.is_empty() {
                println!("no alerts awaiting disposition");
            } else {
                for x in &list {
                    println!("{}", line(x));
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        let mut new: Vec<&AlertSummary> = list.iter().collect();
        new.sort_by_key(|x| x.id);
        for x in new {
            after = Some(after.map_or(x.id, |a: u64| a.max(x.id)));
            if a.json {
                println!("{}", serde_json::to_string(x)?);
            } else {
                println!("{}", line(x));
            }
        }
        // From now on only new alerts (an alert's id is never 0: its read
        // comes before it).
        after.get_or_insert(0);
        std::thread::sleep(Duration::from_secs(1));
    }
}

pub fn alert(cmd: AlertCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AlertCommand::Show {
            id,
            config,
            save,
            json,
        } => {
            let config = EdgeConfig::load_or_default(config.as_deref())?;
            let token = read_token(&session_path(&config))?;
            let req = LocalRequest::AlertShow(AlertShowRequest {
                token,
                id,
                images: save.is_some(),
            });
            let v = match local_request(&config, &req) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("refused: {e:#}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            let d: AlertDetail = serde_json::from_value(v.clone()).context("the node's answer")?;
            if let Some(dir) = &save {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                for (name, b64) in [("crop", &d.crop), ("overview", &d.overview)] {
                    if let Some(b) = b64 {
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(b)
                            .context("the node's image")?;
                        let path = dir.join(format!("alert-{id}-{name}.jpg"));
                        std::fs::write(&path, bytes)
                            .with_context(|| format!("writing {}", path.display()))?;
                        if !json {
                            println!("saved {}", path.display());
                        }
                    }
                }
            }
            if json {
                let mut v = v;
                if let Some(o) = v.as_object_mut() {
                    o.remove("crop");
                    o.remove("overview");
                }
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            print_detail(&d);
            Ok(ExitCode::SUCCESS)
        }
        AlertCommand::Dispose {
            id,
            config,
            read,
            status,
            action,
            note,
            json,
        } => {
            let config = EdgeConfig::load_or_default(config.as_deref())?;
            let token = read_token(&session_path(&config))?;
            let req = LocalRequest::AlertDispose(AlertDisposeRequest {
                token,
                id,
                read,
                status,
                action,
                note,
            });
            let v = match local_request(&config, &req) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("refused: {e:#}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            let d: Disposed = serde_json::from_value(v.clone()).context("the node's answer")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for (seq, stage) in &d.recorded {
                    println!("alert {id}: {stage} recorded (entry {seq})");
                }
                println!("alert {id}: {}", d.status);
                if let Some(r) = &d.refused {
                    eprintln!("refused: {r}");
                }
            }
            Ok(if d.refused.is_some() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

fn print_detail(d: &AlertDetail) {
    let s = &d.summary;
    let e = &d.record.entry;
    println!("ALERT #{}  {}", s.id, s.status);
    println!("  {}", d.reminder);
    println!(
        "  read     {} at {} (entry {}){}",
        s.plate_read,
        d.read_at.map_or("?".to_string(), |t| t.to_string()),
        s.read_seq,
        d.read_location
            .as_deref()
            .map(|l| format!(", {l}"))
            .unwrap_or_default()
    );
    if let Some(alt) = &s.alternative {
        println!("  {}", alt.notice());
    }
    println!("  matched  {}  — {}", s.matched_text, s.match_kind);
    println!(
        "  entry    plate {} state {} · {} {} {} {} · {}",
        e.plate, e.state, e.vehicle_year, e.make, e.model, e.colour, e.category
    );
    if !e.note.is_empty() || !e.oca.is_empty() {
        println!("  reason   {} (case {})", e.note, e.oca);
    }
    if !e.nic.is_empty() || !e.ori.is_empty() {
        println!("  NIC {}  ORI {}", e.nic, e.ori);
    }
    println!(
        "  list     {}, copy aged {}{}{}",
        s.list,
        age(s.list_age_ms),
        if s.list_stale {
            "  STALE: older than policy allows"
        } else {
            ""
        },
        if s.past_match {
            "  (past match: read stored before the entry was listed)"
        } else {
            ""
        }
    );
    for x in &d.dispositions {
        println!(
            "  {}  {} by {} ({}){}",
            x.at,
            x.stage,
            x.user,
            x.agency,
            if x.note.is_empty() {
                String::new()
            } else {
                format!(": {}", x.note)
            }
        );
    }
}
