//! API errors: each variant is one status code, and the body always says what went wrong.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::engine::{CancelError, SubmitError};
use crate::firmware::{FirmwareError, ResolveError};
use crate::service::RuntimeError;
use crate::write_error::WriteError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    BadGateway(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    InsufficientStorage(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unsupported(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.to_string() }));
        (self.status(), body).into_response()
    }
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::Submit(e @ SubmitError::IdsExhausted) => Self::Unavailable(e.to_string()),
            RuntimeError::Store(e @ WriteError::IdsExhausted) => Self::Unavailable(e.to_string()),
            RuntimeError::Submit(e @ SubmitError::IdInUse(_)) => Self::Internal(e.to_string()),
            RuntimeError::Store(e @ WriteError::Full) => Self::InsufficientStorage(e.to_string()),
            RuntimeError::Store(WriteError::Elsewhere(why)) => Self::Conflict(why),
            RuntimeError::Store(
                e @ (WriteError::Busy(_) | WriteError::Unavailable(_) | WriteError::Stopped),
            ) => Self::Unavailable(e.to_string()),
            RuntimeError::Store(
                e @ (WriteError::Corrupt(_) | WriteError::Duplicate(_) | WriteError::Failed(_)),
            ) => {
                tracing::error!(error = %e, "a submission could not be recorded");
                Self::Internal(e.to_string())
            }
            RuntimeError::Submit(e) => Self::BadRequest(e.to_string()),
            RuntimeError::Cancel(e @ CancelError::NotFound(_)) => Self::NotFound(e.to_string()),
            RuntimeError::Cancel(e @ CancelError::AlreadyFinal { .. }) => Self::Conflict(e.to_string()),
            RuntimeError::Stopped => Self::Unavailable(e.to_string()),
        }
    }
}

impl From<ResolveError> for ApiError {
    fn from(e: ResolveError) -> Self {
        match &e {
            ResolveError::OutsideDir(_) => Self::Forbidden(e.to_string()),
            ResolveError::NotAFile(_) => Self::BadRequest(e.to_string()),
            ResolveError::NotFound(_) => Self::NotFound(e.to_string()),
            ResolveError::BadSha256(_) => Self::BadRequest(e.to_string()),
            ResolveError::Unreadable(_) => Self::Internal(e.to_string()),
            ResolveError::Load(load) => match load {
                FirmwareError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                    Self::NotFound(e.to_string())
                }
                FirmwareError::Read { .. } => Self::Internal(e.to_string()),
                FirmwareError::TooLarge { .. } => Self::TooLarge(e.to_string()),
                FirmwareError::Empty(_) | FirmwareError::BadUrl(_) => Self::BadRequest(e.to_string()),
                FirmwareError::NotAllowed(_) => Self::Forbidden(e.to_string()),
                FirmwareError::Fetch { .. } | FirmwareError::Status { .. } => Self::BadGateway(e.to_string()),
            },
        }
    }
}

/// axum's own rejections (bad JSON, wrong content type, body too large, bad path) as JSON.
impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        use axum::extract::rejection::JsonRejection as R;
        match &e {
            R::MissingJsonContentType(_) => Self::Unsupported(e.body_text()),
            R::BytesRejection(_) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Self::TooLarge(format!("request body is larger than the limit: {}", e.body_text()))
            }
            _ => Self::BadRequest(crate::units::plain_words(&e.body_text())),
        }
    }
}
