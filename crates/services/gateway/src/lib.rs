//! The gateway: the shop's one front door, on the base port. It routes exactly the public
//! API of DESIGN.md section 9 to the services that own it, streaming bodies over pooled
//! upstream connections, and carries the trace context and request id along.
//!
//! Every response tells browsers to run only the shop's own code (`browser_policy`), and
//! the shop's page keeps its token in a cookie no script can read (`session`).
//!
//! Before a protected route reaches a service the gateway verifies the bearer token
//! (customer routes) and the admin role (admin routes); the services check again (zero
//! trust). It drops any `X-User-*` header a client sent, and limits requests per client
//! address (behind trusted proxies, the one they forwarded), more strictly on signing up
//! and logging in, and per customer, answering 429 with `Retry-After`.

mod browser_policy;
mod canary;
mod dead_letters;
mod limits;
mod operations_view;
mod order_trace;
mod session;

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Extension, Router,
    body::Body,
    extract::{FromRequestParts, Request, State},
    http::{HeaderValue, Method, Uri, header},
    middleware,
    response::{Html, IntoResponse, Response},
    routing::{get, post},
};
use chassis::{
    auth::{Admin, Caller, TokenVerifier},
    config::{ChassisSettings, ServiceUrls},
    flows::{Call, ServiceFlows, Subdomain},
    instances::Instances,
    problem::Problem,
    runtime::SPAN_FLUSH,
    server::{self, Service, TRACEPARENT},
    spans::{self, Span, Tracer, TracingError},
    telemetry::Metrics,
    trace::TraceContext,
    ui,
};
use hyper::StatusCode;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::sync::CancellationToken;

use browser_policy::BrowserPolicy;
use canary::{Audience, Version};
pub use limits::RateLimitSettings;
use limits::{ClientAddress, OverHttps, RateLimits};

pub const NAME: &str = "gateway";

/// The shell page at `/`: the import map that names each service's components, and the
/// shop's look. It composes the page in the browser; nothing is rendered on the server.
const SHELL_PAGE: &str = include_str!("../ui/index.html");
/// The shell's own modules: routing, session, language, the API client every ViewModel
/// uses, the View base class, the dead-letter view (the gateway owns that merge), the
/// canary view (the gateway runs canaries), the operations view and an order's trace (the
/// gateway reads every service for them).
const SHELL: &[ui::Asset] = &[
    ("shell.js", include_str!("../ui/shell.js")),
    ("api.js", include_str!("../ui/api.js")),
    ("i18n.js", include_str!("../ui/i18n.js")),
    ("session.js", include_str!("../ui/session.js")),
    ("view.js", include_str!("../ui/view.js")),
    ("dlq.js", include_str!("../ui/dlq.js")),
    ("dlq-vm.js", include_str!("../ui/dlq-vm.js")),
    ("canary.js", include_str!("../ui/canary.js")),
    ("canary-vm.js", include_str!("../ui/canary-vm.js")),
    ("operations.js", include_str!("../ui/operations.js")),
    ("operations-vm.js", include_str!("../ui/operations-vm.js")),
    ("trace.js", include_str!("../ui/trace.js")),
    ("trace-vm.js", include_str!("../ui/trace-vm.js")),
];

/// The gateway holds no state of its own: it is the open host of the public API.
pub const FLOWS: ServiceFlows = ServiceFlows {
    service: NAME,
    subdomain: Subdomain::Generic,
    aggregate: None,
    commands: &[],
    policies: &[],
    read_models: &[],
    calls: &[
        Call {
            to: "auth",
            route: "/api/auth/*",
            why: "sign up, log in; keys to verify bearer tokens",
        },
        Call {
            to: "product",
            route: "/api/products/*",
            why: "catalogue and stock",
        },
        Call {
            to: "order",
            route: "/api/orders/*",
            why: "place, change, undo, cancel, read orders",
        },
        Call {
            to: "delivery",
            route: "/api/deliveries/*",
            why: "complete deliveries",
        },
        Call {
            to: "mypage",
            route: "/api/mypage",
            why: "my orders",
        },
        Call {
            to: "payment",
            route: "/api/admin/dlq",
            why: "dead letters of every consuming service",
        },
    ],
};

#[derive(clap::Args, Debug, Clone)]
pub struct GatewaySettings {
    /// How long the gateway waits for a service's answer before a 504.
    #[arg(long, env = "MALL_UPSTREAM_TIMEOUT_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub upstream_timeout_ms: u64,

    /// Requests in flight to one service at most (a bulkhead per service); more are shed
    /// at once with a 503 and `Retry-After` rather than queued behind a slow service.
    #[arg(long, env = "MALL_UPSTREAM_MAX_IN_FLIGHT", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub upstream_max_in_flight: u32,

    #[command(flatten)]
    pub rate_limits: RateLimitSettings,
}

/// The gateway's share of the chassis: it has no database and no bus of its own.
pub struct Gateway {
    settings: ChassisSettings,
    metrics: Metrics,
    shutdown: CancellationToken,
    verifier: Arc<TokenVerifier>,
    tracer: Tracer,
}

impl Service for Gateway {
    fn name(&self) -> &'static str {
        NAME
    }

    fn settings(&self) -> &ChassisSettings {
        &self.settings
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    fn verifier(&self) -> &Arc<TokenVerifier> {
        &self.verifier
    }

    fn tracer(&self) -> &Tracer {
        &self.tracer
    }

    async fn ready(&self) -> Result<(), String> {
        Ok(())
    }
}

/// One service behind the gateway (each of its instances, in turn), and the limits its
/// routes share.
#[derive(Clone)]
struct Upstream {
    /// The service's name, for the spans of the requests sent to it.
    name: &'static str,
    client: Client<HttpConnector, Body>,
    instances: Instances,
    /// The service's canary, when one runs.
    canary: canary::Slot,
    timeout: Duration,
    limits: Arc<RateLimits>,
    in_flight: Arc<Semaphore>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Tracing(#[from] TracingError),
    #[error("serving HTTP failed: {0}")]
    Serve(#[from] std::io::Error),
}

pub async fn run(
    chassis: ChassisSettings,
    urls: &ServiceUrls,
    settings: GatewaySettings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let metrics = Metrics::new(NAME);
    let tracer = Tracer::new(NAME, &chassis.tracing, &chassis.instance_id, &metrics)?;
    let gateway_url = format!("http://{}", listener.local_addr()?);
    let gateway = Arc::new(Gateway {
        verifier: Arc::new(TokenVerifier::new(chassis.tokens.clone())),
        settings: chassis,
        metrics,
        shutdown: shutdown.clone(),
        tracer,
    });
    let limits = Arc::new(RateLimits::new(&settings.rate_limits));
    tokio::spawn(limits.clone().forget_idle_clients(shutdown.clone()));
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(gateway.settings.client_idle_timeout())
        .build_http();
    let services = [
        ("auth", &urls.auth_url),
        ("product", &urls.product_url),
        ("order", &urls.order_url),
        ("delivery", &urls.delivery_url),
        ("mypage", &urls.mypage_url),
        ("payment", &urls.payment_url),
    ];
    // One bulkhead per service, shared by its instances (and its canary's).
    let bulkheads: HashMap<&str, Arc<Semaphore>> = services
        .iter()
        .map(|(name, _)| {
            let permits = settings.upstream_max_in_flight as usize;
            (*name, Arc::new(Semaphore::new(permits)))
        })
        .collect();
    let canaries = Arc::new(canary::Canaries::new(
        services.map(|(name, instances)| (name, instances.clone())),
        &gateway.metrics,
        shutdown.clone(),
    ));
    let upstream = |name: &'static str, instances: &Instances| Upstream {
        name,
        client: client.clone(),
        instances: instances.clone(),
        canary: canaries.slot(name),
        timeout: Duration::from_millis(settings.upstream_timeout_ms),
        limits: limits.clone(),
        in_flight: bulkheads[name].clone(),
    };
    let auth = Router::new()
        .route("/api/auth/signup", post(credentials))
        .route("/api/auth/login", post(login))
        .route("/api/auth/jwks", get(public))
        .with_state(upstream("auth", &urls.auth_url))
        .route("/api/auth/session", get(session::describe))
        .route("/api/auth/logout", post(session::log_out));
    let product = Router::new()
        .route("/api/products", get(public).post(admin))
        .route("/api/products/{id}", get(public))
        .route("/api/products/{id}/stock", post(admin))
        .with_state(upstream("product", &urls.product_url));
    let order = Router::new()
        .route("/api/orders", post(customer))
        .route("/api/orders/{id}", get(customer).patch(customer))
        .route("/api/orders/{id}/undo", post(customer))
        .route("/api/orders/{id}/history", get(customer))
        .route("/api/orders/{id}/cancel", post(customer))
        .with_state(upstream("order", &urls.order_url));
    let mypage = Router::new()
        .route("/api/mypage", get(customer))
        .with_state(upstream("mypage", &urls.mypage_url));
    let delivery = Router::new()
        .route("/api/deliveries", get(admin))
        .route("/api/deliveries/{order_id}/complete", post(admin))
        .with_state(upstream("delivery", &urls.delivery_url));
    let keepers: dead_letters::Keepers = Arc::new([
        ("order", upstream("order", &urls.order_url)),
        ("product", upstream("product", &urls.product_url)),
        ("payment", upstream("payment", &urls.payment_url)),
        ("delivery", upstream("delivery", &urls.delivery_url)),
        ("mypage", upstream("mypage", &urls.mypage_url)),
    ]);
    // Every service behind the gateway, in the order the operations view shows them.
    let all_services = vec![
        ("auth", urls.auth_url.clone()),
        ("product", urls.product_url.clone()),
        ("order", urls.order_url.clone()),
        ("payment", urls.payment_url.clone()),
        ("delivery", urls.delivery_url.clone()),
        ("mypage", urls.mypage_url.clone()),
    ];
    let operations = Router::new()
        .route("/api/admin/dlq", get(dead_letters::list))
        .route("/api/admin/dlq/{id}/replay", post(dead_letters::replay))
        .with_state(keepers)
        .route("/api/admin/canaries", get(canary::api::list))
        .route(
            "/api/admin/canaries/{service}",
            get(canary::api::show)
                .put(canary::api::start)
                .delete(canary::api::end),
        )
        .route(
            "/api/admin/canaries/{service}/promote",
            post(canary::api::promote),
        )
        .route(
            "/api/admin/canaries/{service}/abort",
            post(canary::api::abort),
        )
        .with_state(canaries.clone())
        .route("/api/admin/orders/{order_id}/trace", get(order_trace::show))
        .with_state(Arc::new(order_trace::OrderTraces::new(
            gateway.clone(),
            urls.order_url.clone(),
            all_services.clone(),
            client.clone(),
            limits.clone(),
        )))
        .route("/api/admin/operations", get(operations_view::show))
        .with_state(Arc::new(operations_view::OperationsView::new(
            gateway.clone(),
            gateway_url,
            all_services,
            client.clone(),
            limits.clone(),
        )));
    // Each service's web components, public like the catalogue.
    let component = |path: &str, name: &'static str, instances: &Instances| {
        Router::new()
            .route(path, get(public))
            .with_state(upstream(name, instances))
    };
    let components = component("/api/auth/ui/{file}", "auth", &urls.auth_url)
        .merge(component(
            "/api/products/ui/{file}",
            "product",
            &urls.product_url,
        ))
        .merge(component("/api/orders/ui/{file}", "order", &urls.order_url))
        .merge(component(
            "/api/mypage/ui/{file}",
            "mypage",
            &urls.mypage_url,
        ))
        .merge(component(
            "/api/deliveries/ui/{file}",
            "delivery",
            &urls.delivery_url,
        ))
        .route("/", get(|| async { Html(SHELL_PAGE) }))
        .merge(ui::assets("/ui/shell", SHELL));
    let documents = Router::new()
        .route("/api/openapi.json", get(openapi_document))
        .with_state(Arc::new(ApiDocument {
            upstreams: [
                upstream("auth", &urls.auth_url),
                upstream("product", &urls.product_url),
                upstream("order", &urls.order_url),
                upstream("delivery", &urls.delivery_url),
                upstream("mypage", &urls.mypage_url),
            ],
            merged: tokio::sync::Mutex::new(None),
        }));
    let routes = auth
        .merge(product)
        .merge(order)
        .merge(delivery)
        .merge(mypage)
        .merge(operations)
        .merge(components)
        .merge(documents)
        .layer(middleware::from_fn(session::cookie_as_bearer))
        .layer(middleware::from_fn_with_state(limits, limits::front_door));
    // Outside the chassis's layers, so that its own answers (a 404, a 413, health) carry
    // the policy too.
    let policy = Arc::new(BrowserPolicy::for_shell(SHELL_PAGE));
    let tracer = gateway.tracer.clone();
    server::serve_wrapped(gateway, listener, routes, |app| {
        app.layer(middleware::from_fn_with_state(
            policy.clone(),
            browser_policy::apply,
        ))
    })
    .await?;
    tracer.shutdown(SPAN_FLUSH).await;
    Ok(())
}

/// A route anyone may call. A token that comes along anyway must be valid (a bad one is
/// refused, not ignored), and then the customer's rate limit applies.
async fn public(
    State(upstream): State<Upstream>,
    Extension(trace): Extension<TraceContext>,
    Extension(client): Extension<ClientAddress>,
    request: Request,
) -> Response {
    let (mut parts, body) = request.into_parts();
    if !parts.headers.contains_key(header::AUTHORIZATION) {
        let anonymous = Audience::Anonymous(client.address());
        return forward(
            &upstream,
            anonymous,
            trace,
            Request::from_parts(parts, body),
        )
        .await;
    }
    match Caller::from_request_parts(&mut parts, &()).await {
        Ok(caller) => {
            forward_for(&upstream, &caller, trace, Request::from_parts(parts, body)).await
        }
        Err(refusal) => refusal.into_response(),
    }
}

/// Signing up or logging in: a public route under the stricter limit per client address.
async fn credentials(
    State(upstream): State<Upstream>,
    Extension(client): Extension<ClientAddress>,
    trace: Extension<TraceContext>,
    request: Request,
) -> Response {
    match upstream.limits.check_login(client) {
        Ok(()) => public(State(upstream), trace, Extension(client), request).await,
        Err(refusal) => refusal.into_response(),
    }
}

/// Logging in: for the shop's page, the token goes into the session cookie instead of
/// the answer.
async fn login(
    upstream: State<Upstream>,
    client: Extension<ClientAddress>,
    Extension(https): Extension<OverHttps>,
    trace: Extension<TraceContext>,
    request: Request,
) -> Response {
    let from_browser = session::from_browser(request.headers());
    let answer = credentials(upstream, client, trace, request).await;
    if from_browser {
        session::keep_token_from_scripts(https, answer).await
    } else {
        answer
    }
}

/// A route for any signed-in customer.
async fn customer(
    State(upstream): State<Upstream>,
    Extension(trace): Extension<TraceContext>,
    caller: Caller,
    request: Request,
) -> Response {
    forward_for(&upstream, &caller, trace, request).await
}

/// A route for admins only.
async fn admin(
    State(upstream): State<Upstream>,
    Extension(trace): Extension<TraceContext>,
    Admin(caller): Admin,
    request: Request,
) -> Response {
    forward_for(&upstream, &caller, trace, request).await
}

/// Forwards a verified caller's request within their rate limit.
async fn forward_for(
    upstream: &Upstream,
    caller: &Caller,
    trace: TraceContext,
    request: Request,
) -> Response {
    let audience = Audience::Customer {
        id: caller.customer_id,
        roles: &caller.roles,
    };
    match upstream.limits.check_customer(caller.customer_id) {
        Ok(()) => forward(upstream, audience, trace, request).await,
        Err(refusal) => refusal.into_response(),
    }
}

/// The shop's public API document, and the last one merged.
struct ApiDocument {
    upstreams: [Upstream; 5],
    merged: tokio::sync::Mutex<Option<(Instant, axum::body::Bytes)>>,
}

/// How long a merged document is served before it is merged again: a redeployed service's
/// changes show within this, and anonymous callers cannot make the gateway call five
/// services on every request.
const API_DOCUMENT_TTL: Duration = Duration::from_secs(60);

/// The shop's public API: each service's own document, with its paths under `/api` as the
/// gateway routes them. One caller merges while the others wait for its result.
async fn openapi_document(
    State(document): State<Arc<ApiDocument>>,
    Extension(trace): Extension<TraceContext>,
) -> Response {
    let mut merged = document.merged.lock().await;
    let body = match merged
        .as_ref()
        .filter(|(at, _)| at.elapsed() < API_DOCUMENT_TTL)
    {
        Some((_, body)) => body.clone(),
        None => match merge_documents(&document.upstreams, trace).await {
            Ok(body) => merged.insert((Instant::now(), body)).1.clone(),
            Err(problem) => return problem.into_response(),
        },
    };
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn merge_documents(
    upstreams: &[Upstream],
    trace: TraceContext,
) -> Result<axum::body::Bytes, Problem> {
    let mut merged = serde_json::json!({
        "openapi": "3.1.0",
        "info": {
            "title": "12st mall",
            "description": "The public API, through the gateway. Bearer tokens come from POST /api/auth/login.",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "paths": {},
        "components": {"schemas": {}, "securitySchemes": {}},
    });
    for upstream in upstreams.iter() {
        let document = match upstream
            .call(Method::GET, "/openapi.json", None, trace)
            .await
            .and_then(|(_, body)| {
                serde_json::from_slice::<serde_json::Value>(&body).map_err(|e| e.to_string())
            }) {
            Ok(document) => document,
            Err(error) => {
                tracing::warn!(%error, upstream = %upstream.instances, "cannot fetch an API document");
                return Err(Problem::new(
                    StatusCode::BAD_GATEWAY,
                    "upstream-unavailable",
                    "A service's API document is unavailable",
                    format!("{} did not answer", upstream.instances),
                ));
            }
        };
        for (path, item) in document["paths"].as_object().into_iter().flatten() {
            merged["paths"][format!("/api{path}")] = item.clone();
        }
        for section in ["schemas", "securitySchemes"] {
            for (name, value) in document["components"][section]
                .as_object()
                .into_iter()
                .flatten()
            {
                merged["components"][section][name] = value.clone();
            }
        }
    }
    document_gateway_answers(&mut merged);
    for (path, item) in session::document().as_object().into_iter().flatten() {
        merged["paths"][path] = item.clone();
    }
    Ok(serde_json::to_vec(&merged)
        .expect("a JSON value always serialises")
        .into())
}

/// Answers the gateway gives in front of any service's route, as problems.
const GATEWAY_ANSWERS: [(&str, &str); 3] = [
    (
        "429",
        "Over a rate limit (per address or per customer); see Retry-After",
    ),
    ("502", "The service behind this path could not be reached"),
    ("504", "The service behind this path did not answer in time"),
];

/// Documents on each operation of the services' merged documents the answers the gateway
/// gives in front of them, unless the operation documents them already.
fn document_gateway_answers(merged: &mut serde_json::Value) {
    let operations = merged["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.values_mut())
        .filter_map(|operation| operation.get_mut("responses")?.as_object_mut());
    for responses in operations {
        for (status, description) in GATEWAY_ANSWERS {
            responses.entry(status).or_insert_with(|| {
                serde_json::json!({
                    "description": description,
                    "content": {"application/problem+json": {
                        "schema": {"$ref": "#/components/schemas/Problem"}
                    }},
                })
            });
        }
    }
}

impl Upstream {
    /// One request of the gateway's own to the service (with the caller's token, if it
    /// acts for one), read whole: its status and body.
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&HeaderValue>,
        trace: TraceContext,
    ) -> Result<(StatusCode, axum::body::Bytes), String> {
        let mut unreachable = String::new();
        for base in self.instances.in_turn() {
            let url = format!("{base}{path}");
            let uri: Uri = url
                .parse()
                .map_err(|e: axum::http::uri::InvalidUri| e.to_string())?;
            let span = spans::http_client(method.as_str(), self.name, &url);
            let traceparent = span.as_ref().map_or_else(|| trace.child(), Span::context);
            let mut request = Request::builder()
                .method(method.clone())
                .uri(uri)
                .header(TRACEPARENT, traceparent.to_string());
            if let Some(token) = token {
                request = request.header(header::AUTHORIZATION, token);
            }
            let request = request.body(Body::empty()).map_err(|e| e.to_string())?;
            let response =
                match tokio::time::timeout(self.timeout, self.client.request(request)).await {
                    Err(_) => return Err(failed(span.as_ref(), "timed out".to_owned())),
                    Ok(Ok(response)) => response,
                    Ok(Err(error)) if error.is_connect() => {
                        self.instances.unreachable(base);
                        unreachable = failed(span.as_ref(), error.to_string());
                        continue;
                    }
                    Ok(Err(error)) => return Err(failed(span.as_ref(), error.to_string())),
                };
            let status = response.status();
            if let Some(span) = &span {
                span.answered(status.as_u16());
            }
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            return Ok((status, body));
        }
        Err(unreachable)
    }
}

/// Records on `span`, when there is one, that the request it stands for failed; returns
/// why.
fn failed(span: Option<&Span>, error: String) -> String {
    if let Some(span) = span {
        span.fail(error.clone());
    }
    error
}

/// Headers that describe one hop and must not be forwarded (RFC 9110 section 7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Forwards a request to the service, or to its canary when that takes this audience, and
/// counts the answer for the canary's analysis.
async fn forward(
    upstream: &Upstream,
    audience: Audience<'_>,
    trace: TraceContext,
    request: Request,
) -> Response {
    let Some(rollout) = upstream.canary.current().filter(|r| r.is_live()) else {
        return forward_to(upstream, &upstream.instances, trace, request).await;
    };
    let (instances, version) = match rollout.takes(audience) {
        Some(canary) => (canary, Version::Canary),
        None => (&upstream.instances, Version::Stable),
    };
    let started = Instant::now();
    let response = forward_to(upstream, instances, trace, request).await;
    rollout.record(version, response.status().as_u16(), started.elapsed());
    response
}

/// Forwards a request to one of `instances`, trying the next when one cannot be reached.
async fn forward_to(
    upstream: &Upstream,
    instances: &Instances,
    trace: TraceContext,
    request: Request,
) -> Response {
    let Ok(_in_flight) = upstream.in_flight.try_acquire() else {
        tracing::warn!(upstream = %instances, "bulkhead full: request shed");
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "The service behind this path is overloaded",
            "too many requests are in flight to it; try again shortly",
        )
        .with_retry_after(1)
        .into_response();
    };
    let (mut parts, body) = request.into_parts();
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let service_path = path_and_query
        .strip_prefix("/api")
        .unwrap_or(path_and_query)
        .to_owned();
    for name in HOP_BY_HOP {
        parts.headers.remove(name);
    }
    parts.headers.remove(header::HOST);
    // With one instance the body streams through; with several it is read first (the
    // chassis has bounded it), so that an instance that cannot be reached leaves it for
    // the next one.
    let (mut streaming, buffered) = if instances.count() == 1 {
        (Some(body), None)
    } else {
        match axum::body::to_bytes(body, usize::MAX).await {
            Ok(bytes) => (None, Some(bytes)),
            Err(error) => {
                return Problem::from_status(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    Some(error.to_string()),
                )
                .into_response();
            }
        }
    };
    let safe = parts.method.is_safe();
    let mut head = Some(parts);
    let mut attempts = instances.in_turn().peekable();
    while let Some(base) = attempts.next() {
        let Ok(uri) = format!("{base}{service_path}").parse::<Uri>() else {
            return Problem::from_status(StatusCode::BAD_REQUEST, Some("malformed path".into()))
                .into_response();
        };
        // The last attempt (the only one, with one instance) takes the head; others a copy.
        let Some(parts) = (match attempts.peek() {
            Some(_) => head.clone(),
            None => head.take(),
        }) else {
            break;
        };
        let body = buffered
            .clone()
            .map_or_else(|| streaming.take().unwrap_or_default(), Body::from);
        let url = uri.to_string();
        let mut attempt = Request::from_parts(parts, body);
        *attempt.uri_mut() = uri;
        // The span ends with the answer's head: the body streams on to the client.
        let span = spans::http_client(attempt.method().as_str(), upstream.name, &url);
        let traceparent = span.as_ref().map_or_else(|| trace.child(), Span::context);
        if let Ok(value) = HeaderValue::from_str(&traceparent.to_string()) {
            attempt.headers_mut().insert(TRACEPARENT, value);
        }
        match tokio::time::timeout(upstream.timeout, upstream.client.request(attempt)).await {
            Ok(Ok(response)) => {
                if let Some(span) = &span {
                    span.answered(response.status().as_u16());
                }
                let (mut parts, body) = response.into_parts();
                for name in HOP_BY_HOP {
                    parts.headers.remove(name);
                }
                return Response::from_parts(parts, Body::new(body));
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, upstream = base, "upstream unreachable");
                failed(span.as_ref(), error.to_string());
                if error.is_connect() {
                    instances.unreachable(base);
                } else if !safe {
                    // Past the connection a request that changes something may have
                    // been taken: only a read is sent twice.
                    break;
                }
            }
            Err(_) => {
                failed(span.as_ref(), "timed out".to_owned());
                return Problem::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream-timeout",
                    "The service behind this path did not answer in time",
                    format!("no answer within {} ms", upstream.timeout.as_millis()),
                )
                .into_response();
            }
        }
    }
    Problem::new(
        StatusCode::BAD_GATEWAY,
        "upstream-unavailable",
        "The service behind this path is unavailable",
        "try again shortly",
    )
    .into_response()
}
