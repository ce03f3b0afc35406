//! RFC 9457 problem details: the one shape every error takes on the wire.

use axum::{
    Json,
    extract::{FromRequest, Request, rejection::JsonRejection},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde::{Serialize, de::DeserializeOwned};

use crate::storage::StorageFailure;

pub const CONTENT_TYPE: &str = "application/problem+json";

/// An RFC 9457 problem, sent as `application/problem+json`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Seconds a client should wait before retrying; also sent as `Retry-After`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// The storage failure behind this problem, passed to the HTTP stack (never sent).
    #[serde(skip)]
    #[schema(ignore)]
    storage_failure: Option<String>,
}

impl Problem {
    /// A problem of a kind named by `slug` (its `type` is `/problems/<slug>`).
    pub fn new(status: StatusCode, slug: &str, title: &str, detail: impl Into<String>) -> Self {
        Problem {
            problem_type: format!("/problems/{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: Some(detail.into()),
            retry_after: None,
            storage_failure: None,
        }
    }

    /// A plain HTTP error with no more to say than its status.
    pub fn from_status(status: StatusCode, detail: Option<String>) -> Self {
        Problem {
            problem_type: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            retry_after: None,
            storage_failure: None,
        }
    }

    pub fn validation(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "The request is not valid",
            detail,
        )
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// An unexpected failure: logged with its cause, never shown to the client.
    pub fn internal(cause: &dyn std::error::Error) -> Self {
        tracing::error!(error = %cause, "request failed");
        Self::from_status(StatusCode::INTERNAL_SERVER_ERROR, None)
    }

    /// A failed database call: 503 with `Retry-After` when the storage cannot take it now
    /// (a full disk, a lost connection), else an unexpected failure. A storage failure is
    /// not logged here but handed to the service's storage health, which logs it once per
    /// episode rather than once per request.
    pub fn database(cause: &sqlx::Error) -> Self {
        if crate::db::is_storage_failure(cause) {
            return Problem {
                storage_failure: Some(cause.to_string()),
                ..Self::unavailable("the shop's storage cannot take this now", 5)
            };
        }
        Self::internal(cause)
    }

    pub fn unavailable(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "A service this request needs is unavailable",
            detail,
        )
        .with_retry_after(retry_after_secs)
    }

    /// The problem, telling the client to wait `seconds` before retrying.
    pub fn with_retry_after(self, seconds: u64) -> Self {
        Problem {
            retry_after: Some(seconds),
            ..self
        }
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(&self)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(reason) = self.storage_failure {
            response.extensions_mut().insert(StorageFailure(reason));
        }
        response
    }
}

/// `Json<T>` whose rejections (wrong content type, malformed JSON, wrong shape, body too
/// large) are problems naming what was wrong.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(value)| ApiJson(value))
            .map_err(|rejection: JsonRejection| {
                Problem::from_status(rejection.status(), Some(rejection.body_text()))
            })
    }
}

/// Turns any error response that is not already a problem (unknown route, wrong method,
/// timeout, body limit, a caught panic, an extractor's plain-text rejection) into one.
/// A 4xx keeps its plain-text reason as the detail; a 5xx says nothing of its cause.
pub async fn problem_for_bare_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(CONTENT_TYPE.as_bytes()));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (parts, body) = response.into_parts();
    let detail = if status.is_client_error() {
        axum::body::to_bytes(body, 4096)
            .await
            .ok()
            .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
            .filter(|s| !s.is_empty())
    } else {
        None
    };
    let mut problem = Problem::from_status(status, detail).into_response();
    for name in [header::RETRY_AFTER, header::ALLOW] {
        if let Some(value) = parts.headers.get(&name) {
            problem.headers_mut().insert(name, value.clone());
        }
    }
    problem
}
