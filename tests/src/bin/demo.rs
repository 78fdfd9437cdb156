//! `just demo`: the newcomer's story on loopback — a hub, a fixed pole
//! camera and a patrol car, real photos as their cameras, the car's link
//! cut and restored, and a final audit. Leaves its data in one folder.
//! Ends with the web console's address and a login; `--serve` keeps the
//! hub up for it until Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "demo",
    about = "ALPR demo: photos -> signed reads -> hub, with an offline patrol car"
)]
struct Args {
    /// Folder of plate photos replayed as the two cameras.
    #[arg(env = "ALPR_DEMO_PHOTOS")]
    photos: PathBuf,
    /// The plate models.
    #[arg(long, env = "ALPR_MODELS")]
    models: PathBuf,
    /// Where to put everything (default: demo-data/run-<time>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// At most this many photos (0: all).
    #[arg(long, default_value_t = 0)]
    limit: usize,
    /// At the end, keep the hub and its web console up until Ctrl-C.
    #[arg(long)]
    serve: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let out = args.out.unwrap_or_else(|| {
        let stamp = alpr_shared::types::UnixMillis::now()
            .to_string()
            .replace([':', '.'], "-");
        PathBuf::from("demo-data").join(format!("run-{stamp}"))
    });
    let opts = alpr_e2e::story::StoryOptions {
        photos: args.photos,
        models: args.models,
        out,
        limit: args.limit,
        vehicle_interval: Duration::from_millis(400),
        verbose: true,
        serve: args.serve,
    };
    match alpr_e2e::story::run(&opts) {
        Ok(o) if o.audit_ok && o.offline_ok && o.hub_matches_edge.iter().all(|(_, same)| *same) => {
            ExitCode::SUCCESS
        }
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("demo failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}
