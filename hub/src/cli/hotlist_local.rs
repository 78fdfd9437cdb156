//! `hub hotlist add|edit|remove` and `hub hotlist list --local`: local
//! hotlist entries through the hub's API, as the logged-in user (the
//! subcommands join [`crate::cli::hotlist::HotlistCommand`]).

use std::process::ExitCode;

use alpr_shared::hotlist::local::{summary, EntryArgs};
use alpr_shared::hotlist::LocalEntry;
use alpr_shared::types::UnixMillis;
use anyhow::Context;

use crate::api::client::{api_get, api_post, path_segment};
use crate::api::local_entries::RemoveEntry;

/// The local-entry subcommands of `hub hotlist`.
#[derive(Debug, clap::Subcommand)]
pub enum LocalCommand {
    /// Add a local entry: a plate or a partial one with `*` and `?`
    /// (operators, supervisors; officers too).
    Add {
        plate: String,
        #[command(flatten)]
        args: EntryArgs,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Change fields of a local entry (each field on its own).
    Edit {
        id: String,
        /// A new plate or pattern.
        #[arg(long)]
        plate: Option<String>,
        #[command(flatten)]
        args: EntryArgs,
        #[arg(long)]
        json: bool,
    },
    /// Remove a local entry for good (e.g. "vehicle recovered").
    Remove {
        id: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        json: bool,
    },
}

fn print_entry(verb: &str, e: &LocalEntry, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(e)?);
    } else {
        println!("entry {} {verb}: {}", e.id, summary(e, UnixMillis::now()));
    }
    Ok(())
}

pub fn run(cmd: LocalCommand) -> anyhow::Result<ExitCode> {
    let now = UnixMillis::now();
    match cmd {
        LocalCommand::Add { plate, args, json } => {
            anyhow::ensure!(args.reason.is_some(), "--reason is required");
            let fields = args.fields(Some(&plate), now).map_err(anyhow::Error::msg)?;
            let e: LocalEntry = api_post("/api/v1/hotlist/local", &fields)?;
            print_entry("added", &e, json)?;
        }
        LocalCommand::Edit {
            id,
            plate,
            args,
            json,
        } => {
            let fields = args
                .fields(plate.as_deref(), now)
                .map_err(anyhow::Error::msg)?;
            let e: LocalEntry = api_post(
                &format!("/api/v1/hotlist/local/{}", path_segment(&id, "an entry")?),
                &fields,
            )?;
            print_entry("edited", &e, json)?;
        }
        LocalCommand::Remove { id, reason, json } => {
            let e: LocalEntry = api_post(
                &format!(
                    "/api/v1/hotlist/local/{}/remove",
                    path_segment(&id, "an entry")?
                ),
                &RemoveEntry { reason },
            )?;
            print_entry("removed", &e, json)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `hub hotlist list --local [--all] [--json]`.
pub fn list(all: bool, json: bool) -> anyhow::Result<ExitCode> {
    let entries: Vec<LocalEntry> = api_get(&format!(
        "/api/v1/hotlist/local{}",
        if all { "?all=true" } else { "" }
    ))?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&entries).context("printing the entries")?
        );
    } else {
        print!("{}", render(&entries, UnixMillis::now()));
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per entry.
pub fn render(entries: &[LocalEntry], now: UnixMillis) -> String {
    if entries.is_empty() {
        return "no local entries\n".into();
    }
    entries
        .iter()
        .map(|e| format!("{}  {}\n", e.id, summary(e, now)))
        .collect()
}
