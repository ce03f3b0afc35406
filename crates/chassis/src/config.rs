//! Settings every service shares. Each is a flag and an environment variable (12-factor);
//! clap validates them at start and names the bad value and the variable in its error.

use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::{auth::TokenSettings, faults::Environment};

#[derive(Args, Debug, Clone)]
pub struct ChassisSettings {
    /// Largest request body accepted, in bytes; larger ones get a 413 problem.
    #[arg(long, env = "MALL_BODY_LIMIT_BYTES", default_value_t = 64 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..=64 * 1024 * 1024))]
    pub body_limit_bytes: u64,

    /// A request that takes longer is answered with a 503 problem.
    #[arg(long, env = "MALL_REQUEST_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub request_timeout_ms: u64,

    /// The event bus: `embedded` (the log in the data folder, shared by every process on
    /// this machine) or `kafka://host:port[,host:port...]`.
    #[arg(long, env = "MALL_BUS", default_value = "embedded", value_parser = parse_bus)]
    pub bus: BusLocation,

    /// Partitions of a topic, fixed when the topic is first used.
    #[arg(long, env = "MALL_BUS_PARTITIONS", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub bus_partitions: u32,

    /// Attempts at handling one event before it goes to the dead-letter topic.
    #[arg(long, env = "MALL_CONSUMER_MAX_ATTEMPTS", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub consumer_max_attempts: u32,

    /// Names this process among several running the same service, so each keeps its
    /// partition leases across restarts. Two live processes must not share it.
    #[arg(long, env = "MALL_INSTANCE_ID", default_value = "0")]
    pub instance_id: String,

    #[command(flatten)]
    pub tokens: TokenSettings,

    /// Where this runs; `production` refuses fault injection.
    #[arg(long, env = "MALL_ENV", value_enum, default_value_t = Environment::Development)]
    pub environment: Environment,

    /// Faults to inject, for tests only: `service:fault,...;...` (README, "Fault
    /// injection"). Empty: none.
    #[arg(long, env = "MALL_FAULTS", default_value = "")]
    pub faults: String,

    /// How hard SQLite syncs each commit (see README, "Durability").
    #[arg(long, env = "MALL_SQLITE_SYNCHRONOUS", value_enum, default_value_t = Durability::Normal)]
    pub sqlite_synchronous: Durability,
}

/// Where the other services are: DNS names in Kubernetes, loopback locally (DESIGN.md
/// section 2). No registry.
#[derive(Args, Debug, Clone)]
pub struct ServiceUrls {
    /// Base URL of the product service.
    #[arg(
        long,
        env = "MALL_PRODUCT_URL",
        default_value = "http://127.0.0.1:8083"
    )]
    pub product_url: String,

    /// Base URL of the order service.
    #[arg(long, env = "MALL_ORDER_URL", default_value = "http://127.0.0.1:8081")]
    pub order_url: String,

    /// Base URL of the delivery service.
    #[arg(
        long,
        env = "MALL_DELIVERY_URL",
        default_value = "http://127.0.0.1:8082"
    )]
    pub delivery_url: String,

    /// Base URL of the my page service.
    #[arg(long, env = "MALL_MYPAGE_URL", default_value = "http://127.0.0.1:8085")]
    pub mypage_url: String,

    /// Base URL of the auth service.
    #[arg(long, env = "MALL_AUTH_URL", default_value = "http://127.0.0.1:8086")]
    pub auth_url: String,

    /// Base URL of the payment service (for its dead letters).
    #[arg(
        long,
        env = "MALL_PAYMENT_URL",
        default_value = "http://127.0.0.1:8084"
    )]
    pub payment_url: String,
}

/// Where the event bus is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusLocation {
    Embedded,
    /// Kafka brokers, `host:port,...`.
    Kafka(String),
}

fn parse_bus(value: &str) -> Result<BusLocation, String> {
    match value.strip_prefix("kafka://") {
        _ if value == "embedded" => Ok(BusLocation::Embedded),
        Some(brokers) if !brokers.is_empty() && !brokers.contains('/') => {
            Ok(BusLocation::Kafka(brokers.to_owned()))
        }
        _ => Err(format!(
            "`{value}` is neither `embedded` nor `kafka://host:port[,host:port...]`"
        )),
    }
}

/// SQLite `synchronous` level in WAL mode.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Survives a killed process; a power cut can lose the last commits.
    Normal,
    /// fsync on every commit: survives a power cut, several times slower.
    Full,
}

impl ChassisSettings {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        settings: ChassisSettings,
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let cli = Cli::try_parse_from(["test"]).unwrap();
        assert_eq!(cli.settings.bus_partitions, 4);
        assert_eq!(cli.settings.sqlite_synchronous, Durability::Normal);
    }

    #[test]
    fn a_bad_value_is_refused_with_its_name() {
        let error = Cli::try_parse_from(["test", "--bus-partitions", "0"])
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("--bus-partitions"), "{error}");
    }
}
