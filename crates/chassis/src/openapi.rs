//! Each service describes its own API: an OpenAPI document generated from its handlers
//! (`utoipa`), served at `/openapi.json`. The gateway merges them into the shop's.

use axum::{Json, Router, routing::get};
use utoipa::{
    PartialSchema,
    openapi::{
        OpenApi,
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

use crate::problem::Problem;

/// The name of the bearer-token security scheme handlers refer to.
pub const BEARER: &str = "bearer";

/// Adds the bearer scheme and the problem schema to `document` and serves it at
/// `/openapi.json` beside `router`.
pub fn serve_document(router: Router, mut document: OpenApi) -> Router {
    let components = document.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .build(),
        ),
    );
    components
        .schemas
        .insert("Problem".into(), Problem::schema());
    router.route(
        "/openapi.json",
        get(move || async move { Json(document.clone()) }),
    )
}
