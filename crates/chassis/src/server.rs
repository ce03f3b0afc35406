//! The HTTP stack every service runs behind, and its health and metrics endpoints.

use std::{future::Future, sync::Arc, time::Instant};

use axum::{
    Extension, Json, Router,
    body::Body,
    extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State},
    http::{HeaderValue, Method, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::sync::CancellationToken;
use tower::{ServiceBuilder, ServiceExt};
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
    retry::Trouble,
    spans::{Span, SpanKind, Tracer},
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
    /// Records the spans of the service's work.
    fn tracer(&self) -> &Tracer;
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

/// Serves `api` on `listener` until the runtime's shutdown signal, then lets requests in
/// flight finish; `/health/live`, `/health/ready` and `/metrics` beside it, or on the
/// operations port when one is set (`MALL_OPERATIONS_PORT`, same address).
pub async fn serve<S: Service>(
    rt: Arc<S>,
    listener: TcpListener,
    api: Router,
) -> std::io::Result<()> {
    serve_wrapped(rt, listener, api, |app| app).await
}

/// [`serve`], with `outer` wrapped around what is served, outside the chassis's layers:
/// for what must also see the chassis's own answers (its 404s, 413s, health).
pub async fn serve_wrapped<S: Service>(
    rt: Arc<S>,
    listener: TcpListener,
    api: Router,
    outer: impl Fn(Router) -> Router,
) -> std::io::Result<()> {
    let api = api.layer(middleware::from_fn_with_state(
        rt.clone(),
        inject_faults::<S>,
    ));
    let Some(port) = rt.settings().operations_port else {
        let app = outer(with_chassis(rt.clone(), api.merge(operations(rt.clone()))));
        return serve_connections(rt, listener, app).await;
    };
    let operations_listener = TcpListener::bind((listener.local_addr()?.ip(), port)).await?;
    tokio::try_join!(
        serve_connections(rt.clone(), listener, outer(with_chassis(rt.clone(), api))),
        serve_connections(
            rt.clone(),
            operations_listener,
            outer(with_chassis(rt.clone(), operations(rt)))
        ),
    )
    .map(drop)
}

/// Serves `app` on `listener` until the runtime's shutdown signal.
///
/// Connections are served by hyper directly rather than `axum::serve`, which has no
/// header-read timeout and no connection bound: a few thousand clients that open a
/// connection and trickle its headers (slowloris) would hold every file descriptor.
async fn serve_connections<S: Service>(
    rt: Arc<S>,
    listener: TcpListener,
    app: Router,
) -> std::io::Result<()> {
    let settings = rt.settings();
    let open = Arc::new(Semaphore::new(settings.max_connections as usize));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout());
    let connections = GracefulShutdown::new();
    let shutdown = rt.shutdown();
    let mut trouble = Trouble::new(format!("accepting {} connections", rt.name()));
    loop {
        // At the bound, the next connection waits in the listen backlog, not in memory.
        let permit = tokio::select! {
            permit = open.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            _ = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors, or a connection reset before it was taken.
                Err(error) => {
                    tokio::time::sleep(trouble.failed(&error)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        trouble.succeeded();
        let app = app.clone();
        let service = service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(request.map(Body::new))
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            // A client that goes away or times out is no error of ours.
            let _ = connection.await;
            drop(permit);
        });
    }
    connections.shutdown().await;
    Ok(())
}

/// The operator's endpoints: liveness, readiness, metrics and recent traces.
fn operations<S: Service>(rt: Arc<S>) -> Router {
    Router::new()
        .route(
            "/health/live",
            get(|| async { Json(serde_json::json!({"status": "live"})) }),
        )
        .route("/health/ready", get(ready::<S>))
        .route("/metrics", get(metrics::<S>))
        .route("/debug/traces", get(traces_of_order::<S>))
        .route("/debug/traces/{trace_id}", get(trace::<S>))
        .with_state(rt)
}

/// Routes whose requests get no span: an orchestrator's probes, a scraper's pulls and
/// reading the span store itself would otherwise crowd out the shop's own work.
const UNTRACED_ROUTES: [&str; 5] = [
    "/health/live",
    "/health/ready",
    "/metrics",
    "/debug/traces",
    "/debug/traces/{trace_id}",
];

/// `routes` behind the middleware stack every endpoint gets.
fn with_chassis<S: Service>(rt: Arc<S>, routes: Router) -> Router {
    let limit = rt.settings().body_limit_bytes as usize;
    routes.layer(
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

/// Continues the caller's trace (or starts one) in a server span, logs one line per
/// request and records its metrics.
async fn observe<S: Service>(
    State(rt): State<Arc<S>>,
    mut request: Request,
    next: Next,
) -> Response {
    let caller = request
        .headers()
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceContext::parse);
    let method = method_label(request.method()).to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let server_span = (!UNTRACED_ROUTES.contains(&route.as_str())).then(|| {
        let span = rt
            .tracer()
            .start(format!("{method} {route}"), SpanKind::Server, caller);
        span.set("http.request.method", method.clone());
        span.set("http.route", route.clone());
        span
    });
    let trace = server_span.as_ref().map_or_else(
        || caller.map_or_else(TraceContext::root, |caller| caller.child()),
        Span::context,
    );
    request.extensions_mut().insert(trace);
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
        span_id = tracing::field::Empty,
        trace_sampled = tracing::field::Empty,
    );
    // Only a recorded span is one a log line can point to.
    if server_span.is_some() {
        span.record("span_id", trace.span_id_hex());
        span.record("trace_sampled", trace.sampled);
    }
    let started = Instant::now();
    let work = next.run(request).instrument(span.clone());
    let mut response = match &server_span {
        Some(server_span) => server_span.scope(work).await,
        None => work.await,
    };
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    if let Some(server_span) = &server_span {
        server_span.set("http.response.status_code", i64::from(status));
        // A server's 4xx is the client's mistake, not a failure of this span.
        if status >= 500 {
            server_span.fail(format!("answered {status}"));
        }
    }
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

/// The method as a metric label: one of a closed set, so that a client inventing methods
/// cannot grow the metrics (each label value is a series kept for ever).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
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

/// The spans this service kept of a trace (`/debug/traces/{trace_id}`): a JSON list of
/// [`crate::spans::FinishedSpan`], earliest first; empty when it kept none.
async fn trace<S: Service>(
    State(rt): State<Arc<S>>,
    axum::extract::Path(trace_id): axum::extract::Path<String>,
) -> Response {
    let hex = trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit());
    match u128::from_str_radix(&trace_id, 16).ok().filter(|_| hex) {
        Some(trace_id) => Json(rt.tracer().store().trace(trace_id)).into_response(),
        None => Problem::validation(format!("`{trace_id}` is not a trace id (32 hex digits)"))
            .into_response(),
    }
}

#[derive(serde::Deserialize)]
struct OrderQuery {
    order_id: uuid::Uuid,
}

/// The traces this service kept a span of that published or handled an event of an
/// order's saga (`/debug/traces?order_id=...`): a JSON list of
/// [`crate::spans::TraceSummary`], earliest first. The order service's list begins with
/// the trace of the request that placed the order.
async fn traces_of_order<S: Service>(
    State(rt): State<Arc<S>>,
    query: Result<axum::extract::Query<OrderQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match query {
        Ok(query) => Json(
            rt.tracer()
                .store()
                .traces_of_order(&query.order_id.to_string()),
        )
        .into_response(),
        Err(rejection) => {
            Problem::validation(format!("give the order as `?order_id=<uuid>`: {rejection}"))
                .into_response()
        }
    }
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
