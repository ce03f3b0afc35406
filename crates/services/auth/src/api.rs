//! HTTP API of accounts: `/auth/signup`, `/auth/login`, `/auth/jwks` (public as `/api/auth/...`).

use std::sync::Arc;

use axum::{
    Extension, Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use chassis::{
    ServiceRuntime,
    auth::{Claims, Role},
    db::Database,
    openapi, outbox,
    problem::{ApiJson, Problem},
    trace::TraceContext,
};
use contracts::{Envelope, Event, events::CustomerRegistered};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    NAME,
    domain::{Email, Name, Password},
    keys::SigningKey,
    login_limit::{LoginLimit, TooManyAttempts},
    passwords::{HashingError, Passwords},
    store::{self, StoreError},
};

/// What signups and logins need besides the runtime.
#[derive(Clone)]
pub struct Accounts {
    pub key: Arc<SigningKey>,
    pub token_ttl_secs: i64,
    pub passwords: Passwords,
    pub login_limit: Arc<LoginLimit>,
}

#[derive(Clone)]
struct AppState {
    rt: Arc<ServiceRuntime>,
    accounts: Accounts,
}

/// The routes and the OpenAPI document generated from them.
pub fn router(rt: Arc<ServiceRuntime>, accounts: Accounts) -> Router {
    let state = AppState { rt, accounts };
    let (router, document) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(signup))
        .routes(routes!(login))
        .routes(routes!(jwks))
        .with_state(state)
        .split_for_parts();
    openapi::serve_document(router, document)
}

#[derive(OpenApi)]
#[openapi(info(title = "12st mall auth service", description = "Accounts and tokens"))]
struct ApiDoc;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Validation(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("wrong email or password")]
    BadCredentials,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Hashing(#[from] HashingError),
    #[error(transparent)]
    TooManyAttempts(#[from] TooManyAttempts),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let detail = self.to_string();
        match self {
            ApiError::Validation(_) => Problem::validation(detail),
            ApiError::Store(StoreError::EmailTaken) => Problem::new(
                StatusCode::CONFLICT,
                "email-taken",
                "This email is already registered",
                detail,
            ),
            ApiError::BadCredentials => Problem::new(
                StatusCode::UNAUTHORIZED,
                "bad-credentials",
                "Login failed",
                detail,
            ),
            ApiError::Store(StoreError::Database(error)) | ApiError::Database(error) => {
                Problem::database(&error)
            }
            ApiError::Hashing(HashingError::Busy) => Problem::unavailable(detail, 1),
            ApiError::Hashing(HashingError::Failed(_)) => Problem::internal(&self),
            ApiError::TooManyAttempts(ref refused) => Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "login-attempts",
                "Too many login attempts",
                detail,
            )
            .with_retry_after(refused.retry_after_secs()),
        }
        .into_response()
    }
}

/// A new account, validated, with its `CustomerRegistered` event in the outbox; returns
/// that event, which says what was stored (email lower-cased, name trimmed).
pub async fn register(
    db: &Database,
    passwords: &Passwords,
    email: &str,
    name: &str,
    password: &str,
    is_admin: bool,
    trace: Option<TraceContext>,
) -> Result<CustomerRegistered, ApiError> {
    let email = Email::parse(email).map_err(ApiError::Validation)?;
    let name = Name::parse(name).map_err(ApiError::Validation)?;
    let password = Password::parse(password, &email).map_err(ApiError::Validation)?;
    let hash = passwords.hash(password).await?;
    let id = Uuid::now_v7();
    let event = CustomerRegistered {
        customer_id: id,
        email: email.as_str().to_owned(),
        name: name.as_str().to_owned(),
    };
    let mut tx = db.begin_write().await?;
    store::insert_customer(&mut tx, id, email.as_str(), name.as_str(), &hash, is_admin).await?;
    let envelope =
        Envelope::new(NAME, id, &event, id).with_traceparent(trace.map(|t| t.to_string()));
    outbox::enqueue(&mut tx, CustomerRegistered::TOPIC, &envelope).await?;
    tx.commit().await?;
    Ok(event)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SignupRequest {
    email: String,
    password: String,
    name: String,
}

#[derive(Debug, Serialize, ToSchema)]
struct Customer {
    customer_id: Uuid,
    email: String,
    name: String,
}

/// Opens an account: a valid email, a name, and a password of at least 8 characters
/// that is not the email.
#[utoipa::path(post, path = "/auth/signup", tag = "auth", request_body = SignupRequest,
    responses((status = 201, body = Customer),
              (status = 409, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json"),
              (status = 503, body = Problem, content_type = "application/problem+json")))]
async fn signup(
    State(state): State<AppState>,
    Extension(trace): Extension<TraceContext>,
    ApiJson(request): ApiJson<SignupRequest>,
) -> Result<Response, ApiError> {
    let rt = &state.rt;
    let registered = register(
        &rt.db,
        &state.accounts.passwords,
        &request.email,
        &request.name,
        &request.password,
        false,
        Some(trace),
    )
    .await?;
    rt.outbox.wake();
    let id = registered.customer_id;
    let customer = Customer {
        customer_id: id,
        email: registered.email,
        name: registered.name,
    };
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/api/customers/{id}"))],
        Json(customer),
    )
        .into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    email: String,
    password: String,
}

#[derive(Debug, Serialize, ToSchema)]
struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
}

/// Exchanges an email and password for a bearer token. Each email has a budget of
/// attempts (429 when it is spent), and a login that finds every password check busy
/// gets a 503; both say when to retry.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = TokenResponse),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json"),
              (status = 429, body = Problem, content_type = "application/problem+json"),
              (status = 503, body = Problem, content_type = "application/problem+json")))]
async fn login(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let accounts = &state.accounts;
    // No account has a malformed email, and saying so tells nothing: no hash to spend.
    let email = Email::parse(&request.email).map_err(|_| ApiError::BadCredentials)?;
    accounts.login_limit.attempt(&email)?;
    let account = store::find_by_email(&state.rt.db, email.as_str()).await?;
    let stored_hash = account.as_ref().map(|a| a.password_hash.clone());
    let matches = accounts
        .passwords
        .matches(request.password, stored_hash)
        .await?;
    let account = account
        .filter(|_| matches)
        .ok_or(ApiError::BadCredentials)?;

    let now = chrono::Utc::now().timestamp();
    let mut roles = vec![Role::Customer];
    if account.is_admin {
        roles.push(Role::Admin);
    }
    let settings = &state.rt.settings.tokens;
    let claims = Claims {
        iss: settings.issuer.clone(),
        aud: settings.audience.clone(),
        sub: account.id,
        exp: now + accounts.token_ttl_secs,
        nbf: now,
        iat: now,
        jti: Uuid::now_v7(),
        roles,
    };
    Ok(Json(TokenResponse {
        access_token: accounts.key.sign(&claims),
        token_type: "Bearer",
        expires_in: accounts.token_ttl_secs,
    }))
}

/// The public keys that verify tokens (RFC 7517).
#[utoipa::path(get, path = "/auth/jwks", tag = "auth",
    responses((status = 200, description = "a JWK set", body = Object)))]
async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(state.accounts.key.jwks()),
    )
}
