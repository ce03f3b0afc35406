//! Token verification every service does itself (zero trust), and the [`Caller`] it
//! yields: who is asking and with which roles.
//!
//! Tokens are JWTs signed by the auth service with Ed25519 (`alg: EdDSA`); the keys come
//! from a JWKS URL, cached and fetched again when a token names an unknown `kid` (at most
//! once per [`MIN_REFRESH`], so junk tokens cannot make us hammer the issuer). Pointing
//! `MALL_JWKS_URL` at an external OIDC issuer's JWKS works the same way.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use axum::{
    extract::FromRequestParts,
    http::{HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use clap::Args;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header, jwk::JwkSet};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::problem::Problem;

/// The only algorithm accepted: a token claiming any other (`none`, `HS256`...) is refused
/// before its signature is looked at.
pub const ALGORITHM: Algorithm = Algorithm::EdDSA;
/// Least time between two JWKS fetches caused by unknown key ids.
pub const MIN_REFRESH: Duration = Duration::from_secs(10);
/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_SECS: i64 = 5;

#[derive(Args, Debug, Clone)]
pub struct TokenSettings {
    /// Where the token signing keys are published (the auth service, or an OIDC issuer).
    #[arg(
        long,
        env = "MALL_JWKS_URL",
        default_value = "http://127.0.0.1:8086/auth/jwks"
    )]
    pub jwks_url: String,

    /// The `iss` every token must carry.
    #[arg(long, env = "MALL_JWT_ISSUER", default_value = "12st-mall")]
    pub issuer: String,

    /// The `aud` every token must carry.
    #[arg(long, env = "MALL_JWT_AUDIENCE", default_value = "12st-mall")]
    pub audience: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Admin,
}

/// What a token says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The customer id.
    pub sub: Uuid,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    pub jti: Uuid,
    pub roles: Vec<Role>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("this request needs a bearer token")]
    Missing,
    #[error("the token is not valid: {0}")]
    Invalid(String),
    #[error("this needs the admin role")]
    Forbidden,
    #[error("the token signing keys cannot be fetched: {0}")]
    KeysUnavailable(String),
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let detail = self.to_string();
        let mut response = match self {
            AuthError::Missing | AuthError::Invalid(_) => Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Authentication required",
                detail,
            ),
            AuthError::Forbidden => {
                Problem::new(StatusCode::FORBIDDEN, "forbidden", "Not allowed", detail)
            }
            AuthError::KeysUnavailable(_) => Problem::unavailable(detail, 5),
        }
        .into_response();
        if response.status() == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"12st-mall\""),
            );
        }
        response
    }
}

struct KeyCache {
    keys: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
}

/// Tokens kept after their signature checked out, so that a client's next requests with
/// the same token cost a lookup instead of an Ed25519 verification. Bounded: when full it
/// is emptied and refills with the tokens in use.
const VERIFIED_CAPACITY: usize = 100_000;

/// Verifies tokens against the issuer's published keys.
pub struct TokenVerifier {
    settings: TokenSettings,
    client: reqwest::Client,
    cache: RwLock<KeyCache>,
    refreshing: tokio::sync::Mutex<()>,
    verified: RwLock<HashMap<String, Claims>>,
}

impl TokenVerifier {
    pub fn new(settings: TokenSettings) -> Self {
        TokenVerifier {
            settings,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(3))
                .build()
                .expect("a plain HTTP client always builds"),
            cache: RwLock::new(KeyCache {
                keys: HashMap::new(),
                fetched_at: None,
            }),
            refreshing: tokio::sync::Mutex::new(()),
            verified: RwLock::new(HashMap::new()),
        }
    }

    /// The token's claims when its algorithm, key, signature, `exp`, `nbf`, `iss` and
    /// `aud` all check out.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let now = chrono::Utc::now().timestamp();
        let known = self
            .verified
            .read()
            .expect("verified token cache lock poisoned")
            .get(token)
            .cloned();
        if let Some(claims) = known {
            // Signature, issuer and audience cannot have changed; time can.
            if claims.exp + LEEWAY_SECS < now {
                return Err(AuthError::Invalid("ExpiredSignature".into()));
            }
            return Ok(claims);
        }
        let claims = self.verify_signed(token).await?;
        let mut verified = self
            .verified
            .write()
            .expect("verified token cache lock poisoned");
        if verified.len() >= VERIFIED_CAPACITY {
            verified.clear();
        }
        verified.insert(token.to_owned(), claims.clone());
        Ok(claims)
    }

    async fn verify_signed(&self, token: &str) -> Result<Claims, AuthError> {
        let invalid = |reason: &str| AuthError::Invalid(reason.to_owned());
        let header = decode_header(token).map_err(|_| invalid("malformed"))?;
        if header.alg != ALGORITHM {
            return Err(invalid("algorithm not accepted"));
        }
        let kid = header.kid.ok_or_else(|| invalid("no key id"))?;
        let key = self.key(&kid).await?;
        let mut validation = Validation::new(ALGORITHM);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS as u64;
        decode::<Claims>(token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|error| AuthError::Invalid(error.to_string()))
    }

    fn cached(&self, kid: &str) -> Option<DecodingKey> {
        self.cache
            .read()
            .expect("key cache lock poisoned")
            .keys
            .get(kid)
            .cloned()
    }

    async fn key(&self, kid: &str) -> Result<DecodingKey, AuthError> {
        if let Some(key) = self.cached(kid) {
            return Ok(key);
        }
        let _one_fetch_at_a_time = self.refreshing.lock().await;
        if let Some(key) = self.cached(kid) {
            return Ok(key);
        }
        let fetched_recently = self
            .cache
            .read()
            .expect("key cache lock poisoned")
            .fetched_at
            .is_some_and(|at| at.elapsed() < MIN_REFRESH);
        if !fetched_recently {
            let keys = self.fetch_keys().await?;
            let mut cache = self.cache.write().expect("key cache lock poisoned");
            cache.keys = keys;
            cache.fetched_at = Some(Instant::now());
        }
        self.cached(kid)
            .ok_or_else(|| AuthError::Invalid("signed with an unknown key".into()))
    }

    async fn fetch_keys(&self) -> Result<HashMap<String, DecodingKey>, AuthError> {
        let unavailable = |e: &dyn std::fmt::Display| AuthError::KeysUnavailable(e.to_string());
        let set: JwkSet = self
            .client
            .get(&self.settings.jwks_url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| unavailable(&e))?
            .json()
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                DecodingKey::from_jwk(jwk).ok().map(|key| (kid, key))
            })
            .collect())
    }
}

/// The verified sender of a request. Extracting it verifies the bearer token; a request
/// without a valid one gets a 401 problem.
#[derive(Debug, Clone)]
pub struct Caller {
    pub customer_id: Uuid,
    pub roles: Vec<Role>,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.roles.contains(&Role::Admin)
    }
}

/// The bearer token of a request, if it has one.
pub fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let verifier = parts
            .extensions
            .get::<Arc<TokenVerifier>>()
            .cloned()
            .expect("the chassis puts the token verifier in every request");
        let token = bearer_token(parts).ok_or(AuthError::Missing)?;
        let claims = verifier.verify(token).await?;
        let caller = Caller {
            customer_id: claims.sub,
            roles: claims.roles,
        };
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

/// A [`Caller`] with the admin role; anyone else gets a 403 problem.
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if !caller.is_admin() {
            return Err(AuthError::Forbidden);
        }
        Ok(Admin(caller))
    }
}
