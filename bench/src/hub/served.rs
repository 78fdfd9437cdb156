//! A hub served in a bench's own process (`hub serve`'s code: QUIC for
//! nodes, the HTTPS API for people), and people logged in to its API the
//! way the commands for people are: an operator's request is timed from
//! the client's side of the API.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use alpr_hub::api::client::ApiClient;
use alpr_hub::config::HubConfig;
use alpr_hub::users::{NewUser, Role};

/// The password of every user the benches make.
pub(crate) const PASSWORD: &str = "bench-password-0123";

/// A running hub and its API's address.
pub(crate) struct ServedHub {
    /// Where nodes reach it (QUIC).
    pub(crate) addr: SocketAddr,
    /// The API's base URL.
    pub(crate) url: String,
    /// The deployment CA's certificate (PEM).
    pub(crate) ca: Vec<u8>,
    bootstrap: PathBuf,
    cancel: CancellationToken,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// A bench user of `role`, trained, who logs in with `password`.
pub(crate) fn user(name: &str, role: Role, password: &str) -> NewUser {
    NewUser {
        username: name.into(),
        agency: "BENCH0000".into(),
        title: "bench".into(),
        role,
        password: password.into(),
        training_completed: "2026-01-01".into(),
        training_expires: "2099-01-01".into(),
    }
}

/// A hub of the benches on loopback (QUIC and the API on free ports), its
/// data in `data_dir`, its CA and certificate in `pki` (as
/// [`super::write_pki`] leaves them).
pub(crate) fn loopback_config(data_dir: &Path, pki: &Path) -> HubConfig {
    HubConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        api_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: data_dir.to_path_buf(),
        ca_cert: pki.join("ca.crt"),
        cert: pki.join("hub.crt"),
        key: pki.join("hub.key"),
        ..HubConfig::default()
    }
}

/// A new connection to the API at `url` (its CA `ca`), logged in.
pub(crate) async fn login(
    url: &str,
    ca: &[u8],
    name: &str,
    password: &str,
) -> anyhow::Result<ApiClient> {
    let mut c = ApiClient::connect(url, ca).await?;
    let l: alpr_hub::users::Login = c
        .post(
            "/api/v1/login",
            &alpr_hub::api::users::LoginRequest {
                username: name.into(),
                password: password.into(),
            },
        )
        .await?;
    c.token = Some(l.token);
    Ok(c)
}

impl ServedHub {
    /// Serve `config` (its API on a free loopback port) until [`Self::stop`].
    pub(crate) async fn start(config: HubConfig) -> anyhow::Result<ServedHub> {
        let ca = std::fs::read(&config.ca_cert)
            .with_context(|| format!("reading {}", config.ca_cert.display()))?;
        let bootstrap = config.data_dir.join(alpr_hub::users::BOOTSTRAP_FILE);
        let cancel = CancellationToken::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let server = tokio::spawn(alpr_hub::serve::serve(config, cancel.clone(), Some(tx)));
        let Ok(addr) = rx.await else {
            let why = match server.await {
                Ok(Err(e)) => format!("{e:#}"),
                Ok(Ok(())) => "it stopped".into(),
                Err(e) => e.to_string(),
            };
            anyhow::bail!("the hub did not start: {why}");
        };
        let mut hub = ServedHub {
            addr,
            url: String::new(),
            ca,
            bootstrap,
            cancel,
            server,
        };
        hub.url = format!("https://{}", hub.bootstrap()?.api);
        Ok(hub)
    }

    /// The one-time token and the API's address the hub wrote while it
    /// has no user.
    pub(crate) fn bootstrap(&self) -> anyhow::Result<alpr_hub::users::BootstrapFile> {
        Ok(serde_json::from_slice(
            &std::fs::read(&self.bootstrap).context("reading the hub's bootstrap file")?,
        )?)
    }

    /// The first administrator (from the bootstrap token), then an
    /// operator, logged in: who imports lists and adds entries.
    pub(crate) async fn operator(&self) -> anyhow::Result<ApiClient> {
        let b = self.bootstrap()?;
        let _: alpr_hub::users::UserView = ApiClient::connect(&self.url, &self.ca)
            .await?
            .post(
                "/api/v1/bootstrap",
                &alpr_hub::api::users::BootstrapRequest {
                    token: b.token,
                    user: user("admin", Role::Administrator, PASSWORD),
                },
            )
            .await?;
        let mut admin = self.login("admin").await?;
        let _: serde_json::Value = admin
            .post("/api/v1/users", &user("op", Role::Operator, PASSWORD))
            .await?;
        self.login("op").await
    }

    /// A new API connection logged in as `name`.
    pub(crate) async fn login(&self, name: &str) -> anyhow::Result<ApiClient> {
        login(&self.url, &self.ca, name, PASSWORD).await
    }

    /// Stop it; what its task ended with.
    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        self.cancel.cancel();
        self.server.await.context("the hub task")?
    }
}
