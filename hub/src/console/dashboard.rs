//! `GET /console/` — the dashboard: what the role may see of the system
//! at a glance.
//!
//! - **Nodes** ([`Permission::ViewNodes`]): online, last contact, backlog,
//!   the bulk lists each holds (with the age of the generation, or how
//!   far behind the latest it is), refusals — the API's nodes report.
//! - **Reads per hour** over the last 24 hours (any role: counts only),
//!   from the per-hour counter ingest keeps (`read-hours-v1`), so it
//!   costs 24 rows however many reads are stored.
//! - **Alerts waiting** for disposition ([`Permission::HandleAlerts`]):
//!   a count from the alert index; covert alerts count for supervisors
//!   only, as the alerts list shows them.
//! - **Retention due** ([`Permission::ViewNodes`]): the API's retention
//!   status. Counting what is due reads every stored read, so it is
//!   counted in the background at most every [`RETENTION_FRESH`] and the
//!   page shows the last count with its age.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use alpr_shared::types::UnixMillis;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use maud::{html, Markup};

use super::{age, page, when, ConsoleError, PageResult, Pages, Section, Session};
use crate::api::retention::RetentionStatus;
use crate::api::ApiError;
use crate::store::redb::HOUR_MS;
use crate::users::{Caller, Permission};

/// How old a retention count may be before the next visit recounts it.
pub const RETENTION_FRESH: Duration = Duration::from_secs(300);

pub fn routes() -> Router<Pages> {
    Router::new().route("/console/", get(show))
}

/// Reads per hour of capture, oldest first: (hour, reads) for the 24
/// hours up to and including the current one.
pub(crate) fn reads_per_hour(state: &Pages, now: UnixMillis) -> Result<Vec<(u64, u64)>, ApiError> {
    let last = now.0 / HOUR_MS;
    let first = last.saturating_sub(23);
    let counted: HashMap<u64, u64> = state
        .hub
        .storage
        .reads_per_hour(first, last)
        .map_err(|e| ApiError::Unavailable(e.to_string()))?
        .into_iter()
        .collect();
    Ok((first..=last)
        .map(|h| (h, counted.get(&h).copied().unwrap_or(0)))
        .collect())
}

/// Alerts not yet closed that this caller sees: the node's and the hub's
/// stages combined, as the alerts page shows them.
fn alerts_waiting(state: &Pages, caller: &Caller) -> Result<u64, ApiError> {
    crate::api::alerts::collect(state.hub.storage.as_ref(), caller, true, None)
        .map(|v| v.len() as u64)
}

/// The last retention count of a hub, and whether one is running.
#[derive(Debug, Default)]
pub(crate) struct RetentionCount {
    last: Option<(Instant, Result<RetentionStatus, String>)>,
    running: bool,
}

/// The last retention count (if any), starting a recount in the
/// background when there is none or it is older than [`RETENTION_FRESH`].
fn retention(
    state: &Pages,
    session: &Session,
) -> Option<(Duration, Result<RetentionStatus, String>)> {
    let mut entry = state.console.retention.lock().ok()?;
    let stale = entry
        .last
        .as_ref()
        .is_none_or(|(t, _)| t.elapsed() >= RETENTION_FRESH);
    if stale && !entry.running {
        entry.running = true;
        let (state, caller) = (state.clone(), session.caller.clone());
        tokio::spawn(async move {
            let console = state.console.clone();
            let r = crate::api::retention::status(State(state.api), caller)
                .await
                .map(|Json(s)| s)
                .map_err(|e| e.to_string());
            if let Ok(mut entry) = console.retention.lock() {
                entry.running = false;
                entry.last = Some((Instant::now(), r));
            };
        });
    }
    entry.last.as_ref().map(|(t, r)| (t.elapsed(), r.clone()))
}

async fn show(State(state): State<Pages>, session: Session) -> PageResult {
    Section::Dashboard.require(&session)?;
    let nodes = if session.may(Permission::ViewNodes) {
        let Json(r) =
            crate::api::nodes::get_nodes(State(state.api.clone()), session.caller.clone()).await?;
        Some(r)
    } else {
        None
    };
    let now = UnixMillis::now();
    let (st, caller) = (state.clone(), session.caller.clone());
    let may_alerts = session.may(Permission::HandleAlerts);
    let (hours, waiting) = tokio::task::spawn_blocking(move || {
        let hours = reads_per_hour(&st, now)?;
        let waiting = may_alerts
            .then(|| alerts_waiting(&st, &caller))
            .transpose()?;
        Ok::<_, ApiError>((hours, waiting))
    })
    .await
    .map_err(|e| ConsoleError::from(ApiError::Internal(e.to_string())))??;
    let retention = session
        .may(Permission::ViewNodes)
        .then(|| retention(&state, &session));
    // The latest generation of each bulk list: (number, issued at).
    let latest: HashMap<String, (u64, UnixMillis)> = state
        .hub
        .hotlists
        .current()
        .iter()
        .map(|g| {
            let i = g.info();
            (i.source.clone(), (i.number, i.issued_at))
        })
        .collect();
    let body = html! {
        div class="cards" {
            div class="card" {
                div { "Reads, last 24 h" }
                div class="figure" id="reads-24h" { (hours.iter().map(|(_, n)| n).sum::<u64>()) }
            }
            @if let Some(n) = waiting {
                div class="card" {
                    div { "Alerts waiting for disposition" }
                    div class="figure" id="alerts-waiting" { (n) }
                    @if session.may(Permission::HandleAlerts) {
                        a href="/console/alerts" { "Open the alerts" }
                    }
                }
            }
            @if let Some(r) = &retention {
                div class="card" id="retention-due" { (retention_card(r.as_ref(), state.retention_interval)) }
            }
            @if let Some(r) = &nodes {
                div class="card" {
                    div { "Nodes online" }
                    div class="figure" id="nodes-online" {
                        (r.nodes.iter().filter(|n| n.connected).count()) " / " (r.nodes.len())
                    }
                }
            }
        }
        h2 { "Reads per hour (UTC), last 24 hours" }
        (chart(&hours))
        @if let Some(r) = &nodes {
            h2 { "Nodes" }
            @if !r.problems.is_empty() {
                ul class="bad" id="problems" { @for p in &r.problems { li { (p) } } }
            }
            (nodes_table(r, &latest, now))
        }
    };
    Ok(page(
        &session,
        Section::Dashboard,
        "dashboard",
        "Dashboard",
        body,
    ))
}

fn retention_card(
    r: Option<&(Duration, Result<RetentionStatus, String>)>,
    every: Duration,
) -> Markup {
    html! {
        div { "Retention" }
        @match r {
            None => {
                div class="figure" { "…" }
                div class="muted" { "Counting the reads past retention; reload in a moment." }
            }
            Some((_, Err(e))) => { div class="bad" { "Could not count: " (e) } }
            Some((ago, Ok(s))) => {
                div class="figure" { (s.due) }
                div { "reads past " (s.retention_days) " days, due to be purged" }
                @if s.held > 0 { div { (s.held) " kept under a legal hold" } }
                div class="muted" {
                    "Counted " (age(ago.as_millis() as u64)) " ago. The job runs every "
                    (age(every.as_millis() as u64))
                    @if let Some(l) = &s.last { "; last run " (when(l.at)) ", " (l.purged) " purged" }
                    @else { "; it has not run since the hub started" }
                    "."
                }
            }
        }
    }
}

/// The reads per hour as bars, with the figures in a table beside them
/// for keyboards and screen readers.
fn chart(hours: &[(u64, u64)]) -> Markup {
    const W: u64 = 20;
    const H: u64 = 100;
    let max = hours.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let label = |h: u64| {
        let t = UnixMillis(h * HOUR_MS).to_string();
        t.get(11..16).unwrap_or("").to_owned()
    };
    html! {
        figure id="reads-per-hour" {
            svg class="bars" viewBox={ "0 0 " (W * hours.len() as u64) " " (H + 16) }
                width={ (W * hours.len() as u64 * 2) } height={ ((H + 16) * 2) }
                role="img" aria-label="Reads per hour, last 24 hours" {
                @for (i, (h, n)) in hours.iter().enumerate() {
                    @let bar = n * H / max;
                    rect x=(i as u64 * W + 2) y=(H - bar) width=(W - 4) height=(bar) fill="#0a4b8c" {
                        title { (label(*h)) " UTC: " (n) " reads" }
                    }
                    @if i % 4 == 0 {
                        text x=(i as u64 * W + 1) y=(H + 12) font-size="8" fill="#57606a" { (label(*h)) }
                    }
                }
            }
            details {
                summary { "The figures" }
                table {
                    thead { tr { th { "Hour (UTC)" } th class="num" { "Reads" } } }
                    tbody {
                        @for (h, n) in hours {
                            tr { td { (when(UnixMillis(h * HOUR_MS))) } td class="num" { (n) } }
                        }
                    }
                }
            }
        }
    }
}

/// The bulk lists a node holds: each generation, its age when it is the
/// latest, or how far behind it is.
fn lists(
    held: &[(String, u64)],
    latest: &HashMap<String, (u64, UnixMillis)>,
    now: UnixMillis,
) -> Markup {
    html! {
        @if held.is_empty() { span class="muted" { "none" } }
        @for (i, (source, generation)) in held.iter().enumerate() {
            @if i > 0 { br; }
            (source) " #" (generation) " "
            @match latest.get(source) {
                Some((n, at)) if n == generation => {
                    span class="muted" { "(latest, " (age(now.0.saturating_sub(at.0))) " old)" }
                }
                Some((n, at)) => {
                    span class="warn" { "(behind: #" (n) " issued " (age(now.0.saturating_sub(at.0))) " ago)" }
                }
                None => {}
            }
        }
    }
}

fn nodes_table(
    r: &crate::api::nodes::NodesReport,
    latest: &HashMap<String, (u64, UnixMillis)>,
    now: UnixMillis,
) -> Markup {
    html! {
        table id="nodes" {
            thead {
                tr {
                    th { "Node" } th { "Online" } th { "Last contact" } th class="num" { "Entries held" }
                    th class="num" { "Backlog" } th { "Lists held (generation)" } th { "Policy" }
                    th class="num" { "Refusals" }
                }
            }
            tbody {
                @for n in &r.nodes {
                    tr class="node" {
                        td { (n.name) }
                        td { @if n.connected { span class="ok" { "online" } } @else { span class="muted" { "offline" } } }
                        td {
                            (when(n.last_contact)) " "
                            span class="muted" { "(" (age(now.0.saturating_sub(n.last_contact.0))) " ago)" }
                        }
                        td class="num" { (n.acked) }
                        td class="num" {
                            @match n.backlog {
                                Some(b) => (b),
                                None => span class="bad" { "identity conflict" },
                            }
                        }
                        td { (lists(&n.hotlists, latest, now)) }
                        td { @match n.policy_version { Some(v) => { "v" (v) }, None => span class="muted" { "—" } } }
                        td class="num" { (n.refusals) }
                    }
                }
            }
        }
        @if r.nodes.is_empty() { p class="muted" { "No node has connected yet." } }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_behind_the_latest_list_is_marked_and_one_up_to_date_shows_its_age() {
        let now = UnixMillis(10 * HOUR_MS);
        let latest = HashMap::from([("ncic".to_owned(), (7, UnixMillis(8 * HOUR_MS)))]);
        let up = lists(&[("ncic".into(), 7)], &latest, now).into_string();
        assert!(
            up.contains("ncic #7") && up.contains("latest, 2 h old"),
            "{up}"
        );
        let behind = lists(&[("ncic".into(), 5)], &latest, now).into_string();
        assert!(
            behind.contains("ncic #5") && behind.contains("behind: #7"),
            "{behind}"
        );
        assert!(lists(&[], &latest, now).into_string().contains("none"));
    }

    #[test]
    fn the_chart_has_a_bar_and_a_row_per_hour_scaled_to_the_busiest() {
        let hours: Vec<(u64, u64)> = (100..124)
            .map(|h| (h, if h == 110 { 40 } else { 10 }))
            .collect();
        let html = chart(&hours).into_string();
        assert_eq!(html.matches("<rect").count(), 24);
        assert_eq!(html.matches("<td class=\"num\">").count(), 24);
        // The busiest hour is the full height; the others a quarter of it.
        assert!(html.contains("height=\"100\""), "{html}");
        assert_eq!(html.matches("height=\"25\"").count(), 23);
    }
}
