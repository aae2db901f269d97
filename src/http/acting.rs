//! The API's state acting for the caller: handlers that change something take [`Acting`] in
//! place of `State`, and its service writes the audit under the caller's token name
//! (`anonymous` on an API with no token, which listens on loopback only).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::{ApiState, Caller};

/// The audit's actor of a request an API without tokens took.
pub const ANONYMOUS: &str = "anonymous";

/// The API's state, its service acting for this request's caller.
pub struct Acting(pub ApiState);

impl FromRequestParts<ApiState> for Acting {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Self::Rejection> {
        let actor = parts.extensions.get::<Caller>().map_or(ANONYMOUS, |caller| caller.name.as_str());
        Ok(Self(ApiState { service: state.service.acting_as(actor), ..state.clone() }))
    }
}
