//! The hotlists page (`/console/hotlists`, operators and supervisors):
//! the bulk sources with their current generation and its age, the import
//! of a list file, and the entries people add by hand (often partial
//! plates), with their add, edit and remove.
//!
//! Every action calls the API's own handler ([`crate::api::hotlists`],
//! [`crate::api::local_entries`]), so the checks and the access record
//! are the API's. The import form is multipart; its file is kept up to
//! `hotlist.max_file_bytes` (the route lifts the console's body limit as
//! the API's import route does; a larger file is read to its end and
//! refused by the API's size check) and handed to the API's import as its
//! body.

use alpr_shared::hotlist::import::Format;
use alpr_shared::hotlist::local::EntryFields;
use alpr_shared::hotlist::{Category, LocalEntry};
use alpr_shared::types::UnixMillis;
use axum::extract::multipart::Field;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use maud::{html, Markup};
use serde::Deserialize;

use super::{
    age, error_box, notice_box, page, when, ConsoleError, PageResult, Pages, Section, Session,
};
use crate::api::hotlists::ImportQuery;
use crate::api::local_entries::RemoveEntry;
use crate::api::ApiState;
use crate::api::ListQuery;
use crate::hotlist::{ImportReport, SourceView};

/// Bad rows of an import shown on the page (the report counts them all).
const BAD_ROWS_SHOWN: usize = 10;
/// Longest text field of the import form read (source, format, …).
const MAX_FORM_FIELD: usize = 4096;
const DAY_MS: u64 = 86_400_000;

pub fn routes() -> Router<Pages> {
    Router::new()
        .route("/console/hotlists", get(show))
        .route(
            "/console/hotlists/import",
            // The file is kept below up to `hotlist.max_file_bytes`.
            post(import).layer(DefaultBodyLimit::disable()),
        )
        .route("/console/hotlists/local", post(add))
        .route("/console/hotlists/local/{id}", get(edit_page).post(edit))
        .route("/console/hotlists/local/{id}/remove", post(remove))
}

/// The add form of a local entry (also kept when an add is refused).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LocalForm {
    pub csrf: String,
    /// A plate or a pattern with `*` and `?`.
    pub plate: String,
    pub category: String,
    pub reason: String,
    /// `YYYY-MM-DD`: the entry expires at the end of that day (UTC);
    /// empty: the policy's default.
    pub expires: String,
    pub state: String,
    pub case: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RemoveForm {
    pub csrf: String,
    pub reason: String,
}

/// What the page says above its sections.
#[derive(Default)]
struct Messages {
    error: Option<String>,
    notice: Option<Markup>,
}

impl Messages {
    fn error(e: impl Into<String>) -> Self {
        Messages {
            error: Some(e.into()),
            notice: None,
        }
    }

    fn notice(m: Markup) -> Self {
        Messages {
            error: None,
            notice: Some(m),
        }
    }
}

async fn show(State(state): State<ApiState>, session: Session) -> PageResult {
    Section::Hotlists.require(&session)?;
    render(&state, &session, Messages::default(), &LocalForm::default()).await
}

/// The whole page: sources, import, local entries.
async fn render(
    state: &ApiState,
    session: &Session,
    messages: Messages,
    form: &LocalForm,
) -> PageResult {
    let sources = crate::api::hotlists::list(State(state.clone()), session.caller.clone())
        .await?
        .0;
    let entries = crate::api::local_entries::list(
        State(state.clone()),
        session.caller.clone(),
        Query(ListQuery { all: true }),
    )
    .await?
    .0;
    let max_age = state.hub.policy.current().policy().hotlists.max_list_age_ms;
    let now = UnixMillis::now();
    let (active, past): (Vec<&LocalEntry>, Vec<&LocalEntry>) =
        entries.iter().partition(|e| e.active(now));
    let body = html! {
        @if let Some(e) = &messages.error { (error_box(e)) }
        @if let Some(n) = &messages.notice { (n) }
        h2 { "Bulk lists" }
        (sources_table(&sources, max_age, now))
        (import_form(session, &sources))
        h2 { "Local entries" }
        p class="muted" {
            "Entries added by hand: a whole plate or a pattern (" code { "*" } " any run of characters, "
            code { "?" } " one character). They reach every node and expire on their own."
        }
        (local_table(session, &active, now))
        (local_add_form(session, form))
        @if !past.is_empty() {
            h2 { "Removed and expired entries" }
            table id="local-past" {
                thead { tr {
                    th scope="col" { "Plate" } th scope="col" { "Category" } th scope="col" { "Reason" }
                    th scope="col" { "Added by" } th scope="col" { "Expiry" } th scope="col" { "Status" }
                } }
                tbody {
                    @for e in &past {
                        tr class="past-entry" {
                            td class="plate" { (e.plate) }
                            td { (e.category) }
                            td { (e.reason) }
                            td { (e.author) " (" (e.agency) ")" }
                            td { (when(e.expires_at)) }
                            td { (entry_state(e, now)) }
                        }
                    }
                }
            }
        }
    };
    Ok(page(
        session,
        Section::Hotlists,
        "hotlists",
        "Hotlists",
        body,
    ))
}

fn sources_table(sources: &[SourceView], max_age_ms: u64, now: UnixMillis) -> Markup {
    html! {
        table id="sources" {
            thead { tr {
                th scope="col" { "Source" } th scope="col" { "Format" }
                th scope="col" class="num" { "Generation" } th scope="col" { "Issued" }
                th scope="col" { "Age" } th scope="col" class="num" { "Rows" }
                th scope="col" { "Categories" }
            } }
            tbody {
                @for s in sources {
                    tr class="source" data-source=(s.name) {
                        td { (s.name) }
                        td { (s.format) }
                        @match &s.current {
                            Some(g) => {
                                @let age_ms = now.0.saturating_sub(g.issued_at.0);
                                td class="num generation" { (g.number) }
                                td { (when(g.issued_at)) }
                                @if age_ms > max_age_ms {
                                    td class="list-age warn" { (age(age_ms)) " — stale (older than " (age(max_age_ms)) ")" }
                                } @else {
                                    td class="list-age" { (age(age_ms)) }
                                }
                                td class="num" { (count(g.rows)) }
                                td { (categories(&g.categories)) }
                            }
                            None => {
                                td class="num generation" { "—" }
                                td colspan="4" class="muted" { "nothing imported yet" }
                            }
                        }
                    }
                }
            }
        }
        @if sources.is_empty() {
            p class="muted" { "No bulk list is configured (hub.toml " code { "[[hotlist.sources]]" } ")." }
        }
    }
}

/// A count as people read it: `1,048,576`.
fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn categories(c: &[(Category, u64)]) -> String {
    c.iter()
        .map(|(k, n)| format!("{k} {}", count(*n)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn import_form(session: &Session, sources: &[SourceView]) -> Markup {
    html! {
        form id="import-form" method="post" action="/console/hotlists/import" enctype="multipart/form-data" {
            (session.csrf_field())
            fieldset {
                legend { "Import a list file" }
                div class="row" {
                    div {
                        label for="import-source" { "Source" }
                        input id="import-source" name="source" list="import-sources" required autocomplete="off";
                        datalist id="import-sources" {
                            @for s in sources { option value=(s.name) {} }
                        }
                    }
                    div {
                        label for="import-format" { "Format" }
                        select id="import-format" name="format" {
                            option value="" { "The source's format" }
                            option value="ncic" { "NCIC extract" }
                            option value="ca-doj" { "California DOJ" }
                            option value="csv" { "CSV" }
                        }
                    }
                    div {
                        label for="import-category" { "Category (CA DOJ files)" }
                        select id="import-category" name="category" {
                            option value="" { "The source's category" }
                            @for c in Category::ALL { option value=(c.name()) { (c.name()) } }
                        }
                    }
                    div {
                        label for="import-columns" { "CSV columns (HEADER=CODE,…)" }
                        input id="import-columns" name="columns" autocomplete="off";
                    }
                }
                div class="row" {
                    div {
                        label for="import-file" { "List file" }
                        input id="import-file" name="file" type="file" required;
                    }
                    div {
                        label for="import-force" { "Take it even if it changes much of the list or its count is wrong" }
                        input id="import-force" name="force" type="checkbox" value="on";
                    }
                }
                button type="submit" id="import" { "Import" }
            }
        }
    }
}

fn entry_state(e: &LocalEntry, now: UnixMillis) -> String {
    match &e.removed {
        Some(r) => format!("removed by {} at {}: {}", r.by, when(r.at), r.reason),
        None if !e.active(now) => "expired".into(),
        None => "active".into(),
    }
}

fn local_table(session: &Session, entries: &[&LocalEntry], now: UnixMillis) -> Markup {
    html! {
        table id="local-entries" {
            thead { tr {
                th scope="col" { "Plate" } th scope="col" { "Category" } th scope="col" { "Reason" }
                th scope="col" { "Case" } th scope="col" { "Added by" } th scope="col" { "Expires" }
                th scope="col" { "Status" } th scope="col" { "Change" }
            } }
            tbody {
                @for e in entries {
                    tr class="local-entry" data-id=(e.id) {
                        td class="plate local-plate" { (e.plate) @if !e.state.is_empty() { " (" (e.state) ")" } }
                        td class="local-category" { (e.category) }
                        td class="local-reason" { (e.reason) }
                        td { (e.case) }
                        td { (e.author) " (" (e.agency) ")" }
                        td class="local-expires" { (when(e.expires_at)) }
                        td { (entry_state(e, now)) }
                        td {
                            a class="local-edit" href={ "/console/hotlists/local/" (e.id) } { "Edit" }
                            form class="local-remove-form" method="post" action={ "/console/hotlists/local/" (e.id) "/remove" } {
                                (session.csrf_field())
                                label for={ "remove-reason-" (e.id) } { "Why remove it" }
                                input id={ "remove-reason-" (e.id) } class="local-remove-reason" name="reason" required
                                    placeholder="vehicle recovered";
                                button type="submit" class="local-remove danger" { "Remove" }
                            }
                        }
                    }
                }
            }
        }
        @if entries.is_empty() { p class="muted" { "No active local entry." } }
    }
}

fn category_select(id: &str, chosen: &str) -> Markup {
    let chosen = if chosen.is_empty() {
        Category::Suspect.name()
    } else {
        chosen
    };
    html! {
        select id=(id) name="category" {
            @for c in Category::ALL {
                option value=(c.name()) selected[c.name() == chosen] { (c.name()) }
            }
        }
    }
}

/// The fields of an entry's form (add and edit).
fn entry_fields(prefix: &str, form: &LocalForm) -> Markup {
    let id = |f: &str| format!("{prefix}-{f}");
    html! {
        div class="row" {
            div {
                label for=(id("plate")) { "Plate or pattern" }
                input id=(id("plate")) name="plate" value=(form.plate) required autocomplete="off"
                    placeholder="7AB*12";
            }
            div {
                label for=(id("state")) { "State (two letters, optional)" }
                input id=(id("state")) name="state" value=(form.state) maxlength="2" autocomplete="off";
            }
            div {
                label for=(id("category")) { "Category" }
                (category_select(&id("category"), &form.category))
            }
        }
        div class="row" {
            div {
                label for=(id("reason")) { "Reason" }
                input id=(id("reason")) name="reason" value=(form.reason) required;
            }
            div {
                label for=(id("case")) { "Case number (optional)" }
                input id=(id("case")) name="case" value=(form.case);
            }
            div {
                label for=(id("expires")) { "Expires (end of the day, UTC)" }
                input id=(id("expires")) name="expires" type="date" value=(form.expires);
            }
        }
    }
}

fn local_add_form(session: &Session, form: &LocalForm) -> Markup {
    html! {
        form id="local-add-form" method="post" action="/console/hotlists/local" {
            (session.csrf_field())
            fieldset {
                legend { "Add a local entry" }
                (entry_fields("local", form))
                p class="muted" { "Without an expiry date the policy's default applies; the policy also caps how far ahead it may be." }
                button type="submit" id="local-add" { "Add" }
            }
        }
    }
}

/// `YYYY-MM-DD` → the end of that day, UTC.
fn end_of_day(date: &str) -> Result<UnixMillis, String> {
    let bad = || format!("the expiry {date:?} is not a date (YYYY-MM-DD)");
    let b = date.as_bytes();
    if b.len() != 10
        || b[4] != b'-'
        || b[7] != b'-'
        || !b
            .iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
    {
        return Err(bad());
    }
    let start = alpr_shared::cli::parse_time(&format!("{date}T00:00:00Z")).map_err(|_| bad())?;
    Ok(UnixMillis(start.0.saturating_add(DAY_MS)))
}

/// The date an expiry shows as (the day it ends).
fn expiry_date(t: UnixMillis) -> String {
    let s = UnixMillis(t.0.saturating_sub(1)).to_string();
    s[..10].to_owned()
}

fn some(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

fn category_of(name: &str) -> Result<Option<Category>, String> {
    if name.is_empty() {
        return Ok(None);
    }
    Category::from_name(name)
        .map(Some)
        .ok_or_else(|| format!("no category {name:?}"))
}

/// The fields of an add.
fn add_fields(form: &LocalForm) -> Result<EntryFields, String> {
    Ok(EntryFields {
        plate: some(&form.plate),
        state: some(&form.state),
        category: category_of(&form.category)?,
        reason: some(&form.reason),
        case: some(&form.case),
        expires_at: some(&form.expires).map(|d| end_of_day(&d)).transpose()?,
        ..EntryFields::default()
    })
}

/// The page after an entry was added or changed (`verb`): what it is now,
/// and an empty form for the next.
async fn entry_done(
    state: &ApiState,
    session: &Session,
    verb: &str,
    e: &alpr_shared::hotlist::LocalEntry,
) -> PageResult {
    let notice = notice_box(&format!(
        "{verb} {} ({}), active until {}.",
        e.plate,
        e.category,
        when(e.expires_at)
    ));
    render(
        state,
        session,
        Messages::notice(notice),
        &LocalForm::default(),
    )
    .await
}

async fn add(
    State(state): State<ApiState>,
    session: Session,
    Form(form): Form<LocalForm>,
) -> PageResult {
    Section::Hotlists.require(&session)?;
    session.check(&form.csrf)?;
    let fields = match add_fields(&form) {
        Ok(f) => f,
        Err(e) => return render(&state, &session, Messages::error(e), &form).await,
    };
    match crate::api::local_entries::add(State(state.clone()), session.caller.clone(), Json(fields))
        .await
    {
        Ok(Json(e)) => entry_done(&state, &session, "Added", &e).await,
        Err(e) => render(&state, &session, Messages::error(e.to_string()), &form).await,
    }
}

/// The edit form of one entry, filled with what it is now (or with what
/// was sent, when an edit was refused).
fn edit_view(
    session: &Session,
    entry: &LocalEntry,
    form: &LocalForm,
    error: Option<&str>,
) -> PageResult {
    let body = html! {
        @if let Some(e) = error { (error_box(e)) }
        p { "Entry " code { (entry.id) } ", added by " (entry.author) " on " (when(entry.created_at)) "." }
        form id="local-edit-form" method="post" action={ "/console/hotlists/local/" (entry.id) } {
            (session.csrf_field())
            (entry_fields("edit", form))
            button type="submit" id="local-save" { "Save" }
        }
        p { a href="/console/hotlists" { "Back to the hotlists" } }
    };
    Ok(page(
        session,
        Section::Hotlists,
        "local-entry",
        "Edit a local entry",
        body,
    ))
}

fn form_of(e: &LocalEntry) -> LocalForm {
    LocalForm {
        csrf: String::new(),
        plate: e.plate.clone(),
        category: e.category.name().to_owned(),
        reason: e.reason.clone(),
        expires: expiry_date(e.expires_at),
        state: e.state.clone(),
        case: e.case.clone(),
    }
}

async fn edit_page(
    State(state): State<ApiState>,
    session: Session,
    Path(id): Path<String>,
) -> PageResult {
    Section::Hotlists.require(&session)?;
    let entry = crate::api::local_entries::show(State(state), session.caller.clone(), Path(id))
        .await?
        .0;
    edit_view(&session, &entry, &form_of(&entry), None)
}

/// What an edit changes: only the fields that differ from the entry.
fn changes(now: &LocalEntry, form: &LocalForm) -> Result<EntryFields, String> {
    let was = form_of(now);
    let changed = |new: &str, old: &str| (new.trim() != old).then(|| new.trim().to_owned());
    Ok(EntryFields {
        plate: changed(&form.plate, &was.plate),
        state: changed(&form.state, &was.state),
        category: match changed(&form.category, &was.category) {
            Some(c) => category_of(&c)?,
            None => None,
        },
        reason: changed(&form.reason, &was.reason),
        case: changed(&form.case, &was.case),
        expires_at: match changed(&form.expires, &was.expires) {
            Some(d) if d.is_empty() => return Err("an entry needs an expiry date".into()),
            Some(d) => Some(end_of_day(&d)?),
            None => None,
        },
        ..EntryFields::default()
    })
}

async fn edit(
    State(state): State<ApiState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<LocalForm>,
) -> PageResult {
    Section::Hotlists.require(&session)?;
    session.check(&form.csrf)?;
    let entry = crate::api::local_entries::show(
        State(state.clone()),
        session.caller.clone(),
        Path(id.clone()),
    )
    .await?
    .0;
    let fields = match changes(&entry, &form) {
        Ok(f) => f,
        Err(e) => return edit_view(&session, &entry, &form, Some(&e)),
    };
    match crate::api::local_entries::edit(
        State(state.clone()),
        session.caller.clone(),
        Path(id),
        Json(fields),
    )
    .await
    {
        Ok(Json(e)) => entry_done(&state, &session, "Changed", &e).await,
        Err(e) => edit_view(&session, &entry, &form, Some(&e.to_string())),
    }
}

async fn remove(
    State(state): State<ApiState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<RemoveForm>,
) -> PageResult {
    Section::Hotlists.require(&session)?;
    session.check(&form.csrf)?;
    let result = crate::api::local_entries::remove(
        State(state.clone()),
        session.caller.clone(),
        Path(id),
        Json(RemoveEntry {
            reason: form.reason.trim().to_owned(),
        }),
    )
    .await;
    let messages = match result {
        Ok(Json(e)) => Messages::notice(notice_box(&format!(
            "Removed {} ({}).",
            e.plate, e.category
        ))),
        Err(e) => Messages::error(e.to_string()),
    };
    render(&state, &session, messages, &LocalForm::default()).await
}

/// The text fields of the import form, and its file.
#[derive(Default)]
struct ImportForm {
    csrf: String,
    source: String,
    format: String,
    category: String,
    columns: String,
    force: bool,
    file: Vec<u8>,
}

/// Read a field, keeping at most `max + 1` bytes (so a size check after
/// still sees it was too large). The rest is read and dropped: a browser
/// shows an answer sent before its upload ends as a broken connection,
/// not as the reason (the request timeout bounds the time).
async fn read_field(field: &mut Field<'_>, max: usize) -> Result<Vec<u8>, ConsoleError> {
    let mut out = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|e| {
        ConsoleError::new(
            StatusCode::BAD_REQUEST,
            format!("the upload broke off: {e}"),
        )
    })? {
        let room = (max + 1).saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    Ok(out)
}

async fn read_import(
    mut multipart: Multipart,
    max_file: usize,
) -> Result<ImportForm, ConsoleError> {
    let mut form = ImportForm::default();
    let bad = |e: axum::extract::multipart::MultipartError| {
        ConsoleError::new(
            StatusCode::BAD_REQUEST,
            format!("the import form did not arrive whole: {e}"),
        )
    };
    while let Some(mut field) = multipart.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            // Too large: the API refuses it, and says so.
            form.file = read_field(&mut field, max_file).await?;
            continue;
        }
        let value = read_field(&mut field, MAX_FORM_FIELD).await?;
        let text = String::from_utf8_lossy(&value).trim().to_owned();
        match name.as_str() {
            "csrf" => form.csrf = text,
            "source" => form.source = text,
            "format" => form.format = text,
            "category" => form.category = text,
            "columns" => form.columns = text,
            "force" => form.force = !text.is_empty(),
            _ => {}
        }
    }
    Ok(form)
}

fn import_query(form: &ImportForm) -> Result<ImportQuery, String> {
    let format = match form.format.as_str() {
        "" => None,
        "ncic" => Some(Format::Ncic),
        "ca-doj" => Some(Format::CaDoj),
        "csv" => Some(Format::Csv),
        f => return Err(format!("no list format {f:?}: ncic, ca-doj or csv")),
    };
    Ok(ImportQuery {
        format,
        columns: some(&form.columns),
        category: some(&form.category),
        force: form.force,
    })
}

fn import_notice(r: &ImportReport) -> Markup {
    let rec = &r.record;
    let info = &rec.info;
    let mut summary = format!(
        "Imported {} as generation {}: {} rows (of {} in the file); {} bad row{} skipped",
        info.source,
        info.number,
        count(info.rows),
        count(info.source_rows),
        count(rec.bad_rows),
        if rec.bad_rows == 1 { "" } else { "s" },
    );
    if !rec.excluded.is_empty() {
        summary.push_str(&format!(
            "; dropped by policy: {}",
            categories(&rec.excluded)
        ));
    }
    summary.push_str(&format!(
        "; {} added, {} removed since the last generation{}; took {} ms.",
        count(rec.added),
        count(rec.removed),
        if rec.forced { "; forced" } else { "" },
        r.took_ms
    ));
    html! {
        (notice_box(&summary))
        @if !r.bad.is_empty() {
            p { "Skipped rows:" }
            ul id="import-bad" {
                @for b in r.bad.iter().take(BAD_ROWS_SHOWN) {
                    li { "line " (b.line) ": " (b.reason) }
                }
                @if rec.bad_rows > BAD_ROWS_SHOWN as u64 {
                    li class="muted" { "… and " (rec.bad_rows - BAD_ROWS_SHOWN as u64) " more" }
                }
            }
        }
        @if !rec.warnings.is_empty() {
            ul id="import-warnings" {
                @for w in &rec.warnings { li class="warn" { (w) } }
            }
        }
    }
}

async fn import(
    State(state): State<ApiState>,
    session: Session,
    multipart: Multipart,
) -> PageResult {
    Section::Hotlists.require(&session)?;
    let max_file = state.hub.hotlists.config().max_file_bytes;
    let form = read_import(multipart, max_file).await?;
    session.check(&form.csrf)?;
    let query = match import_query(&form) {
        Ok(q) => q,
        Err(e) => return render(&state, &session, Messages::error(e), &LocalForm::default()).await,
    };
    let result = crate::api::hotlists::import(
        State(state.clone()),
        session.caller.clone(),
        Path(form.source.clone()),
        Query(query),
        axum::body::Body::from(form.file),
    )
    .await;
    let messages = match result {
        Ok(Json(report)) => Messages::notice(import_notice(&report)),
        Err(e) => Messages::error(e.to_string()),
    };
    render(&state, &session, messages, &LocalForm::default()).await
}

#[cfg(test)]
mod tests;
