//! HTTP API of accounts: `/auth/signup`, `/auth/login`, `/auth/jwks` (public as `/api/auth/...`).

use std::sync::{Arc, LazyLock};

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
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
    store::{self, StoreError},
};

#[derive(Clone)]
struct AppState {
    rt: Arc<ServiceRuntime>,
    key: Arc<SigningKey>,
    token_ttl_secs: i64,
}

/// The routes and the OpenAPI document generated from them.
pub fn router(rt: Arc<ServiceRuntime>, key: Arc<SigningKey>, token_ttl_secs: i64) -> Router {
    let state = AppState {
        rt,
        key,
        token_ttl_secs,
    };
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
    #[error("hashing the password failed: {0}")]
    Hashing(String),
}

impl From<argon2::password_hash::Error> for ApiError {
    fn from(error: argon2::password_hash::Error) -> Self {
        ApiError::Hashing(error.to_string())
    }
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
            ApiError::Hashing(_) => Problem::internal(&self),
        }
        .into_response()
    }
}

/// Argon2id with the crate's defaults (19 MiB, 2 passes), off the async threads.
async fn hash_password(password: Password) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.expose().as_bytes())
            .map(|hash| hash.to_string())
    })
    .await
    .map_err(|e| ApiError::Hashing(e.to_string()))?
    .map_err(ApiError::from)
}

async fn password_matches(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .verify_password(password.as_bytes(), hash.as_str())
            .is_ok()
    })
    .await
    .unwrap_or(false)
}

/// Checked against when the email is unknown, so that the answer takes as long as for a
/// wrong password and does not tell which emails have accounts.
static DECOY_HASH: LazyLock<String> = LazyLock::new(|| {
    Argon2::default()
        .hash_password(b"decoy password, never valid")
        .expect("hashing a constant works")
        .to_string()
});

/// A new account, validated, with its `CustomerRegistered` event in the outbox; returns
/// that event, which says what was stored (email lower-cased, name trimmed).
pub async fn register(
    db: &Database,
    email: &str,
    name: &str,
    password: &str,
    is_admin: bool,
    trace: Option<TraceContext>,
) -> Result<CustomerRegistered, ApiError> {
    let email = Email::parse(email).map_err(ApiError::Validation)?;
    let name = Name::parse(name).map_err(ApiError::Validation)?;
    let password = Password::parse(password, &email).map_err(ApiError::Validation)?;
    let hash = hash_password(password).await?;
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
              (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn signup(
    State(state): State<AppState>,
    Extension(trace): Extension<TraceContext>,
    ApiJson(request): ApiJson<SignupRequest>,
) -> Result<Response, ApiError> {
    let rt = &state.rt;
    let registered = register(
        &rt.db,
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

/// Exchanges an email and password for a bearer token.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = TokenResponse),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn login(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let account = match Email::parse(&request.email) {
        Ok(email) => store::find_by_email(&state.rt.db, email.as_str()).await?,
        Err(_) => None,
    };
    let hash = account
        .as_ref()
        .map_or_else(|| DECOY_HASH.clone(), |a| a.password_hash.clone());
    let matches = password_matches(request.password, hash).await;
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
        exp: now + state.token_ttl_secs,
        nbf: now,
        iat: now,
        jti: Uuid::now_v7(),
        roles,
    };
    Ok(Json(TokenResponse {
        access_token: state.key.sign(&claims),
        token_type: "Bearer",
        expires_in: state.token_ttl_secs,
    }))
}

/// The public keys that verify tokens (RFC 7517).
#[utoipa::path(get, path = "/auth/jwks", tag = "auth",
    responses((status = 200, description = "a JWK set", body = Object)))]
async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(state.key.jwks()),
    )
}
