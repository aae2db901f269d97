//! Every error the API answers is a JSON object `{"error": "…"}`, as its own handlers write
//! them. The ones the HTTP framework writes itself were not: a wrong method got a 405 with an
//! empty body, a body past a route's limit on a route that reads raw text a plain-text 413, a
//! path that is not UTF-8 a plain-text 400. A client that parses every error as JSON (the CLI,
//! scripts) then failed on the parse instead of saying what was wrong.

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{ALLOW, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

/// The most of a framework error's text kept (they are a line each).
const MAX_TEXT: usize = 1024;

/// Rewrites an error response that is not JSON into `{"error": …}`, keeping its status and
/// headers (a 405's `Allow`).
pub async fn errors_as_json(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    let is_json =
        response.headers().get(CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, MAX_TEXT).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    let message = if status == StatusCode::METHOD_NOT_ALLOWED {
        let path = crate::text::clip(&path, 200);
        match parts.headers.get(ALLOW).and_then(|v| v.to_str().ok()).filter(|a| !a.is_empty()) {
            Some(allowed) => format!("{path} does not take {method} (it takes {allowed})"),
            None => format!("{path} does not take {method}"),
        }
    } else if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        crate::text::clip(&text, MAX_TEXT)
    };
    let body = serde_json::json!({ "error": message }).to_string();
    parts.headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}
