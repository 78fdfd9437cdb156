//! Routes for sessions and accounts:
//!
//! - `POST /api/v1/login` `{username, password}` → [`Login`] (no session
//!   needed; 401 wrong password, 403 no current training or disabled, 429
//!   locked out with `Retry-After`);
//! - `POST /api/v1/logout`, `GET /api/v1/whoami`;
//! - `POST /api/v1/bootstrap` `{token, user}` — the first administrator,
//!   with the token from the hub's data folder ([`crate::users`]);
//! - `GET /api/v1/users`, `POST /api/v1/users` ([`NewUser`]),
//!   `POST /api/v1/users/{name}/disable`, `…/train` `{completed, expires}`,
//!   `…/password` `{password}` — administrators
//!   ([`Permission::ManageUsers`]).

use alpr_shared::types::UnixMillis;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{bearer, ApiError, ApiState, Source};
use crate::users::{Caller, Login, NewUser, Permission, UserView};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BootstrapRequest {
    pub token: String,
    pub user: NewUser,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainRequest {
    /// `YYYY-MM-DD` or RFC 3339.
    pub completed: String,
    pub expires: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PasswordRequest {
    pub password: String,
}

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/login", post(login))
        .route("/api/v1/logout", post(logout))
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/bootstrap", post(bootstrap))
        .route("/api/v1/users", get(list).post(add))
        .route("/api/v1/users/{name}/disable", post(disable))
        .route("/api/v1/users/{name}/train", post(train))
        .route("/api/v1/users/{name}/password", post(password))
}

pub(crate) async fn login(
    State(state): State<ApiState>,
    Source(source): Source,
    Json(req): Json<LoginRequest>,
) -> Result<Json<Login>, ApiError> {
    Ok(Json(
        state
            .users
            .login(&req.username, &req.password, source)
            .await?,
    ))
}

/// The bearer token again (the extractor checked it).
pub(crate) struct Token(String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Token {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        bearer(parts)
            .map(|t| Token(t.to_owned()))
            .ok_or_else(|| ApiError::Unauthorized("no session token".into()))
    }
}

pub(crate) async fn logout(
    State(state): State<ApiState>,
    caller: Caller,
    Token(token): Token,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.users.logout(&caller, &token).await?;
    Ok(Json(serde_json::json!({"logged_out": caller.username})))
}

pub(crate) async fn whoami(caller: Caller) -> Json<Caller> {
    Json(caller)
}

pub(crate) async fn bootstrap(
    State(state): State<ApiState>,
    Source(source): Source,
    Json(req): Json<BootstrapRequest>,
) -> Result<Json<UserView>, ApiError> {
    if !source.is_loopback() {
        return Err(ApiError::Forbidden(
            "bootstrap is refused except from the hub's own machine (loopback)".into(),
        ));
    }
    Ok(Json(
        state
            .users
            .bootstrap(&req.token, req.user, source, &state.data_dir)
            .await?,
    ))
}

pub(crate) async fn list(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Vec<UserView>>, ApiError> {
    caller.require(Permission::ManageUsers)?;
    let now = UnixMillis::now();
    Ok(Json(
        state.users.list()?.iter().map(|u| u.view(now)).collect(),
    ))
}

pub(crate) async fn add(
    State(state): State<ApiState>,
    caller: Caller,
    Json(new): Json<NewUser>,
) -> Result<Json<UserView>, ApiError> {
    caller.require(Permission::ManageUsers)?;
    Ok(Json(state.users.add(&caller, new).await?))
}

pub(crate) async fn disable(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    caller.require(Permission::ManageUsers)?;
    Ok(Json(state.users.disable(&caller, &name).await?))
}

pub(crate) async fn train(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(req): Json<TrainRequest>,
) -> Result<Json<UserView>, ApiError> {
    caller.require(Permission::ManageUsers)?;
    Ok(Json(
        state
            .users
            .train(&caller, &name, &req.completed, &req.expires)
            .await?,
    ))
}

pub(crate) async fn password(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(req): Json<PasswordRequest>,
) -> Result<Json<UserView>, ApiError> {
    caller.require(Permission::ManageUsers)?;
    Ok(Json(
        state.users.passwd(&caller, &name, req.password).await?,
    ))
}
