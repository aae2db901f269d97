//! Bearer-token authentication for every route but `GET /healthz` (which load balancers and
//! systemd probes read without credentials, and which holds no secret).
//!
//! The presented token and the configured one are both hashed with SHA-256 and the digests
//! compared in constant time, so neither the token's content nor its length leaks through
//! response timing.

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{ApiError, ApiState};

/// The configured token, kept as its SHA-256 digest.
#[derive(Clone)]
pub struct Token {
    digest: [u8; 32],
}

impl Token {
    pub fn new(secret: &crate::secret::Secret) -> Self {
        Self { digest: Sha256::digest(secret.expose().as_bytes()).into() }
    }

    fn accepts(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        digest.ct_eq(&self.digest).into()
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(set)")
    }
}

/// The middleware: passes the request on, or answers 401 with a JSON error.
pub async fn require_token(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let Some(token) = state.token.as_ref() else { return next.run(request).await };
    if request.uri().path() == "/healthz" {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")));
    let message = match presented {
        Some(presented) if token.accepts(presented.trim()) => return next.run(request).await,
        Some(_) => "the bearer token is not the one this Rocky accepts",
        None => "this Rocky needs an API token: send Authorization: Bearer <token>",
    };
    let mut response = ApiError::Unauthorized(message.to_owned()).into_response();
    response.headers_mut().insert(WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_token_is_accepted() {
        let secret = crate::secret::Secret::from_env("ROCKY_HTTP_TOKEN", "abc123".into()).unwrap();
        let token = Token::new(&secret);
        assert!(token.accepts("abc123"));
        assert!(!token.accepts("abc12"));
        assert!(!token.accepts(""));
        assert!(!format!("{token:?}").contains("abc"));
    }
}
