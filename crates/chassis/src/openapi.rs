//! Each service describes its own API: an OpenAPI document generated from its handlers
//! (`utoipa`), served at `/openapi.json`. The gateway merges them into the shop's.

use axum::{Json, Router, routing::get};
use utoipa::{
    PartialSchema,
    openapi::{
        Content, OpenApi, Ref, RefOr, Response,
        path::Operation,
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

use crate::problem::Problem;

/// The name of the bearer-token security scheme handlers refer to.
pub const BEARER: &str = "bearer";

/// Answers the chassis's layers give any operation, around its handler.
const EVERY_OPERATION: [(&str, &str); 1] = [(
    "503",
    "Not answered within the request timeout, or the service's storage is unavailable",
)];

/// Answers the chassis's layers give an operation that takes parameters or a body.
const WITH_INPUT: [(&str, &str); 1] = [(
    "400",
    "A path or query parameter, or a body, that does not parse",
)];

/// Answers the chassis's layers give an operation that takes a body.
const WITH_A_BODY: [(&str, &str); 2] = [
    ("413", "The body is larger than the service takes"),
    ("415", "The body is not declared as JSON"),
];

/// Documents on each of `document`'s operations the answers the chassis gives it, as
/// problems, unless its handler documents them already: every status an operation can
/// answer is in the document.
fn document_chassis_answers(document: &mut OpenApi) {
    for item in document.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            let with_a_body = operation.request_body.is_some();
            let with_input = with_a_body
                || operation
                    .parameters
                    .as_ref()
                    .is_some_and(|parameters| !parameters.is_empty());
            let answers = EVERY_OPERATION
                .iter()
                .chain(WITH_INPUT.iter().filter(|_| with_input))
                .chain(WITH_A_BODY.iter().filter(|_| with_a_body));
            for (status, description) in answers {
                add_problem_answer(operation, status, description);
            }
        }
    }
}

fn add_problem_answer(operation: &mut Operation, status: &str, description: &str) {
    let mut answer = Response::new(description);
    answer.content.insert(
        "application/problem+json".into(),
        RefOr::T(Content::new(Some(Ref::from_schema_name("Problem")))),
    );
    operation
        .responses
        .responses
        .entry(status.into())
        .or_insert(RefOr::T(answer));
}

/// Adds the bearer scheme, the problem schema and the chassis's own answers to
/// `document` and serves it at `/openapi.json` beside `router`.
pub fn serve_document(router: Router, mut document: OpenApi) -> Router {
    document_chassis_answers(&mut document);
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
