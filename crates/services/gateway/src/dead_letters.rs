//! The shop's dead letters for operators. Each consuming service keeps its own; the
//! gateway asks them all and merges the lists, and sends a replay to each until the one
//! that has the dead letter answers.

use std::sync::Arc;

use axum::{
    Extension, Json,
    body::Body,
    extract::{Path, Request, State},
    http::{Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use chassis::{auth::Admin, dead_letters::DeadLetterList, problem::Problem, trace::TraceContext};
use uuid::Uuid;

use crate::Upstream;

/// The services with consumer groups, by name.
pub(crate) type Keepers = Arc<[(&'static str, Upstream)]>;

/// The dead letters of every service, newest first; a service that cannot be asked is
/// named in `unavailable` rather than failing the whole list.
pub(crate) async fn list(
    State(keepers): State<Keepers>,
    Extension(trace): Extension<TraceContext>,
    Admin(caller): Admin,
    request: Request,
) -> Response {
    if let Some(refusal) = over_limit(&keepers, &caller) {
        return refusal;
    }
    let token = request.headers().get(header::AUTHORIZATION).cloned();
    let mut merged = DeadLetterList {
        dead_letters: vec![],
        unavailable: vec![],
    };
    for (name, upstream) in keepers.iter() {
        let answer = upstream
            .call(Method::GET, "/admin/dlq", token.as_ref(), trace)
            .await;
        match answer.and_then(|(status, body)| {
            if status != StatusCode::OK {
                return Err(format!("answered {status}"));
            }
            serde_json::from_slice::<DeadLetterList>(&body).map_err(|e| e.to_string())
        }) {
            Ok(list) => merged.dead_letters.extend(list.dead_letters),
            Err(error) => {
                tracing::warn!(%error, service = name, "cannot list a service's dead letters");
                merged.unavailable.push((*name).to_owned());
            }
        }
    }
    merged
        .dead_letters
        .sort_by_key(|dead| std::cmp::Reverse(dead.failed_at));
    Json(merged).into_response()
}

/// Replays a dead letter in the service that keeps it.
pub(crate) async fn replay(
    State(keepers): State<Keepers>,
    Extension(trace): Extension<TraceContext>,
    Admin(caller): Admin,
    Path(id): Path<Uuid>,
    request: Request,
) -> Response {
    if let Some(refusal) = over_limit(&keepers, &caller) {
        return refusal;
    }
    let token = request.headers().get(header::AUTHORIZATION).cloned();
    let path = format!("/admin/dlq/{id}/replay");
    let mut unavailable = vec![];
    for (name, upstream) in keepers.iter() {
        match upstream
            .call(Method::POST, &path, token.as_ref(), trace)
            .await
        {
            Ok((StatusCode::NOT_FOUND, _)) => {}
            Ok((status, body)) => {
                return Response::builder()
                    .status(status)
                    .header(header::CONTENT_TYPE, content_type(status))
                    .body(Body::from(body))
                    .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
            }
            Err(error) => {
                tracing::warn!(%error, service = name, "cannot ask a service to replay");
                unavailable.push(*name);
            }
        }
    }
    if unavailable.is_empty() {
        Problem::not_found(format!("no dead letter with id {id}")).into_response()
    } else {
        Problem::unavailable(
            format!("not found in the services that answered; could not ask {unavailable:?}"),
            5,
        )
        .into_response()
    }
}

fn over_limit(keepers: &Keepers, caller: &chassis::auth::Caller) -> Option<Response> {
    let (_, any) = keepers.first()?;
    any.limits
        .check_customer(caller.customer_id)
        .err()
        .map(IntoResponse::into_response)
}

fn content_type(status: StatusCode) -> &'static str {
    if status.is_success() {
        "application/json"
    } else {
        "application/problem+json"
    }
}
