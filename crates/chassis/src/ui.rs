//! A service's own web components (DESIGN.md section 10): ES modules embedded in its
//! binary and served under its API path, for the gateway's shell page to compose in the
//! browser. Running the shop needs no Node.js and no asset download.

use axum::{
    Router,
    extract::Path,
    http::header,
    response::{IntoResponse, Response},
    routing::get,
};

use crate::problem::Problem;

/// A file served as is: its name under the prefix, and its text.
pub type Asset = (&'static str, &'static str);

/// Serves `assets` at `{prefix}/{name}`.
pub fn assets(prefix: &str, assets: &'static [Asset]) -> Router {
    Router::new().route(
        &format!("{prefix}/{{file}}"),
        get(move |Path(file): Path<String>| async move { serve(assets, &file) }),
    )
}

fn serve(assets: &[Asset], file: &str) -> Response {
    let Some((name, text)) = assets.iter().find(|(name, _)| *name == file) else {
        return Problem::not_found(format!("no file {file} here")).into_response();
    };
    let content_type = match name.rsplit_once('.').map(|(_, extension)| extension) {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("html") => "text/html; charset=utf-8",
        _ => "text/plain; charset=utf-8",
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            // A new build may change any file: the browser asks again each time, cheaply.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        *text,
    )
        .into_response()
}
