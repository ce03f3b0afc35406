//! HTTP API of orders: `/orders...` (public as `/api/orders...`).

use std::{sync::Arc, time::Duration};

use axum::{
    Extension, Json, Router,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use chassis::{
    ServiceRuntime,
    auth::Caller,
    breaker::CircuitBreaker,
    dead_letters,
    instances::Instances,
    openapi,
    problem::{ApiJson, Problem},
    server::TRACEPARENT,
    spans::{self, Span},
    trace::TraceContext,
};
use rand::Rng;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    CommandError,
    domain::{Address, Order, OrderCommand, OrderError, OrderStatus, Quantity, RequestStatus},
    execute,
    metrics::OrderMetrics,
    store::{self, StoreError, StoredEvent},
};

#[derive(Clone)]
struct AppState {
    rt: Arc<ServiceRuntime>,
    catalogue: ProductCatalogue,
    saga: Arc<OrderMetrics>,
}

/// The routes and the OpenAPI document generated from them.
pub fn router(
    rt: Arc<ServiceRuntime>,
    catalogue: ProductCatalogue,
    saga: Arc<OrderMetrics>,
) -> Router {
    let (router, document) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(place_order))
        .routes(routes!(get_order, change_address))
        .routes(routes!(undo_last_change))
        .routes(routes!(get_history))
        .routes(routes!(cancel_order))
        .with_state(AppState {
            rt: rt.clone(),
            catalogue,
            saga,
        })
        .merge(dead_letters::routes(rt))
        .split_for_parts();
    openapi::serve_document(router, document)
}

#[derive(OpenApi)]
#[openapi(info(
    title = "12st mall order service",
    description = "Orders, event-sourced"
))]
struct ApiDoc;

/// Asks the product service for what an order needs to know of a product: each attempt
/// bounded by a timeout, a failed attempt retried (the call is an idempotent GET) after a
/// jittered pause, and the whole call behind a circuit breaker. When the breaker is open
/// the fallback is a 503 problem with `Retry-After`: an order needs the current price, so
/// there is no stale-price fallback.
#[derive(Clone)]
pub struct ProductCatalogue {
    client: reqwest::Client,
    instances: Instances,
    retries: u32,
    breaker: Arc<CircuitBreaker>,
}

#[derive(Debug, Deserialize)]
struct ProductInfo {
    price: u64,
}

impl ProductCatalogue {
    pub fn new(
        instances: Instances,
        timeout: Duration,
        idle_timeout: Duration,
        retries: u32,
        breaker: CircuitBreaker,
    ) -> Result<Self, reqwest::Error> {
        Ok(ProductCatalogue {
            client: reqwest::Client::builder()
                .timeout(timeout)
                .pool_idle_timeout(idle_timeout)
                .build()?,
            instances,
            retries,
            breaker: Arc::new(breaker),
        })
    }

    /// The product's unit price, `None` when there is no such product.
    async fn price(&self, product_id: Uuid, trace: TraceContext) -> Result<Option<u64>, ApiError> {
        let permit = self
            .breaker
            .admit()
            .map_err(|open| ApiError::ProductCircuitOpen(open.retry_after))?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.fetch_price(product_id, trace).await {
                Ok(price) => {
                    permit.succeeded();
                    return Ok(price);
                }
                Err(error) if attempt <= self.retries => {
                    tracing::info!(%error, attempt, "asking product failed; retrying");
                    let jitter = rand::rng().random_range(0..50);
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt) + jitter))
                        .await;
                }
                Err(error) => {
                    tracing::warn!(%error, attempt, "product service unavailable");
                    permit.failed();
                    return Err(ApiError::ProductUnavailable);
                }
            }
        }
    }

    async fn fetch_price(
        &self,
        product_id: Uuid,
        trace: TraceContext,
    ) -> Result<Option<u64>, String> {
        // An instance that cannot be reached (one of several, killed) costs no attempt:
        // the next one is asked at once.
        let mut sent = Err((false, String::new()));
        let mut span = None;
        for base in self.instances.in_turn() {
            let url = format!("{base}/products/{product_id}");
            span = spans::http_client("GET", "product", &url);
            let traceparent = span.as_ref().map_or_else(|| trace.child(), Span::context);
            sent = self
                .client
                .get(url)
                .header(TRACEPARENT, traceparent.to_string())
                .send()
                .await
                .map_err(|error| (error.is_connect(), error.to_string()));
            if let (Err((_, error)), Some(span)) = (&sent, &span) {
                span.fail(error.clone());
            }
            if !matches!(sent, Err((true, _))) {
                break;
            }
            self.instances.unreachable(base);
        }
        let response = sent.map_err(|(_, error)| error)?;
        if let Some(span) = &span {
            span.answered(response.status().as_u16());
        }
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            status if status.is_success() => {
                let product: ProductInfo = response.json().await.map_err(|e| e.to_string())?;
                Ok(Some(product.price))
            }
            status => Err(format!("answered {status}")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error("{0}")]
    Validation(String),
    #[error("no order with id {0}")]
    NotFound(String),
    #[error("product {0} does not exist")]
    UnknownProduct(Uuid),
    #[error("the product service did not answer")]
    ProductUnavailable,
    #[error("the product service is failing; orders are refused until it recovers")]
    ProductCircuitOpen(Duration),
    #[error("this Idempotency-Key was used for a different request")]
    IdempotencyKeyReused,
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let detail = self.to_string();
        match self {
            ApiError::Validation(_) => Problem::validation(detail),
            ApiError::Command(CommandError::Order(
                OrderError::NotCancellable(_)
                | OrderError::NotChangeable(_)
                | OrderError::NothingToUndo
                | OrderError::RequestPending(_)
                | OrderError::TooManyChanges,
            )) => Problem::new(
                StatusCode::CONFLICT,
                "not-allowed-now",
                "The order cannot do that in its state",
                detail,
            ),
            ApiError::Command(CommandError::Order(_)) => Problem::validation(detail),
            ApiError::Command(CommandError::Store(StoreError::Conflict(_)))
            | ApiError::Store(StoreError::Conflict(_)) => Problem::new(
                StatusCode::CONFLICT,
                "conflict",
                "The order changed meanwhile",
                "try again",
            ),
            ApiError::Command(
                CommandError::Database(error) | CommandError::Store(StoreError::Database(error)),
            )
            | ApiError::Store(StoreError::Database(error))
            | ApiError::Database(error) => Problem::database(&error),
            ApiError::Command(error) => Problem::internal(&error),
            ApiError::UnknownProduct(_) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown-product",
                "The product does not exist",
                detail,
            ),
            ApiError::NotFound(_) => Problem::not_found(detail),
            ApiError::ProductUnavailable => Problem::unavailable(detail, 5),
            ApiError::ProductCircuitOpen(retry_after) => {
                Problem::unavailable(detail, retry_after.as_secs_f64().ceil().max(1.0) as u64)
            }
            ApiError::IdempotencyKeyReused => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency-Key reused",
                detail,
            ),
            ApiError::Store(error) => Problem::internal(&error),
        }
        .into_response()
    }
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PlaceOrderRequest {
    product_id: Uuid,
    quantity: i64,
    address: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
struct OrderAccepted {
    order_id: Uuid,
    status: OrderStatus,
}

const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// An `Idempotency-Key`: 1 to 255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::Validation("Idempotency-Key must be 1 to 255 visible ASCII characters".into())
        })?;
    Ok(Some(key.to_owned()))
}

/// Places an order: 202 PENDING while the saga runs. A repeated `Idempotency-Key` gets
/// the first answer again.
#[utoipa::path(post, path = "/orders", tag = "order", request_body = PlaceOrderRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters")),
    security(("bearer" = [])),
    responses((status = 202, body = OrderAccepted),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json"),
              (status = 503, body = Problem, content_type = "application/problem+json")))]
async fn place_order(
    State(state): State<AppState>,
    Extension(trace): Extension<TraceContext>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(request): ApiJson<PlaceOrderRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let quantity = Quantity::parse(request.quantity).map_err(ApiError::Validation)?;
    let address = Address::parse(&request.address).map_err(ApiError::Validation)?;
    let fingerprint = serde_json::to_string(&request).expect("requests always serialise");
    let customer_id = caller.customer_id;
    let rt = &state.rt;

    if let Some(key) = &key {
        let mut conn = rt.db.read().await?;
        if let Some(answer) = replay(&mut conn, customer_id, key, &fingerprint).await? {
            return Ok(answer);
        }
    }
    let unit_price = state
        .catalogue
        .price(request.product_id, trace)
        .await?
        .ok_or(ApiError::UnknownProduct(request.product_id))?;
    let command = OrderCommand::Place {
        customer_id,
        product_id: request.product_id,
        quantity,
        unit_price,
        address,
    };

    let order_id = Uuid::now_v7();
    let mut tx = rt.db.begin_write().await?;
    if let Some(key) = &key {
        // A concurrent request with the same key may have committed while we asked product;
        // the customer's lock makes the one that comes second see it.
        chassis::db::lock(&mut tx, customer_id).await?;
        if let Some(answer) = replay(&mut tx, customer_id, key, &fingerprint).await? {
            return Ok(answer);
        }
    }
    let order = execute(&mut tx, order_id, command, trace, None, &state.saga)
        .await?
        .expect("a placed order exists");
    let accepted = serde_json::to_string(&OrderAccepted {
        order_id,
        status: order.status,
    })
    .expect("answers always serialise");
    if let Some(key) = &key {
        store::save_idempotent_answer(&mut tx, customer_id, key, &fingerprint, order_id, &accepted)
            .await?;
    }
    rt.commit(tx).await?;
    tracing::info!(%order_id, "order placed");
    Ok(accepted_response(order_id, accepted, false))
}

/// The stored answer to a repeated key, or a refusal when the key came with another request.
async fn replay(
    conn: &mut impl chassis::db::AsConn,
    customer_id: Uuid,
    key: &str,
    fingerprint: &str,
) -> Result<Option<Response>, ApiError> {
    let Some((first_fingerprint, answer)) =
        store::find_idempotent_answer(conn, customer_id, key).await?
    else {
        return Ok(None);
    };
    if first_fingerprint != fingerprint {
        return Err(ApiError::IdempotencyKeyReused);
    }
    let accepted: OrderAccepted =
        serde_json::from_str(&answer).map_err(|e| ApiError::Validation(e.to_string()))?;
    Ok(Some(accepted_response(accepted.order_id, answer, true)))
}

fn accepted_response(order_id: Uuid, body: String, replayed: bool) -> Response {
    let mut response = (
        StatusCode::ACCEPTED,
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::LOCATION, format!("/api/orders/{order_id}")),
        ],
        body,
    )
        .into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// The order and its stream, if it exists and `caller` may see it: its customer or an
/// admin. Anyone else's order is "not found", so its existence does not leak.
async fn load_order(
    rt: &ServiceRuntime,
    caller: &Caller,
    raw_id: &str,
) -> Result<(Order, Vec<StoredEvent>), ApiError> {
    let not_found = || ApiError::NotFound(raw_id.to_owned());
    let order_id = Uuid::parse_str(raw_id).map_err(|_| not_found())?;
    let mut conn = rt.db.read().await?;
    match store::load(&mut conn, order_id).await? {
        (Some(order), stream) if order.customer_id == caller.customer_id || caller.is_admin() => {
            Ok((order, stream))
        }
        _ => Err(not_found()),
    }
}

/// One of the caller's orders.
#[utoipa::path(get, path = "/orders/{id}", tag = "order",
    params(("id" = String, Path, description = "order id")),
    security(("bearer" = [])),
    responses((status = 200, body = Order),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_order(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Order>, ApiError> {
    let (order, _) = load_order(&state.rt, &caller, &id).await?;
    Ok(Json(order))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct HistoryPage {
    /// Events per page, 1 to 100 (default 50).
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct History {
    order_id: Uuid,
    items: Vec<StoredEvent>,
    /// Where the next page starts; none after the last event.
    next_cursor: Option<String>,
}

const DEFAULT_HISTORY_PAGE: u32 = 50;
const MAX_HISTORY_PAGE: u32 = 100;

/// The stored events of one of the caller's orders, oldest first, a page at a time, each
/// with the fields it changed.
#[utoipa::path(get, path = "/orders/{id}/history", tag = "order",
    params(("id" = String, Path, description = "order id"), HistoryPage),
    security(("bearer" = [])),
    responses((status = 200, body = History),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn get_history(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(page): Query<HistoryPage>,
) -> Result<Json<History>, ApiError> {
    let limit = page.limit.unwrap_or(DEFAULT_HISTORY_PAGE);
    if !(1..=MAX_HISTORY_PAGE).contains(&limit) {
        return Err(ApiError::Validation(format!(
            "limit must be between 1 and {MAX_HISTORY_PAGE}"
        )));
    }
    let after = match page.cursor {
        Some(cursor) => cursor
            .parse::<u32>()
            .map_err(|_| ApiError::Validation("cursor is not one this API gave".into()))?,
        None => 0,
    };
    let (order, events) = load_order(&state.rt, &caller, &id).await?;
    let mut items: Vec<StoredEvent> = events
        .into_iter()
        .filter(|event| event.version > after)
        .take(limit as usize + 1)
        .collect();
    let next_cursor = (items.len() > limit as usize).then(|| {
        items.truncate(limit as usize);
        items
            .last()
            .map_or(after, |event| event.version)
            .to_string()
    });
    Ok(Json(History {
        order_id: order.order_id,
        items,
        next_cursor,
    }))
}

/// Runs a customer's command on one of their orders and answers with the order: 200 when
/// it is done, 202 when it became a request that delivery has yet to answer.
async fn command_own_order(
    state: &AppState,
    caller: &Caller,
    raw_id: &str,
    command: OrderCommand,
    trace: TraceContext,
) -> Result<(StatusCode, Json<Order>), ApiError> {
    let (order, _) = load_order(&state.rt, caller, raw_id).await?;
    let mut tx = state.rt.db.begin_write().await?;
    let order = execute(&mut tx, order.order_id, command, trace, None, &state.saga)
        .await?
        .expect("a loaded order exists");
    state.rt.commit(tx).await?;
    let status = match &order.request {
        Some(request) if request.status == RequestStatus::Pending => StatusCode::ACCEPTED,
        _ => StatusCode::OK,
    };
    Ok((status, Json(order)))
}

/// Cancels one of the caller's orders, until its delivery is completed. A PENDING order is
/// cancelled at once (200). Once confirmed, the cancel is a request (202, `request` shows
/// it): delivery calls the parcel back and the order becomes CANCELLED, or delivery
/// refuses because it was delivered and `request` says so. Stock and payment are undone by
/// their services when they see `OrderCancelled`.
#[utoipa::path(post, path = "/orders/{id}/cancel", tag = "order",
    params(("id" = String, Path, description = "order id")),
    security(("bearer" = [])),
    responses((status = 200, body = Order),
              (status = 202, body = Order),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, body = Problem, content_type = "application/problem+json")))]
async fn cancel_order(
    State(state): State<AppState>,
    Extension(trace): Extension<TraceContext>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Order>), ApiError> {
    command_own_order(&state, &caller, &id, OrderCommand::Cancel, trace).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct OrderChange {
    /// The new delivery address: not blank, at most 500 characters.
    address: String,
}

/// Asks to change the delivery address of a confirmed order not yet delivered (while
/// PENDING the order is locked): 202 with the pending `request`; the address changes once
/// delivery redirects the parcel. The same address again changes nothing (200).
#[utoipa::path(patch, path = "/orders/{id}", tag = "order", request_body = OrderChange,
    params(("id" = String, Path, description = "order id")),
    security(("bearer" = [])),
    responses((status = 200, body = Order),
              (status = 202, body = Order),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn change_address(
    State(state): State<AppState>,
    Extension(trace): Extension<TraceContext>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(change): ApiJson<OrderChange>,
) -> Result<(StatusCode, Json<Order>), ApiError> {
    let address = Address::parse(&change.address).map_err(ApiError::Validation)?;
    command_own_order(
        &state,
        &caller,
        &id,
        OrderCommand::ChangeAddress { address },
        trace,
    )
    .await
}

/// Asks to undo the caller's last address change (202, a request delivery answers like a
/// change); once granted it is a compensating event, and history keeps both.
#[utoipa::path(post, path = "/orders/{id}/undo", tag = "order",
    params(("id" = String, Path, description = "order id")),
    security(("bearer" = [])),
    responses((status = 202, body = Order),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, body = Problem, content_type = "application/problem+json")))]
async fn undo_last_change(
    State(state): State<AppState>,
    Extension(trace): Extension<TraceContext>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Order>), ApiError> {
    command_own_order(&state, &caller, &id, OrderCommand::Undo, trace).await
}
