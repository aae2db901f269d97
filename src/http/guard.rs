//! Requests a web page could make are refused: a foreign `Origin` (cross-site requests, which a
//! page can send with `text/plain` bodies without any preflight) and, on a loopback listener, a
//! `Host` that is not a loopback name (DNS rebinding: a page on `attacker.example` whose name
//! later resolves to 127.0.0.1 would otherwise reach the API as a same-origin page).
//!
//! Origins listed in `http.allowed_origins` may call the API from a browser; for them the
//! response carries the CORS headers and preflight requests are answered. No other origin gets
//! CORS.

use axum::extract::{Request, State};
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, HOST, ORIGIN,
    VARY,
};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, ApiState};

/// Whether `host` (a `Host` header: name or address, optional port) names this machine.
pub fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(v6) = host.strip_prefix('[') {
        v6.split_once(']').map_or(v6, |(addr, _)| addr)
    } else {
        host.rsplit_once(':')
            .map_or(host, |(name, port)| if port.chars().all(|c| c.is_ascii_digit()) { name } else { host })
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The origin a browser sends for a page served by this API itself.
fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
}

pub async fn check_origin_and_host(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let policy = &state.policy;
    let host = request.headers().get(HOST).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if policy.loopback_listener {
        match host.as_deref() {
            Some(host) if is_loopback_host(host) => {}
            Some(_) => {
                return ApiError::Forbidden(
                    "this API listens on a loopback address and answers only to a loopback Host \
                     (localhost, 127.0.0.1, [::1])"
                        .into(),
                )
                .into_response();
            }
            None => return ApiError::Forbidden("the request has no Host header".into()).into_response(),
        }
    }
    let Some(origin) = request.headers().get(ORIGIN).cloned() else { return next.run(request).await };
    let origin_text = origin.to_str().unwrap_or_default().to_owned();
    let allowed = policy.allowed_origins.iter().any(|o| o.eq_ignore_ascii_case(&origin_text));
    if !allowed && !same_origin(&origin_text, host.as_deref()) {
        return ApiError::Forbidden(format!(
            "requests from web pages at {origin_text:?} are refused (list the origin in http.allowed_origins to allow it)"
        ))
        .into_response();
    }
    if !allowed {
        return next.run(request).await;
    }
    let mut response = if request.method() == Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(VARY, HeaderValue::from_static("Origin"));
    headers.insert(ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, DELETE"));
    headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("authorization, content-type"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_told_apart_from_others() {
        for ok in [
            "localhost",
            "localhost:7878",
            "127.0.0.1:7878",
            "127.1.2.3",
            "[::1]:7878",
            "LOCALHOST.",
            "a.localhost",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "attacker.example",
            "attacker.example:7878",
            "10.0.0.1",
            "[fe80::1]:80",
            "localhost.attacker.example",
            "",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
        assert!(same_origin("http://127.0.0.1:7878", Some("127.0.0.1:7878")));
        assert!(!same_origin("http://evil.example", Some("127.0.0.1:7878")));
        assert!(!same_origin("null", Some("127.0.0.1:7878")));
    }
}
