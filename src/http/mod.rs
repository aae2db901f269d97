//! The HTTP API (axum) over the runtime's handle. Every error is JSON `{"error": "..."}` with a
//! fitting 4xx/5xx status, and every request body has a size limit.

mod dto;
mod error;
mod events;
mod firmware;
mod jobs;

pub use dto::{JobJson, event_json};
pub use error::ApiError;

use std::future::Future;
use std::path::PathBuf;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio::net::TcpListener;

use crate::firmware::LoadLimits;
use crate::runtime::Handle;

/// Largest JSON body accepted by the job endpoints.
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub handle: Handle,
    /// Paths in job requests and uploads live here; nothing outside it is served.
    pub firmware_dir: PathBuf,
    pub limits: LoadLimits,
}

pub fn router(state: ApiState) -> Router {
    let upload_limit = usize::try_from(state.limits.max_bytes).unwrap_or(usize::MAX);
    Router::new()
        .route("/jobs", post(jobs::create).get(jobs::list).layer(DefaultBodyLimit::max(MAX_JSON_BODY)))
        .route("/job", post(jobs::create_original).layer(DefaultBodyLimit::max(MAX_JSON_BODY)))
        .route("/jobs/{id}", get(jobs::show).delete(jobs::cancel))
        .route("/jobs/{id}/events", get(jobs::events))
        .route("/firmware", post(firmware::upload).layer(DefaultBodyLimit::max(upload_limit)))
        .route("/events", get(events::stream))
        .route("/healthz", get(jobs::health))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .with_state(state)
}

/// Serves until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}
