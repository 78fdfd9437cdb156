//! `alpr-bench`: the benchmarks and load generators of the hub and the edge,
//! kept out of the product binaries. Each prints a table (`--json` for
//! scripts). `alpr-bench hub …` measures the hub through its library or the
//! `hub` binary beside this one; `alpr-bench edge …` the edge's.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

mod edge;
mod hub;

#[derive(Debug, Parser)]
#[command(
    name = "alpr-bench",
    version,
    about = "ALPR benchmarks: hub and edge figures, printed as tables or JSON"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The hub's benchmarks.
    #[command(subcommand)]
    Hub(HubCommand),
    /// The edge's benchmarks.
    #[command(subcommand)]
    Edge(EdgeCommand),
}

#[derive(Debug, Subcommand)]
enum HubCommand {
    /// Verified, durably stored reads per second from many edges.
    Ingest(hub::IngestArgs),
    /// A new generation of a bulk list pushed to N connected edges over
    /// QUIC: time until applied on each (p50/p99).
    Push(hub::push::PushArgs),
    /// Login time through the API (argon2id), p50 and p99.
    Login(hub::LoginArgs),
    /// Searches over a store of N signed reads, each after its durable
    /// access record: exact, wildcard, OCR-tolerant, canvass.
    Search(hub::search::SearchBenchArgs),
    /// Write and verify the evidence bundle of a case of N reads with
    /// photos: `export_s`, `verify_s`.
    Export(hub::export::ExportBenchArgs),
    /// Purge N expired reads with images while edges keep ingesting:
    /// purge time and the share of ingest rate kept.
    Retention(hub::retention::RetentionBenchArgs),
    /// Import a generated N-row NCIC extract (`import_s`), then one with
    /// --changes rows replaced (`delta_bytes`).
    Hotlist(hub::hotlist::HotlistBenchArgs),
    /// Server time of console pages over a store of N signed reads: the
    /// dashboard and the search form (exact, wildcard, tolerant, canvass).
    Console(hub::console::ConsoleBenchArgs),
}

#[derive(Debug, Subcommand)]
enum EdgeCommand {
    /// Accuracy and speed of recognition on a labelled folder, beside the peer.
    Recognize(edge::recognise::BenchRecognizeArgs),
    /// Live cameras end to end: RTSP cameras playing vehicle passes, the
    /// real edge, one read per pass, latency, CPU.
    Camera(edge::camera::CameraBenchArgs),
    /// Which state issued a plate: accuracy and time per crop on a folder
    /// of crops labelled in labels.csv.
    State(edge::state::StateBenchArgs),
    /// Load, match and delta-update speed of a bulk hotlist (1M rows).
    Hotlist(edge::HotlistBenchArgs),
    /// Simulated edges for `alpr-bench hub push` (started by it).
    #[command(hide = true)]
    PushEdges(edge::PushEdgesArgs),
}

fn main() -> ExitCode {
    alpr_shared::cli::init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Hub(cmd) => run_hub(cmd),
        Command::Edge(EdgeCommand::Recognize(a)) => edge::recognise::bench(a),
        Command::Edge(EdgeCommand::Hotlist(a)) => edge::hotlist(a),
        Command::Edge(EdgeCommand::State(a)) => edge::state::bench(a),
        Command::Edge(EdgeCommand::Camera(a)) => edge::camera::bench(a),
        Command::Edge(EdgeCommand::PushEdges(a)) => edge::push_edges(a),
    };
    alpr_shared::cli::exit_with(result)
}

fn run_hub(cmd: HubCommand) -> anyhow::Result<ExitCode> {
    let rt = alpr_hub::api::client::runtime;
    match cmd {
        HubCommand::Ingest(a) => rt()?.block_on(hub::ingest(a))?,
        HubCommand::Push(a) => rt()?.block_on(hub::push::run(a))?,
        HubCommand::Login(a) => rt()?.block_on(hub::login(a))?,
        HubCommand::Search(a) => rt()?.block_on(hub::search::run(a))?,
        HubCommand::Export(a) => hub::export::run(a)?,
        HubCommand::Retention(a) => rt()?.block_on(hub::retention::run(a))?,
        HubCommand::Hotlist(a) => rt()?.block_on(hub::hotlist::run(a))?,
        HubCommand::Console(a) => rt()?.block_on(hub::console::run(a))?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The `hub` binary beside this one (the benches that run `hub serve`
/// processes start it, as an operator would).
pub(crate) fn hub_binary() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("finding this binary")?;
    let hub = me.with_file_name("hub");
    anyhow::ensure!(
        hub.exists(),
        "the hub processes run the hub binary, and there is none at {} \
         (build it: cargo build -p alpr-hub)",
        hub.display()
    );
    Ok(hub)
}
