//! A real browser for the console's end-to-end tests: headless Chromium
//! driven through `chromedriver` (WebDriver) with `fantoccini`.
//!
//! - **A certificate browsers can use.** The deployment's keys are all
//!   Ed25519, which no mainstream browser accepts for TLS (Chromium ends
//!   the handshake with `ERR_SSL_PROTOCOL_ERROR`). [`console_toml`] gives
//!   the hub's HTTPS port (`api_cert`, `api_key`) an ECDSA P-256 key,
//!   certified by the deployment CA, so `hub login --ca ca.crt` still
//!   trusts it.
//! - **Real TLS.** Chromium cannot check an Ed25519 CA's signature either,
//!   so it trusts exactly that certificate's key (its SPKI hash,
//!   `--ignore-certificate-errors-spki-list`), not every certificate: a
//!   page from anything else still fails as it would for a user.
//! - **Nothing from outside.** Background networking, component updates,
//!   sync and QUIC are off; the profile and downloads live in a temporary
//!   folder removed with the browser.
//! - **A screenshot of every test.** When the [`Browser`] is dropped (the
//!   test passed or panicked) it saves the page it shows to
//!   `target/browser-screenshots/<test>.png`.
//! - **No silent skip.** Without Chromium or chromedriver the test fails
//!   and says to run `scripts/setup.sh`.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};

use crate::{free_tcp_port, Hub, Pki};

/// Where Debian's `chromium` package puts the browser (`ALPR_CHROMIUM`
/// names another).
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Where Debian's `chromium-driver` package puts the driver
/// (`ALPR_CHROMEDRIVER` names another).
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long a page may take to show what a test waits for (a liveness
/// bound for a shared two-core machine, not a timing assertion).
pub const PAGE_WAIT: Duration = Duration::from_secs(30);

/// The folder every test's final screenshot goes to.
pub fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/browser-screenshots")
}

fn program(env: &str, default: &str) -> anyhow::Result<PathBuf> {
    let p = std::env::var_os(env).map_or_else(|| PathBuf::from(default), PathBuf::from);
    anyhow::ensure!(
        p.exists(),
        "{} not found (the console's browser tests need Chromium and chromedriver): \
         run scripts/setup.sh, or set {env} to where it is",
        p.display()
    );
    Ok(p)
}

/// The file names `hub pki console` writes in the deployment's `ca/`.
pub use alpr_hub::pki::{CONSOLE_CERT, CONSOLE_KEY};

/// Issue the hub's HTTPS certificate for browsers with `hub pki console`
/// (ECDSA P-256, for `localhost` and `127.0.0.1`, signed by the
/// deployment CA) into the PKI's `ca/` folder, and give the `hub.toml`
/// lines that use it. They are top-level keys: put them before any
/// `[section]` of the extra config.
pub fn console_toml(pki: &Pki) -> anyhow::Result<String> {
    let ca_dir = pki.ca_dir();
    let out = Command::new(crate::bin("hub")?)
        .args(["pki", "console", "--force", "--ca"])
        .arg(&ca_dir)
        .output()
        .context("running hub pki console")?;
    anyhow::ensure!(
        out.status.success(),
        "hub pki console failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(format!(
        "api_cert = {:?}\napi_key = {:?}\n",
        ca_dir.join(CONSOLE_CERT),
        ca_dir.join(CONSOLE_KEY)
    ))
}

/// A headless Chromium on one hub's console, and its chromedriver.
pub struct Browser {
    client: Option<Client>,
    driver: Child,
    /// The console's origin, `https://127.0.0.1:PORT`.
    pub base: String,
    /// Where the browser saves downloads.
    pub downloads: PathBuf,
    /// The test's name: its screenshot's file name.
    name: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Start chromedriver and a browser session for test `name`, trusting
    /// the key of `hub`'s console certificate (the hub must have been
    /// started with [`console_toml`]'s lines). Needs a multi-threaded tokio runtime (the screenshot
    /// on drop blocks in place).
    pub async fn start(name: &str, hub: &Hub) -> anyhow::Result<Browser> {
        let chromium = program("ALPR_CHROMIUM", CHROMIUM)?;
        let chromedriver = program("ALPR_CHROMEDRIVER", CHROMEDRIVER)?;
        let cert = hub.ca.with_file_name(CONSOLE_CERT);
        let spki = alpr_hub::pki::spki_sha256(&std::fs::read_to_string(&cert).with_context(|| {
            format!(
                "reading {} (start the hub with browser::console_toml: browsers refuse its Ed25519 key)",
                cert.display()
            )
        })?)?;
        let profile = tempfile::tempdir()?;
        let downloads = profile.path().join("downloads");
        std::fs::create_dir_all(&downloads)?;
        let port = free_tcp_port()?;
        let log = std::fs::File::create(profile.path().join("chromedriver.log"))?;
        let mut driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", chromedriver.display()))?;
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(st) = driver.try_wait()? {
                anyhow::bail!("chromedriver exited with {st} before listening");
            }
            if started.elapsed() > Duration::from_secs(20) {
                let _ = driver.kill();
                let _ = driver.wait();
                anyhow::bail!("chromedriver did not listen on port {port} within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let caps = serde_json::json!({
            "browserName": "chrome",
            "acceptInsecureCerts": false,
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    "--window-size=1366,900",
                    format!("--user-data-dir={}", profile.path().join("profile").display()),
                    format!("--ignore-certificate-errors-spki-list={spki}"),
                ],
                "prefs": {
                    "download.default_directory": downloads,
                    "download.prompt_for_download": false,
                    "download.directory_upgrade": true,
                },
            },
        });
        let serde_json::Value::Object(caps) = caps else {
            anyhow::bail!("capabilities are not an object");
        };
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.enforce_http(true);
        let client = match ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => c,
            Err(e) => {
                let _ = driver.kill();
                let _ = driver.wait();
                let log = std::fs::read_to_string(profile.path().join("chromedriver.log"))
                    .unwrap_or_default();
                anyhow::bail!("no browser session from chromedriver: {e}\n{log}");
            }
        };
        Ok(Browser {
            client: Some(client),
            driver,
            base: hub.api.clone(),
            downloads,
            name: name.to_owned(),
            _profile: profile,
        })
    }

    /// The WebDriver client, for what the helpers do not cover.
    pub fn client(&self) -> anyhow::Result<&Client> {
        self.client.as_ref().context("the browser was closed")
    }

    /// Open a console path (`/console/search`) or a full URL.
    pub async fn goto(&self, path: &str) -> anyhow::Result<()> {
        let url = if path.starts_with("https://") || path.starts_with("http://") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        };
        self.client()?
            .goto(&url)
            .await
            .with_context(|| format!("opening {url}"))
    }

    /// The path the browser shows now (`/console/`).
    pub async fn path(&self) -> anyhow::Result<String> {
        Ok(self.client()?.current_url().await?.path().to_owned())
    }

    /// Log in through the login page; returns once the next page is there
    /// (the dashboard, or the login page again with its `#error`).
    pub async fn login(&self, user: &str, password: &str) -> anyhow::Result<()> {
        self.goto("/console/login").await?;
        self.fill("username", user).await?;
        self.fill("password", password).await?;
        self.click("login").await?;
        self.wait_until(PAGE_WAIT, "the page after the login", || async {
            let path = self.path().await.ok()?;
            let error = self.find("#error").await.is_some();
            (path != "/console/login" || error).then_some(())
        })
        .await
    }

    /// The element `css`, if the page has it now.
    pub async fn find(&self, css: &str) -> Option<Element> {
        self.client().ok()?.find(Locator::Css(css)).await.ok()
    }

    /// Every element `css` on the page now.
    pub async fn find_all(&self, css: &str) -> anyhow::Result<Vec<Element>> {
        Ok(self.client()?.find_all(Locator::Css(css)).await?)
    }

    /// The element with `id`, or an error naming it and the page.
    pub async fn by_id(&self, id: &str) -> anyhow::Result<Element> {
        match self.find(&format!("#{id}")).await {
            Some(e) => Ok(e),
            None => anyhow::bail!(
                "no #{id} on {} (page {:?})",
                self.path().await.unwrap_or_default(),
                self.page_id().await
            ),
        }
    }

    /// The id of the page shown (`page-search`), or of its error page.
    pub async fn page_id(&self) -> Option<String> {
        let el = self.find("[id^=\"page-\"]").await?;
        el.attr("id").await.ok().flatten()
    }

    /// Type `text` into the input `id` (after clearing it); date and time
    /// inputs are set as the browser's own picker would set them.
    pub async fn fill(&self, id: &str, text: &str) -> anyhow::Result<()> {
        let el = self.by_id(id).await?;
        let kind = el.attr("type").await?.unwrap_or_default();
        if matches!(kind.as_str(), "date" | "datetime-local" | "time" | "hidden") {
            self.client()?
                .execute(
                    "arguments[0].value = arguments[1]; \
                     arguments[0].dispatchEvent(new Event('input', {bubbles: true})); \
                     arguments[0].dispatchEvent(new Event('change', {bubbles: true}));",
                    vec![serde_json::to_value(&el)?, text.into()],
                )
                .await?;
        } else {
            el.clear().await?;
            el.send_keys(text).await?;
        }
        Ok(())
    }

    /// Choose the option with `value` in the select `id`.
    pub async fn select(&self, id: &str, value: &str) -> anyhow::Result<()> {
        self.by_id(id)
            .await?
            .select_by_value(value)
            .await
            .with_context(|| format!("choosing {value:?} in #{id}"))
    }

    /// Click the element `id` (a button: a form is sent).
    pub async fn click(&self, id: &str) -> anyhow::Result<()> {
        self.by_id(id).await?.click().await?;
        Ok(())
    }

    /// The visible text of the first element `css`.
    pub async fn text(&self, css: &str) -> anyhow::Result<String> {
        match self.find(css).await {
            Some(e) => Ok(e.text().await?),
            None => anyhow::bail!(
                "no {css} on {} (page {:?})",
                self.path().await.unwrap_or_default(),
                self.page_id().await
            ),
        }
    }

    /// Wait until the page has `css`; the element.
    pub async fn wait_for(&self, css: &str, limit: Duration) -> anyhow::Result<Element> {
        let found = self
            .wait_until(limit, css, || async { self.find(css).await })
            .await;
        match found {
            Ok(e) => Ok(e),
            Err(e) => {
                let error = self.text("#error").await.ok();
                anyhow::bail!(
                    "{e} on {} (page {:?}{})",
                    self.path().await.unwrap_or_default(),
                    self.page_id().await,
                    error.map(|m| format!(", error: {m}")).unwrap_or_default()
                )
            }
        }
    }

    /// Poll `f` every 100 ms until it gives `Some`, for at most `limit`.
    pub async fn wait_until<T, F, Fut>(
        &self,
        limit: Duration,
        what: &str,
        mut f: F,
    ) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let start = Instant::now();
        loop {
            if let Some(v) = f().await {
                return Ok(v);
            }
            anyhow::ensure!(
                start.elapsed() < limit,
                "gave up waiting for {what} after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Evaluate a script's `return` value in the page.
    pub async fn eval(&self, script: &str) -> anyhow::Result<serde_json::Value> {
        Ok(self.client()?.execute(script, Vec::new()).await?)
    }

    /// Save the page as `target/browser-screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let png = self.client()?.screenshot().await?;
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    /// A finished download (no `.crdownload` left) whose name ends with
    /// `suffix`, waiting up to `limit`.
    pub async fn download(&self, suffix: &str, limit: Duration) -> anyhow::Result<PathBuf> {
        let dir = self.downloads.clone();
        self.wait_until(limit, &format!("a download ending {suffix:?}"), || {
            let dir = dir.clone();
            async move {
                let names: Vec<PathBuf> = std::fs::read_dir(&dir)
                    .ok()?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .collect();
                // Chromium writes a download under a hidden name, then
                // `.crdownload`, then renames it: only a finished file counts.
                let unfinished = |p: &PathBuf| {
                    p.extension().is_some_and(|x| x == "crdownload")
                        || p.file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                };
                if names.iter().any(unfinished) {
                    return None;
                }
                names
                    .into_iter()
                    .find(|p| p.to_string_lossy().ends_with(suffix))
            }
        })
        .await
    }
}

impl Drop for Browser {
    /// Save the final page, end the session (Chromium quits), stop the
    /// driver.
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let name = self.name.clone();
            let shot = async {
                if let Ok(png) = client.screenshot().await {
                    let dir = screenshot_dir();
                    if std::fs::create_dir_all(&dir).is_ok() {
                        let path = dir.join(format!("{name}.png"));
                        match std::fs::write(&path, png) {
                            Ok(()) => eprintln!("screenshot: {}", path.display()),
                            Err(e) => eprintln!("screenshot {}: {e}", path.display()),
                        }
                    }
                }
                let _ = client.close().await;
            };
            match tokio::runtime::Handle::try_current() {
                Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                    tokio::task::block_in_place(|| handle.block_on(shot));
                }
                // (Blocking in place would panic here, and a panic in a drop
                // while unwinding aborts.)
                _ => eprintln!(
                    "no screenshot of {name}: the browser was dropped outside a multi-threaded tokio runtime"
                ),
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
