//! What every binary of the system does the same way at its edges: logs to
//! stderr (level from `RUST_LOG`, default `info`) and one error line with
//! its causes before a non-zero exit; Ctrl-C and SIGTERM start an orderly
//! shutdown.

use std::fmt::Display;
use std::process::ExitCode;

/// Send `tracing` events to stderr; stdout stays for the command's output.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// The process's exit code; an error is printed once, with its causes.
pub fn exit_with<E: Display>(result: Result<ExitCode, E>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Cancel `token` on Ctrl-C or SIGTERM (call inside a tokio runtime).
pub fn cancel_on_signals(token: tokio_util::sync::CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            if let Ok(mut term) = signal(SignalKind::terminate()) {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                token.cancel();
                return;
            }
        }
        let _ = tokio::signal::ctrl_c().await;
        token.cancel();
    });
}
