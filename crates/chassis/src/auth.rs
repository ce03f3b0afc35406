//! Token verification every service does itself (zero trust), and the [`Caller`] it
//! yields: who is asking and with which roles.
//!
//! Tokens are JWTs signed by the auth service with Ed25519 (`alg: EdDSA`); the keys come
//! from a JWKS URL (https, or plain http on this machine only), cached, fetched again
//! every `MALL_JWKS_REFRESH_SECS` so that a withdrawn key stops verifying (tokens it
//! signed included), and when a token names an unknown `kid` (at most once per
//! [`MIN_REFRESH`], so junk tokens cannot make us hammer the issuer). Pointing
//! `MALL_JWKS_URL` at an external OIDC issuer's JWKS works the same way. A token must
//! say when it was issued and may live no longer than `MALL_TOKEN_MAX_LIFETIME_SECS`.

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
/// Least time between two JWKS fetches caused by unknown key ids, and after a failed one.
pub const MIN_REFRESH: Duration = Duration::from_secs(10);
/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_SECS: i64 = 5;

#[derive(Args, Debug, Clone)]
pub struct TokenSettings {
    /// Where the token signing keys are published (the auth service, or an OIDC issuer):
    /// https, plain http to this machine (127.0.0.0/8, ::1, localhost), or a file
    /// (`file:///etc/mall/jwks.json`, as `mall admin jwks` writes it; read again as a URL
    /// would be fetched), which no one on the network can swap.
    #[arg(
        long,
        env = "MALL_JWKS_URL",
        default_value = "http://127.0.0.1:8086/auth/jwks",
        value_parser = parse_jwks_url
    )]
    pub jwks_url: String,

    /// How often the published keys are fetched again, in seconds, so that a key the
    /// issuer withdrew stops verifying tokens.
    #[arg(long, env = "MALL_JWKS_REFRESH_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub jwks_refresh_secs: u64,

    /// The longest a token may live (`exp - iat`), in seconds: at least the issuer's
    /// `MALL_TOKEN_TTL_SECS`. A longer-lived token is refused, whoever signed it.
    #[arg(long = "token-max-lifetime-secs", env = "MALL_TOKEN_MAX_LIFETIME_SECS", default_value_t = 900,
          value_parser = clap::value_parser!(i64).range(30..=86_400))]
    pub max_token_lifetime_secs: i64,

    /// The `iss` every token must carry.
    #[arg(
        long = "jwt-issuer",
        env = "MALL_JWT_ISSUER",
        default_value = "12st-mall"
    )]
    pub issuer: String,

    /// The `aud` every token must carry.
    #[arg(
        long = "jwt-audience",
        env = "MALL_JWT_AUDIENCE",
        default_value = "12st-mall"
    )]
    pub audience: String,
}

/// `value`, when it is a URL keys can be fetched from without anyone on the way being
/// able to swap them: https, or plain http to a loopback host.
fn parse_jwks_url(value: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(value)
        .map_err(|error| format!("MALL_JWKS_URL `{value}` is not a URL: {error}"))?;
    match url.scheme() {
        "https" => Ok(value.to_owned()),
        "http" if is_loopback(&url) => Ok(value.to_owned()),
        // An absolute path, written out: the URL parser would make `file:a` into `/a`.
        "file" if value.starts_with("file:///") && url.to_file_path().is_ok() => {
            Ok(value.to_owned())
        }
        _ => Err(format!(
            "MALL_JWKS_URL `{value}` must be https (plain http only to 127.0.0.0/8, ::1 or \
             localhost), or a file:/// of the keys: keys fetched in the clear could be \
             swapped on the way"
        )),
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host_str() {
        Some(host) if host.eq_ignore_ascii_case("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// A token must say when it was issued (`iat`, which [`Claims`] requires), not later than
/// now, and expire at most `max_lifetime_secs` after that: whoever holds a signing key
/// cannot mint a token that outlives the key's withdrawal by years.
fn check_lifetime(claims: &Claims, now: i64, max_lifetime_secs: i64) -> Result<(), AuthError> {
    if claims.iat > now + LEEWAY_SECS {
        return Err(AuthError::Invalid("issued in the future".into()));
    }
    if claims.exp.saturating_sub(claims.iat) > max_lifetime_secs + LEEWAY_SECS {
        return Err(AuthError::Invalid(format!(
            "lives longer than the {max_lifetime_secs} s allowed"
        )));
    }
    Ok(())
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
    /// The last fetch that succeeded.
    fetched_at: Option<Instant>,
    /// The last fetch, when it failed.
    failed_at: Option<Instant>,
}

/// A token whose signature checked out, and the key that signed it.
struct VerifiedToken {
    claims: Claims,
    kid: String,
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
    verified: RwLock<HashMap<String, VerifiedToken>>,
}

impl TokenVerifier {
    pub fn new(settings: TokenSettings) -> Self {
        TokenVerifier {
            settings,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(3))
                // Keys are fetched minutes apart: a kept connection would only meet the
                // issuer closing it.
                .pool_max_idle_per_host(0)
                .build()
                .expect("a plain HTTP client always builds"),
            cache: RwLock::new(KeyCache {
                keys: HashMap::new(),
                fetched_at: None,
                failed_at: None,
            }),
            refreshing: tokio::sync::Mutex::new(()),
            verified: RwLock::new(HashMap::new()),
        }
    }

    /// The token's claims when its algorithm, key, signature, `exp`, `nbf`, `iat`, `iss`
    /// and `aud` all check out.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        self.refresh_keys_when_due().await;
        let now = chrono::Utc::now().timestamp();
        let known = self
            .verified
            .read()
            .expect("verified token cache lock poisoned")
            .get(token)
            .map(|verified| verified.claims.clone());
        if let Some(claims) = known {
            // Signature, issuer, audience and lifetime cannot have changed; time can.
            if claims.exp + LEEWAY_SECS < now {
                return Err(AuthError::Invalid("ExpiredSignature".into()));
            }
            return Ok(claims);
        }
        let (claims, kid) = self.verify_signed(token).await?;
        check_lifetime(&claims, now, self.settings.max_token_lifetime_secs)?;
        // Under the key cache's lock, so that a refresh cannot drop the key in between.
        let cache = self.cache.read().expect("key cache lock poisoned");
        if cache.keys.contains_key(&kid) {
            let mut verified = self
                .verified
                .write()
                .expect("verified token cache lock poisoned");
            if verified.len() >= VERIFIED_CAPACITY {
                verified.clear();
            }
            let entry = VerifiedToken {
                claims: claims.clone(),
                kid,
            };
            verified.insert(token.to_owned(), entry);
        }
        Ok(claims)
    }

    /// Fetches the keys again once they are `jwks_refresh_secs` old. One request does it
    /// while the others go on with the keys at hand; when the issuer cannot be reached
    /// those stay, and the next try is [`MIN_REFRESH`] later.
    async fn refresh_keys_when_due(&self) {
        let due = || {
            let cache = self.cache.read().expect("key cache lock poisoned");
            let interval = Duration::from_secs(self.settings.jwks_refresh_secs);
            cache.fetched_at.is_some_and(|at| at.elapsed() >= interval)
                && cache.failed_at.is_none_or(|at| at.elapsed() >= MIN_REFRESH)
        };
        if !due() {
            return;
        }
        let Ok(_one_fetch_at_a_time) = self.refreshing.try_lock() else {
            return;
        };
        if !due() {
            return;
        }
        if let Err(error) = self.fetch_and_keep_keys().await {
            tracing::warn!(%error, "refreshing the token signing keys failed; keeping the ones at hand");
        }
    }

    /// Fetches the key set and makes it the one tokens are verified with, forgetting the
    /// tokens that keys no longer in it signed.
    async fn fetch_and_keep_keys(&self) -> Result<(), AuthError> {
        let fetched = self.fetch_keys().await;
        let mut cache = self.cache.write().expect("key cache lock poisoned");
        let keys = fetched.inspect_err(|_| cache.failed_at = Some(Instant::now()))?;
        self.verified
            .write()
            .expect("verified token cache lock poisoned")
            .retain(|_, token| keys.contains_key(&token.kid));
        cache.keys = keys;
        cache.fetched_at = Some(Instant::now());
        cache.failed_at = None;
        Ok(())
    }

    /// The claims and the key id of a token whose signature, `exp`, `nbf`, `iss` and `aud`
    /// check out.
    async fn verify_signed(&self, token: &str) -> Result<(Claims, String), AuthError> {
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
            .map(|data| (data.claims, kid))
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
        let (fetched_recently, failed_recently) = {
            let cache = self.cache.read().expect("key cache lock poisoned");
            let recent = |at: Option<Instant>| at.is_some_and(|at| at.elapsed() < MIN_REFRESH);
            (recent(cache.fetched_at), recent(cache.failed_at))
        };
        if failed_recently {
            // An issuer in trouble is not asked again for every token that comes meanwhile.
            return Err(AuthError::KeysUnavailable(format!(
                "the last try failed less than {} s ago",
                MIN_REFRESH.as_secs()
            )));
        }
        if !fetched_recently {
            self.fetch_and_keep_keys().await?;
        }
        self.cached(kid)
            .ok_or_else(|| AuthError::Invalid("signed with an unknown key".into()))
    }

    async fn fetch_keys(&self) -> Result<HashMap<String, DecodingKey>, AuthError> {
        let unavailable = |e: &dyn std::fmt::Display| AuthError::KeysUnavailable(e.to_string());
        let set: JwkSet = match reqwest::Url::parse(&self.settings.jwks_url)
            .ok()
            .and_then(|url| url.to_file_path().ok())
        {
            Some(path) => {
                let read = tokio::fs::read(&path)
                    .await
                    .map_err(|e| unavailable(&format!("{}: {e}", path.display())))?;
                serde_json::from_slice(&read)
                    .map_err(|e| unavailable(&format!("{}: {e}", path.display())))?
            }
            None => self
                .client
                .get(&self.settings.jwks_url)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| unavailable(&e))?
                .json()
                .await
                .map_err(|e| unavailable(&e))?,
        };
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

#[cfg(test)]
mod tests {
    use std::sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    };

    use axum::{Json, Router, routing::get};
    use clap::Parser;
    use jsonwebtoken::{EncodingKey, Header, encode, jwk::Jwk};

    use super::*;

    /// Two Ed25519 keys (PKCS#8 PEM, seeds of 0x01 and 0x02 bytes), for tests only.
    const FIRST_KEY: &str = "-----BEGIN PRIVATE KEY-----\n\
        MC4CAQAwBQYDK2VwBCIEIAEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB\n\
        -----END PRIVATE KEY-----\n";
    const SECOND_KEY: &str = "-----BEGIN PRIVATE KEY-----\n\
        MC4CAQAwBQYDK2VwBCIEIAICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIC\n\
        -----END PRIVATE KEY-----\n";

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        tokens: TokenSettings,
    }

    fn claims(now: i64, lifetime: i64) -> Claims {
        Claims {
            iss: "12st-mall".into(),
            aud: "12st-mall".into(),
            sub: Uuid::now_v7(),
            exp: now + lifetime,
            nbf: now,
            iat: now,
            jti: Uuid::now_v7(),
            roles: vec![Role::Customer],
        }
    }

    #[test]
    fn the_jwks_is_fetched_over_https_or_on_this_machine_only() {
        for accepted in [
            "https://issuer.example/.well-known/jwks.json",
            "http://127.0.0.1:8086/auth/jwks",
            "http://127.9.8.7/jwks",
            "http://[::1]:8086/auth/jwks",
            "http://localhost:8086/auth/jwks",
            "file:///etc/mall/jwks/jwks.json",
        ] {
            assert_eq!(parse_jwks_url(accepted).as_deref(), Ok(accepted));
        }
        for refused in [
            "http://auth:8086/auth/jwks",
            "http://10.0.0.7:8086/auth/jwks",
            "http://[2001:db8::1]/jwks",
            "http://localhost.evil.example/jwks",
            "ftp://issuer.example/jwks",
            "file://fileserver/jwks.json",
            "file:relative/jwks.json",
            "issuer.example/jwks",
        ] {
            let error = parse_jwks_url(refused).unwrap_err();
            assert!(error.contains("MALL_JWKS_URL"), "{refused}: {error}");
        }
        let error = Cli::try_parse_from(["test", "--jwks-url", "http://auth:8086/auth/jwks"])
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("must be https"), "{error}");
        let defaults = Cli::try_parse_from(["test"]).unwrap().tokens;
        assert_eq!(defaults.max_token_lifetime_secs, 900);
    }

    #[test]
    fn a_token_lives_no_longer_than_allowed_from_when_it_was_issued() {
        let now = 1_800_000_000;
        assert!(check_lifetime(&claims(now, 900), now, 900).is_ok());
        assert!(check_lifetime(&claims(now, 900 + LEEWAY_SECS), now, 900).is_ok());
        let ten_years = claims(now, 10 * 365 * 24 * 3_600);
        assert!(check_lifetime(&ten_years, now, 900).is_err());
        let issued_later = Claims {
            iat: now + 3_600,
            exp: now + 3_600 + 600,
            ..claims(now, 600)
        };
        assert!(check_lifetime(&issued_later, now, 900).is_err());
        let overflowing = Claims {
            iat: i64::MIN,
            exp: i64::MAX,
            ..claims(now, 600)
        };
        assert!(check_lifetime(&overflowing, now, 900).is_err());
    }

    /// A token with `claims`, signed by the key `pem` under `kid`.
    fn signed(pem: &str, kid: &str, claims: &Claims) -> String {
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(kid.to_owned());
        encode(
            &header,
            claims,
            &EncodingKey::from_ed_pem(pem.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    /// A key's public half as published, under `kid`, and a token it signed.
    fn key(pem: &str, kid: &str) -> (Jwk, String) {
        let encoding = EncodingKey::from_ed_pem(pem.as_bytes()).unwrap();
        let mut public = Jwk::from_encoding_key(&encoding, ALGORITHM).unwrap();
        public.common.key_id = Some(kid.to_owned());
        let now = chrono::Utc::now().timestamp();
        (public, signed(pem, kid, &claims(now, 600)))
    }

    fn verifier_of(jwks_url: String, refresh_secs: u64) -> TokenVerifier {
        TokenVerifier::new(TokenSettings {
            jwks_url,
            jwks_refresh_secs: refresh_secs,
            max_token_lifetime_secs: 900,
            issuer: "12st-mall".into(),
            audience: "12st-mall".into(),
        })
    }

    /// A JWKS endpoint on this machine: it serves the keys published (a 503 while there
    /// are none, as an issuer in trouble) and counts how often it was asked.
    struct Issuer {
        published: Arc<Mutex<Option<JwkSet>>>,
        fetches: Arc<AtomicUsize>,
        url: String,
    }

    impl Issuer {
        async fn start(keys: Vec<Jwk>) -> Issuer {
            let published = Arc::new(Mutex::new(Some(JwkSet { keys })));
            let fetches = Arc::new(AtomicUsize::new(0));
            let (served, counted) = (published.clone(), fetches.clone());
            let jwks = get(move || async move {
                counted.fetch_add(1, Ordering::SeqCst);
                match served.lock().unwrap().clone() {
                    Some(set) => Json(set).into_response(),
                    None => StatusCode::SERVICE_UNAVAILABLE.into_response(),
                }
            });
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/jwks", listener.local_addr().unwrap());
            tokio::spawn(async move {
                axum::serve(listener, Router::new().route("/jwks", jwks))
                    .await
                    .unwrap();
            });
            Issuer {
                published,
                fetches,
                url,
            }
        }

        fn publish(&self, keys: Vec<Jwk>) {
            *self.published.lock().unwrap() = Some(JwkSet { keys });
        }

        fn fail(&self) {
            *self.published.lock().unwrap() = None;
        }

        fn fetches(&self) -> usize {
            self.fetches.load(Ordering::SeqCst)
        }

        fn verifier(&self, refresh_secs: u64) -> TokenVerifier {
            verifier_of(self.url.clone(), refresh_secs)
        }
    }

    #[tokio::test]
    async fn a_cached_token_is_refused_once_its_key_left_the_published_set() {
        let (first, first_token) = key(FIRST_KEY, "first");
        let (second, second_token) = key(SECOND_KEY, "second");
        let issuer = Issuer::start(vec![first.clone()]).await;
        let verifier = issuer.verifier(1);
        assert!(verifier.verify(&first_token).await.is_ok());

        // The issuer rotates: the first key is withdrawn, the second takes over.
        issuer.publish(vec![second.clone()]);
        assert!(
            verifier.verify(&first_token).await.is_ok(),
            "known until the keys are due for a refresh"
        );
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let refused = verifier.verify(&first_token).await.unwrap_err();
        assert!(refused.to_string().contains("unknown key"), "{refused}");
        assert!(verifier.verify(&second_token).await.is_ok());

        // Back in the set, its tokens verify again at the next refresh.
        issuer.publish(vec![second, first]);
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        assert!(verifier.verify(&first_token).await.is_ok());
    }

    #[tokio::test]
    async fn a_remembered_token_is_refused_once_it_expires() {
        let (first, _) = key(FIRST_KEY, "first");
        let issuer = Issuer::start(vec![first]).await;
        let verifier = issuer.verifier(300);
        let now = chrono::Utc::now().timestamp();
        // Expired a moment ago but within the clock skew tolerated: it verifies.
        let expiring = signed(
            FIRST_KEY,
            "first",
            &Claims {
                exp: now - LEEWAY_SECS + 1,
                ..claims(now - 60, 0)
            },
        );
        assert!(verifier.verify(&expiring).await.is_ok());
        assert!(
            verifier.verified.read().unwrap().contains_key(&expiring),
            "remembered, so the next check is the remembered token's"
        );

        tokio::time::sleep(Duration::from_secs(2)).await;
        let refused = verifier.verify(&expiring).await.unwrap_err();
        assert!(
            matches!(&refused, AuthError::Invalid(reason) if reason.contains("Expired")),
            "{refused}"
        );
        assert_eq!(issuer.fetches(), 1);
    }

    #[tokio::test]
    async fn an_unknown_key_id_fetches_the_keys_again_at_most_once_per_min_refresh() {
        let (first, first_token) = key(FIRST_KEY, "first");
        let (second, second_token) = key(SECOND_KEY, "second");
        let issuer = Issuer::start(vec![first.clone()]).await;
        let verifier = issuer.verifier(300);
        assert!(verifier.verify(&first_token).await.is_ok());
        assert_eq!(issuer.fetches(), 1);

        // The issuer adds a key. Right after a fetch, its tokens are not worth another.
        issuer.publish(vec![first, second]);
        let refused = verifier.verify(&second_token).await.unwrap_err();
        assert!(refused.to_string().contains("unknown key"), "{refused}");
        assert_eq!(issuer.fetches(), 1);

        // Later, the first token with the new key id fetches the keys and verifies.
        tokio::time::sleep(MIN_REFRESH).await;
        assert!(verifier.verify(&second_token).await.is_ok());
        assert_eq!(issuer.fetches(), 2);

        // Another unknown key id right after does not fetch them again.
        let now = chrono::Utc::now().timestamp();
        let unknown = signed(SECOND_KEY, "third", &claims(now, 600));
        let refused = verifier.verify(&unknown).await.unwrap_err();
        assert!(refused.to_string().contains("unknown key"), "{refused}");
        assert_eq!(issuer.fetches(), 2);
        assert!(verifier.verify(&first_token).await.is_ok());
    }

    #[tokio::test]
    async fn keys_can_come_from_a_file_and_a_missing_file_is_a_503() {
        let (first, first_token) = key(FIRST_KEY, "first");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("jwks.json");
        std::fs::write(
            &file,
            serde_json::to_vec(&JwkSet { keys: vec![first] }).unwrap(),
        )
        .unwrap();
        let url = format!("file://{}", file.display());
        assert_eq!(parse_jwks_url(&url).as_deref(), Ok(url.as_str()));
        assert!(verifier_of(url, 300).verify(&first_token).await.is_ok());

        let missing = format!("file://{}", dir.path().join("none.json").display());
        let refused = verifier_of(missing, 300)
            .verify(&first_token)
            .await
            .unwrap_err();
        assert!(
            matches!(refused, AuthError::KeysUnavailable(ref why) if why.contains("none.json")),
            "{refused}"
        );
    }

    #[tokio::test]
    async fn keys_that_cannot_be_fetched_refuse_the_token_with_a_503() {
        let (first, first_token) = key(FIRST_KEY, "first");
        let nothing_listens = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let verifier = verifier_of(format!("http://{nothing_listens}/jwks"), 300);
        let refused = verifier.verify(&first_token).await.unwrap_err();
        assert!(
            matches!(refused, AuthError::KeysUnavailable(_)),
            "{refused}"
        );
        let answer = refused.into_response();
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(answer.headers().contains_key(header::RETRY_AFTER));

        // Keys fetched before the issuer is in trouble keep verifying through it.
        let issuer = Issuer::start(vec![first]).await;
        let verifier = issuer.verifier(1);
        assert!(verifier.verify(&first_token).await.is_ok());
        issuer.fail();
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let fetches = issuer.fetches();
        assert!(verifier.verify(&first_token).await.is_ok());
        assert_eq!(issuer.fetches(), fetches + 1, "the refresh was tried");
        // A token not seen before needs the key itself.
        let now = chrono::Utc::now().timestamp();
        let unseen = signed(FIRST_KEY, "first", &claims(now, 600));
        assert!(verifier.verify(&unseen).await.is_ok());
    }

    #[tokio::test]
    async fn an_issuer_in_trouble_is_asked_once_per_min_refresh_not_once_per_token() {
        let (first, first_token) = key(FIRST_KEY, "first");
        let issuer = Issuer::start(vec![first]).await;
        issuer.fail();
        let verifier = issuer.verifier(300);
        for _ in 0..3 {
            let refused = verifier.verify(&first_token).await.unwrap_err();
            assert!(
                matches!(refused, AuthError::KeysUnavailable(_)),
                "{refused}"
            );
        }
        assert_eq!(issuer.fetches(), 1);
    }
}
