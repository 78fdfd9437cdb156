//! `edge`: the node binary. Thin: parse the command line, call the library.

use std::process::ExitCode;

use alpr_edge::cli::officer;
use alpr_edge::run as node;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "edge",
    version,
    about = "ALPR edge node: capture, recognise, sign, store, sync"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read the plates in image files.
    Recognize(alpr_edge::cli::recognize::RecognizeArgs),
    /// Run the node: store reads and sync them to the hub in the background.
    Run(node::RunArgs),
    /// Ask the running node for its backlog, last sync and link state.
    Status(node::StatusArgs),
    /// For a service manager: exit 0 if the running node is healthy, else 1
    /// with the reason.
    Health(node::HealthArgs),
    /// Show the policy this node enforces (pushed by the hub).
    Policy(officer::PolicyArgs),
    /// Log an officer in on this node, offline, against its policy
    /// (password from ALPR_PASSWORD or prompted).
    Login(officer::LoginArgs),
    /// End the officer's session.
    Logout(officer::LogoutArgs),
    /// Search this node's reads (needs a login and a purpose; logged).
    Search(officer::SearchArgs),
    /// Legal holds on this node: place one, list them (needs a login).
    #[command(subcommand)]
    Hold(alpr_edge::cli::holds::HoldCommand),
    /// Hotlist alerts awaiting disposition (with --all, every one).
    Alerts(alpr_edge::cli::alerts::AlertsArgs),
    /// One alert: show it, or record its disposition in stages.
    #[command(subcommand)]
    Alert(alpr_edge::cli::alerts::AlertCommand),
    /// Local hotlist entries on this node: add, edit, remove, list (needs
    /// a login; works offline).
    #[command(subcommand)]
    Hotlist(alpr_edge::cli::hotlist::HotlistCommand),
}

fn main() -> ExitCode {
    alpr_shared::cli::init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Recognize(a) => alpr_edge::cli::recognize::recognize(a),
        Command::Run(a) => node::run(a),
        Command::Status(a) => node::status(a),
        Command::Health(a) => node::health(a),
        Command::Policy(a) => officer::policy(a),
        Command::Login(a) => officer::login(a),
        Command::Logout(a) => officer::logout(a),
        Command::Search(a) => officer::search(a),
        Command::Hold(c) => alpr_edge::cli::holds::run(c),
        Command::Alerts(a) => alpr_edge::cli::alerts::alerts(a),
        Command::Alert(c) => alpr_edge::cli::alerts::alert(c),
        Command::Hotlist(c) => alpr_edge::cli::hotlist::run(c),
    };
    alpr_shared::cli::exit_with(result)
}
