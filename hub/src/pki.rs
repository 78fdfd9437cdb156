//! `hub pki …`: the deployment's certificate authority, on files.
//!
//! `init` writes `ca.crt`, the hub's TLS identity (`hub.crt`, `hub.key`) and
//! one signing key per purpose (`receipt`, `policy`, `hotlist`, `log`,
//! `export`: `<purpose>.crt` and `<purpose>.key`, each certified for that
//! purpose alone) into a directory, and the CA's private key into its own
//! folder `ca-private/ca.key` (0700), away from what the running hub reads:
//! `hub serve` refuses to start with the CA key beside its own. `enroll` writes a node's `node.crt`, `node.key` and a copy of
//! `ca.crt`. Private keys are PKCS#8 v1 PEM (openssl and Python read them),
//! written with mode 0600 and never printed.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use alpr_shared::cert::KeyPurpose;
use alpr_shared::pki::{new_ca, Authority};
use alpr_shared::private::{create_private_dir, create_private_file, read_key_file};
use alpr_shared::types::{DeviceId, DeviceKind};
use anyhow::{bail, Context};

/// The longest validity `hub pki init --days` accepts (100 years).
pub const MAX_CA_DAYS: i64 = 36_500;
/// The longest validity of a node certificate (10 years).
pub const MAX_NODE_DAYS: i64 = 3_650;
/// The subfolder of `hub pki init --out` that holds the CA key.
pub const CA_PRIVATE_DIR: &str = "ca-private";

#[derive(Debug, clap::Subcommand)]
pub enum PkiCommand {
    /// Create the deployment CA, the hub's TLS certificate and its signing
    /// keys (one per purpose).
    Init {
        /// Folder to write ca.crt, hub.crt, hub.key and the signing keys
        /// (receipt, policy, hotlist, log, export: .crt and .key) into; the
        /// CA key goes to its `ca-private/` subfolder unless --ca-key-dir
        /// says elsewhere.
        #[arg(long)]
        out: PathBuf,
        /// Folder for the CA's private key (default: <out>/ca-private).
        #[arg(long)]
        ca_key_dir: Option<PathBuf>,
        /// Agency name written in every certificate.
        #[arg(long, default_value = "ALPR Agency")]
        org: String,
        /// DNS names and IP addresses the hub answers on.
        #[arg(long = "hub-name", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
        hub_names: Vec<String>,
        /// CA validity in days (1 to 36500); the hub's certificate gets at
        /// most 825 of them.
        #[arg(long, default_value_t = 3650, value_parser = clap::value_parser!(i64).range(1..=MAX_CA_DAYS))]
        days: i64,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// Create a node's Ed25519 key and its CA-signed certificate.
    Enroll {
        /// Folder holding ca.crt (and the CA key in ca-private/ca.key).
        #[arg(long)]
        ca: PathBuf,
        /// The CA's private key (default: <ca>/ca-private/ca.key, or
        /// <ca>/ca.key as older setups kept it).
        #[arg(long)]
        ca_key: Option<PathBuf>,
        /// The node's name (certificate common name).
        #[arg(long)]
        device: String,
        /// pole or vehicle.
        #[arg(long)]
        kind: DeviceKind,
        /// Folder to write node.crt, node.key and ca.crt into.
        #[arg(long)]
        out: PathBuf,
        /// Certificate validity in days (1 to 3650).
        #[arg(long, default_value_t = 825, value_parser = clap::value_parser!(i64).range(1..=MAX_NODE_DAYS))]
        days: i64,
        #[arg(long)]
        force: bool,
    },
    /// Issue the certificate of the hub's HTTPS port for browsers (the
    /// web console): an ECDSA P-256 key, since browsers refuse Ed25519
    /// ones, signed by the deployment CA. Writes console.crt and
    /// console.key beside ca.crt; point `api_cert`/`api_key` at them.
    Console {
        /// Folder holding ca.crt (and the CA key in ca-private/ca.key).
        #[arg(long)]
        ca: PathBuf,
        /// The CA's private key (default: <ca>/ca-private/ca.key).
        #[arg(long)]
        ca_key: Option<PathBuf>,
        /// DNS names and IP addresses people reach the hub by.
        #[arg(long = "name", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
        names: Vec<String>,
        /// Validity in days (1 to 397, what browsers accept).
        #[arg(long, default_value_t = 397, value_parser = clap::value_parser!(i64).range(1..=397))]
        days: i64,
        #[arg(long)]
        force: bool,
    },
}

pub fn run(cmd: PkiCommand) -> anyhow::Result<()> {
    match cmd {
        PkiCommand::Init {
            out,
            ca_key_dir,
            org,
            hub_names,
            days,
            force,
        } => {
            let key_dir = ca_key_dir.unwrap_or_else(|| out.join(CA_PRIVATE_DIR));
            fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            if same_dir(&key_dir, &out) {
                bail!(
                    "--ca-key-dir {} is the folder of the hub's key: keep the CA key apart",
                    key_dir.display()
                );
            }
            create_private_dir(&key_dir)?;
            let mut names = vec!["ca.crt".to_owned()];
            names.extend(hub_file_names());
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            refuse_overwrite(&out, &names, force)?;
            refuse_overwrite(&key_dir, &["ca.key"], force)?;
            let ca = new_ca(&org, days).context("creating the CA")?;
            let authority = Authority::load(&ca.cert_pem, &ca.key_pem)?;
            write_public(&out.join("ca.crt"), &ca.cert_pem)?;
            write_secret(&key_dir.join("ca.key"), &ca.key_pem)?;
            write_hub_keys(&authority, &out, &hub_names, days.min(825))?;
            println!(
                "deployment CA, hub certificate and signing keys written to {}",
                out.display()
            );
            println!("  ca.crt   give to every node and auditor");
            println!(
                "  {}   keep offline; needed only to enroll nodes",
                key_dir.join("ca.key").display()
            );
            println!(
                "  hub.crt, hub.key   the hub's TLS identity ({}); it signs nothing else",
                hub_names.join(", ")
            );
            for p in KeyPurpose::ALL {
                println!("  {p}.crt, {p}.key   signs {} (only)", p.signs());
            }
            println!("in hub.toml (these are the defaults when the files sit beside cert):");
            println!("  cert = {:?}", out.join("hub.crt").display().to_string());
            println!("  key = {:?}", out.join("hub.key").display().to_string());
            for p in KeyPurpose::ALL {
                println!("  [keys.{p}]");
                println!(
                    "  cert = {:?}",
                    out.join(format!("{p}.crt")).display().to_string()
                );
                println!(
                    "  key = {:?}",
                    out.join(format!("{p}.key")).display().to_string()
                );
            }
            Ok(())
        }
        PkiCommand::Enroll {
            ca,
            ca_key,
            device,
            kind,
            out,
            days,
            force,
        } => {
            let name = DeviceId::new(device).context("invalid device name")?;
            let ca_pem = fs::read_to_string(ca.join("ca.crt"))
                .with_context(|| format!("reading {}", ca.join("ca.crt").display()))?;
            let authority = load_authority(&ca, ca_key, &ca_pem)?;
            fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            refuse_overwrite(&out, &["node.crt", "node.key"], force)?;
            let (issued, key) = authority
                .issue_device(&name, kind, days)
                .context("issuing the node certificate")?;
            write_public(&out.join("node.crt"), &issued.cert_pem)?;
            write_secret(&out.join("node.key"), &issued.key_pem)?;
            write_public(&out.join("ca.crt"), &ca_pem)?;
            println!(
                "enrolled {name} ({kind}) in {}; public key {}",
                out.display(),
                hex::encode(key.public().to_bytes())
            );
            Ok(())
        }
        PkiCommand::Console {
            ca,
            ca_key,
            names,
            days,
            force,
        } => {
            let ca_pem = fs::read_to_string(ca.join("ca.crt"))
                .with_context(|| format!("reading {}", ca.join("ca.crt").display()))?;
            let authority = load_authority(&ca, ca_key, &ca_pem)?;
            refuse_overwrite(&ca, &[CONSOLE_CERT, CONSOLE_KEY], force)?;
            let issued = authority
                .issue_console(&names, days)
                .context("issuing the console certificate")?;
            let (cert, key) = (ca.join(CONSOLE_CERT), ca.join(CONSOLE_KEY));
            write_public(&cert, &issued.cert_pem)?;
            write_secret(&key, &issued.key_pem)?;
            println!(
                "console certificate for {} written to {}",
                names.join(", "),
                cert.display()
            );
            println!("in hub.toml (before any [section]):");
            println!("  api_cert = {:?}", cert.display().to_string());
            println!("  api_key = {:?}", key.display().to_string());
            println!(
                "browsers cannot check the Ed25519 signature of the deployment CA: for staff \
                 browsers use a certificate from the agency's own web PKI in api_cert/api_key, \
                 or trust this certificate's key (SHA-256 of its SPKI, base64: {})",
                spki_sha256(&issued.cert_pem)?
            );
            Ok(())
        }
    }
}

/// The files of the hub's keys `hub pki init` writes beside `ca.crt`: the
/// TLS identity, then one certificate and key per signing purpose.
pub fn hub_file_names() -> Vec<String> {
    let mut names = vec!["hub.crt".to_owned(), "hub.key".to_owned()];
    for p in KeyPurpose::ALL {
        names.push(format!("{p}.crt"));
        names.push(format!("{p}.key"));
    }
    names
}

/// Issue and write the hub's keys into `dir` ([`hub_file_names`]): its TLS
/// certificate for `hub_names` and a signing key per purpose, named `hub`
/// (the name its log is kept under), valid `days`. Keys are 0600.
pub fn write_hub_keys(
    authority: &Authority,
    dir: &Path,
    hub_names: &[String],
    days: i64,
) -> anyhow::Result<()> {
    let tls = authority
        .issue_hub(hub_names, days)
        .context("issuing the hub's TLS certificate")?;
    write_public(&dir.join("hub.crt"), &tls.cert_pem)?;
    write_secret(&dir.join("hub.key"), &tls.key_pem)?;
    for p in KeyPurpose::ALL {
        let (issued, _) = authority
            .issue_signer(p, "hub", days)
            .with_context(|| format!("issuing the hub's {p} key"))?;
        write_public(&dir.join(format!("{p}.crt")), &issued.cert_pem)?;
        write_secret(&dir.join(format!("{p}.key")), &issued.key_pem)?;
    }
    Ok(())
}

/// The files `hub pki console` writes beside `ca.crt`.
pub const CONSOLE_CERT: &str = "console.crt";
pub const CONSOLE_KEY: &str = "console.key";

/// The base64 SHA-256 of a PEM certificate's public key (SPKI): how
/// browsers pin a key (Chromium's `--ignore-certificate-errors-spki-list`).
pub fn spki_sha256(cert_pem: &str) -> anyhow::Result<String> {
    use base64::Engine;
    use sha2::Digest;
    let der = alpr_shared::cert::pem_certificates(cert_pem.as_bytes())?
        .into_iter()
        .next()
        .context("no certificate in the PEM text")?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| anyhow::anyhow!("the certificate does not parse: {e}"))?;
    Ok(base64::engine::general_purpose::STANDARD
        .encode(sha2::Sha256::digest(cert.tbs_certificate.subject_pki.raw)))
}

/// The CA of folder `ca`, with its key from `ca_key` or where `hub pki
/// init` put it.
fn load_authority(ca: &Path, ca_key: Option<PathBuf>, ca_pem: &str) -> anyhow::Result<Authority> {
    let ca_key = ca_key.unwrap_or_else(|| {
        let apart = ca.join(CA_PRIVATE_DIR).join("ca.key");
        if apart.exists() {
            apart
        } else {
            ca.join("ca.key")
        }
    });
    let key_bytes = read_key_file(&ca_key)?;
    let key_pem = std::str::from_utf8(&key_bytes)
        .with_context(|| format!("{} is not PEM text", ca_key.display()))?;
    Authority::load(ca_pem, key_pem).context("loading the CA")
}

fn refuse_overwrite(dir: &Path, names: &[&str], force: bool) -> anyhow::Result<()> {
    if force {
        return Ok(());
    }
    for n in names {
        let p = dir.join(n);
        if p.exists() {
            bail!(
                "{} already exists (pass --force to replace it)",
                p.display()
            );
        }
    }
    Ok(())
}

fn write_public(path: &Path, pem: &str) -> anyhow::Result<()> {
    fs::write(path, pem).with_context(|| format!("writing {}", path.display()))
}

fn write_secret(path: &Path, pem: &str) -> anyhow::Result<()> {
    let mut f = create_private_file(path)?;
    f.write_all(pem.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
