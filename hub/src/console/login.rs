//! `GET/POST /console/login` and `POST /console/logout`.
//!
//! The login is the API's login ([`crate::users::Users::login`]): the
//! same argon2id check, the same refusals (wrong password, no current
//! training, disabled, locked out for too many failures), the same access
//! record. Its form carries a CSRF value of its own, from a short-lived
//! cookie set with the form ([`LOGIN_COOKIE`]).

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use maud::{html, DOCTYPE};
use serde::Deserialize;

use super::{
    cookie, error_box, head, notice_box, same, set_cookie, Pages, Session, LOGIN_COOKIE,
    SESSION_COOKIE,
};
use crate::api::{ApiError, ApiState, Source};
use alpr_shared::types::UnixMillis;

pub fn routes() -> Router<Pages> {
    Router::new()
        .route("/console/login", get(show).post(login))
        .route("/console/logout", post(logout))
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    pub username: String,
    pub password: String,
    pub csrf: String,
}

#[derive(Debug, Deserialize)]
pub struct LogoutForm {
    pub csrf: String,
}

async fn show() -> Response {
    page_with(StatusCode::OK, None, None)
}

/// The login page with an error or a notice, and a fresh CSRF cookie.
pub fn page_with(status: StatusCode, error: Option<&str>, notice: Option<&str>) -> Response {
    let csrf = hex::encode(rand::random::<[u8; 16]>());
    let body = html! {
        (DOCTYPE)
        html lang="en" {
            head { (head("Log in")) }
            body {
                main id="main" {
                    div id="page-login" class="narrow" {
                        h1 { "ALPR console" }
                        p { "For official use by trained, authorised staff only. Every access is logged with who, what, when and why." }
                        @if let Some(e) = error { (error_box(e)) }
                        @if let Some(n) = notice { (notice_box(n)) }
                        form method="post" action="/console/login" {
                            input type="hidden" name="csrf" value=(csrf);
                            label for="username" { "User name" }
                            input id="username" name="username" autocomplete="username" required autofocus;
                            label for="password" { "Password" }
                            input id="password" name="password" type="password" autocomplete="current-password" required;
                            button type="submit" id="login" { "Log in" }
                        }
                        p { a href="/transparency" { "About this system (public)" } }
                    }
                }
            }
        }
    };
    (
        status,
        [(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, &csrf, 3600))],
        body,
    )
        .into_response()
}

async fn login(
    State(state): State<ApiState>,
    Source(source): Source,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if !cookie(&headers, LOGIN_COOKIE).is_some_and(|c| same(c, &form.csrf)) {
        return page_with(
            StatusCode::FORBIDDEN,
            Some("The login form had expired. Please try again."),
            None,
        );
    }
    match state
        .users
        .login(&form.username, &form.password, source)
        .await
    {
        Ok(login) => {
            let left = login.expires.0.saturating_sub(UnixMillis::now().0) / 1000;
            // Appended: an array of headers would keep only the last cookie.
            (
                axum::response::AppendHeaders([
                    (
                        header::SET_COOKIE,
                        set_cookie(SESSION_COOKIE, &login.token, left),
                    ),
                    (header::SET_COOKIE, set_cookie(LOGIN_COOKIE, "", 0)),
                ]),
                Redirect::to("/console/"),
            )
                .into_response()
        }
        Err(e) => {
            let e = ApiError::from(e);
            page_with(e.status(), Some(&e.to_string()), None)
        }
    }
}

async fn logout(
    State(state): State<ApiState>,
    session: Session,
    Form(form): Form<LogoutForm>,
) -> Response {
    if let Err(e) = session.check(&form.csrf) {
        return e.into_response();
    }
    let notice = match state.users.logout(&session.caller, &session.token).await {
        Ok(()) => "You are logged out.".to_owned(),
        Err(e) => format!("Logged out here; the hub could not record it: {e}"),
    };
    let mut resp = page_with(StatusCode::OK, None, Some(&notice));
    if let Ok(v) = header::HeaderValue::from_str(&set_cookie(SESSION_COOKIE, "", 0)) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}
