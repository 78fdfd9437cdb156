//! `hub`: the hub binary. Thin: parse the command line, call the library.

use std::process::ExitCode;

use alpr_hub::{cli as sync_cli, pki, verify};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "hub",
    version,
    about = "ALPR hub: ingest signed reads, control state, audit"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Deployment PKI: create the CA, enroll nodes (works on files).
    #[command(subcommand)]
    Pki(pki::PkiCommand),
    /// Verify exported log bundles offline, from the CA certificate alone.
    Verify(verify::OfflineVerifyArgs),
    /// Run the hub: accept nodes over QUIC, verify and store their reads.
    Serve(sync_cli::ServeArgs),
    /// Log in to the hub's API; the session is saved for the other commands.
    Login(sync_cli::LoginArgs),
    /// End the saved session.
    Logout,
    /// Create the first administrator (once, on the hub's machine).
    Bootstrap(sync_cli::BootstrapArgs),
    /// Users: add, list, disable, record training, set passwords
    /// (administrators).
    #[command(subcommand)]
    User(sync_cli::UserCommand),
    /// List nodes: last contact, acknowledged sequence, backlog, refusals.
    Nodes(sync_cli::NodesArgs),
    /// For a service manager: exit 0 if the running hub is healthy, else 1
    /// with the reason.
    Health(sync_cli::HealthArgs),
    /// Revoke a node certificate on the running hub (closes its connection).
    Revoke(sync_cli::RevokeArgs),
    /// Search reads: plate (exact, `*`/`?` wildcards, --tolerant), time,
    /// place, node; a purpose (and case number where policy asks) required.
    Search(alpr_hub::cli::search::SearchArgs),
    /// One read in full, with its photos (a logged view; purpose required).
    Read(sync_cli::ReadArgs),
    /// The signed policy edges enforce: show it, or set new settings
    /// (administrators; the next version is pushed to every edge).
    #[command(subcommand)]
    Policy(alpr_hub::cli::policy::PolicyCommand),
    /// Legal holds: place, release, list (operators and supervisors).
    #[command(subcommand)]
    Hold(alpr_hub::cli::holds::HoldCommand),
    /// Alerts raised on the nodes, with their dispositions (officers,
    /// operators, supervisors; covert ones for supervisors).
    Alerts(alpr_hub::cli::alerts::AlertsArgs),
    /// One alert in full: `hub alert show NODE#SEQ`.
    #[command(subcommand)]
    Alert(alpr_hub::cli::alerts::AlertCommand),
    /// Bulk hotlists: import a list file (NCIC, CA DOJ, CSV) as a signed
    /// generation; list, show, generations.
    #[command(subcommand)]
    Hotlist(alpr_hub::cli::hotlist::HotlistCommand),
    /// Audits: re-verify every log the hub holds; who accessed what; training.
    #[command(subcommand)]
    Audit(sync_cli::audit::AuditCommand),
    /// Export a case's reads as an evidence bundle for an in-state public
    /// agency (supervisors); writes FILE and its HTML report FILE.html.
    Export(alpr_hub::cli::export::ExportArgs),
    /// Retention: what is due, and run it now (administrators).
    #[command(subcommand)]
    Retention(alpr_hub::cli::retention::RetentionCommand),
    /// Bring the store's schema to this binary's version (PostgreSQL:
    /// also done by `hub serve` on start; a newer schema is refused).
    Migrate(alpr_hub::cli::store::MigrateArgs),
    /// The store itself: `hub store check` verifies every chain it holds.
    #[command(subcommand)]
    Store(alpr_hub::cli::store::StoreCommand),
}

fn main() -> ExitCode {
    alpr_shared::cli::init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Pki(cmd) => pki::run(cmd).map(|()| ExitCode::SUCCESS),
        Command::Verify(args) => verify::run(args),
        Command::Serve(args) => sync_cli::serve(args),
        Command::Login(args) => sync_cli::login(args),
        Command::Policy(cmd) => sync_cli::policy(cmd),
        Command::Search(args) => sync_cli::search(args),
        Command::Read(args) => sync_cli::read(args),
        Command::Logout => sync_cli::logout(),
        Command::Bootstrap(args) => sync_cli::bootstrap(args),
        Command::User(cmd) => sync_cli::user(cmd),
        Command::Nodes(args) => sync_cli::nodes(args),
        Command::Health(args) => sync_cli::health(args),
        Command::Revoke(args) => sync_cli::revoke(args),
        Command::Audit(cmd) => sync_cli::audit::run(cmd),
        Command::Hold(cmd) => alpr_hub::cli::holds::run(cmd),
        Command::Alerts(args) => alpr_hub::cli::alerts::alerts(args),
        Command::Alert(cmd) => alpr_hub::cli::alerts::alert(cmd),
        Command::Hotlist(cmd) => alpr_hub::cli::hotlist::run(cmd),
        Command::Retention(cmd) => alpr_hub::cli::retention::run(cmd),
        Command::Migrate(args) => alpr_hub::cli::store::migrate(args),
        Command::Store(cmd) => alpr_hub::cli::store::store(cmd),
        Command::Export(args) => alpr_hub::cli::export::export(args),
    };
    alpr_shared::cli::exit_with(result)
}
