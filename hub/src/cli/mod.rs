//! The hub's subcommands: `serve`, and the commands for people, which
//! all go through the HTTPS API with the saved session (`hub login`):
//! `nodes`, `revoke`, `user …`, `logout`; `bootstrap` (first
//! administrator, on the hub's machine) and `health` (no login).

pub mod alerts;
pub mod audit;
pub mod audit_verify;
pub mod export;
pub mod holds;
pub mod hotlist;
pub mod hotlist_local;
pub mod policy;
pub mod retention;
pub mod search;
pub mod store;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::api::client::{self, api_get, api_post, runtime, ApiClient, Session};
use crate::api::nodes::{NodesReport, RevokeReport, RevokeRequest};
use crate::config::load_config;
use crate::users::{BootstrapFile, NewUser, Role, UserView};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Configuration file (TOML). Without it, `hub.toml` if present, else defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct NodesArgs {
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// The running hub's configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct RevokeArgs {
    /// Serial number of the node certificate (hex, as `hub pki enroll` prints it).
    pub serial: String,
    /// When revocation takes effect (RFC 3339 UTC, e.g. 2026-11-28T16:00:00Z); now if absent.
    #[arg(long)]
    pub at: Option<String>,
    /// Why (kept with the revocation and shown to auditors).
    #[arg(long, default_value = "revoked by the operator")]
    pub reason: String,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// The hub's API, `https://HOST:PORT`.
    #[arg(long)]
    pub hub: String,
    /// The deployment CA certificate (the hub's must chain to it).
    #[arg(long)]
    pub ca: PathBuf,
    /// Username; the password comes from `ALPR_PASSWORD` or a prompt.
    #[arg(long)]
    pub user: String,
}

#[derive(Debug, clap::Args)]
pub struct BootstrapArgs {
    /// The running hub's configuration file (its data folder holds the
    /// one-time bootstrap token).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub user: String,
    /// Agency ORI.
    #[arg(long)]
    pub agency: String,
    #[arg(long, default_value = "ALPR administrator")]
    pub title: String,
    /// Training completed (YYYY-MM-DD).
    #[arg(long)]
    pub training_completed: String,
    /// Training expires (YYYY-MM-DD).
    #[arg(long)]
    pub training_expires: String,
}

#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Add a user; the password comes from `ALPR_NEW_PASSWORD` or a prompt.
    Add {
        username: String,
        #[arg(long)]
        agency: String,
        #[arg(long)]
        title: String,
        #[arg(long, value_enum)]
        role: Role,
        /// Training completed (YYYY-MM-DD).
        #[arg(long)]
        training_completed: String,
        /// Training expires (YYYY-MM-DD).
        #[arg(long)]
        training_expires: String,
        #[arg(long)]
        json: bool,
    },
    /// List users.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Disable a user (refused at once, sessions included).
    Disable { username: String },
    /// Record a training (completion and expiry dates).
    Train {
        username: String,
        #[arg(long)]
        completed: String,
        #[arg(long)]
        expires: String,
    },
    /// Set a user's password (from `ALPR_NEW_PASSWORD` or a prompt).
    Passwd { username: String },
    /// Print a `[[policy.officers]]` entry for an officer seeded by
    /// `hub.toml`: the password's argon2id hash and the signing key it
    /// gives, from `ALPR_NEW_PASSWORD` or a prompt. Offline: needs no
    /// login, reads and changes nothing.
    Credential {
        username: String,
        #[arg(long)]
        agency: String,
        #[arg(long, default_value = "")]
        title: String,
        /// Training expires (RFC 3339 UTC, `2027-06-30T00:00:00Z`).
        #[arg(long)]
        training_expires: String,
    },
}

pub fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(args.config.as_deref())?;
    runtime()?.block_on(async move {
        let cancel = CancellationToken::new();
        alpr_shared::cli::cancel_on_signals(cancel.clone());
        crate::serve::serve(config, cancel, None).await
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn nodes(args: NodesArgs) -> anyhow::Result<ExitCode> {
    let report: NodesReport = api_get("/api/v1/nodes")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<20} {:<9} {:<24} {:>10} {:>8} {:>8} {:>8} {:>7}  LISTS",
        "NODE", "LINK", "LAST CONTACT", "ACKED", "BACKLOG", "REFUSED", "REPLAYS", "POLICY"
    );
    for n in &report.nodes {
        let lists: Vec<String> = n.hotlists.iter().map(|(s, g)| format!("{s}#{g}")).collect();
        println!(
            "{:<20} {:<9} {:<24} {:>10} {:>8} {:>8} {:>8} {:>7}  {}",
            n.name,
            if n.connected { "online" } else { "offline" },
            n.last_contact.to_string(),
            n.acked,
            n.backlog
                .map_or_else(|| "unknown".to_string(), |b| b.to_string()),
            n.refusals,
            n.duplicates,
            n.policy_version
                .map_or_else(|| "-".to_string(), |v| format!("v{v}")),
            if lists.is_empty() {
                "-".to_string()
            } else {
                lists.join(",")
            }
        );
        if let Some(c) = &n.identity_conflict {
            println!(
                "  ! IDENTITY CONFLICT ({} recorded; a person must resolve it): {}  {}",
                n.identity_conflicts, c.at, c.detail
            );
        } else if n.identity_conflicts > 0 {
            println!(
                "  {} identity conflict(s) recorded earlier",
                n.identity_conflicts
            );
        }
    }
    println!(
        "\n{} entries stored since start; {} refusals ({} at the TLS handshake)",
        report.entries_stored, report.refusals, report.refused_handshakes
    );
    if let Some(b) = report.disk_free {
        println!("disk free: {} MiB", b / (1 << 20));
    }
    for p in &report.problems {
        println!("PROBLEM: {p}");
    }
    if !report.refusals_by_kind.is_empty() {
        let kinds: Vec<String> = report
            .refusals_by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        println!("refusals by kind: {}", kinds.join(", "));
    }
    if !report.recent_refusals.is_empty() {
        println!("\nrecent refusals:");
        for r in &report.recent_refusals {
            println!(
                "  {}  {:<16} {:<22} {:<14} {}",
                r.at,
                r.device.as_deref().unwrap_or("?"),
                r.peer,
                r.code,
                r.detail
            );
        }
    }
    if !report.unauthenticated_refusals.is_empty() {
        println!("\nunauthenticated sources (one line per source per minute at most):");
        for r in &report.unauthenticated_refusals {
            println!(
                "  {}  {:<22} {:>6}x {:<18} {}",
                r.at, r.source, r.count, r.code, r.detail
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// For a service manager: exit 0 when the hub answers and is healthy, 1
/// with the reason otherwise.
pub fn health(args: HealthArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(args.config.as_deref())?;
    let asked = runtime()?.block_on(async {
        let ca = std::fs::read(&config.ca_cert)
            .with_context(|| format!("reading {}", config.ca_cert.display()))?;
        let url = format!("https://{}", config.api_local());
        let r: crate::api::HealthReport = ApiClient::connect(&url, &ca)
            .await?
            .get("/api/v1/health")
            .await?;
        anyhow::Ok(r)
    });
    match asked {
        Err(e) => {
            println!("unhealthy: {e:#}");
            Ok(ExitCode::FAILURE)
        }
        Ok(r) if r.problems.is_empty() => {
            println!("ok");
            Ok(ExitCode::SUCCESS)
        }
        Ok(r) => {
            println!("unhealthy: {}", r.problems.join("; "));
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Revoke a certificate on the running hub: recorded, in force at once
/// (or from `--at`), and the node's live connection closed.
pub fn revoke(args: RevokeArgs) -> anyhow::Result<ExitCode> {
    let at = args
        .at
        .as_deref()
        .map(crate::config::parse_time)
        .transpose()?;
    let req = RevokeRequest {
        serial: args.serial,
        at,
        reason: args.reason,
    };
    let report: RevokeReport = api_post("/api/v1/revoke", &req)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "revoked {} from {} ({}); connections closed: {}",
            report.revocation.serial,
            report.revocation.effective_at,
            report.revocation.reason,
            if report.closed.is_empty() {
                "none".to_string()
            } else {
                report.closed.join(", ")
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `hub login`: a session saved for the other commands.
pub fn login(args: LoginArgs) -> anyhow::Result<ExitCode> {
    let ca = std::fs::read(&args.ca).with_context(|| format!("reading {}", args.ca.display()))?;
    let password = client::password(&format!("password for {}: ", args.user))?;
    let login: crate::users::Login = runtime()?.block_on(async {
        ApiClient::connect(&args.hub, &ca)
            .await?
            .post(
                "/api/v1/login",
                &crate::api::users::LoginRequest {
                    username: args.user.clone(),
                    password,
                },
            )
            .await
    })?;
    let ca_path = std::fs::canonicalize(&args.ca).unwrap_or(args.ca.clone());
    let path = Session {
        hub: args.hub,
        ca: ca_path,
        username: login.user.username.clone(),
        token: login.token,
        expires: login.expires,
    }
    .save()?;
    println!(
        "logged in as {} ({}, {}); session until {} saved in {}",
        login.user.username,
        login.user.role,
        login.user.agency,
        login.expires,
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `hub logout`: end the session at the hub and forget it here.
pub fn logout() -> anyhow::Result<ExitCode> {
    let path = client::session_path()?;
    let session = Session::load();
    if let Ok(s) = &session {
        let r: anyhow::Result<serde_json::Value> = runtime()?.block_on(async {
            s.client()
                .await?
                .post("/api/v1/logout", &serde_json::json!({}))
                .await
        });
        if let Err(e) = r {
            eprintln!("the hub did not end the session: {e:#}");
        }
    }
    match std::fs::remove_file(&path) {
        Ok(()) => println!("logged out"),
        Err(_) => println!("no session"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `hub bootstrap`: the first administrator, on the hub's machine.
pub fn bootstrap(args: BootstrapArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(args.config.as_deref())?;
    let file = config.data_dir.join(crate::users::BOOTSTRAP_FILE);
    let text = std::fs::read_to_string(&file).map_err(|e| {
        anyhow::anyhow!(
            "no bootstrap token at {} ({e}): the hub has users already, is not running, or this is not the hub's user",
            file.display()
        )
    })?;
    let b: BootstrapFile =
        serde_json::from_str(&text).with_context(|| format!("reading {}", file.display()))?;
    let ca = std::fs::read(&config.ca_cert)
        .with_context(|| format!("reading {}", config.ca_cert.display()))?;
    let password = client::password(&format!("new password for {}: ", args.user))?;
    let mut api = b.api;
    if api.ip().is_unspecified() {
        api.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let user: UserView = runtime()?.block_on(async {
        ApiClient::connect(&format!("https://{api}"), &ca)
            .await?
            .post(
                "/api/v1/bootstrap",
                &crate::api::users::BootstrapRequest {
                    token: b.token,
                    user: NewUser {
                        username: args.user,
                        agency: args.agency,
                        title: args.title,
                        role: Role::Administrator,
                        password,
                        training_completed: args.training_completed,
                        training_expires: args.training_expires,
                    },
                },
            )
            .await
    })?;
    println!(
        "administrator {} created ({}); log in with `hub login --hub https://{api} --ca {} --user {}`",
        user.username,
        user.agency,
        config.ca_cert.display(),
        user.username
    );
    Ok(ExitCode::SUCCESS)
}

fn new_password(username: &str) -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("ALPR_NEW_PASSWORD") {
        return Ok(p);
    }
    rpassword::prompt_password(format!("new password for {username}: "))
        .context("reading the new password (set ALPR_NEW_PASSWORD when not on a terminal)")
}

/// `hub user credential`: an officer entry for `hub.toml`, checked the
/// way the hub reads it.
fn credential(
    username: &str,
    agency: &str,
    title: &str,
    training_expires: &str,
) -> anyhow::Result<ExitCode> {
    crate::users::check_username(username).map_err(|e| anyhow::anyhow!(e))?;
    let password = new_password(username)?;
    crate::users::check_password(&password).map_err(|e| anyhow::anyhow!(e))?;
    let password_hash = crate::users::hash_password(&password).map_err(|e| anyhow::anyhow!(e))?;
    let (key, _secret) = alpr_shared::control::officer::OfficerKey::generate(&password)?;
    let setting = crate::policy::OfficerSetting {
        username: username.into(),
        agency: agency.into(),
        title: title.into(),
        password_hash,
        training_expires: training_expires.into(),
        signing_key: Some(key.to_string()),
    };
    setting.to_officer(1)?;
    println!("[[policy.officers]]\n{}", toml::to_string(&setting)?);
    Ok(ExitCode::SUCCESS)
}

fn print_users(users: &[UserView]) {
    println!(
        "{:<20} {:<14} {:<12} {:<24} {:<12} {:<9}",
        "USER", "ROLE", "AGENCY", "TITLE", "TRAINED TO", "STATE"
    );
    for u in users {
        let state = if u.disabled {
            "disabled"
        } else if !u.training_current {
            "lapsed"
        } else {
            "active"
        };
        println!(
            "{:<20} {:<14} {:<12} {:<24} {:<12} {:<9}",
            u.username,
            u.role.as_str(),
            u.agency,
            u.title,
            u.training_expires,
            state
        );
    }
}

/// `hub user …` (administrators).
pub fn user(cmd: UserCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        UserCommand::Credential {
            username,
            agency,
            title,
            training_expires,
        } => credential(&username, &agency, &title, &training_expires),
        other => user_through_api(other),
    }
}

/// The `hub user` commands that go through the API, as the logged-in user.
fn user_through_api(cmd: UserCommand) -> anyhow::Result<ExitCode> {
    let session = Session::load()?;
    let rt = runtime()?;
    let done = |u: UserView, what: &str| {
        println!("{what} {} ({}, {})", u.username, u.role, u.agency);
        Ok(ExitCode::SUCCESS)
    };
    match cmd {
        UserCommand::Add {
            username,
            agency,
            title,
            role,
            training_completed,
            training_expires,
            json,
        } => {
            let password = new_password(&username)?;
            let u: UserView = rt.block_on(async {
                session
                    .client()
                    .await?
                    .post(
                        "/api/v1/users",
                        &NewUser {
                            username,
                            agency,
                            title,
                            role,
                            password,
                            training_completed,
                            training_expires,
                        },
                    )
                    .await
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&u)?);
                return Ok(ExitCode::SUCCESS);
            }
            done(u, "added")
        }
        UserCommand::List { json } => {
            let users: Vec<UserView> =
                rt.block_on(async { session.client().await?.get("/api/v1/users").await })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&users)?);
            } else {
                print_users(&users);
            }
            Ok(ExitCode::SUCCESS)
        }
        UserCommand::Disable { username } => {
            let u: UserView = rt.block_on(async {
                session
                    .client()
                    .await?
                    .post(
                        &format!("/api/v1/users/{username}/disable"),
                        &serde_json::json!({}),
                    )
                    .await
            })?;
            done(u, "disabled")
        }
        UserCommand::Train {
            username,
            completed,
            expires,
        } => {
            let u: UserView = rt.block_on(async {
                session
                    .client()
                    .await?
                    .post(
                        &format!("/api/v1/users/{username}/train"),
                        &crate::api::users::TrainRequest { completed, expires },
                    )
                    .await
            })?;
            println!(
                "training of {} recorded: expires {}",
                u.username, u.training_expires
            );
            Ok(ExitCode::SUCCESS)
        }
        UserCommand::Passwd { username } => {
            let password = new_password(&username)?;
            let u: UserView = rt.block_on(async {
                session
                    .client()
                    .await?
                    .post(
                        &format!("/api/v1/users/{username}/password"),
                        &crate::api::users::PasswordRequest { password },
                    )
                    .await
            })?;
            done(u, "password set for")
        }
        UserCommand::Credential { .. } => Err(anyhow::anyhow!("hub user credential runs offline")),
    }
}

/// `hub policy show|set`: through the API, as the logged-in user.
pub fn policy(cmd: crate::cli::policy::PolicyCommand) -> anyhow::Result<ExitCode> {
    use crate::api::policy::PolicyReply;
    use crate::cli::policy::{read_settings, render, PolicyCommand};
    let (reply, json): (PolicyReply, bool) = match cmd {
        PolicyCommand::Show { json } => (api_get("/api/v1/policy")?, json),
        PolicyCommand::Set { file } => {
            let settings = read_settings(&file)?;
            (api_post("/api/v1/policy", &settings)?, false)
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&reply.summary)?);
        return Ok(ExitCode::SUCCESS);
    }
    let bytes = hex::decode(&reply.signed).context("the hub's policy is not hex")?;
    let signed = alpr_shared::control::SignedPolicy::decode(&bytes)
        .context("the hub's policy does not decode")?;
    print!("{}", render(&signed));
    Ok(ExitCode::SUCCESS)
}

/// `hub search`: through the API, with a purpose (and a case number where
/// the policy asks for one), as the logged-in user.
pub fn search(args: crate::cli::search::SearchArgs) -> anyhow::Result<ExitCode> {
    use crate::api::search::{Reason, SearchRequest};
    let req = SearchRequest {
        query: args.to_query()?,
        reason: Reason {
            purpose: Some(args.purpose.clone()),
            case: args.case.clone(),
        },
    };
    let results: crate::search::SearchResults = api_post("/api/v1/search", &req)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        crate::cli::search::print_results(&results);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct ReadArgs {
    /// The read: NODE#SEQ, as `hub search` lists it.
    pub read: String,
    /// Why (an offence type from the policy's list of purposes).
    #[arg(long)]
    pub purpose: String,
    /// Case number (required for some purposes by policy).
    #[arg(long)]
    pub case: Option<String>,
    /// Save the plate crop and overview photos into this folder.
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// Print JSON for scripts (images in base64).
    #[arg(long)]
    pub json: bool,
}

/// `hub read NODE#SEQ`: one read in full, with its photos.
pub fn read(args: ReadArgs) -> anyhow::Result<ExitCode> {
    use crate::api::search::{Reason, ViewRequest};
    let (node, seq) = args
        .read
        .split_once('#')
        .and_then(|(n, s)| Some((n.to_owned(), s.parse::<u64>().ok()?)))
        .with_context(|| format!("a read is NODE#SEQ (got {:?})", args.read))?;
    let req = ViewRequest {
        node,
        seq,
        reason: Reason {
            purpose: Some(args.purpose.clone()),
            case: args.case.clone(),
        },
    };
    let detail: crate::search::ReadDetail = api_post("/api/v1/read", &req)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&detail)?);
        return Ok(ExitCode::SUCCESS);
    }
    let h = &detail.hit;
    println!("read {}#{}", h.node, h.seq);
    println!("  plate       {} ({}%)", h.plate, h.confidence / 100);
    println!("  captured    {} (clock: {})", h.captured_at, h.time_source);
    println!(
        "  place       {} (source: {})",
        h.location,
        h.place_source.as_str()
    );
    println!("  camera      {}", h.camera);
    println!(
        "  models      {} / {}",
        detail.detector_model, detail.ocr_model
    );
    println!(
        "  signature   {}",
        if h.signature {
            "verifies under the node's certificate".to_owned()
        } else {
            format!("BAD: {}", h.signature_problem.as_deref().unwrap_or("?"))
        }
    );
    if let Some(dir) = &args.save {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (what, bytes) in [
            ("crop", &detail.crop_jpeg),
            ("overview", &detail.overview_jpeg),
        ] {
            match bytes {
                Some(b) => {
                    let path = dir.join(format!("{}-{}-{what}.jpg", h.node, h.seq));
                    std::fs::write(&path, b)
                        .with_context(|| format!("writing {}", path.display()))?;
                    println!("  {what:<11} {}", path.display());
                }
                None => println!("  {what:<11} not held at the hub"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
