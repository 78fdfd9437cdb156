//! Evidence exports over the API (`hub export`, the console's export
//! page): who may export, to which agency, which reads; the access entry
//! is durable before the bundle ([`crate::export`]) is written and sent.

use std::io::Seek;

use alpr_shared::evidence::ExportInfo;
use alpr_shared::log::AccessAction;
use alpr_shared::types::UnixMillis;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};

use super::{ApiError, ApiState};
use crate::export::{
    check_ready, recipient, select, write_bundle, ExportError, ExportRequest, Signer,
};
use crate::users::{Caller, Permission};

pub fn routes() -> Router<ApiState> {
    Router::new().route("/api/v1/export", post(export))
}

fn blocking_err(e: tokio::task::JoinError) -> ApiError {
    ApiError::Internal(e.to_string())
}

fn not_ready(e: ExportError) -> ApiError {
    match e {
        ExportError::NotReady(m) => ApiError::Conflict(m),
        ExportError::Failed(m) => ApiError::Unavailable(m),
    }
}

/// `POST /api/v1/export`: the evidence bundle of a case's reads for a
/// recipient agency, logged before a byte of it is written.
pub(crate) async fn export(
    State(state): State<ApiState>,
    caller: Caller,
    Json(req): Json<ExportRequest>,
) -> Result<Response, ApiError> {
    let case = req.case.trim().to_owned();
    let query = format!("export case={case} to={}", req.to);
    let mut record = caller.record(AccessAction::Export, query);
    record.case = Some(case.clone()).filter(|c| !c.is_empty());
    record.purpose = req.purpose.clone().filter(|p| !p.trim().is_empty());
    let policy = state.hub.policy.current();
    let allowed = caller
        .require(Permission::ExportEvidence)
        .and_then(|()| {
            if case.is_empty() {
                return Err(ApiError::BadRequest(
                    "an export needs a case number (--case)".to_owned(),
                ));
            }
            match record
                .purpose
                .as_deref()
                .filter(|p| policy.policy().purpose(p).is_none())
            {
                Some(p) => Err(ApiError::BadRequest(format!(
                    "{p:?} is not a purpose in policy v{}",
                    policy.policy().version
                ))),
                None => recipient(&policy, &req.to).map_err(ApiError::Forbidden),
            }
        })
        .and_then(|agency| {
            let holds = state.hub.holds.for_case(&case);
            if holds.is_empty() {
                return Err(ApiError::BadRequest(format!(
                    "no hold names case {case:?}: a case's reads are those its holds cover"
                )));
            }
            Ok((agency, holds))
        });
    let (agency, holds) = state.or_refuse(&record, allowed).await?;
    let hub = state.hub.clone();
    let sel_holds = holds.clone();
    let chosen = tokio::task::spawn_blocking(move || {
        let chosen = select(hub.storage.as_ref(), &sel_holds).map_err(ApiError::BadRequest)?;
        check_ready(hub.storage.as_ref(), &chosen).map_err(not_ready)?;
        Ok::<_, ApiError>(chosen)
    })
    .await
    .map_err(blocking_err)
    .and_then(|r| r)
    .and_then(|chosen| {
        if chosen.values().all(Vec::is_empty) {
            return Err(ApiError::NotFound(format!(
                "the holds of case {case} cover no read with its content at the hub"
            )));
        }
        Ok(chosen)
    });
    let chosen = state.or_refuse(&record, chosen).await?;
    let count: usize = chosen.values().map(Vec::len).sum();
    record.query = format!(
        "{} ({}) reads={count} nodes={}",
        record.query,
        agency.name,
        chosen.len()
    );
    record.results = u32::try_from(count).unwrap_or(u32::MAX);
    // Durable before a byte of the bundle is written or sent.
    let access = state.access.record(record.clone()).await?;
    let info = ExportInfo {
        case,
        recipient_ori: agency.ori.clone(),
        recipient_name: agency.name.clone(),
        purpose: req.purpose.clone(),
        exported_by: caller.username.clone(),
        agency: caller.agency.clone(),
        created_at: UnixMillis::now(),
    };
    let hub = state.hub.clone();
    let dir = state.data_dir.clone();
    let file = tokio::task::spawn_blocking(move || {
        let scratch = |e: std::io::Error| ExportError::Failed(format!("a scratch file: {e}"));
        let file = tempfile::tempfile_in(&dir).map_err(scratch)?;
        let spill = tempfile::tempfile_in(&dir).map_err(scratch)?;
        let out = write_bundle(
            hub.storage.as_ref(),
            Signer::of(hub.anchor(), hub.keys()),
            (std::io::BufWriter::new(file), spill),
            info,
            &holds,
            &chosen,
            &access,
        )?;
        let mut file = out
            .into_inner()
            .map_err(|e| ExportError::Failed(e.into_error().to_string()))?;
        file.rewind()
            .map_err(|e| ExportError::Failed(e.to_string()))?;
        Ok::<_, ExportError>(file)
    })
    .await
    .map_err(blocking_err)
    .and_then(|r| r.map_err(not_ready));
    // The allowed entry names the export; a bundle that could not be
    // written after it gets its own record with the reason.
    let file = match file {
        Ok(f) => f,
        Err(e) => {
            record.results = 0;
            return Err(state.refuse(record, e).await);
        }
    };
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}
