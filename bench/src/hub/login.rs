//! `alpr-bench hub login`: argon2id logins through the hub's API.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

use super::served::{loopback_config, ServedHub, PASSWORD};
use super::{percentile, write_pki};
use alpr_hub::config::HubConfig;

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// Logins to time.
    #[arg(long, default_value_t = 50)]
    pub logins: usize,
    /// Where the run's temporary folder goes (default: the current folder).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

/// What `alpr-bench hub login --json` prints.
#[derive(Debug, Serialize)]
pub struct LoginReport {
    pub logins: usize,
    pub login_p50_ms: f64,
    pub login_p99_ms: f64,
    /// argon2id parameters.
    pub argon2: &'static str,
}

/// `alpr-bench hub login`: logins through the API of a hub served in this
/// process (HTTPS on loopback, argon2id, the access-log entry committed
/// before each answer), one at a time, each on a new connection.
pub async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let base = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let dir = tempfile::Builder::new()
        .prefix("hub-bench-login-")
        .tempdir_in(&base)
        .with_context(|| format!("creating a folder in {}", base.display()))?;
    let pki = dir.path().join("pki");
    write_pki(&pki)?;
    let config = HubConfig {
        // The bench logs in many times as one user: no lock-out.
        login_failures: 1000,
        login_source_failures: 100_000,
        ..loopback_config(&dir.path().join("hub-data"), &pki)
    };
    let hub = ServedHub::start(config).await?;
    let (url, ca) = (hub.url.clone(), hub.ca.clone());
    let result = async {
        // An administrator and an operator; the operator's logins are timed.
        hub.operator().await?;
        let mut lat = Vec::with_capacity(args.logins);
        for _ in 0..args.logins.max(1) {
            let mut c = alpr_hub::api::client::ApiClient::connect(&url, &ca).await?;
            let t = Instant::now();
            let _: alpr_hub::users::Login = c
                .post(
                    "/api/v1/login",
                    &alpr_hub::api::users::LoginRequest {
                        username: "op".into(),
                        password: PASSWORD.into(),
                    },
                )
                .await?;
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        anyhow::Ok(lat)
    }
    .await;
    let stopped = hub.stop().await;
    let mut lat = result?;
    stopped?;
    lat.sort_by(f64::total_cmp);
    let report = LoginReport {
        logins: lat.len(),
        login_p50_ms: percentile(&lat, 0.50),
        login_p99_ms: percentile(&lat, 0.99),
        argon2: "argon2id m=19456 KiB t=2 p=1",
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{:<8} {:>10} {:>10}", "logins", "p50 ms", "p99 ms");
        println!(
            "{:<8} {:>10.1} {:>10.1}",
            report.logins, report.login_p50_ms, report.login_p99_ms
        );
        println!("({}; target p99 ≤ 100 ms)", report.argon2);
    }
    Ok(())
}
