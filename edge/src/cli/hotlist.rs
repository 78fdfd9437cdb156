//! `edge hotlist add|edit|remove|list`: local hotlist entries through the
//! running node's local socket, as the officer logged in with `edge login`
//! (works with the hub out of reach; entries reach it when the link is up).

use std::path::PathBuf;
use std::process::ExitCode;

use alpr_shared::hotlist::local::{summary, EntryArgs};
use alpr_shared::hotlist::LocalEntry;
use alpr_shared::types::UnixMillis;
use anyhow::Context;

use crate::cli::officer::{read_token, session_path};
use crate::config::EdgeConfig;
use crate::hotlist::local::{
    LocalAddRequest, LocalEditRequest, LocalListRequest, LocalRemoveRequest,
};
use crate::local::{local_request, LocalRequest};

#[derive(Debug, clap::Subcommand)]
pub enum HotlistCommand {
    /// Add a local entry on this node: a plate or a partial one with `*`
    /// and `?` (e.g. `7AB*`); it alerts here at once.
    Add {
        plate: String,
        #[command(flatten)]
        args: EntryArgs,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Change fields of an entry you added.
    Edit {
        id: String,
        #[arg(long)]
        plate: Option<String>,
        #[command(flatten)]
        args: EntryArgs,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Remove an entry you added, for good (e.g. "vehicle recovered").
    Remove {
        id: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// The entries this node knows (with --all, removed and expired too).
    List {
        #[arg(long)]
        all: bool,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

fn call(
    config: Option<PathBuf>,
    make: impl FnOnce(String) -> LocalRequest,
) -> anyhow::Result<Result<serde_json::Value, String>> {
    let config = EdgeConfig::load_or_default(config.as_deref())?;
    let token = read_token(&session_path(&config))?;
    Ok(local_request(&config, &make(token)).map_err(|e| format!("{e:#}")))
}

fn show(verb: &str, v: serde_json::Value, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let e: LocalEntry = serde_json::from_value(v).context("the node's answer")?;
        println!("entry {} {verb}: {}", e.id, summary(&e, UnixMillis::now()));
    }
    Ok(ExitCode::SUCCESS)
}

fn refused(e: &str) -> anyhow::Result<ExitCode> {
    eprintln!("refused: {e}");
    Ok(ExitCode::FAILURE)
}

pub fn run(cmd: HotlistCommand) -> anyhow::Result<ExitCode> {
    let now = UnixMillis::now();
    match cmd {
        HotlistCommand::Add {
            plate,
            args,
            config,
            json,
        } => {
            anyhow::ensure!(args.reason.is_some(), "--reason is required");
            let fields = args.fields(Some(&plate), now).map_err(anyhow::Error::msg)?;
            match call(config, |token| {
                LocalRequest::HotlistAdd(LocalAddRequest { token, fields })
            })? {
                Ok(v) => show("added", v, json),
                Err(e) => refused(&e),
            }
        }
        HotlistCommand::Edit {
            id,
            plate,
            args,
            config,
            json,
        } => {
            let fields = args
                .fields(plate.as_deref(), now)
                .map_err(anyhow::Error::msg)?;
            match call(config, |token| {
                LocalRequest::HotlistEdit(LocalEditRequest { token, id, fields })
            })? {
                Ok(v) => show("edited", v, json),
                Err(e) => refused(&e),
            }
        }
        HotlistCommand::Remove {
            id,
            reason,
            config,
            json,
        } => match call(config, |token| {
            LocalRequest::HotlistRemove(LocalRemoveRequest { token, id, reason })
        })? {
            Ok(v) => show("removed", v, json),
            Err(e) => refused(&e),
        },
        HotlistCommand::List { all, config, json } => {
            let v = match call(config, |token| {
                LocalRequest::HotlistList(LocalListRequest { token, all })
            })? {
                Ok(v) => v,
                Err(e) => return refused(&e),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            let entries: Vec<LocalEntry> =
                serde_json::from_value(v).context("the node's answer")?;
            if entries.is_empty() {
                println!("no local entries");
            }
            for e in &entries {
                println!("{}  {}", e.id, summary(e, now));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
