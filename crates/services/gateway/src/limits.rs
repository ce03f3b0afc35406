//! Rate limits per client IP (every request) and per customer (authenticated requests),
//! GCRA via `governor`, and the scrubbing of identity headers a client must not set.

use std::{
    net::{IpAddr, SocketAddr},
    num::NonZeroU32,
    sync::Arc,
    time::Duration,
};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
};
use chassis::problem::Problem;
use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(clap::Args, Debug, Clone)]
pub struct RateLimitSettings {
    /// Sustained requests per second from one client IP.
    #[arg(long, env = "MALL_RATE_LIMIT_IP_PER_SEC", default_value_t = NonZeroU32::new(1_000).unwrap())]
    pub ip_per_sec: NonZeroU32,
    /// Requests one client IP may send at once above the sustained rate.
    #[arg(long, env = "MALL_RATE_LIMIT_IP_BURST", default_value_t = NonZeroU32::new(2_000).unwrap())]
    pub ip_burst: NonZeroU32,
    /// Sustained requests per second of one customer.
    #[arg(long, env = "MALL_RATE_LIMIT_CUSTOMER_PER_SEC", default_value_t = NonZeroU32::new(100).unwrap())]
    pub customer_per_sec: NonZeroU32,
    /// Requests one customer may send at once above the sustained rate.
    #[arg(long, env = "MALL_RATE_LIMIT_CUSTOMER_BURST", default_value_t = NonZeroU32::new(200).unwrap())]
    pub customer_burst: NonZeroU32,
}

pub struct RateLimits {
    by_ip: DefaultKeyedRateLimiter<IpAddr>,
    by_customer: DefaultKeyedRateLimiter<Uuid>,
    clock: DefaultClock,
}

impl RateLimits {
    pub fn new(settings: &RateLimitSettings) -> Self {
        RateLimits {
            by_ip: RateLimiter::keyed(
                Quota::per_second(settings.ip_per_sec).allow_burst(settings.ip_burst),
            ),
            by_customer: RateLimiter::keyed(
                Quota::per_second(settings.customer_per_sec).allow_burst(settings.customer_burst),
            ),
            clock: DefaultClock::default(),
        }
    }

    pub fn check_customer(&self, customer: Uuid) -> Result<(), TooManyRequests> {
        self.by_customer
            .check_key(&customer)
            .map_err(|not_until| TooManyRequests {
                wait: not_until.wait_time_from(self.clock.now()),
                whose: "customer",
            })
    }

    fn check_ip(&self, ip: IpAddr) -> Result<(), TooManyRequests> {
        self.by_ip
            .check_key(&ip)
            .map_err(|not_until| TooManyRequests {
                wait: not_until.wait_time_from(self.clock.now()),
                whose: "client address",
            })
    }

    /// Drops the state of clients that have been quiet, so the tables do not grow forever.
    pub async fn forget_idle_clients(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                _ = shutdown.cancelled() => return,
            }
            self.by_ip.retain_recent();
            self.by_customer.retain_recent();
        }
    }
}

/// A refusal: the client may try again after `wait`.
pub struct TooManyRequests {
    wait: Duration,
    whose: &'static str,
}

impl IntoResponse for TooManyRequests {
    fn into_response(self) -> Response {
        let seconds = self.wait.as_secs() + u64::from(self.wait.subsec_nanos() > 0);
        Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
            format!("this {} sent too many requests; retry later", self.whose),
        )
        .with_retry_after(seconds.max(1))
        .into_response()
    }
}

/// What every request meets first: identity headers from the client are removed (only a
/// verified token says who is asking), then the per-IP limit.
pub async fn front_door(
    State(limits): State<Arc<RateLimits>>,
    mut request: Request,
    next: Next,
) -> Response {
    let spoofed: Vec<_> = request
        .headers()
        .keys()
        .filter(|name| name.as_str().starts_with("x-user-"))
        .cloned()
        .collect();
    for name in spoofed {
        request.headers_mut().remove(name);
    }
    if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>()
        && let Err(refusal) = limits.check_ip(peer.ip())
    {
        return refusal.into_response();
    }
    next.run(request).await
}
