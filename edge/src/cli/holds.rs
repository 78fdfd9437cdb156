//! `edge hold add|list`: through the running node's local socket, as the
//! officer logged in with `edge login`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::cli::officer::{read_token, session_path};
use crate::config::EdgeConfig;
use crate::holds::{HoldAddRequest, HoldList, HoldListRequest};
use crate::local::{local_request, LocalRequest};

#[derive(Debug, clap::Subcommand)]
pub enum HoldCommand {
    /// Place a hold on this node (kept from retention's purge until it is
    /// released at the hub); it reaches the hub when the link is up.
    Add(AddArgs),
    /// The holds this node knows (with --all, released ones too).
    List {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        all: bool,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub hold: alpr_shared::control::holds::HoldArgs,
}

pub fn run(cmd: HoldCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        HoldCommand::Add(a) => {
            let config = EdgeConfig::load_or_default(a.config.as_deref())?;
            let token = read_token(&session_path(&config))?;
            let req = HoldAddRequest {
                token,
                case: a.hold.case.clone(),
                reason: a.hold.reason.clone(),
                scope: a.hold.scope()?,
            };
            match local_request(&config, &LocalRequest::HoldAdd(req)) {
                Ok(v) => {
                    let id = v.get("id").and_then(|i| i.as_str()).unwrap_or("?");
                    println!("hold {id} placed for case {}", a.hold.case);
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("hold refused: {e:#}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        HoldCommand::List { config, all, json } => {
            let config = EdgeConfig::load_or_default(config.as_deref())?;
            let token = read_token(&session_path(&config))?;
            let v = match local_request(
                &config,
                &LocalRequest::HoldList(HoldListRequest { token, all }),
            ) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("refused: {e:#}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            let list: HoldList = serde_json::from_value(v).context("the node's answer")?;
            println!(
                "hub's holds merged: {}",
                list.refreshed_at
                    .map_or("never".to_string(), |t| t.to_string())
            );
            if list.holds.is_empty() {
                println!("no holds");
            }
            for h in &list.holds {
                let state = match &h.released {
                    None => "active".to_string(),
                    Some(r) => format!("released by {}", r.by),
                };
                println!(
                    "{}  case {}  {}  placed by {} on {}",
                    h.id, h.case, state, h.placed_by, h.placed_on
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
