//! The browser's session: the bearer token in a cookie no script can read.
//!
//! A login from the shop's page (marked by the `X-Requested-With` header, which a form
//! or a link on another site cannot add) gets the token as an `HttpOnly`,
//! `SameSite=Strict` cookie (`Secure` when the client came over HTTPS), and an answer
//! without the token in it. The gateway turns that cookie into the bearer token it
//! forwards, so the services verify tokens exactly as before. A request authenticated
//! by the cookie that could change something must carry `X-Requested-With` too: with
//! `SameSite=Strict` that makes a forged cross-site request doubly impossible (CSRF). A
//! client that sends its own `Authorization` header is not authenticated by the cookie.
//! The page learns whose session it is from `GET /api/auth/session`.

use std::sync::Arc;

use axum::{
    Extension, Json,
    body::Body,
    extract::Request,
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use chassis::{
    auth::{AuthError, TokenVerifier},
    problem::Problem,
};
use http_body_util::BodyExt;

use crate::limits::OverHttps;

/// The session cookie's name.
const COOKIE: &str = "mall_session";
/// The header the shop's page sends with every request, and no other site can.
const BROWSER_HEADER: &str = "x-requested-with";
/// The cookie ends this long before its token, so that it never carries an expired one.
const COOKIE_MARGIN_SECS: u64 = 30;
/// A login answer is a token and a few words; anything longer is not one.
const LOGIN_ANSWER_LIMIT: usize = 16 * 1024;

/// Whether a request comes from the shop's page.
pub fn from_browser(headers: &HeaderMap) -> bool {
    headers.contains_key(BROWSER_HEADER)
}

/// The session cookie as the request's bearer token, unless it brings its own; refused
/// when the request could change something and does not come from the shop's page.
/// Cookies are not forwarded: the services have no use for them.
pub async fn cookie_as_bearer(mut request: Request, next: Next) -> Response {
    let token = session_token(request.headers());
    request.headers_mut().remove(header::COOKIE);
    if let Some(token) = token
        && !request.headers().contains_key(header::AUTHORIZATION)
    {
        let safe = matches!(
            *request.method(),
            Method::GET | Method::HEAD | Method::OPTIONS
        );
        if !safe && !from_browser(request.headers()) {
            return Problem::new(
                StatusCode::FORBIDDEN,
                "cross-site-request",
                "Not sent by the shop's page",
                "a request authenticated by the session cookie that changes something must carry X-Requested-With",
            )
            .into_response();
        }
        let Ok(bearer) = HeaderValue::from_str(&format!("Bearer {token}")) else {
            return AuthError::Missing.into_response();
        };
        request.headers_mut().insert(header::AUTHORIZATION, bearer);
    }
    next.run(request).await
}

fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, token)| token.to_owned())
        .filter(|token| !token.is_empty())
}

/// The login answer for the shop's page: the token moves from the body into the cookie.
/// Answers for other clients, and refusals, pass unchanged.
pub async fn keep_token_from_scripts(https: OverHttps, answer: Response) -> Response {
    if answer.status() != StatusCode::OK {
        return answer;
    }
    let (mut parts, body) = answer.into_parts();
    let bytes = match http_body_util::Limited::new(body, LOGIN_ANSWER_LIMIT)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            tracing::warn!(%error, "cannot read the login answer");
            return bad_login_answer();
        }
    };
    let Ok(mut login) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return bad_login_answer();
    };
    let (Some(token), Some(expires_in)) = (
        login["access_token"].as_str().map(str::to_owned),
        login["expires_in"].as_u64(),
    ) else {
        return bad_login_answer();
    };
    let max_age = expires_in.saturating_sub(COOKIE_MARGIN_SECS);
    let Ok(cookie) = HeaderValue::from_str(&session_cookie(&token, max_age, https)) else {
        return bad_login_answer();
    };
    if let Some(fields) = login.as_object_mut() {
        fields.remove("access_token");
        fields.insert("token_type".into(), "cookie".into());
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::SET_COOKIE, cookie);
    parts
        .headers
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Response::from_parts(parts, Body::from(login.to_string()))
}

fn bad_login_answer() -> Response {
    Problem::new(
        StatusCode::BAD_GATEWAY,
        "upstream-unavailable",
        "The login service answered something unexpected",
        "try again shortly",
    )
    .into_response()
}

fn session_cookie(token: &str, max_age: u64, OverHttps(https): OverHttps) -> String {
    let secure = if https { "; Secure" } else { "" };
    format!("{COOKIE}={token}; Path=/api; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}")
}

/// `POST /api/auth/logout`: the browser forgets the session cookie. The token itself
/// stays valid until it expires (at most the token lifetime); nothing revokes it.
pub async fn log_out(Extension(https): Extension<OverHttps>) -> Response {
    let cookie = session_cookie("", 0, https);
    (
        StatusCode::NO_CONTENT,
        [(
            header::SET_COOKIE,
            HeaderValue::from_str(&cookie).expect("ASCII"),
        )],
    )
        .into_response()
}

/// `GET /api/auth/session`: whose the session is, for the page to show (never the token).
pub async fn describe(
    Extension(verifier): Extension<Arc<TokenVerifier>>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let Some(token) = chassis::auth::bearer_token(&parts) else {
        return AuthError::Missing.into_response();
    };
    match verifier.verify(token).await {
        Ok(claims) => Json(serde_json::json!({
            "customer_id": claims.sub,
            "roles": claims.roles,
            "expires_at": claims.exp,
        }))
        .into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

/// The OpenAPI paths of the page's session, which the gateway itself answers.
pub fn document() -> serde_json::Value {
    let problem = serde_json::json!({
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    });
    serde_json::json!({
        "/api/auth/session": {"get": {
            "tags": ["auth"],
            "summary": "Whose the session is: for the shop's page, which holds its token only as an HttpOnly cookie",
            "security": [{"bearer": []}],
            "responses": {
                "200": {"description": "the session's holder", "content": {"application/json": {"schema": {
                    "type": "object",
                    "required": ["customer_id", "roles", "expires_at"],
                    "properties": {
                        "customer_id": {"type": "string", "format": "uuid"},
                        "roles": {"type": "array", "items": {"type": "string", "enum": ["customer", "admin"]}},
                        "expires_at": {"type": "integer", "description": "Unix seconds"}
                    }
                }}}},
                "401": problem.clone(),
                "429": problem.clone(),
            }
        }},
        "/api/auth/logout": {"post": {
            "tags": ["auth"],
            "summary": "Clears the session cookie (the token stays valid until it expires)",
            "responses": {
                "204": {"description": "the cookie is cleared"},
                "403": problem.clone(),
                "429": problem,
            }
        }},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_token_is_found_among_other_cookies() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("lang=ko; mall_session=abc.def.ghi; other=1"),
        );
        assert_eq!(session_token(&headers).as_deref(), Some("abc.def.ghi"));
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("mall_session_old=x"),
        );
        assert_eq!(session_token(&headers), None);
        headers.insert(header::COOKIE, HeaderValue::from_static("mall_session="));
        assert_eq!(session_token(&headers), None, "a cleared cookie is none");
    }

    #[test]
    fn the_cookie_is_for_the_api_only_unreadable_by_scripts_and_never_cross_site() {
        let cookie = session_cookie("t", 870, OverHttps(false));
        assert_eq!(
            cookie,
            "mall_session=t; Path=/api; Max-Age=870; HttpOnly; SameSite=Strict"
        );
        assert!(session_cookie("t", 870, OverHttps(true)).ends_with("; Secure"));
    }
}
