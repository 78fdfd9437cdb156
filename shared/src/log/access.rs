//! Access records (§1798.90.52): every time a person touches ALPR data —
//! a login, a search, a view of a read, an export, a past match, an alert
//! disposition — the node that served it appends one to its own signed log,
//! in the same chain and format as its reads, so an auditor verifies both
//! with one rule. An access entry keeps its record in the signed header:
//! retention never purges it.

use serde::{Deserialize, Serialize};

use crate::types::{check_text, InvalidValue, MAX_TEXT_LEN};

/// Most bytes of the data elements a record names ([`AccessRecord::query`]).
pub const MAX_QUERY_LEN: usize = 1024;

/// What a person did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AccessAction {
    /// Logged in (a session began).
    Login,
    /// A login refused (wrong password, unknown user, no current
    /// training, disabled, throttled).
    LoginFailed,
    /// A user or a source was locked out after repeated failures.
    Lockout,
    Logout,
    /// A search of reads.
    Search,
    /// A view of one read (its content or images).
    View,
    /// An evidence export.
    Export,
    /// A new hotlist entry matched against reads already stored.
    PastMatch,
    /// An alert's disposition was recorded.
    AlertDisposition,
    /// Users were added, changed or disabled.
    UserAdmin,
    /// The policy document was changed.
    PolicyChange,
    /// An auditor read access logs or reports.
    AuditQuery,
    /// A legal hold was placed.
    Hold,
    /// A legal hold was released.
    HoldRelease,
    /// A bulk hotlist file was imported (or its import refused).
    HotlistImport,
    /// A local hotlist entry was added.
    HotlistAdd,
    /// A local hotlist entry was edited.
    HotlistEdit,
    /// A local hotlist entry was removed.
    HotlistRemove,
    /// Local hotlist entries were listed or shown.
    HotlistList,
    /// An operator tool on the hub's machine opened the hub's store
    /// without a login (`hub store check`, `hub migrate`).
    StoreTool,
}

impl AccessAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessAction::Login => "login",
            AccessAction::LoginFailed => "login-failed",
            AccessAction::Lockout => "lockout",
            AccessAction::Logout => "logout",
            AccessAction::Search => "search",
            AccessAction::View => "view",
            AccessAction::Export => "export",
            AccessAction::PastMatch => "past-match",
            AccessAction::AlertDisposition => "alert-disposition",
            AccessAction::UserAdmin => "user-admin",
            AccessAction::PolicyChange => "policy-change",
            AccessAction::AuditQuery => "audit-query",
            AccessAction::Hold => "hold",
            AccessAction::HoldRelease => "hold-release",
            AccessAction::HotlistImport => "hotlist-import",
            AccessAction::HotlistAdd => "hotlist-add",
            AccessAction::HotlistEdit => "hotlist-edit",
            AccessAction::HotlistRemove => "hotlist-remove",
            AccessAction::HotlistList => "hotlist-list",
            AccessAction::StoreTool => "store-tool",
        }
    }
}

impl std::fmt::Display for AccessAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the access was granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccessOutcome {
    Allowed,
    /// Refused, and why (no current training, no purpose, role, …).
    Refused {
        reason: String,
    },
}

/// Cut `s` to at most `max` bytes, on a character boundary (text that
/// people typed goes into access records: `String::truncate` would panic
/// in the middle of a character).
pub fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

impl AccessOutcome {
    /// Refused for `reason`, cut to [`MAX_QUERY_LEN`] bytes on a
    /// character boundary so the record always validates.
    pub fn refused(reason: impl std::fmt::Display) -> Self {
        let mut reason = reason.to_string();
        cut(&mut reason, MAX_QUERY_LEN);
        AccessOutcome::Refused { reason }
    }
}

/// One access, with the four statutory fields: when (the entry's header
/// time), what data was queried ([`Self::query`]), who and for which agency
/// ([`Self::user`], [`Self::agency`]), and why ([`Self::purpose`], with a
/// case number where policy asks for one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRecord {
    pub user: String,
    /// The user's agency (its ORI).
    pub agency: String,
    pub action: AccessAction,
    /// The purpose (an offence type from policy's list).
    pub purpose: Option<String>,
    pub case: Option<String>,
    /// The plate or other data elements queried, as asked (for example
    /// `plate=7ABC123 mode=exact from=… to=…`).
    pub query: String,
    /// How many reads the access returned or touched.
    pub results: u32,
    pub outcome: AccessOutcome,
    /// Where the person was: an IP address, or the node's local console.
    pub source: String,
}

impl AccessRecord {
    /// Check every bound; a decoded or freshly built record must pass.
    pub fn validate(&self) -> Result<(), InvalidValue> {
        check_text("access user", &self.user, MAX_TEXT_LEN)?;
        check_text("access agency", &self.agency, MAX_TEXT_LEN)?;
        if let Some(p) = &self.purpose {
            check_text("access purpose", p, MAX_TEXT_LEN)?;
        }
        if let Some(c) = &self.case {
            check_text("access case", c, MAX_TEXT_LEN)?;
        }
        check_text("access query", &self.query, MAX_QUERY_LEN)?;
        if let AccessOutcome::Refused { reason } = &self.outcome {
            check_text("access refusal reason", reason, MAX_QUERY_LEN)?;
        }
        check_text("access source", &self.source, MAX_TEXT_LEN)?;
        Ok(())
    }

    pub fn allowed(&self) -> bool {
        self.outcome == AccessOutcome::Allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_text_is_cut_on_a_character_boundary() {
        // A 65-byte name whose 64th byte falls inside "é".
        let mut s = format!("{}é", "x".repeat(63));
        cut(&mut s, 64);
        assert_eq!(s, "x".repeat(63));
        let mut short = String::from("ncic");
        cut(&mut short, 64);
        assert_eq!(short, "ncic");
    }

    #[test]
    fn a_long_refusal_is_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_QUERY_LEN);
        let AccessOutcome::Refused { reason } = AccessOutcome::refused(&long) else {
            panic!("not refused");
        };
        assert!(reason.len() <= MAX_QUERY_LEN && reason.len() >= MAX_QUERY_LEN - 1);
        assert_eq!(
            AccessOutcome::refused("no case number"),
            AccessOutcome::Refused {
                reason: "no case number".into()
            }
        );
    }
}
