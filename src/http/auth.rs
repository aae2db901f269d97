//! Bearer-token authentication for every route but `GET /healthz` (which load balancers and
//! systemd probes read without credentials, and which holds no secret).
//!
//! Tokens have names and roles (`tokens.rs`): the presented token is hashed with SHA-256 and
//! compared in constant time, and a request its role does not cover is a 403 naming the role.

use axum::extract::{Request, State};
use axum::http::Method;
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::tokens::Role;
use super::{ApiError, ApiState};

/// The middleware: passes the request on with its [`Caller`] (for the audit), or answers 401
/// (no token, or not one this Rocky accepts) or 403 (a role short of what the request needs,
/// named) with a JSON error.
pub async fn require_token(State(state): State<ApiState>, mut request: Request, next: Next) -> Response {
    let Some(token) = state.token.as_ref() else { return next.run(request).await };
    if request.uri().path() == "/healthz" {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")));
    let message = match presented.map(|presented| token.accepts(presented.trim())) {
        Some(Some(caller)) => {
            let needed = needed_role(request.method(), request.uri());
            if caller.role < needed {
                let text = format!(
                    "{} {} needs the {} role; token {:?} is {}",
                    request.method(),
                    request.uri().path(),
                    needed.as_str(),
                    caller.name,
                    caller.role.with_article()
                );
                // A write its role does not cover is audited (a read is not: it changes nothing).
                if needed > Role::Viewer {
                    let target = format!("{} {}", request.method(), request.uri().path());
                    let service = state.service.acting_as(&caller.name);
                    service.record_refusal(&target, &format!("refused: {text}")).await;
                }
                return ApiError::Forbidden(text).into_response();
            }
            request.extensions_mut().insert(caller);
            return next.run(request).await;
        }
        Some(None) => "the bearer token is not one this Rocky accepts",
        None => "this Rocky needs an API token: send Authorization: Bearer <token>",
    };
    let mut response = ApiError::Unauthorized(message.to_owned()).into_response();
    response.headers_mut().insert(WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
    response
}

/// The role a request needs: reading is a viewer's; attaching a manifest or an AWS signature,
/// or having Rocky sign
/// an upload (`POST /firmware?version=…&seq=…`) an admin's; every other change an operator's.
pub fn needed_role(method: &Method, uri: &axum::http::Uri) -> Role {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Role::Viewer;
    }
    let path = uri.path();
    let signs = path == "/firmware"
        && uri.query().is_some_and(|q| {
            q.split('&').any(|pair| pair.starts_with("version=") || pair.starts_with("seq="))
        });
    let attaches =
        path.starts_with("/firmware/") && (path.ends_with("/manifest") || path.ends_with("/aws-signature"));
    if signs || attaches { Role::Admin } else { Role::Operator }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_need_a_viewer_manifests_and_signing_an_admin_and_the_rest_an_operator() {
        let role = |method: Method, uri: &str| needed_role(&method, &uri.parse().unwrap());
        assert_eq!(role(Method::GET, "/jobs"), Role::Viewer);
        assert_eq!(role(Method::GET, "/events"), Role::Viewer);
        assert_eq!(role(Method::POST, "/jobs"), Role::Operator);
        assert_eq!(role(Method::DELETE, "/jobs/3"), Role::Operator);
        assert_eq!(role(Method::POST, "/firmware?name=a.bin"), Role::Operator);
        assert_eq!(role(Method::POST, "/firmware?name=a.bin&version=2.1&seq=3"), Role::Admin);
        assert_eq!(role(Method::PUT, "/firmware/ab12/manifest"), Role::Admin);
        assert_eq!(role(Method::PUT, "/firmware/ab12/aws-signature"), Role::Admin);
        assert_eq!(role(Method::POST, "/rollouts/1/cancel"), Role::Operator);
    }
}
