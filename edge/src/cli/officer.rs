//! `edge policy`, `edge login`, `edge logout` and `edge search`: clients of
//! the running node's local socket. The session token `edge login` gets is
//! kept 0600 in `$ALPR_SESSION` (default: `officer-session.json` in the
//! node's data folder); the node keeps only its hash.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use alpr_shared::types::UnixMillis;
use anyhow::Context;

use crate::config::EdgeConfig;
use crate::local::{local_request, LocalRequest};
use crate::policy::{LoginOk, PolicyView};
use crate::search::{SearchAnswer, SearchRequest};

#[derive(Debug, clap::Args)]
pub struct PolicyArgs {
    /// The running node's configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The officer's username (as in the policy).
    #[arg(long)]
    pub user: String,
}

#[derive(Debug, clap::Args)]
pub struct LogoutArgs {
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Plate, exact or with wildcards (`*` any run, `?` one character).
    pub pattern: String,
    /// Confusable characters match each other (0/O/D/Q, 1/I, 2/Z, 5/S, 8/B, 6/G).
    #[arg(long)]
    pub tolerant: bool,
    /// From this time (RFC 3339 UTC).
    #[arg(long)]
    pub from: Option<String>,
    /// Until this time (RFC 3339 UTC).
    #[arg(long)]
    pub to: Option<String>,
    /// A point `LAT,LON` in degrees; with `--radius`.
    #[arg(long)]
    pub near: Option<String>,
    /// Metres around `--near`.
    #[arg(long)]
    pub radius: Option<f64>,
    /// Why: a purpose code from the policy's list.
    #[arg(long)]
    pub purpose: Option<String>,
    /// The case number (required for some purposes).
    #[arg(long)]
    pub case: Option<String>,
    /// Write each hit's crop image (JPEG) into this folder.
    #[arg(long)]
    pub crops: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

/// Where the session token is kept.
pub fn session_path(config: &EdgeConfig) -> PathBuf {
    std::env::var_os("ALPR_SESSION")
        .map(PathBuf::from)
        .unwrap_or_else(|| config.data_dir.join("officer-session.json"))
}

fn parse_time(s: &str) -> anyhow::Result<UnixMillis> {
    Ok(alpr_shared::cli::parse_time(s)?)
}

pub fn policy(args: PolicyArgs) -> anyhow::Result<ExitCode> {
    let config = EdgeConfig::load_or_default(args.config.as_deref())?;
    let v = local_request(&config, &LocalRequest::Policy)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let p: PolicyView = serde_json::from_value(v).context("the node's answer")?;
    println!(
        "policy v{} (issued {}), refreshed {}{}",
        p.version,
        p.issued_at,
        p.refreshed_at.as_deref().unwrap_or("never"),
        if p.stale {
            " — STALE: logins are refused until the hub is reached"
        } else {
            ""
        }
    );
    println!(
        "retention: hub {} days, edge {} days; may run {} without a refresh",
        p.hub_retention_days,
        p.edge_retention_days,
        humantime::format_duration(std::time::Duration::from_millis(p.max_stale_ms))
    );
    println!("officers ({}):", p.officers.len());
    for o in &p.officers {
        println!(
            "  {:<16} {:<10} {:<20} training until {}",
            o.username, o.agency, o.title, o.training_expires
        );
    }
    println!("purposes ({}):", p.purposes.len());
    for pu in &p.purposes {
        println!(
            "  {:<22} {}{}",
            pu.code,
            pu.label,
            if pu.case_required {
                " (case number required)"
            } else {
                ""
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn login(args: LoginArgs) -> anyhow::Result<ExitCode> {
    let config = EdgeConfig::load_or_default(args.config.as_deref())?;
    let password = match std::env::var("ALPR_PASSWORD") {
        Ok(p) => p,
        Err(_) => rpassword::prompt_password(format!("password for {}: ", args.user))
            .context("reading the password")?,
    };
    let v = local_request(
        &config,
        &LocalRequest::Login {
            user: args.user,
            password,
        },
    );
    let v = match v {
        Ok(v) => v,
        Err(e) => {
            eprintln!("login refused: {e:#}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let ok: LoginOk = serde_json::from_value(v.clone()).context("the node's answer")?;
    let path = session_path(&config);
    write_private(&path, &serde_json::to_vec(&v)?)?;
    println!(
        "logged in as {} ({}) until {} under policy v{}",
        ok.user, ok.agency, ok.expires_at, ok.policy_version
    );
    Ok(ExitCode::SUCCESS)
}

pub fn logout(args: LogoutArgs) -> anyhow::Result<ExitCode> {
    let config = EdgeConfig::load_or_default(args.config.as_deref())?;
    let path = session_path(&config);
    if let Ok(token) = read_token(&path) {
        let _ = local_request(&config, &LocalRequest::Logout { token });
    }
    let _ = std::fs::remove_file(&path);
    println!("logged out");
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn read_token(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("no session at {}: run `edge login`", path.display()))?;
    let ok: LoginOk = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a session file", path.display()))?;
    Ok(ok.token)
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing the session to {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(bytes)?;
    Ok(())
}

pub fn search(args: SearchArgs) -> anyhow::Result<ExitCode> {
    let config = EdgeConfig::load_or_default(args.config.as_deref())?;
    let token = read_token(&session_path(&config))?;
    let near = args
        .near
        .as_deref()
        .map(alpr_shared::cli::parse_point)
        .transpose()
        .context("--near")?;
    let req = SearchRequest {
        token,
        pattern: args.pattern,
        tolerant: args.tolerant,
        from: args.from.as_deref().map(parse_time).transpose()?,
        to: args.to.as_deref().map(parse_time).transpose()?,
        near,
        radius_m: args.radius,
        purpose: args.purpose,
        case: args.case,
        with_crops: args.crops.is_some(),
    };
    let v = match local_request(&config, &LocalRequest::Search(req)) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("search refused: {e:#}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut a: SearchAnswer = serde_json::from_value(v).context("the node's answer")?;
    let mut crop_files = std::collections::HashMap::new();
    if let Some(dir) = &args.crops {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for h in &mut a.hits {
            if let Some(bytes) = h.crop_jpeg_hex.take().and_then(|x| hex::decode(x).ok()) {
                let path = dir.join(format!("{}-{}.jpg", h.seq, h.plate));
                write_private(&path, &bytes)?;
                crop_files.insert(h.seq, path);
            }
        }
    }
    println!(
        "{} read(s) for {} (purpose {}{}), logged under policy v{}",
        a.hits.len(),
        a.user,
        a.purpose,
        a.case
            .as_deref()
            .map(|c| format!(", case {c}"))
            .unwrap_or_default(),
        a.policy_version
    );
    for h in &a.hits {
        println!(
            "{:<10} {} ({})  {} ({})  camera {}  conf {:.1}%  signature {}  crop {}",
            h.plate,
            h.captured_at,
            h.time_source,
            h.location,
            h.location_source,
            h.camera,
            f64::from(h.confidence) / 100.0,
            if h.signature_verified {
                "verified"
            } else {
                "DOES NOT VERIFY"
            },
            match crop_files.get(&h.seq) {
                Some(p) => p.display().to_string(),
                None if h.crop_held => "held".to_string(),
                None => "not held".to_string(),
            }
        );
    }
    if a.truncated {
        println!("(more reads matched: narrow the search)");
    }
    Ok(ExitCode::SUCCESS)
}
