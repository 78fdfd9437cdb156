//! The console's alerts page(s). (To be built.)

use axum::Router;

use crate::api::ApiState;

pub fn routes() -> Router<ApiState> {
    Router::new()
}
