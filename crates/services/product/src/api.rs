//! HTTP API of the catalogue: `/products...` (public as `/api/products...`).

use std::sync::Arc;

use axum::{
    Extension, Json, Router,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use chassis::{
    ServiceRuntime,
    auth::Admin,
    dead_letters, openapi, outbox,
    problem::{ApiJson, Problem},
    trace::TraceContext,
};
use chrono::Utc;
use contracts::{
    Envelope, Event,
    events::{ProductAdded, StockAdjusted},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    domain::{Description, Price, ProductName, Stock, StockDelta, StockError},
    store::{self, Product},
};

/// The routes and the OpenAPI document generated from them.
pub fn router(rt: Arc<ServiceRuntime>) -> Router {
    let (router, document) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(list_products, add_product))
        .routes(routes!(get_product))
        .routes(routes!(adjust_stock))
        .with_state(rt.clone())
        .merge(dead_letters::routes(rt))
        .split_for_parts();
    openapi::serve_document(router, document)
}

#[derive(OpenApi)]
#[openapi(info(
    title = "12st mall product service",
    description = "Catalogue and stock"
))]
struct ApiDoc;

/// A product as the public API shows it; `stock` is what can be ordered now.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProductView {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub price: i64,
    pub stock: i64,
}

impl From<&Product> for ProductView {
    fn from(product: &Product) -> Self {
        ProductView {
            id: product.id,
            name: product.name.clone(),
            description: product.description.clone(),
            price: product.price,
            stock: product.available,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Validation(String),
    #[error("no product with id {0}")]
    NotFound(String),
    #[error(transparent)]
    Stock(#[from] StockError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Validation(detail) => Problem::validation(detail),
            ApiError::NotFound(_) => Problem::not_found(self.to_string()),
            ApiError::Stock(error) => Problem::new(
                StatusCode::CONFLICT,
                "insufficient-stock",
                "The stock cannot change that way",
                error.to_string(),
            ),
            ApiError::Database(error) => Problem::database(error),
        }
        .into_response()
    }
}

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::NotFound(raw.to_owned()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct Page {
    /// Products per page, 1 to 200 (default 50).
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct ProductPage {
    items: Vec<ProductView>,
    next_cursor: Option<Uuid>,
}

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 200;

/// The catalogue, oldest first, a page at a time.
#[utoipa::path(get, path = "/products", tag = "product", params(Page),
    responses((status = 200, body = ProductPage),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn list_products(
    State(rt): State<Arc<ServiceRuntime>>,
    Query(page): Query<Page>,
) -> Result<Json<ProductPage>, ApiError> {
    let limit = page.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::Validation(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    let cursor = page
        .cursor
        .map(|c| {
            Uuid::parse_str(&c)
                .map_err(|_| ApiError::Validation("cursor is not one this API gave".into()))
        })
        .transpose()?;
    let products = store::list_products(&rt.db, cursor, limit).await?;
    let next_cursor = (products.len() == limit as usize)
        .then(|| products.last().map(|p| p.id))
        .flatten();
    Ok(Json(ProductPage {
        items: products.iter().map(ProductView::from).collect(),
        next_cursor,
    }))
}

/// One product with its price and the units available now.
#[utoipa::path(get, path = "/products/{id}", tag = "product",
    params(("id" = String, Path, description = "product id")),
    responses((status = 200, body = ProductView),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_product(
    State(rt): State<Arc<ServiceRuntime>>,
    Path(id): Path<String>,
) -> Result<Json<ProductView>, ApiError> {
    let id = parse_id(&id)?;
    let mut conn = rt.db.read().await?;
    let product = store::find_product(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(id.to_string()))?;
    Ok(Json(ProductView::from(&product)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub price: i64,
    #[serde(default)]
    pub stock: i64,
}

/// Adds a product to the catalogue (admin).
#[utoipa::path(post, path = "/products", tag = "product", request_body = NewProduct,
    security(("bearer" = [])),
    responses((status = 201, body = ProductView),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn add_product(
    State(rt): State<Arc<ServiceRuntime>>,
    _: Admin,
    Extension(trace): Extension<TraceContext>,
    ApiJson(input): ApiJson<NewProduct>,
) -> Result<Response, ApiError> {
    let product = create_product(&rt, input, Some(trace)).await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/api/products/{}", product.id))],
        Json(ProductView::from(&product)),
    )
        .into_response())
}

/// Validates and stores a new product and its `ProductAdded` event.
pub async fn create_product(
    rt: &ServiceRuntime,
    input: NewProduct,
    trace: Option<TraceContext>,
) -> Result<Product, ApiError> {
    let name = ProductName::parse(&input.name).map_err(ApiError::Validation)?;
    let description = Description::parse(&input.description).map_err(ApiError::Validation)?;
    let price = Price::parse(input.price).map_err(ApiError::Validation)?;
    let initial = u32::try_from(input.stock)
        .map_err(|_| ApiError::Validation("stock must not be negative".into()))?;
    let stock = Stock::new(initial)?;
    let now = Utc::now();
    let product = Product {
        id: Uuid::now_v7(),
        name: name.as_str().to_owned(),
        description: description.as_str().to_owned(),
        price: price.won() as i64,
        available: i64::from(stock.available),
        reserved: 0,
        sold: 0,
        created_at: now,
        updated_at: now,
    };
    let event = ProductAdded {
        product_id: product.id,
        name: product.name.clone(),
        price: price.won(),
        stock: stock.available,
    };
    let mut tx = rt.db.begin_write().await?;
    store::insert_product(&mut tx, &product).await?;
    let envelope = Envelope::new(rt.name, product.id, &event, product.id)
        .with_traceparent(trace.map(|t| t.to_string()));
    outbox::enqueue(&mut tx, ProductAdded::TOPIC, &envelope).await?;
    rt.commit(tx).await?;
    Ok(product)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct StockChange {
    /// Units received (positive) or written off (negative); not zero.
    delta: i64,
}

/// Receives (positive delta) or writes off (negative) units on hand (admin).
#[utoipa::path(post, path = "/products/{id}/stock", tag = "product", request_body = StockChange,
    params(("id" = String, Path, description = "product id")),
    security(("bearer" = [])),
    responses((status = 200, body = ProductView),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn adjust_stock(
    State(rt): State<Arc<ServiceRuntime>>,
    _: Admin,
    Extension(trace): Extension<TraceContext>,
    Path(id): Path<String>,
    ApiJson(change): ApiJson<StockChange>,
) -> Result<Json<ProductView>, ApiError> {
    let id = parse_id(&id)?;
    let delta = StockDelta::parse(change.delta).map_err(ApiError::Validation)?;
    let mut tx = rt.db.begin_write().await?;
    chassis::db::lock(&mut tx, id).await?;
    let mut product = store::find_product(&mut tx, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(id.to_string()))?;
    let stock = product.stock().adjust(delta)?;
    store::save_stock(&mut tx, id, stock).await?;
    let event = StockAdjusted {
        product_id: id,
        delta: delta.units(),
        stock: stock.available,
    };
    let envelope = Envelope::new(rt.name, id, &event, id).with_traceparent(Some(trace.to_string()));
    outbox::enqueue(&mut tx, StockAdjusted::TOPIC, &envelope).await?;
    rt.commit(tx).await?;
    product.available = i64::from(stock.available);
    Ok(Json(ProductView::from(&product)))
}
