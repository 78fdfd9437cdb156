//! `hub pki …`: the deployment's certificate authority, on files.
//!
//! `init` writes `ca.crt`, `ca.key`, `hub.crt`, `hub.key` into a directory;
//! `enroll` writes a node's `node.crt`, `node.key` and a copy of `ca.crt`.
//! Private keys are written with mode 0600 and never printed.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use alpr_shared::pki::{new_ca, Authority};
use alpr_shared::types::{DeviceId, DeviceKind};
use anyhow::{bail, Context};

#[derive(Debug, clap::Subcommand)]
pub enum PkiCommand {
    /// Create the deployment CA and the hub's certificate.
    Init {
        /// Folder to write ca.crt, ca.key, hub.crt, hub.key into.
        #[arg(long)]
        out: PathBuf,
        /// Agency name written in every certificate.
        #[arg(long, default_value = "ALPR Agency")]
        org: String,
        /// DNS names and IP addresses the hub answers on.
        #[arg(long = "hub-name", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
        hub_names: Vec<String>,
        /// CA validity in days.
        #[arg(long, default_value_t = 3650)]
        days: i64,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// Create a node's Ed25519 key and its CA-signed certificate.
    Enroll {
        /// Folder holding ca.crt and ca.key.
        #[arg(long)]
        ca: PathBuf,
        /// The node's name (certificate common name).
        #[arg(long)]
        device: String,
        /// pole or vehicle.
        #[arg(long)]
        kind: DeviceKind,
        /// Folder to write node.crt, node.key and ca.crt into.
        #[arg(long)]
        out: PathBuf,
        /// Certificate validity in days.
        #[arg(long, default_value_t = 825)]
        days: i64,
        #[arg(long)]
        force: bool,
    },
}

pub fn run(cmd: PkiCommand) -> anyhow::Result<()> {
    match cmd {
        PkiCommand::Init {
            out,
            org,
            hub_names,
            days,
            force,
        } => {
            fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            refuse_overwrite(&out, &["ca.crt", "ca.key", "hub.crt", "hub.key"], force)?;
            let ca = new_ca(&org, days).context("creating the CA")?;
            let authority = Authority::load(&ca.cert_pem, &ca.key_pem)?;
            let hub = authority
                .issue_hub(&hub_names, days.min(825))
                .context("issuing the hub certificate")?;
            write_public(&out.join("ca.crt"), &ca.cert_pem)?;
            write_secret(&out.join("ca.key"), &ca.key_pem)?;
            write_public(&out.join("hub.crt"), &hub.cert_pem)?;
            write_secret(&out.join("hub.key"), &hub.key_pem)?;
            println!(
                "deployment CA and hub certificate written to {}",
                out.display()
            );
            println!("  ca.crt   give to every node and auditor");
            println!("  ca.key   keep offline; needed only to enroll nodes");
            println!(
                "  hub.crt, hub.key   the hub's TLS identity ({})",
                hub_names.join(", ")
            );
            Ok(())
        }
        PkiCommand::Enroll {
            ca,
            device,
            kind,
            out,
            days,
            force,
        } => {
            let name = DeviceId::new(device).context("invalid device name")?;
            let ca_pem = fs::read_to_string(ca.join("ca.crt"))
                .with_context(|| format!("reading {}", ca.join("ca.crt").display()))?;
            let key_pem = zeroize::Zeroizing::new(
                fs::read_to_string(ca.join("ca.key"))
                    .with_context(|| format!("reading {}", ca.join("ca.key").display()))?,
            );
            let authority = Authority::load(&ca_pem, &key_pem).context("loading the CA")?;
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
    }
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
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(pem.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}
