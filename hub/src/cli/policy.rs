//! `hub policy show [--json]` and `hub policy set FILE`: arguments and
//! output. The commands reach the hub through its API; this module only
//! parses and prints.

use std::path::PathBuf;

use alpr_shared::control::SignedPolicy;
use anyhow::Context;

use crate::policy::{OfficerSetting, PolicySettings};

#[derive(Debug, Clone, clap::Subcommand)]
pub enum PolicyCommand {
    /// Show the policy in force: version, retention, officers, agencies,
    /// purposes, revoked nodes.
    Show {
        #[arg(long)]
        json: bool,
    },
    /// Replace the policy's settings with those in a TOML file (the same
    /// fields as `[policy]` in hub.toml); the hub signs the next version and
    /// pushes it to every edge. An invalid file changes nothing.
    Set {
        /// TOML of policy settings.
        file: PathBuf,
    },
}

/// Read and check the settings file of `hub policy set`.
pub fn read_settings(file: &std::path::Path) -> anyhow::Result<PolicySettings> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    PolicySettings::from_toml(&text).with_context(|| format!("parsing {}", file.display()))
}

/// The policy for people.
pub fn render(p: &SignedPolicy) -> String {
    use std::fmt::Write;
    let d = p.policy();
    let mut s = String::new();
    let _ = writeln!(s, "policy version {} (issued {})", d.version, d.issued_at);
    let _ = writeln!(
        s,
        "retention: hub {} days, edge {} days",
        d.hub_retention_days, d.edge_retention_days
    );
    let _ = writeln!(
        s,
        "an edge that cannot refresh this policy refuses logins after {}",
        humantime::format_duration(std::time::Duration::from_millis(d.max_stale_ms))
    );
    let _ = writeln!(s, "purposes ({}):", d.purposes.len());
    for pu in &d.purposes {
        let case = if pu.case_required {
            "case number required"
        } else {
            "no case number needed"
        };
        let _ = writeln!(s, "  {:<22} {} ({case})", pu.code, pu.label);
    }
    let _ = writeln!(
        s,
        "officers who may log in on edges ({}):",
        d.officers.len()
    );
    for o in &d.officers {
        let _ = writeln!(
            s,
            "  {:<16} {:<10} {:<20} training until {}",
            o.username, o.agency, o.title, o.training_expires
        );
    }
    let _ = writeln!(
        s,
        "agencies that may receive exports ({}):",
        d.agencies.len()
    );
    for a in &d.agencies {
        let flag = match a.export_refusal() {
            None => String::new(),
            Some(_) => format!(" — {}: no exports (§1798.90.55)", a.kind.as_str()),
        };
        let _ = writeln!(s, "  {} {}{flag}", a.ori, a.name);
    }
    let _ = writeln!(s, "revoked nodes ({}):", d.revoked_nodes.len());
    for r in &d.revoked_nodes {
        let _ = writeln!(s, "  {} from {} ({})", r.serial, r.effective_at, r.reason);
    }
    s
}

/// The settings of a policy as a TOML file `hub policy set` takes back.
pub fn settings_toml(p: &SignedPolicy) -> String {
    let mut settings = PolicySettings::of(p.policy());
    settings.officers = Vec::<OfficerSetting>::new();
    toml::to_string(&settings).unwrap_or_default()
}
