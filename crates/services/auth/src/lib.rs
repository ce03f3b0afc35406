//! The auth service: customer accounts, passwords (Argon2id), and tokens.
//!
//! Login issues a short-lived JWT signed with an Ed25519 key (`alg: EdDSA`, `kid` = the
//! key's RFC 7638 thumbprint) carrying `iss`, `aud`, `sub` (the customer id) and `roles`.
//! Every other service verifies it against `GET /auth/jwks` (see `chassis::auth`).

mod api;
pub mod domain;
pub mod keys;
mod login_limit;
mod passwords;
mod store;

use std::{
    num::{NonZeroU32, NonZeroUsize},
    path::PathBuf,
    sync::Arc,
};

use chassis::{
    ServiceRuntime,
    auth::TokenSettings,
    db::Database,
    flows::{Actor, Command, EventRef, ServiceFlows, Subdomain},
    server, ui,
};
use contracts::events::CustomerRegistered;
use tokio::net::TcpListener;

pub use api::{ApiError, register};
pub use keys::SigningKey;
pub use passwords::Passwords;

use crate::login_limit::LoginLimit;

pub const NAME: &str = "auth";

/// The service's web components (MVVM: each view with its ViewModel), served under
/// its API path for the gateway's shell to compose.
const UI: &[ui::Asset] = &[
    ("login.js", include_str!("../ui/login.js")),
    ("login-vm.js", include_str!("../ui/login-vm.js")),
];

/// Accounts and tokens; every other service is downstream of its keys.
pub const FLOWS: ServiceFlows = ServiceFlows {
    service: NAME,
    subdomain: Subdomain::Generic,
    aggregate: Some("Customer"),
    commands: &[Command {
        name: "Sign up",
        actor: Actor::Visitor,
        trigger: "POST /auth/signup",
        emits: &[EventRef::of::<CustomerRegistered>()],
    }],
    policies: &[],
    read_models: &[],
    calls: &[],
};

#[derive(clap::Args, Debug, Clone)]
pub struct AuthSettings {
    /// The token signing key: an Ed25519 private key, PKCS#8 PEM. `mall up` creates one
    /// in the data folder on first start; `mall serve auth` needs it to exist.
    #[arg(long = "auth-signing-key-file", env = "MALL_AUTH_SIGNING_KEY_FILE")]
    pub signing_key_file: Option<PathBuf>,

    /// How long an access token is valid, in seconds; at most the verifiers'
    /// `MALL_TOKEN_MAX_LIFETIME_SECS`.
    #[arg(long, env = "MALL_TOKEN_TTL_SECS", default_value_t = 900,
          value_parser = clap::value_parser!(i64).range(30..=86_400))]
    pub token_ttl_secs: i64,

    /// Password hashes (signups and logins) run at once; a request beyond them gets a
    /// 503 with `Retry-After` at once. Default: the number of cores.
    #[arg(long, env = "MALL_PASSWORD_HASHING_SLOTS")]
    pub password_hashing_slots: Option<NonZeroUsize>,

    /// Sustained login attempts per minute for one email, whatever their source.
    #[arg(long, env = "MALL_LOGIN_ATTEMPTS_PER_MINUTE", default_value_t = NonZeroU32::new(10).unwrap())]
    pub login_attempts_per_minute: NonZeroU32,

    /// Login attempts one email may take at once above the sustained rate.
    #[arg(long, env = "MALL_LOGIN_ATTEMPTS_BURST", default_value_t = NonZeroU32::new(10).unwrap())]
    pub login_attempts_burst: NonZeroU32,
}

impl AuthSettings {
    /// Refuses a token lifetime longer than the verifiers accept: every token issued
    /// would be refused.
    pub fn check(&self, tokens: &TokenSettings) -> Result<(), Error> {
        let max = tokens.max_token_lifetime_secs;
        if self.token_ttl_secs > max {
            return Err(Error::TokenOutlivesItsLimit {
                ttl: self.token_ttl_secs,
                max,
            });
        }
        Ok(())
    }

    /// The password hashing pool these settings ask for.
    pub fn passwords(&self) -> Passwords {
        let cores = std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN);
        Passwords::new(self.password_hashing_slots.unwrap_or(cores))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("migrating the auth database failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("serving HTTP failed: {0}")]
    Serve(#[from] std::io::Error),
    #[error(
        "MALL_TOKEN_TTL_SECS ({ttl}) is longer than MALL_TOKEN_MAX_LIFETIME_SECS ({max}): \
         every token issued would be refused"
    )]
    TokenOutlivesItsLimit { ttl: i64, max: i64 },
}

/// Creates or updates the auth tables.
pub async fn migrate(db: &Database) -> Result<(), sqlx::migrate::MigrateError> {
    db.migrate(
        &sqlx::migrate!("./migrations/sqlite"),
        &sqlx::migrate!("./migrations/postgres"),
    )
    .await
}

/// Migrates the database and serves the API until shutdown.
pub async fn run(
    rt: Arc<ServiceRuntime>,
    listener: TcpListener,
    key: SigningKey,
    settings: AuthSettings,
) -> Result<(), Error> {
    migrate(&rt.db).await?;
    let login_limit = Arc::new(LoginLimit::new(
        settings.login_attempts_per_minute,
        settings.login_attempts_burst,
    ));
    rt.spawn(login_limit.clone().forget_quiet_emails(rt.shutdown.clone()));
    let router = api::router(
        rt.clone(),
        api::Accounts {
            key: Arc::new(key),
            token_ttl_secs: settings.token_ttl_secs,
            passwords: settings.passwords(),
            login_limit,
        },
    )
    .merge(ui::assets("/auth/ui", UI));
    server::serve(rt.clone(), listener, router).await?;
    rt.stopped().await;
    Ok(())
}
