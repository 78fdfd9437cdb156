//! `edge recognize` and `edge bench recognize`.

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `edge recognize`.
#[derive(Debug, clap::Args)]
pub struct RecognizeArgs {
    /// Print one JSON object per image.
    #[arg(long)]
    pub json: bool,
    /// Image files to read.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// Arguments of `edge bench recognize`.
#[derive(Debug, clap::Args)]
pub struct BenchRecognizeArgs {
    /// Folder of NAME.jpg + NAME.txt.
    pub dir: PathBuf,
}

pub fn recognize(_args: RecognizeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("recognition is not built yet")
}

pub fn bench(_args: BenchRecognizeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("recognition is not built yet")
}
