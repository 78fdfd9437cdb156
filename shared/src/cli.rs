//! What every binary of the system does the same way at its edges: logs to
//! stderr (level from `RUST_LOG`, default `info`) and one error line with
//! its causes before a non-zero exit; Ctrl-C and SIGTERM start an orderly
//! shutdown.

use std::fmt::Display;
use std::process::ExitCode;

/// Libraries whose debug lines print the data they carry (tokio-postgres
/// prints each statement's parameters: plates, places, usernames). They
/// are held at WARN whatever `RUST_LOG` asks: no log line, at any level,
/// names a plate, a place or a person.
const HELD_AT_WARN: &[&str] = &["tokio_postgres", "postgres_protocol"];

/// The filter of `RUST_LOG` (`info` when unset or invalid), with
/// [`HELD_AT_WARN`] held at WARN.
fn log_filter(rust_log: Option<&str>) -> tracing_subscriber::EnvFilter {
    let mut filter = rust_log
        .and_then(|s| tracing_subscriber::EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    for target in HELD_AT_WARN {
        if let Ok(d) = format!("{target}=warn").parse() {
            filter = filter.add_directive(d);
        }
    }
    filter
}

/// Send `tracing` events to stderr; stdout stays for the command's output.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(log_filter(std::env::var("RUST_LOG").ok().as_deref()))
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

/// Why a command-line value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    #[error("{0:?} is not an RFC 3339 UTC time (e.g. 2026-11-28T16:00:00Z): {1}")]
    Time(String, String),
    #[error("{0:?} is before 1970")]
    BeforeEpoch(String),
    #[error("a place is LAT,LON in degrees (got {0:?})")]
    Point(String),
}

/// A time as people type it on a command line (RFC 3339, UTC).
pub fn parse_time(s: &str) -> Result<crate::types::UnixMillis, ArgError> {
    let t =
        humantime::parse_rfc3339_weak(s).map_err(|e| ArgError::Time(s.into(), e.to_string()))?;
    let d = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| ArgError::BeforeEpoch(s.into()))?;
    Ok(crate::types::UnixMillis(
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
    ))
}

/// A place as people type it: `LAT,LON` in degrees.
pub fn parse_point(s: &str) -> Result<(f64, f64), ArgError> {
    let bad = || ArgError::Point(s.into());
    let (lat, lon) = s.split_once(',').ok_or_else(bad)?;
    let lat: f64 = lat.trim().parse().map_err(|_| bad())?;
    let lon: f64 = lon.trim().parse().map_err(|_| bad())?;
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
        return Err(bad());
    }
    Ok((lat, lon))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a subscriber with `log_filter(rust_log)` writes of a
    /// tokio-postgres debug line carrying a plate, and of one of ours.
    fn written(rust_log: &str) -> String {
        #[derive(Clone, Default)]
        struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("sink").extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let out = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(log_filter(Some(rust_log)))
            .with_writer(move || out.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(
                target: "tokio_postgres::query",
                "executing statement s1 with parameters: [\"7ABC123\"]"
            );
            tracing::debug!(target: "alpr_hub::sync", "ours");
        });
        let bytes = sink.0.lock().expect("sink").clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn a_library_that_logs_its_data_is_held_at_warn_whatever_rust_log_asks() {
        for asked in ["trace", "debug", "tokio_postgres=trace,debug"] {
            let out = written(asked);
            assert!(out.contains("ours"), "{asked}: {out}");
            assert!(!out.contains("7ABC123"), "{asked}: {out}");
        }
    }

    #[test]
    fn times_and_places_parse_or_say_why() {
        assert_eq!(
            parse_time("1970-01-01T00:00:01Z"),
            Ok(crate::types::UnixMillis(1000))
        );
        assert!(matches!(parse_time("yesterday"), Err(ArgError::Time(..))));
        assert_eq!(parse_point(" 38.58, -121.49"), Ok((38.58, -121.49)));
        for bad in ["38.58", "north,west", "91,0", "0,181"] {
            assert!(parse_point(bad).is_err(), "{bad}");
        }
    }
}
