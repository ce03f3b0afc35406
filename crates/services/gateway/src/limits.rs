//! Rate limits per client address (every request, and a stricter one on signing up and
//! logging in) and per customer (authenticated requests), GCRA via `governor`, and the
//! scrubbing of identity headers a client must not set.
//!
//! The client address is the TCP peer, unless that peer is a proxy the shop trusts
//! (`MALL_TRUSTED_PROXIES`): then it is read from `X-Forwarded-For`, which anyone can
//! write, so only the part the trusted proxies appended counts. IPv6 clients are keyed
//! by their /64, the block one customer's line gets; else one customer has 2^64 keys.

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr},
    num::NonZeroU32,
    sync::Arc,
    time::Duration,
};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use chassis::problem::Problem;
use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};
use ipnet::IpNet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(clap::Args, Debug, Clone)]
pub struct RateLimitSettings {
    /// Sustained requests per second from one client address.
    #[arg(long = "rate-limit-ip-per-sec", env = "MALL_RATE_LIMIT_IP_PER_SEC", default_value_t = NonZeroU32::new(1_000).unwrap())]
    pub ip_per_sec: NonZeroU32,
    /// Requests one client address may send at once above the sustained rate.
    #[arg(long = "rate-limit-ip-burst", env = "MALL_RATE_LIMIT_IP_BURST", default_value_t = NonZeroU32::new(2_000).unwrap())]
    pub ip_burst: NonZeroU32,
    /// Sustained requests per second of one customer.
    #[arg(long = "rate-limit-customer-per-sec", env = "MALL_RATE_LIMIT_CUSTOMER_PER_SEC", default_value_t = NonZeroU32::new(100).unwrap())]
    pub customer_per_sec: NonZeroU32,
    /// Requests one customer may send at once above the sustained rate.
    #[arg(long = "rate-limit-customer-burst", env = "MALL_RATE_LIMIT_CUSTOMER_BURST", default_value_t = NonZeroU32::new(200).unwrap())]
    pub customer_burst: NonZeroU32,
    /// Sustained sign-ups and logins per minute from one client address: each costs the
    /// auth service a deliberately slow password hash, and each login is a guess.
    #[arg(long = "rate-limit-login-per-min", env = "MALL_RATE_LIMIT_LOGIN_PER_MIN", default_value_t = NonZeroU32::new(10).unwrap())]
    pub login_per_min: NonZeroU32,
    /// Sign-ups and logins one client address may send at once above the sustained rate.
    #[arg(long = "rate-limit-login-burst", env = "MALL_RATE_LIMIT_LOGIN_BURST", default_value_t = NonZeroU32::new(20).unwrap())]
    pub login_burst: NonZeroU32,
    /// Proxies (load balancers) whose `X-Forwarded-For` is believed, as CIDR ranges or
    /// single addresses, comma-separated; none by default.
    #[arg(long, env = "MALL_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_trusted_range)]
    pub trusted_proxies: Vec<IpNet>,
}

/// A range (`10.0.0.0/8`, `2001:db8::/32`), or one address as a range of one.
fn parse_trusted_range(range: &str) -> Result<IpNet, ipnet::AddrParseError> {
    let range = range.trim();
    range
        .parse::<IpNet>()
        .or_else(|error| range.parse::<IpAddr>().map(IpNet::from).map_err(|_| error))
}

/// Who a request is from, as far as the rate limits are concerned: an IPv4 address or
/// an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddress(IpAddr);

impl ClientAddress {
    /// The address (an IPv6 client's /64 network).
    pub fn address(self) -> IpAddr {
        self.0
    }

    fn of(address: IpAddr) -> Self {
        match address.to_canonical() {
            IpAddr::V6(v6) => {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                ClientAddress(IpAddr::V6(Ipv6Addr::from(network)))
            }
            v4 => ClientAddress(v4),
        }
    }
}

/// The client's address: the TCP `peer`, or, when the peer is a trusted proxy, the
/// rightmost `X-Forwarded-For` entry that is not itself a trusted proxy. Entries left of
/// that were written by the client and are ignored. An entry that is no address ends the
/// walk at the trusted hop that passed it on.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> ClientAddress {
    let is_trusted = |address: &IpAddr| {
        let address = address.to_canonical();
        trusted.iter().any(|range| range.contains(&address))
    };
    let mut nearest = peer;
    if is_trusted(&nearest) {
        let entries: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .flat_map(|value| value.to_str().unwrap_or("").split(','))
            .collect();
        for entry in entries.into_iter().rev() {
            let Some(address) = forwarded_address(entry.trim()) else {
                break;
            };
            nearest = address;
            if !is_trusted(&nearest) {
                break;
            }
        }
    }
    ClientAddress::of(nearest)
}

/// Whether the client reached the shop over HTTPS. The gateway itself speaks plain HTTP,
/// so only a trusted proxy that ended TLS can say so, with `X-Forwarded-Proto`.
#[derive(Debug, Clone, Copy)]
pub struct OverHttps(pub bool);

fn over_https(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> OverHttps {
    let peer = peer.to_canonical();
    let forwarded_https = headers
        .get("x-forwarded-proto")
        .is_some_and(|proto| proto.as_bytes().eq_ignore_ascii_case(b"https"));
    OverHttps(forwarded_https && trusted.iter().any(|range| range.contains(&peer)))
}

/// One `X-Forwarded-For` entry: an address, or an address with a port as some proxies
/// write it (`192.0.2.1:4711`, `[2001:db8::1]:4711`).
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|socket| socket.ip()))
}

pub struct RateLimits {
    by_address: DefaultKeyedRateLimiter<ClientAddress>,
    logins_by_address: DefaultKeyedRateLimiter<ClientAddress>,
    by_customer: DefaultKeyedRateLimiter<Uuid>,
    trusted_proxies: Vec<IpNet>,
    clock: DefaultClock,
}

impl RateLimits {
    pub fn new(settings: &RateLimitSettings) -> Self {
        RateLimits {
            by_address: RateLimiter::keyed(
                Quota::per_second(settings.ip_per_sec).allow_burst(settings.ip_burst),
            ),
            logins_by_address: RateLimiter::keyed(
                Quota::per_minute(settings.login_per_min).allow_burst(settings.login_burst),
            ),
            by_customer: RateLimiter::keyed(
                Quota::per_second(settings.customer_per_sec).allow_burst(settings.customer_burst),
            ),
            trusted_proxies: settings.trusted_proxies.clone(),
            clock: DefaultClock::default(),
        }
    }

    pub fn check_customer(&self, customer: Uuid) -> Result<(), TooManyRequests> {
        self.by_customer
            .check_key(&customer)
            .map_err(|not_until| TooManyRequests {
                wait: not_until.wait_time_from(self.clock.now()),
                refused: "this customer sent too many requests",
            })
    }

    /// The stricter limit on signing up and logging in.
    pub fn check_login(&self, client: ClientAddress) -> Result<(), TooManyRequests> {
        self.logins_by_address
            .check_key(&client)
            .map_err(|not_until| TooManyRequests {
                wait: not_until.wait_time_from(self.clock.now()),
                refused: "this client address sent too many sign-ups and logins",
            })
    }

    fn check_address(&self, client: ClientAddress) -> Result<(), TooManyRequests> {
        self.by_address
            .check_key(&client)
            .map_err(|not_until| TooManyRequests {
                wait: not_until.wait_time_from(self.clock.now()),
                refused: "this client address sent too many requests",
            })
    }

    /// Drops the state of clients that have been quiet, so the tables do not grow forever.
    pub async fn forget_idle_clients(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                _ = shutdown.cancelled() => return,
            }
            self.by_address.retain_recent();
            self.logins_by_address.retain_recent();
            self.by_customer.retain_recent();
        }
    }
}

/// A refusal: the client may try again after `wait`.
pub struct TooManyRequests {
    wait: Duration,
    refused: &'static str,
}

impl IntoResponse for TooManyRequests {
    fn into_response(self) -> Response {
        let seconds = self.wait.as_secs() + u64::from(self.wait.subsec_nanos() > 0);
        Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
            format!("{}; retry later", self.refused),
        )
        .with_retry_after(seconds.max(1))
        .into_response()
    }
}

/// What every request meets first: identity headers from the client are removed (only a
/// verified token says who is asking), then the limit per client address, which later
/// limits find as a `ClientAddress` extension (and the session cookie an `OverHttps`).
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
    if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() {
        let client = client_address(peer.ip(), request.headers(), &limits.trusted_proxies);
        if let Err(refusal) = limits.check_address(client) {
            return refusal.into_response();
        }
        let https = over_https(peer.ip(), request.headers(), &limits.trusted_proxies);
        request.extensions_mut().insert(client);
        request.extensions_mut().insert(https);
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn ip(address: &str) -> IpAddr {
        address.parse().unwrap()
    }

    fn ranges(ranges: &[&str]) -> Vec<IpNet> {
        ranges
            .iter()
            .map(|r| parse_trusted_range(r).unwrap())
            .collect()
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn client(peer: &str, values: &[&str], trusted: &[&str]) -> ClientAddress {
        client_address(ip(peer), &forwarded(values), &ranges(trusted))
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        assert_eq!(
            client("203.0.113.9", &["198.51.100.1"], &[]),
            ClientAddress::of(ip("203.0.113.9"))
        );
        assert_eq!(
            client("203.0.113.9", &["198.51.100.1"], &["10.0.0.0/8"]),
            ClientAddress::of(ip("203.0.113.9"))
        );
    }

    #[test]
    fn behind_a_trusted_proxy_the_client_is_the_address_it_appended() {
        assert_eq!(
            client("10.0.0.5", &["198.51.100.1"], &["10.0.0.0/8"]),
            ClientAddress::of(ip("198.51.100.1"))
        );
    }

    #[test]
    fn what_the_client_wrote_left_of_the_proxies_entry_is_ignored() {
        assert_eq!(
            client("10.0.0.5", &["1.2.3.4, 198.51.100.1"], &["10.0.0.0/8"]),
            ClientAddress::of(ip("198.51.100.1"))
        );
        assert_eq!(
            client("10.0.0.5", &["1.2.3.4", "198.51.100.1"], &["10.0.0.0/8"]),
            ClientAddress::of(ip("198.51.100.1")),
            "several headers are one list"
        );
    }

    #[test]
    fn a_chain_of_trusted_proxies_is_walked_from_the_right() {
        assert_eq!(
            client(
                "10.0.0.5",
                &["1.2.3.4, 198.51.100.1, 10.1.1.1, 192.168.0.7"],
                &["10.0.0.0/8", "192.168.0.0/16"]
            ),
            ClientAddress::of(ip("198.51.100.1"))
        );
    }

    #[test]
    fn when_every_hop_is_trusted_the_leftmost_is_the_client() {
        assert_eq!(
            client("10.0.0.5", &["10.9.9.9, 10.1.1.1"], &["10.0.0.0/8"]),
            ClientAddress::of(ip("10.9.9.9"))
        );
    }

    #[test]
    fn a_trusted_peer_without_the_header_is_the_client() {
        assert_eq!(
            client("10.0.0.5", &[], &["10.0.0.0/8"]),
            ClientAddress::of(ip("10.0.0.5"))
        );
    }

    #[test]
    fn garbage_ends_the_walk_at_the_trusted_hop_that_passed_it_on() {
        assert_eq!(
            client(
                "10.0.0.5",
                &["198.51.100.1, nonsense, 10.1.1.1"],
                &["10.0.0.0/8"]
            ),
            ClientAddress::of(ip("10.1.1.1"))
        );
        assert_eq!(
            client("10.0.0.5", &["unknown"], &["10.0.0.0/8"]),
            ClientAddress::of(ip("10.0.0.5"))
        );
    }

    #[test]
    fn entries_with_ports_count_by_their_address() {
        assert_eq!(
            client("10.0.0.5", &["198.51.100.1:4711"], &["10.0.0.0/8"]),
            ClientAddress::of(ip("198.51.100.1"))
        );
        assert_eq!(
            client("10.0.0.5", &["[2001:db8::1]:4711"], &["10.0.0.0/8"]),
            ClientAddress::of(ip("2001:db8::1"))
        );
    }

    #[test]
    fn an_ipv4_mapped_peer_is_matched_as_ipv4() {
        assert_eq!(
            client("::ffff:10.0.0.5", &["198.51.100.1"], &["10.0.0.0/8"]),
            ClientAddress::of(ip("198.51.100.1"))
        );
        assert_eq!(
            ClientAddress::of(ip("::ffff:198.51.100.1")),
            ClientAddress::of(ip("198.51.100.1"))
        );
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64_block() {
        assert_eq!(
            ClientAddress::of(ip("2001:db8:1:2:aaaa::1")),
            ClientAddress::of(ip("2001:db8:1:2:ffff:1:2:3"))
        );
        assert_ne!(
            ClientAddress::of(ip("2001:db8:1:2::1")),
            ClientAddress::of(ip("2001:db8:1:3::1"))
        );
        assert_ne!(
            ClientAddress::of(ip("198.51.100.1")),
            ClientAddress::of(ip("198.51.100.2")),
            "IPv4 addresses are not grouped"
        );
    }

    #[test]
    fn only_a_trusted_proxy_can_say_the_client_came_over_https() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let trusted = ranges(&["10.0.0.0/8"]);
        assert!(over_https(ip("10.0.0.5"), &headers, &trusted).0);
        assert!(!over_https(ip("203.0.113.9"), &headers, &trusted).0);
        assert!(!over_https(ip("10.0.0.5"), &HeaderMap::new(), &trusted).0);
    }

    #[test]
    fn trusted_ranges_are_cidrs_or_single_addresses() {
        assert_eq!(
            parse_trusted_range(" 10.0.0.0/8").unwrap(),
            "10.0.0.0/8".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            parse_trusted_range("127.0.0.1").unwrap(),
            "127.0.0.1/32".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            parse_trusted_range("::1").unwrap(),
            "::1/128".parse::<IpNet>().unwrap()
        );
        assert!(parse_trusted_range("10.0.0.0/33").is_err());
        assert!(parse_trusted_range("load-balancer").is_err());
    }

    #[test]
    fn the_setting_lists_ranges_separated_by_commas() {
        #[derive(clap::Parser)]
        struct Settings {
            #[command(flatten)]
            limits: RateLimitSettings,
        }
        let settings = <Settings as clap::Parser>::try_parse_from([
            "gateway",
            "--trusted-proxies",
            "10.0.0.0/8,2001:db8::/32",
        ])
        .unwrap();
        assert_eq!(
            settings.limits.trusted_proxies,
            ranges(&["10.0.0.0/8", "2001:db8::/32"])
        );
        let default = <Settings as clap::Parser>::try_parse_from(["gateway"]).unwrap();
        assert!(default.limits.trusted_proxies.is_empty(), "trust nobody");
    }
}
