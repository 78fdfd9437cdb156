//! How `hub.toml` configures the bulk lists: each source, its matching
//! strategy, and the limits of imports.

use super::*;

/// How a source matches, as `hub.toml` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyName {
    Exact,
    #[default]
    OcrEquivalent,
}

/// One bulk list (`[[hotlist.sources]]` in `hub.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The list's name (`ncic`, `ca-svs`, …): `[a-z0-9-]`, 1..=32.
    pub name: String,
    /// The format its files come in (an import may say otherwise).
    pub format: Format,
    /// Category of every row, for formats that do not carry one
    /// (`ca-doj`: `stolen-vehicle` for svs, `stolen-plate` for slr,
    /// `felony` for sfr).
    #[serde(default)]
    pub category: Option<Category>,
    #[serde(default)]
    pub strategy: StrategyName,
    /// For `ocr-equivalent`: at most this many substitutions (1 or 2).
    #[serde(default = "one")]
    pub max_substitutions: u8,
    /// Reads never matched against this list (known junk: `0`, `000`).
    #[serde(default)]
    pub skip: Vec<String>,
    #[serde(default)]
    pub alert_level: AlertLevel,
    /// No in-car alert; hits visible to privileged users only.
    #[serde(default)]
    pub covert: bool,
}

pub(super) fn one() -> u8 {
    1
}

impl SourceConfig {
    /// The settings signed into every generation of this source.
    pub fn settings(&self) -> ListSettings {
        ListSettings {
            strategy: match self.strategy {
                StrategyName::Exact => MatchStrategy::Exact,
                StrategyName::OcrEquivalent => MatchStrategy::OcrEquivalent {
                    max_substitutions: self.max_substitutions,
                },
            },
            skip: self
                .skip
                .iter()
                .map(|s| import::normalise_plate(s))
                .filter(|s| !s.is_empty())
                .collect(),
            alert_level: self.alert_level,
            covert: self.covert,
        }
    }

    pub(super) fn check(&self) -> Result<(), String> {
        if !valid_source_name(&self.name) {
            return Err(format!(
                "hotlist source name {:?}: use 1 to 32 of a-z, 0-9 and -",
                self.name
            ));
        }
        if self.strategy == StrategyName::OcrEquivalent
            && !(1..=alpr_shared::hotlist::MAX_SUBSTITUTIONS).contains(&self.max_substitutions)
        {
            return Err(format!(
                "hotlist source {}: max_substitutions must be 1..={}",
                self.name,
                alpr_shared::hotlist::MAX_SUBSTITUTIONS
            ));
        }
        if self.skip.len() > 1000 {
            return Err(format!(
                "hotlist source {}: at most 1000 skip entries",
                self.name
            ));
        }
        Ok(())
    }
}

/// Whether `name` may name a source (it is also a URL path segment).
pub fn valid_source_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `[hotlist]` in `hub.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HotlistConfig {
    pub sources: Vec<SourceConfig>,
    /// Generations of each source kept (so deltas from recent ones exist).
    pub keep: u64,
    /// An import that would change more than this share of the list
    /// (rows added plus rows removed, over the previous generation's
    /// rows) is refused unless forced.
    pub max_change: f64,
    /// Largest list file accepted, in bytes.
    pub max_file_bytes: usize,
}

impl Default for HotlistConfig {
    fn default() -> Self {
        HotlistConfig {
            sources: Vec::new(),
            keep: 4,
            max_change: 0.5,
            max_file_bytes: 256 * 1024 * 1024,
        }
    }
}

impl HotlistConfig {
    pub fn validate(&self) -> Result<(), String> {
        let mut names = HashSet::new();
        for s in &self.sources {
            s.check()?;
            if !names.insert(&s.name) {
                return Err(format!("hotlist source {} is configured twice", s.name));
            }
        }
        if !(1..=64).contains(&self.keep) {
            return Err("hotlist.keep must be 1..=64".into());
        }
        if !(self.max_change > 0.0 && self.max_change <= 10.0) {
            return Err("hotlist.max_change must be in (0, 10]".into());
        }
        if !(1024..=4 * 1024 * 1024 * 1024_usize).contains(&self.max_file_bytes) {
            return Err("hotlist.max_file_bytes must be 1 KiB..=4 GiB".into());
        }
        Ok(())
    }

    pub fn source(&self, name: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|s| s.name == name)
    }
}
