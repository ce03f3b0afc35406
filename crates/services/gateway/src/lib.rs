//! The gateway: the shop's one front door, on the base port. It routes the public paths
//! of DESIGN.md section 9 to the services that own them, streaming bodies over pooled
//! upstream connections, and carries the trace context and request id along.
//! (Token checks, rate limits and the UI shell come with the gateway issue.)

use std::{sync::Arc, time::Duration};

use axum::{
    Extension, Router,
    body::Body,
    extract::{Request, State},
    http::{HeaderValue, Uri, header},
    response::{IntoResponse, Response},
    routing::any,
};
use chassis::{
    config::{ChassisSettings, ServiceUrls},
    problem::Problem,
    server::{self, Service, TRACEPARENT},
    telemetry::Metrics,
    trace::TraceContext,
};
use hyper::StatusCode;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const NAME: &str = "gateway";

#[derive(clap::Args, Debug, Clone)]
pub struct GatewaySettings {
    /// How long the gateway waits for a service's answer before a 504.
    #[arg(long, env = "MALL_UPSTREAM_TIMEOUT_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub upstream_timeout_ms: u64,
}

/// The gateway's share of the chassis: it has no database and no bus of its own.
pub struct Gateway {
    settings: ChassisSettings,
    metrics: Metrics,
    shutdown: CancellationToken,
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

    async fn ready(&self) -> Result<(), String> {
        Ok(())
    }
}

#[derive(Clone)]
struct Upstream {
    client: Client<HttpConnector, Body>,
    base: Arc<str>,
    timeout: Duration,
}

pub async fn run(
    chassis: ChassisSettings,
    urls: &ServiceUrls,
    settings: GatewaySettings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let gateway = Arc::new(Gateway {
        settings: chassis,
        metrics: Metrics::new(NAME),
        shutdown,
    });
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build_http();
    let upstream = |base: &str| Upstream {
        client: client.clone(),
        base: base.trim_end_matches('/').into(),
        timeout: Duration::from_millis(settings.upstream_timeout_ms),
    };
    let routes = Router::new()
        .merge(routes_to(
            &["/api/products", "/api/products/{*rest}"],
            upstream(&urls.product_url),
        ))
        .merge(routes_to(
            &["/api/orders", "/api/orders/{*rest}"],
            upstream(&urls.order_url),
        ));
    server::serve(gateway, listener, routes).await
}

fn routes_to(paths: &[&str], upstream: Upstream) -> Router {
    paths
        .iter()
        .fold(Router::new(), |router, path| router.route(path, any(proxy)))
        .with_state(upstream)
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

async fn proxy(
    State(upstream): State<Upstream>,
    Extension(trace): Extension<TraceContext>,
    mut request: Request,
) -> Response {
    let path_and_query = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let service_path = path_and_query
        .strip_prefix("/api")
        .unwrap_or(path_and_query);
    let Ok(uri) = format!("{}{service_path}", upstream.base).parse::<Uri>() else {
        return Problem::from_status(StatusCode::BAD_REQUEST, Some("malformed path".into()))
            .into_response();
    };
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::HOST);
    if let Ok(value) = HeaderValue::from_str(&trace.child().to_string()) {
        headers.insert(TRACEPARENT, value);
    }
    match tokio::time::timeout(upstream.timeout, upstream.client.request(request)).await {
        Ok(Ok(response)) => {
            let (mut parts, body) = response.into_parts();
            for name in HOP_BY_HOP {
                parts.headers.remove(name);
            }
            Response::from_parts(parts, Body::new(body))
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, upstream = %upstream.base, "upstream unreachable");
            Problem::new(
                StatusCode::BAD_GATEWAY,
                "upstream-unavailable",
                "The service behind this path is unavailable",
                "try again shortly",
            )
            .into_response()
        }
        Err(_) => Problem::new(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream-timeout",
            "The service behind this path did not answer in time",
            format!("no answer within {} ms", upstream.timeout.as_millis()),
        )
        .into_response(),
    }
}
