//! `GET /console/users` — accounts, for administrators
//! ([`Permission::ManageUsers`]): the list, add a user, disable one,
//! record a training. Each change goes through the API's handler
//! ([`crate::api::users`]): the same checks (username, password, dates)
//! and the same access record. A refusal re-renders the page with the
//! reason in `#error`.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use maud::html;
use serde::Deserialize;

use super::{error_box, notice_box, page, when, PageResult, Pages, Section, Session};
use crate::api::users::TrainRequest;
use crate::api::{ApiError, ApiState};
use crate::users::{NewUser, Role};

pub fn routes() -> Router<Pages> {
    Router::new()
        .route("/console/users", get(show))
        .route("/console/users/add", post(add))
        .route("/console/users/disable", post(disable))
        .route("/console/users/train", post(train))
}

const ROLES: [Role; 5] = [
    Role::Officer,
    Role::Operator,
    Role::Supervisor,
    Role::Administrator,
    Role::Auditor,
];

#[derive(Debug, Deserialize)]
pub struct AddForm {
    pub csrf: String,
    pub username: String,
    pub agency: String,
    pub title: String,
    pub role: String,
    pub password: String,
    pub training_completed: String,
    pub training_expires: String,
}

#[derive(Debug, Deserialize)]
pub struct DisableForm {
    pub csrf: String,
    pub username: String,
}

#[derive(Debug, Deserialize)]
pub struct TrainForm {
    pub csrf: String,
    pub username: String,
    pub completed: String,
    pub expires: String,
}

/// What a page shows after an action.
enum Outcome {
    None,
    Done(String),
    Refused(String),
}

async fn show(State(state): State<ApiState>, session: Session) -> PageResult {
    render(&state, &session, Outcome::None).await
}

async fn render(state: &ApiState, session: &Session, outcome: Outcome) -> PageResult {
    Section::Users.require(session)?;
    let Json(users) = crate::api::users::list(State(state.clone()), session.caller.clone()).await?;
    let today = crate::users::date(alpr_shared::types::UnixMillis::now());
    let body = html! {
        @match &outcome {
            Outcome::None => {}
            Outcome::Done(m) => (notice_box(m)),
            Outcome::Refused(m) => (error_box(m)),
        }
        table id="users" {
            thead {
                tr {
                    th { "User" } th { "Agency" } th { "Title" } th { "Role" } th { "Training" }
                    th { "State" } th { "Record a training" } th { "Disable" }
                }
            }
            tbody {
                @for u in &users {
                    tr class="user" {
                        td { (u.username) }
                        td { (u.agency) }
                        td { (u.title) }
                        td { (u.role) }
                        td {
                            (u.training_completed) " → " (u.training_expires) " "
                            @if u.training_current { span class="ok" { "current" } }
                            @else { span class="bad" { "lapsed" } }
                        }
                        td {
                            @if u.disabled { span class="bad" { "disabled" } }
                            @else { "active" }
                            br; span class="muted" { "since " (when(u.updated)) }
                        }
                        td {
                            form method="post" action="/console/users/train" class="row" {
                                (session.csrf_field())
                                input type="hidden" name="username" value=(u.username);
                                div {
                                    label for={ "train-completed-" (u.username) } { "Completed" }
                                    input type="date" class="train-completed" id={ "train-completed-" (u.username) }
                                        name="completed" value=(today) required;
                                }
                                div {
                                    label for={ "train-expires-" (u.username) } { "Expires" }
                                    input type="date" class="train-expires" id={ "train-expires-" (u.username) }
                                        name="expires" required;
                                }
                                button type="submit" class="user-train" { "Record training" }
                            }
                        }
                        td {
                            @if !u.disabled && u.username != session.caller.username {
                                form method="post" action="/console/users/disable" {
                                    (session.csrf_field())
                                    input type="hidden" name="username" value=(u.username);
                                    button type="submit" class="user-disable danger"
                                        aria-label={ "Disable " (u.username) } { "Disable" }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Add a user" }
        form id="user-add-form" method="post" action="/console/users/add" {
            (session.csrf_field())
            div class="row" {
                div { label for="user-username" { "User name" } input id="user-username" name="username" required autocomplete="off"; }
                div { label for="user-agency" { "Agency (ORI)" } input id="user-agency" name="agency" required value=(session.caller.agency); }
                div { label for="user-title" { "Job title" } input id="user-title" name="title" required; }
                div {
                    label for="user-role" { "Role" }
                    select id="user-role" name="role" {
                        @for r in ROLES { option value=(r.as_str()) { (r.as_str()) } }
                    }
                }
                div { label for="user-password" { "Initial password" } input id="user-password" name="password" type="password" required autocomplete="new-password"; }
                div { label for="user-training-completed" { "Training completed" } input id="user-training-completed" name="training_completed" type="date" value=(today) required; }
                div { label for="user-training-expires" { "Training expires" } input id="user-training-expires" name="training_expires" type="date" required; }
            }
            button type="submit" id="user-add" { "Add the user" }
        }
    };
    Ok(page(session, Section::Users, "users", "Users", body))
}

/// Re-render with the API's answer: a notice, or its refusal.
async fn after<T>(
    state: &ApiState,
    session: &Session,
    result: Result<T, ApiError>,
    done: impl FnOnce(T) -> String,
) -> PageResult {
    let outcome = match result {
        Ok(v) => Outcome::Done(done(v)),
        Err(ApiError::Unavailable(m)) => return Err(ApiError::Unavailable(m).into()),
        Err(e) => Outcome::Refused(e.to_string()),
    };
    render(state, session, outcome).await
}

async fn add(
    State(state): State<ApiState>,
    session: Session,
    Form(f): Form<AddForm>,
) -> PageResult {
    session.check(&f.csrf)?;
    Section::Users.require(&session)?;
    let Some(role) = ROLES.into_iter().find(|r| r.as_str() == f.role) else {
        return render(
            &state,
            &session,
            Outcome::Refused(format!("{:?} is not a role", f.role)),
        )
        .await;
    };
    let new = NewUser {
        username: f.username.trim().to_owned(),
        agency: f.agency.trim().to_owned(),
        title: f.title.trim().to_owned(),
        role,
        password: f.password,
        training_completed: f.training_completed,
        training_expires: f.training_expires,
    };
    let r = crate::api::users::add(State(state.clone()), session.caller.clone(), Json(new)).await;
    after(&state, &session, r, |Json(u)| {
        format!("Added {} ({}, {}).", u.username, u.role, u.agency)
    })
    .await
}

async fn disable(
    State(state): State<ApiState>,
    session: Session,
    Form(f): Form<DisableForm>,
) -> PageResult {
    session.check(&f.csrf)?;
    Section::Users.require(&session)?;
    let r = crate::api::users::disable(
        State(state.clone()),
        session.caller.clone(),
        Path(f.username),
    )
    .await;
    after(&state, &session, r, |Json(u)| {
        format!(
            "{} is disabled: they can no longer log in, and their sessions are refused.",
            u.username
        )
    })
    .await
}

async fn train(
    State(state): State<ApiState>,
    session: Session,
    Form(f): Form<TrainForm>,
) -> PageResult {
    session.check(&f.csrf)?;
    Section::Users.require(&session)?;
    let req = TrainRequest {
        completed: f.completed,
        expires: f.expires,
    };
    let r = crate::api::users::train(
        State(state.clone()),
        session.caller.clone(),
        Path(f.username),
        Json(req),
    )
    .await;
    after(&state, &session, r, |Json(u)| {
        format!(
            "Training recorded for {}: completed {}, expires {}.",
            u.username, u.training_completed, u.training_expires
        )
    })
    .await
}
