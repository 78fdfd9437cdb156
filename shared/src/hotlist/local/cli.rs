//! The local entries as people type and read them: the arguments of an
//! add or edit (`hub hotlist`, `edge hotlist`) and the one-line summary of
//! an entry.

use super::EntryFields;
use crate::hotlist::{AlertLevel, Category, LocalEntry};
use crate::types::UnixMillis;

/// The command-line arguments of an add or edit, shared by `hub hotlist`
/// and `edge hotlist`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EntryArgs {
    /// Why the vehicle is listed.
    #[arg(long)]
    pub reason: Option<String>,
    /// Issuing state (two letters).
    #[arg(long)]
    pub state: Option<String>,
    /// Case number.
    #[arg(long)]
    pub case: Option<String>,
    /// Category (suspect, stolen-vehicle, amber, wanted, …).
    #[arg(long)]
    pub category: Option<String>,
    /// Alert level: low, standard or urgent.
    #[arg(long)]
    pub level: Option<String>,
    #[arg(long)]
    pub make: Option<String>,
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long)]
    pub colour: Option<String>,
    /// Expires after this long (e.g. `30d`, `12h`); policy caps it.
    #[arg(long)]
    pub expires: Option<String>,
}

impl EntryArgs {
    /// The fields asked for (`plate` given separately for an add), with
    /// the expiry counted from `now`.
    pub fn fields(&self, plate: Option<&str>, now: UnixMillis) -> Result<EntryFields, String> {
        let category = self
            .category
            .as_deref()
            .map(|c| {
                Category::from_name(c).ok_or_else(|| {
                    format!(
                        "--category {c:?}: one of {}",
                        Category::ALL.map(|k| k.name()).join(", ")
                    )
                })
            })
            .transpose()?;
        let level = self
            .level
            .as_deref()
            .map(|l| match l {
                "low" => Ok(AlertLevel::Low),
                "standard" => Ok(AlertLevel::Standard),
                "urgent" => Ok(AlertLevel::Urgent),
                other => Err(format!("--level {other:?}: low, standard or urgent")),
            })
            .transpose()?;
        let expires_at = self
            .expires
            .as_deref()
            .map(|e| {
                humantime::parse_duration(e)
                    .map(|d| {
                        UnixMillis(
                            now.0
                                .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                        )
                    })
                    .map_err(|err| format!("--expires {e:?}: {err}"))
            })
            .transpose()?;
        Ok(EntryFields {
            plate: plate.map(str::to_string),
            state: self.state.clone(),
            category,
            reason: self.reason.clone(),
            case: self.case.clone(),
            level,
            make: self.make.clone(),
            model: self.model.clone(),
            colour: self.colour.clone(),
            expires_at,
        })
    }
}

/// One line about an entry, for people (`hub hotlist list --local`,
/// `edge hotlist list`).
pub fn summary(e: &LocalEntry, now: UnixMillis) -> String {
    let state = match &e.removed {
        Some(r) => format!("removed by {} ({})", r.by, r.reason),
        None if !e.active(now) => "expired".into(),
        None => format!("active until {}", time(e.expires_at)),
    };
    let mut vehicle = [e.colour.as_str(), e.make.as_str(), e.model.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    if !vehicle.is_empty() {
        vehicle = format!("  {vehicle}");
    }
    format!(
        "{}{}  {}  {}  {}{}{}  by {}  {state}",
        e.plate,
        if e.state.is_empty() {
            String::new()
        } else {
            format!(" ({})", e.state)
        },
        e.category,
        format!("{:?}", e.level).to_lowercase(),
        e.reason,
        if e.case.is_empty() {
            String::new()
        } else {
            format!("  case {}", e.case)
        },
        vehicle,
        e.author,
    )
}

fn time(m: UnixMillis) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(m.0))
        .to_string()
}
