//! The HTTP stack every service runs behind, and its health and metrics endpoints.

use std::{future::Future, sync::Arc, time::Instant};

use axum::{
    Extension, Json, Router,
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer,
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    timeout::TimeoutLayer,
};
use tracing::Instrument;

use crate::{
    auth::TokenVerifier,
    config::ChassisSettings,
    faults::Faults,
    problem::{Problem, problem_for_bare_errors},
    storage::{StorageFailure, StorageHealth},
    telemetry::{HttpLabels, Metrics, RouteLabels},
    trace::TraceContext,
};

pub const TRACEPARENT: &str = "traceparent";

static NO_FAULTS: Faults = Faults::NONE;

/// What the HTTP stack needs to know of the service it fronts.
pub trait Service: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn settings(&self) -> &ChassisSettings;
    fn metrics(&self) -> &Metrics;
    fn shutdown(&self) -> &CancellationToken;
    /// Checks the bearer tokens of the requests this service serves.
    fn verifier(&self) -> &Arc<TokenVerifier>;
    /// What faults to inject into its API (none unless configured for a test).
    fn faults(&self) -> &Faults {
        &NO_FAULTS
    }
    /// The health of the service's database, told of the storage failures its requests
    /// meet (none for a service without one).
    fn storage(&self) -> Option<&StorageHealth> {
        None
    }
    /// Whether the service can do its work now (its database and bus answer); the error
    /// says what is missing.
    fn ready(&self) -> impl Future<Output = Result<(), String>> + Send;
}

/// Serves `api` plus `/health/live`, `/health/ready` and `/metrics` on `listener` until
/// the runtime's shutdown signal, then lets requests in flight finish.
pub async fn serve<S: Service>(
    rt: Arc<S>,
    listener: TcpListener,
    api: Router,
) -> std::io::Result<()> {
    let app = with_chassis(rt.clone(), api);
    serve_app(rt, listener, app).await
}

/// Serves an `app` already made by [`with_chassis`] (and wrapped further, for what must
/// also see the chassis's own answers) until the runtime's shutdown signal.
pub async fn serve_app<S: Service>(
    rt: Arc<S>,
    listener: TcpListener,
    app: Router,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(rt.shutdown().clone().cancelled_owned())
    .await
}

/// `api` with the operational endpoints and the middleware stack added.
pub fn with_chassis<S: Service>(rt: Arc<S>, api: Router) -> Router {
    let limit = rt.settings().body_limit_bytes as usize;
    let operations = Router::new()
        .route(
            "/health/live",
            get(|| async { Json(serde_json::json!({"status": "live"})) }),
        )
        .route("/health/ready", get(ready::<S>))
        .route("/metrics", get(metrics::<S>))
        .with_state(rt.clone());
    let api = api.layer(middleware::from_fn_with_state(
        rt.clone(),
        inject_faults::<S>,
    ));
    api.merge(operations).layer(
        ServiceBuilder::new()
            .layer(Extension(rt.verifier().clone()))
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(middleware::from_fn_with_state(rt.clone(), observe::<S>))
            .layer(middleware::from_fn(problem_for_bare_errors))
            .layer(middleware::from_fn_with_state(
                limit,
                refuse_declared_oversize,
            ))
            .layer(CatchPanicLayer::new())
            .layer(TimeoutLayer::with_status_code(
                StatusCode::SERVICE_UNAVAILABLE,
                rt.settings().request_timeout(),
            ))
            .layer(RequestBodyLimitLayer::new(limit))
            .layer(DefaultBodyLimit::max(limit)),
    )
}

/// Most of an oversized body read (and dropped) before answering 413, so the client, still
/// sending, reads the answer instead of a connection reset.
const OVERSIZE_DRAIN_BYTES: usize = 1024 * 1024;

/// Answers 413 to a request whose `Content-Length` is over the limit. Bodies without a
/// length are cut off by `RequestBodyLimitLayer` as they stream.
async fn refuse_declared_oversize(
    State(limit): State<usize>,
    request: Request,
    next: Next,
) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    match declared {
        Some(length) if length > limit as u64 => {
            let _ = axum::body::to_bytes(request.into_body(), OVERSIZE_DRAIN_BYTES).await;
            Problem::from_status(
                StatusCode::PAYLOAD_TOO_LARGE,
                Some(format!(
                    "the body is {length} bytes; at most {limit} are accepted"
                )),
            )
            .into_response()
        }
        _ => next.run(request).await,
    }
}

/// Continues the caller's trace (or starts one), logs one line per request and records
/// its metrics.
async fn observe<S: Service>(
    State(rt): State<Arc<S>>,
    mut request: Request,
    next: Next,
) -> Response {
    let trace = TraceContext::continue_from(
        request
            .headers()
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok()),
    );
    request.extensions_mut().insert(trace);
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let span = tracing::info_span!(
        "http",
        service = rt.name(),
        method,
        route,
        request_id,
        trace_id = %trace.trace_id_hex(),
    );
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    if let (Some(StorageFailure(reason)), Some(health)) =
        (response.extensions_mut().remove(), rt.storage())
    {
        span.in_scope(|| health.failed(reason));
    }
    span.in_scope(|| tracing::info!(status, latency_ms = elapsed.as_secs_f64() * 1e3, "answered"));
    rt.metrics()
        .http_requests
        .get_or_create(&HttpLabels {
            method: method.clone(),
            route: route.clone(),
            status,
        })
        .inc();
    rt.metrics()
        .http_duration
        .get_or_create(&RouteLabels { method, route })
        .observe(elapsed.as_secs_f64());
    if let Ok(value) = HeaderValue::from_str(&trace.to_string()) {
        response.headers_mut().insert(TRACEPARENT, value);
    }
    response
}

async fn ready<S: Service>(State(rt): State<Arc<S>>) -> Response {
    match rt.ready().await {
        Ok(()) => Json(serde_json::json!({"status": "ready"})).into_response(),
        Err(missing) => Problem::unavailable(missing, 1).into_response(),
    }
}

async fn metrics<S: Service>(State(rt): State<Arc<S>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        rt.metrics().render(),
    )
}

/// The configured latency and errors, on API routes only (health and metrics stay true).
async fn inject_faults<S: Service>(
    State(rt): State<Arc<S>>,
    request: Request,
    next: Next,
) -> Response {
    let faults = rt.faults();
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    if faults.should_fail() {
        return Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "injected-fault",
            "Injected fault",
            "this error was injected for a test (MALL_FAULTS)",
        )
        .into_response();
    }
    next.run(request).await
}
