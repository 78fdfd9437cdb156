//! Parsers of the list files agencies receive: NCIC fixed-width extracts,
//! California DOJ `.tbl` files and delimited CSV with NCIC field codes.
//! (Skeleton: the import helper replaces this file.)

use super::HotEntry;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Ncic,
    CaDoj,
    Csv,
}

/// A row that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BadRow {
    /// 1-based line number in the file.
    pub line: usize,
    pub reason: String,
}

#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub entries: Vec<HotEntry>,
    pub bad: Vec<BadRow>,
    /// Data rows seen (good and bad).
    pub rows: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    Invalid(String),
}

/// CSV column mapping: `LIC=plate,LIS=state`-style overrides of the
/// header names.
#[derive(Debug, Clone, Default)]
pub struct Columns(pub Vec<(String, String)>);

pub fn parse(_format: Format, _bytes: &[u8], _columns: &Columns) -> Result<Parsed, ImportError> {
    todo!("import helper")
}
