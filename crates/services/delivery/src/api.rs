//! HTTP API of deliveries: `/deliveries/{order_id}/complete` (public as `/api/...`).

use std::sync::Arc;

use axum::{
    Extension, Json, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use chassis::{
    ServiceRuntime, auth::Admin, dead_letters, openapi, outbox, problem::Problem,
    trace::TraceContext,
};
use contracts::{Envelope, Event, events::DeliveryCompleted};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    NAME,
    domain::{self, DeliveryStatus},
    store,
};

pub fn router(rt: Arc<ServiceRuntime>) -> Router {
    let (router, document) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(complete_delivery))
        .routes(routes!(deliveries_on_their_way))
        .with_state(rt.clone())
        .merge(dead_letters::routes(rt))
        .split_for_parts();
    openapi::serve_document(router, document)
}

#[derive(OpenApi)]
#[openapi(info(
    title = "12st mall delivery service",
    description = "Deliveries of orders"
))]
struct ApiDoc;

#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error("no delivery for order {0}")]
    NotFound(String),
    #[error("the delivery of this order is {0}, it cannot be completed")]
    NotCompletable(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let detail = self.to_string();
        match self {
            ApiError::NotFound(_) => Problem::not_found(detail),
            ApiError::NotCompletable(_) => Problem::new(
                StatusCode::CONFLICT,
                "not-completable",
                "The delivery cannot be completed",
                detail,
            ),
            ApiError::Database(error) => Problem::database(&error),
        }
        .into_response()
    }
}

#[derive(Debug, Serialize, ToSchema)]
struct DeliveryView {
    order_id: Uuid,
    delivery_id: Uuid,
    status: String,
}

#[derive(Debug, Serialize, ToSchema)]
struct OnItsWay {
    order_id: Uuid,
    delivery_id: Uuid,
    address: String,
    /// When the delivery started (RFC 3339).
    started_at: chrono::DateTime<chrono::Utc>,
}

/// Deliveries on their way, oldest first, at most 200: what is left to complete (admin).
#[utoipa::path(get, path = "/deliveries", tag = "delivery",
    security(("bearer" = [])),
    responses((status = 200, body = Vec<OnItsWay>),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json")))]
async fn deliveries_on_their_way(
    State(rt): State<Arc<ServiceRuntime>>,
    _: Admin,
) -> Result<Json<Vec<OnItsWay>>, ApiError> {
    let rows = store::on_their_way(&rt.db, 200).await?;
    Ok(Json(
        rows.into_iter()
            .map(|(order_id, delivery_id, address, started_at)| OnItsWay {
                order_id,
                delivery_id,
                address,
                started_at,
            })
            .collect(),
    ))
}

/// Marks an order's delivery as handed over (admin). Completing it again changes nothing.
#[utoipa::path(post, path = "/deliveries/{order_id}/complete", tag = "delivery",
    params(("order_id" = String, Path, description = "order id")),
    security(("bearer" = [])),
    responses((status = 200, body = DeliveryView),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, body = Problem, content_type = "application/problem+json")))]
async fn complete_delivery(
    State(rt): State<Arc<ServiceRuntime>>,
    Extension(trace): Extension<TraceContext>,
    _: Admin,
    Path(raw_id): Path<String>,
) -> Result<Json<DeliveryView>, ApiError> {
    let order_id = Uuid::parse_str(&raw_id).map_err(|_| ApiError::NotFound(raw_id.clone()))?;
    let mut tx = rt.db.begin_write().await?;
    chassis::db::lock(&mut tx, order_id).await?;
    let shipment = store::find(&mut tx, order_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(raw_id.clone()))?;
    match domain::completion(shipment.status) {
        Ok(false) => {}
        Ok(true) => {
            store::set_status(&mut tx, order_id, DeliveryStatus::Completed).await?;
            let completed = DeliveryCompleted {
                order_id,
                delivery_id: shipment.delivery_id,
            };
            let envelope = Envelope::new(NAME, order_id, &completed, order_id)
                .with_traceparent(Some(trace.to_string()));
            outbox::enqueue(&mut tx, DeliveryCompleted::TOPIC, &envelope).await?;
        }
        Err(other) => return Err(ApiError::NotCompletable(other.as_str().to_lowercase())),
    }
    rt.commit(tx).await?;
    Ok(Json(DeliveryView {
        order_id,
        delivery_id: shipment.delivery_id,
        status: "COMPLETED".into(),
    }))
}
