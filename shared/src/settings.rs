//! Range checks for configuration values, shared by `hub.toml` and
//! `edge.toml`: each error names the file, the field, the value and what is
//! allowed, so an operator can fix it without reading code.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One configuration value outside its allowed range.
#[derive(Debug, thiserror::Error)]
#[error("{}: {field} = {value} is not allowed: {allowed}", file.display())]
pub struct InvalidSetting {
    pub file: PathBuf,
    pub field: &'static str,
    pub value: String,
    pub allowed: String,
}

/// Collects the checks of one file; the first failure is reported.
pub struct Checker<'a> {
    file: &'a Path,
}

impl<'a> Checker<'a> {
    pub fn new(file: &'a Path) -> Self {
        Checker { file }
    }

    /// An error for `field = value`, allowed `allowed`.
    pub fn invalid(
        &self,
        field: &'static str,
        value: impl Display,
        allowed: impl Into<String>,
    ) -> InvalidSetting {
        InvalidSetting {
            file: self.file.to_path_buf(),
            field,
            value: value.to_string(),
            allowed: allowed.into(),
        }
    }

    /// `min <= value <= max`.
    pub fn duration(
        &self,
        field: &'static str,
        value: Duration,
        min: Duration,
        max: Duration,
    ) -> Result<(), InvalidSetting> {
        if value < min || value > max {
            return Err(self.invalid(
                field,
                format!("\"{}\"", humantime::format_duration(value)),
                format!(
                    "from {} to {}",
                    humantime::format_duration(min),
                    humantime::format_duration(max)
                ),
            ));
        }
        Ok(())
    }

    /// `min <= value <= max`.
    pub fn number<T: PartialOrd + Display>(
        &self,
        field: &'static str,
        value: T,
        min: T,
        max: T,
    ) -> Result<(), InvalidSetting> {
        if value < min || value > max {
            let allowed = format!("from {min} to {max}");
            return Err(self.invalid(field, value, allowed));
        }
        Ok(())
    }

    /// A text that must not be empty.
    pub fn not_empty(&self, field: &'static str, value: &str) -> Result<(), InvalidSetting> {
        if value.trim().is_empty() {
            return Err(self.invalid(field, "\"\"", "a non-empty text"));
        }
        Ok(())
    }

    /// `a < b` for two durations, e.g. a keep-alive shorter than the idle
    /// timeout it has to beat.
    pub fn shorter(
        &self,
        field: &'static str,
        value: Duration,
        other_field: &'static str,
        other: Duration,
    ) -> Result<(), InvalidSetting> {
        if value >= other {
            return Err(self.invalid(
                field,
                format!("\"{}\"", humantime::format_duration(value)),
                format!(
                    "less than {other_field} (\"{}\")",
                    humantime::format_duration(other)
                ),
            ));
        }
        Ok(())
    }

    /// `a <= b` for two durations.
    pub fn at_most(
        &self,
        field: &'static str,
        value: Duration,
        other_field: &'static str,
        other: Duration,
    ) -> Result<(), InvalidSetting> {
        if value > other {
            return Err(self.invalid(
                field,
                format!("\"{}\"", humantime::format_duration(value)),
                format!(
                    "at most {other_field} (\"{}\")",
                    humantime::format_duration(other)
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_file_field_value_and_range() {
        let c = Checker::new(Path::new("/etc/alpr/hub.toml"));
        let e = c
            .duration(
                "idle_timeout",
                Duration::ZERO,
                Duration::from_secs(1),
                Duration::from_secs(3600),
            )
            .expect_err("0s is out of range");
        assert_eq!(
            e.to_string(),
            "/etc/alpr/hub.toml: idle_timeout = \"0s\" is not allowed: from 1s to 1h"
        );
        let e = c
            .number("max_connections", 0usize, 1, 100_000)
            .expect_err("0");
        assert_eq!(
            e.to_string(),
            "/etc/alpr/hub.toml: max_connections = 0 is not allowed: from 1 to 100000"
        );
        assert!(c.number("max_connections", 1usize, 1, 100_000).is_ok());
    }
}
