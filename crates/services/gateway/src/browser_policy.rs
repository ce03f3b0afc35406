//! What the gateway tells browsers about every response, so that a script someone
//! manages to inject into a page cannot run, and the shop cannot be framed or sniffed:
//! a Content-Security-Policy that runs only the shop's own modules and the shell's
//! inline import map and styles (by their SHA-256, taken from the page the binary
//! serves, never `'unsafe-inline'`), no framing, `nosniff`, and no referrer.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{HeaderName, HeaderValue, header},
    middleware::Next,
    response::Response,
};
use base64::{Engine, engine::general_purpose::STANDARD};
use sha2::{Digest, Sha256};

/// The headers added to every response, built once at startup.
pub struct BrowserPolicy {
    headers: [(HeaderName, HeaderValue); 4],
}

impl BrowserPolicy {
    /// The policy for a shop whose only page is `shell_page`.
    pub fn for_shell(shell_page: &str) -> Self {
        let csp = content_security_policy(shell_page);
        BrowserPolicy {
            headers: [
                (
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_str(&csp).expect("hashes and keywords are visible ASCII"),
                ),
                (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
                (
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("no-referrer"),
                ),
            ],
        }
    }
}

/// Adds the policy to a response, whoever made it (a service, the gateway, a problem).
pub async fn apply(
    State(policy): State<Arc<BrowserPolicy>>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    for (name, value) in &policy.headers {
        response.headers_mut().insert(name, value.clone());
    }
    response
}

/// Scripts and styles from the shop's own origin, plus the page's inline ones by hash;
/// nothing else anywhere.
fn content_security_policy(page: &str) -> String {
    let hashes = |tag| {
        inline_elements(page, tag)
            .into_iter()
            .map(|content| format!(" 'sha256-{}'", STANDARD.encode(Sha256::digest(content))))
            .collect::<String>()
    };
    format!(
        "default-src 'self'; script-src 'self'{}; style-src 'self'{}; img-src 'self' data:; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        hashes("script"),
        hashes("style"),
    )
}

/// The contents of each inline `<tag>` element of `page` (a `<script src=...>` has none
/// of its own), byte for byte as the browser hashes them.
fn inline_elements<'a>(page: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}"), format!("</{tag}>"));
    let mut contents = Vec::new();
    let mut rest = page;
    while let Some(start) = rest.find(&open) {
        let Some(open_end) = rest[start..].find('>').map(|i| start + i + 1) else {
            break;
        };
        let Some(content_end) = rest[open_end..].find(&close).map(|i| open_end + i) else {
            break;
        };
        if !rest[start..open_end].contains(" src=") {
            contents.push(&rest[open_end..content_end]);
        }
        rest = &rest[content_end + close.len()..];
    }
    contents
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(content: &str) -> String {
        format!("'sha256-{}'", STANDARD.encode(Sha256::digest(content)))
    }

    #[test]
    fn inline_scripts_and_styles_are_allowed_by_their_hash_and_nothing_inline_else() {
        let page = "<head><script type=\"importmap\">{\"imports\": {}}</script>\n\
                    <style>body { margin: 0 }</style></head>\
                    <body><script type=\"module\" src=\"/ui/shell/shell.js\"></script></body>";
        let policy = content_security_policy(page);
        assert!(
            policy.contains(&format!("script-src 'self' {};", hash("{\"imports\": {}}"))),
            "{policy}"
        );
        assert!(
            policy.contains(&format!("style-src 'self' {};", hash("body { margin: 0 }"))),
            "{policy}"
        );
        assert!(!policy.contains("unsafe"), "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    }

    #[test]
    fn the_shells_import_map_and_styles_are_hashed_from_the_served_bytes() {
        let page = crate::SHELL_PAGE;
        let import_map = page
            .split("<script type=\"importmap\">")
            .nth(1)
            .and_then(|after| after.split("</script>").next())
            .expect("the shell has an import map");
        let styles = page
            .split("<style>")
            .nth(1)
            .and_then(|after| after.split("</style>").next())
            .expect("the shell has its styles inline");
        let policy = content_security_policy(page);
        assert!(policy.contains(&hash(import_map)), "{policy}");
        assert!(policy.contains(&hash(styles)), "{policy}");
        assert_eq!(
            policy.matches("'sha256-").count(),
            2,
            "the module script is loaded by src, not inline: {policy}"
        );
    }

    #[test]
    fn an_unclosed_element_is_not_taken_for_content() {
        assert!(inline_elements("<script>alert(1)", "script").is_empty());
        assert_eq!(
            inline_elements("<style>a{}</style><style>b{}</style>", "style"),
            ["a{}", "b{}"]
        );
    }
}
