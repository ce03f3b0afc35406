//! HTTP API of my page: `/mypage` (public as `/api/mypage`).

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::State,
    response::{IntoResponse, Response},
};
use chassis::{ServiceRuntime, auth::Caller, dead_letters, openapi, problem::Problem};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::store::{self, MyOrder};

pub fn router(rt: Arc<ServiceRuntime>) -> Router {
    let (router, document) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(my_page))
        .with_state(rt.clone())
        .merge(dead_letters::routes(rt))
        .split_for_parts();
    openapi::serve_document(router, document)
}

#[derive(OpenApi)]
#[openapi(info(
    title = "12st mall my page",
    description = "A customer's orders, payments and deliveries"
))]
struct ApiDoc;

#[derive(Debug, Serialize, ToSchema)]
struct MyPage {
    orders: Vec<MyOrder>,
}

struct DatabaseError(sqlx::Error);

impl IntoResponse for DatabaseError {
    fn into_response(self) -> Response {
        Problem::database(&self.0).into_response()
    }
}

/// The caller's orders (newest first, at most 200) with their order, payment and
/// delivery status, from my page's own read model.
#[utoipa::path(get, path = "/mypage", tag = "mypage",
    security(("bearer" = [])),
    responses((status = 200, body = MyPage),
              (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn my_page(
    State(rt): State<Arc<ServiceRuntime>>,
    caller: Caller,
) -> Result<Json<MyPage>, DatabaseError> {
    let orders = store::orders_of(&rt.db, caller.customer_id)
        .await
        .map_err(DatabaseError)?;
    Ok(Json(MyPage { orders }))
}
