//! `GET /transparency` and `GET /transparency/policy` — the public page
//! about the system (no login): what it is for, how long reads are kept,
//! how many cameras, reads and searches, and the usage and privacy policy
//! in words. It shows the policy and counts only, never a read, a plate
//! or a person; so nothing about a visitor is logged.
//!
//! The counts are made at most once a minute ([`FRESH`]) per hub: reads
//! from the per-hour counter (`read-hours-v1`), searches from the access
//! logs of the last 30 days (the hub's read backwards from its end, the
//! nodes' by their time index), so a visit costs nothing however many
//! reads are stored.

use std::time::{Duration, Instant};

use alpr_shared::control::SignedPolicy;
use alpr_shared::log::{AccessAction, AccessOutcome, SignedEntry};
use alpr_shared::types::UnixMillis;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::{html, Markup, DOCTYPE};

use super::head;
use super::Pages;
use crate::store::redb::HOUR_MS;
use crate::store::{HubStorage, StoreError};

/// How long the counts are reused.
pub const FRESH: Duration = Duration::from_secs(60);
/// The window of the published counts.
pub const DAYS: u64 = 30;
/// Access entries read per page when counting searches.
const PAGE: usize = 4096;

pub fn routes() -> Router<Pages> {
    Router::new()
        .route("/transparency", get(show))
        .route("/transparency/policy", get(policy))
}

/// What the page publishes besides the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts {
    /// Nodes (cameras) enrolled: every node that has connected.
    pub cameras: u64,
    /// Reads captured in the last [`DAYS`] days.
    pub reads: u64,
    /// Searches answered in the last [`DAYS`] days (at the hub and at the
    /// edges).
    pub searches: u64,
}

/// Whether an access entry is a search that was answered.
fn answered_search(e: &SignedEntry) -> bool {
    e.access().is_some_and(|r| {
        r.action == AccessAction::Search && matches!(r.outcome, AccessOutcome::Allowed)
    })
}

/// Count what the page shows, for the [`DAYS`] days up to `now`.
pub fn count(storage: &dyn HubStorage, now: UnixMillis) -> Result<Counts, StoreError> {
    let from = UnixMillis(now.0.saturating_sub(DAYS * 86_400_000));
    let cameras = storage.nodes()?.len() as u64;
    let reads = storage
        .reads_per_hour(from.0 / HOUR_MS, now.0 / HOUR_MS)?
        .iter()
        .map(|(_, n)| n)
        .sum();
    let mut searches = 0u64;
    // The hub's log, newest page first, until a page starts before `from`
    // (it is appended in time order, give or take the clock).
    let (size, _) = storage.hub_access_head()?;
    let mut end = size;
    while end > 0 {
        let first = end.saturating_sub(PAGE as u64);
        let page = storage.hub_access_entries(first, (end - first) as usize)?;
        let mut older = false;
        for b in &page {
            let Ok(e) = SignedEntry::decode(b) else {
                continue;
            };
            if e.header.captured_at < from {
                older = true;
            } else if answered_search(&e) {
                searches += 1;
            }
        }
        if older || page.is_empty() {
            break;
        }
        end = first;
    }
    let at = storage.node_accesses(from, now, usize::MAX)?;
    for chunk in at.chunks(PAGE) {
        for b in storage.entries_at(chunk)?.into_iter().flatten() {
            if SignedEntry::decode(&b).is_ok_and(|e| answered_search(&e)) {
                searches += 1;
            }
        }
    }
    Ok(Counts {
        cameras,
        reads,
        searches,
    })
}

/// The counts, recounted when older than [`FRESH`]; one visitor
/// recounts while the others wait for it.
async fn counts(state: &Pages) -> Result<Counts, String> {
    let mut cached = state.console.transparency.lock().await;
    if let Some((t, c)) = cached.as_ref() {
        if t.elapsed() < FRESH {
            return Ok(c.clone());
        }
    }
    let storage = state.hub.storage.clone();
    let c = tokio::task::spawn_blocking(move || count(storage.as_ref(), UnixMillis::now()))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    *cached = Some((Instant::now(), c.clone()));
    Ok(c)
}

/// The agency running the system: the organisation of the deployment CA
/// that issued the hub's certificate.
fn agency(state: &Pages) -> String {
    alpr_shared::cert::issuer_organization(&state.hub.keys.tls_cert_der)
        .unwrap_or_else(|| "This agency".to_owned())
}

/// A public page: no navigation, no session.
fn public_page(status: StatusCode, id: &str, title: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head { (head(title)) }
            body {
                main id="main" {
                    div id={ "page-" (id) } class="public" {
                        h1 { (title) }
                        (body)
                    }
                }
            }
        }
    };
    (status, markup).into_response()
}

fn days(n: u32) -> String {
    if n == 1 {
        "1 day".into()
    } else {
        format!("{n} days")
    }
}

async fn show(State(state): State<Pages>) -> Response {
    let policy = state.hub.policy.current();
    let doc = policy.policy();
    let agency = agency(&state);
    let counts = counts(&state).await;
    let body = html! {
        p id="agency" {
            (agency) " operates an automated licence plate recognition (ALPR) system: cameras that read the plates of passing vehicles. "
            "This page says what it is used for, how long what it collects is kept, and how much it is used. "
            "It is published under California Civil Code §1798.90.51 and shows no read, plate or person."
        }
        h2 { "What it is for" }
        p { "A search of the collected reads is allowed only for one of these purposes, recorded with every search:" }
        ul id="purposes" {
            @for p in &doc.purposes {
                li { (p.label) @if p.case_required { " (a case number is required)" } }
            }
        }
        h2 { "How long reads are kept" }
        p id="retention" {
            "Reads are deleted after " strong { (days(doc.hub_retention_days)) } " at the central hub and after "
            (days(doc.edge_retention_days)) " on the cameras, unless a legal hold for a specific case requires keeping them."
        }
        h2 { "How much it is used" }
        @match &counts {
            Ok(c) => {
                div class="cards" {
                    div class="card" { div { "Cameras" } div class="figure" id="cameras" { (c.cameras) } }
                    div class="card" {
                        div { "Reads collected, last " (DAYS) " days" }
                        div class="figure" id="reads-30d" { (c.reads) }
                    }
                    div class="card" {
                        div { "Searches, last " (DAYS) " days" }
                        div class="figure" id="searches-30d" { (c.searches) }
                    }
                }
                p class="muted" { "Counts are updated every minute." }
            }
            Err(e) => {
                p class="error" id="error" { "The counts are not available right now: " (e) }
                span id="cameras" {} span id="reads-30d" {} span id="searches-30d" {}
            }
        }
        h2 { "The usage and privacy policy" }
        p id="policy" {
            "Every search and every view of a read is logged with who, when, why and the case, and audited. "
            "Data is shared only with the California public agencies the policy lists. "
            a href="/transparency/policy" { "Read the usage and privacy policy (version " (doc.version) ")" } "."
        }
    };
    public_page(
        StatusCode::OK,
        "transparency",
        "About this ALPR system",
        body,
    )
}

fn policy_text(agency: &str, policy: &SignedPolicy) -> Markup {
    let doc = policy.policy();
    html! {
        p { "Version " (doc.version) ", in force since " (super::when(doc.issued_at)) ". Operated by " (agency) "." }
        h2 { "Authorised uses" }
        p { "Staff may search the reads only after training, for one of these purposes, and each search records the purpose and, where marked, a case number:" }
        table {
            thead { tr { th { "Purpose" } th { "Case number required" } } }
            tbody {
                @for p in &doc.purposes {
                    tr { td { (p.label) } td { @if p.case_required { "yes" } @else { "no" } } }
                }
            }
        }
        h2 { "Retention" }
        p {
            "Reads are kept " (days(doc.hub_retention_days)) " at the hub and " (days(doc.edge_retention_days))
            " on the cameras, then deleted, unless a legal hold placed for a case covers them."
        }
        h2 { "Sharing" }
        p { "Reads are shared only with these California public agencies, as evidence for a case, and each export is logged:" }
        ul {
            @for a in doc.agencies.iter().filter(|a| a.export_refusal().is_none()) { li { (a.name) } }
            @if doc.agencies.iter().all(|a| a.export_refusal().is_some()) { li { "none" } }
        }
        h2 { "Accountability" }
        p {
            "Every access is recorded in signed, append-only logs that auditors review; staff whose training has lapsed cannot use the system. "
            "Hotlist alerts must be confirmed through the state system before any enforcement."
        }
        p { a href="/transparency" { "Back" } }
    }
}

async fn policy(State(state): State<Pages>) -> Response {
    let policy = state.hub.policy.current();
    let body = policy_text(&agency(&state), &policy);
    public_page(
        StatusCode::OK,
        "transparency-policy",
        "Usage and privacy policy",
        body,
    )
}
