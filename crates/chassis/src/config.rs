//! Settings every service shares. Each is a flag and an environment variable (12-factor);
//! clap validates them at start and names the bad value and the variable in its error.

use std::{
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use clap::{Args, ValueEnum};
use sqlx::postgres::PgConnectOptions;

use crate::{
    auth::TokenSettings, faults::Environment, instances::Instances, spans::TracingSettings,
};

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

    /// A connection that has not sent a request's headers this long after it opened or
    /// after its last answer (a slow client, or an idle keep-alive) is closed.
    #[arg(long, env = "MALL_HEADER_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub header_timeout_ms: u64,

    /// Serve `/health/*` and `/metrics` on this port (same address) instead of beside the
    /// API: an operator's port that the load balancer does not expose.
    #[arg(long, env = "MALL_OPERATIONS_PORT")]
    pub operations_port: Option<u16>,

    /// The longest a graceful shutdown (SIGTERM, Ctrl-C) may take: requests in flight
    /// finished, consumers stopped, outboxes drained. Past it the process exits anyway;
    /// nothing is lost (the outbox keeps what was not published).
    #[arg(long, env = "MALL_SHUTDOWN_DEADLINE_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub shutdown_deadline_ms: u64,

    /// Most connections a service holds open at once; more wait to be accepted.
    #[arg(long, env = "MALL_MAX_CONNECTIONS", default_value_t = 2_048,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// The event bus: `embedded` (the log in the data folder, shared by every process on
    /// this machine) or `kafka://host:port[,host:port...][/namespace]`; a namespace
    /// prefixes every topic and consumer group (`<namespace>.<topic>`), so that several
    /// shops (dev and prod, or tests) can share one cluster.
    #[arg(long, env = "MALL_BUS", default_value = "embedded", value_parser = BusLocation::from_str)]
    pub bus: BusLocation,

    /// Each service's database: `embedded` (a SQLite file per service in the data
    /// folder), `sqlite://<folder>`, or `postgres://user[:password]@host[:port]/<name>`,
    /// where service `<s>` gets the database `<name>_<s>` (created on first start).
    #[arg(long, env = "MALL_DB", default_value = "embedded", value_parser = DatabaseLocation::from_str)]
    pub db: DatabaseLocation,

    /// Most connections of a service's database pool (SQLite: readers beside the one
    /// writer).
    #[arg(long, env = "MALL_DB_MAX_CONNECTIONS", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_max_connections: u32,

    /// Partitions of a topic, fixed when the topic is first used.
    #[arg(long, env = "MALL_BUS_PARTITIONS", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub bus_partitions: u32,

    /// On Kafka: how long the consumer group waits for a member that went silent (a
    /// killed or frozen instance) before its partitions go to the others. A member that
    /// comes back with the same MALL_INSTANCE_ID first takes them back at once.
    #[arg(long, env = "MALL_BUS_SESSION_TIMEOUT_MS", default_value_t = 45_000,
          value_parser = clap::value_parser!(u64).range(6_000..=1_800_000))]
    pub bus_session_timeout_ms: u64,

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

    #[command(flatten)]
    pub tracing: TracingSettings,

    /// Where this runs; `production` refuses fault injection. Unset, it is production,
    /// except for `mall up` (a shop on one machine), where it is development.
    #[arg(long = "env", env = "MALL_ENV", value_enum)]
    pub environment: Option<Environment>,

    /// Faults to inject, for tests only: `service:fault,...;...` (README, "Fault
    /// injection"). Empty: none.
    #[arg(long, env = "MALL_FAULTS", default_value = "")]
    pub faults: String,

    /// How hard SQLite syncs each commit (see README, "Durability").
    #[arg(long, env = "MALL_SQLITE_SYNCHRONOUS", value_enum, default_value_t = Durability::Normal)]
    pub sqlite_synchronous: Durability,
}

/// Where the other services are: DNS names in Kubernetes, loopback locally (DESIGN.md
/// section 2). No registry. Each setting may list several instances, taken in turn.
#[derive(Args, Debug, Clone)]
pub struct ServiceUrls {
    /// Base URL of the product service (of each instance, separated by commas).
    #[arg(
        long,
        env = "MALL_PRODUCT_URL",
        default_value = "http://127.0.0.1:8083"
    )]
    pub product_url: Instances,

    /// Base URL of the order service.
    #[arg(long, env = "MALL_ORDER_URL", default_value = "http://127.0.0.1:8081")]
    pub order_url: Instances,

    /// Base URL of the delivery service.
    #[arg(
        long,
        env = "MALL_DELIVERY_URL",
        default_value = "http://127.0.0.1:8082"
    )]
    pub delivery_url: Instances,

    /// Base URL of the my page service.
    #[arg(long, env = "MALL_MYPAGE_URL", default_value = "http://127.0.0.1:8085")]
    pub mypage_url: Instances,

    /// Base URL of the auth service.
    #[arg(long, env = "MALL_AUTH_URL", default_value = "http://127.0.0.1:8086")]
    pub auth_url: Instances,

    /// Base URL of the payment service (for its dead letters).
    #[arg(
        long,
        env = "MALL_PAYMENT_URL",
        default_value = "http://127.0.0.1:8084"
    )]
    pub payment_url: Instances,
}

/// Where the event bus is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusLocation {
    Embedded,
    Kafka {
        /// `host:port,...`
        brokers: String,
        /// Prefix of the shop's topics and groups; empty for none.
        namespace: String,
    },
}

fn parse_bus(value: &str) -> Result<BusLocation, String> {
    match value.strip_prefix("kafka://") {
        _ if value == "embedded" => Ok(BusLocation::Embedded),
        Some(rest) => {
            let (brokers, namespace) = rest.split_once('/').unwrap_or((rest, ""));
            let valid_namespace = namespace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if brokers.is_empty() || !valid_namespace {
                return Err(format!(
                    "`{value}` is not `kafka://host:port[,host:port...][/namespace]` \
                     (a namespace has letters, digits, `-` and `_`)"
                ));
            }
            Ok(BusLocation::Kafka {
                brokers: brokers.to_owned(),
                namespace: namespace.to_owned(),
            })
        }
        None => Err(format!(
            "`{value}` is neither `embedded` nor `kafka://host:port[,host:port...][/namespace]`"
        )),
    }
}

/// Where the services' databases are.
#[derive(Debug, Clone)]
pub enum DatabaseLocation {
    /// `<service>.db` in the data folder.
    Embedded,
    /// `<service>.db` in this folder.
    Sqlite(PathBuf),
    /// The server, and in its database name the prefix of each service's database.
    Postgres {
        url: String,
        server: Box<PgConnectOptions>,
    },
}

impl std::fmt::Display for DatabaseLocation {
    /// The value it was given as, for child processes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseLocation::Embedded => f.write_str("embedded"),
            DatabaseLocation::Sqlite(folder) => write!(f, "sqlite://{}", folder.display()),
            DatabaseLocation::Postgres { url, .. } => f.write_str(url),
        }
    }
}

impl std::fmt::Display for BusLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BusLocation::Embedded => f.write_str("embedded"),
            BusLocation::Kafka { brokers, namespace } if namespace.is_empty() => {
                write!(f, "kafka://{brokers}")
            }
            BusLocation::Kafka { brokers, namespace } => write!(f, "kafka://{brokers}/{namespace}"),
        }
    }
}

impl DatabaseLocation {
    /// Service `service`'s file, when the databases are SQLite files.
    pub fn sqlite_file(&self, data_dir: &Path, service: &str) -> Option<PathBuf> {
        let folder = match self {
            DatabaseLocation::Embedded => data_dir,
            DatabaseLocation::Sqlite(folder) => folder,
            DatabaseLocation::Postgres { .. } => return None,
        };
        Some(folder.join(format!("{service}.db")))
    }
}

impl FromStr for DatabaseLocation {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        parse_database(value)
    }
}

impl FromStr for BusLocation {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        parse_bus(value)
    }
}

/// PostgreSQL's 63-byte identifiers, less `_delivery`, the longest service suffix.
const MAX_DATABASE_PREFIX_BYTES: usize = 63 - "_delivery".len();

fn parse_database(value: &str) -> Result<DatabaseLocation, String> {
    if value == "embedded" {
        return Ok(DatabaseLocation::Embedded);
    }
    if let Some(folder) = value.strip_prefix("sqlite://") {
        return match folder {
            "" => Err("`sqlite://` needs a folder: `sqlite://<folder>`".into()),
            folder => Ok(DatabaseLocation::Sqlite(folder.into())),
        };
    }
    if value.starts_with("postgres://") || value.starts_with("postgresql://") {
        let server = PgConnectOptions::from_str(value)
            .map_err(|error| format!("`{value}` is not a PostgreSQL URL: {error}"))?;
        // Each service's database is `<name>_<service>`: a shop needs a name of its own,
        // short enough that PostgreSQL (63 bytes) does not cut two services' names to one.
        match server.get_database() {
            None | Some("") => {
                return Err(format!(
                    "`{value}` names no database: add one (`.../mall`); each service gets \
                     `<name>_<service>`"
                ));
            }
            Some(name) if name.len() > MAX_DATABASE_PREFIX_BYTES => {
                return Err(format!(
                    "the database name `{name}` is {} bytes; at most {MAX_DATABASE_PREFIX_BYTES} \
                     leave room for `_<service>` in PostgreSQL's 63",
                    name.len()
                ));
            }
            Some(_) => {}
        }
        return Ok(DatabaseLocation::Postgres {
            url: value.to_owned(),
            server: Box::new(server),
        });
    }
    Err(format!(
        "`{value}` is neither `embedded`, `sqlite://<folder>` nor `postgres://...`"
    ))
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
    /// The environment set, or production: the safe side for a process told nothing.
    pub fn environment(&self) -> Environment {
        self.environment.unwrap_or(Environment::Production)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms)
    }

    pub fn shutdown_deadline(&self) -> Duration {
        Duration::from_millis(self.shutdown_deadline_ms)
    }

    /// How long a client of another service keeps an idle connection for reuse: half the
    /// header timeout after which that service closes it, so the client lets go first (a
    /// request sent just as the server closes the connection would be reset).
    pub fn client_idle_timeout(&self) -> Duration {
        self.header_timeout() / 2
    }

    pub fn pool(&self) -> crate::db::PoolSettings {
        crate::db::PoolSettings {
            max_connections: self.db_max_connections,
            durability: self.sqlite_synchronous,
        }
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
    fn the_sqlite_synchronous_setting_reaches_the_database_pools() {
        let cli = Cli::try_parse_from(["test", "--sqlite-synchronous", "full"]).unwrap();
        assert_eq!(cli.settings.pool().durability, Durability::Full);
    }

    #[test]
    fn a_kafka_bus_may_have_a_namespace() {
        assert_eq!(
            parse_bus("kafka://a:9092,b:9092/dev").unwrap(),
            BusLocation::Kafka {
                brokers: "a:9092,b:9092".into(),
                namespace: "dev".into()
            }
        );
        assert_eq!(
            parse_bus("kafka://a:9092").unwrap(),
            BusLocation::Kafka {
                brokers: "a:9092".into(),
                namespace: String::new()
            }
        );
        assert_eq!(
            parse_bus("kafka://a:9092/dev").unwrap().to_string(),
            "kafka://a:9092/dev"
        );
        assert!(parse_bus("kafka:///dev").is_err());
        assert!(parse_bus("kafka://a:9092/a.b").is_err());
        assert!(parse_bus("nats://a:4222").is_err());
    }

    #[test]
    fn a_database_is_chosen_by_url() {
        let parse = |value: &str| parse_database(value);
        assert!(matches!(parse("embedded"), Ok(DatabaseLocation::Embedded)));
        assert!(
            matches!(parse("sqlite:///var/mall"), Ok(DatabaseLocation::Sqlite(p)) if p == Path::new("/var/mall"))
        );
        match parse("postgres://mall@db:6543/shop") {
            Ok(location @ DatabaseLocation::Postgres { .. }) => {
                assert_eq!(location.to_string(), "postgres://mall@db:6543/shop");
                let DatabaseLocation::Postgres { server, .. } = location else {
                    unreachable!()
                };
                assert_eq!(server.get_host(), "db");
                assert_eq!(server.get_port(), 6543);
                assert_eq!(server.get_database(), Some("shop"));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            parse("mysql://db/shop")
                .unwrap_err()
                .contains("mysql://db/shop")
        );
        assert!(parse("sqlite://").is_err());
        assert!(
            parse("postgres://mall@db:6543")
                .unwrap_err()
                .contains("names no database")
        );
        let long = format!("postgres://db/{}", "n".repeat(55));
        assert!(parse(&long).unwrap_err().contains("at most 54"));
        assert!(parse(&format!("postgres://db/{}", "n".repeat(54))).is_ok());
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
