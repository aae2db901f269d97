//! The HTTP API (axum) over the runtime's handle. Every error is JSON `{"error": "..."}` with a
//! fitting 4xx/5xx status, and every request body has a size limit. With a token configured,
//! every route but `GET /healthz` needs `Authorization: Bearer <token>`.

mod acting;
mod audit;
mod auth;
mod devices;
mod dto;
mod error;
mod events;
mod filters;
mod firmware;
mod guard;
mod jobs;
mod json_errors;
mod metrics;
mod rollouts;
mod server;
mod tls;
mod tokens;

pub use acting::{ANONYMOUS, Acting};
pub use dto::event_json;
pub use error::ApiError;
pub use guard::is_loopback_host;
pub use server::{
    BODY_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DESCRIPTOR_RESERVE, HEADER_TIMEOUT, connection_cap,
};
pub use tls::acceptor;
pub use tokens::{Caller, Role, Token};

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path};
use axum::routing::{get, post, put};
use tokio::net::TcpListener;

use crate::firmware::LoadLimits;
use crate::service::Service;

/// Largest JSON body accepted by the job endpoints.
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// Room in a `POST /jobs` body for each job it may create: a device id of up to 128 bytes,
/// quoted and escaped, with its comma (a control character escaped as `\u001f` takes six bytes,
/// but ids hold none).
const BYTES_PER_JOB: usize = 2 * 128 + 4;

/// The body limit of `POST /jobs`: `max_jobs` device ids of the longest kind, plus the rest of
/// the request, so `http.max_jobs_per_request` and the body limit never disagree.
pub fn jobs_body_limit(max_jobs: usize) -> usize {
    MAX_JSON_BODY.saturating_add(max_jobs.saturating_mul(BYTES_PER_JOB))
}

/// Largest rollout request: room for 100,000 explicit device ids.
pub const ROLLOUT_BODY: usize = 4 * 1024 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// What the handlers do, the same actions the console takes.
    pub service: Service,
    /// Paths in job requests and uploads live here; nothing outside it is served.
    pub firmware_dir: PathBuf,
    pub limits: LoadLimits,
    /// The bearer token every route but `/healthz` requires; `None` leaves the API open.
    pub token: Option<Token>,
    pub policy: Arc<ApiPolicy>,
    /// Clients on `/events` now (at most `policy.max_event_clients`).
    pub event_clients: Arc<std::sync::atomic::AtomicUsize>,
    /// Turns true when the server begins to stop: `/events` streams end at once instead of
    /// holding the shutdown for its grace period.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

impl ApiState {
    /// The API over `service` (or a runtime's handle) with the default limits and policy and
    /// no token.
    pub fn new(service: impl Into<Service>, firmware_dir: PathBuf) -> Self {
        Self {
            service: service.into(),
            firmware_dir,
            limits: LoadLimits::default(),
            token: None,
            policy: Arc::default(),
            event_clients: Arc::default(),
            stopping: tokio::sync::watch::channel(false).1,
        }
    }
}

/// Who may call the API and how much one request may ask for.
#[derive(Debug, Clone)]
pub struct ApiPolicy {
    /// The listener is on a loopback address: `Host` must then be a loopback name.
    pub loopback_listener: bool,
    /// Web origins allowed to call the API from a browser (`http.allowed_origins`).
    pub allowed_origins: Vec<String>,
    /// Jobs one request may create (`http.max_jobs_per_request`).
    pub max_jobs_per_request: usize,
    /// Clients on `/events` at once (`http.max_event_clients`); more get 503.
    pub max_event_clients: usize,
    /// The firmware directory's size limit (`firmware.max_store_bytes`); uploads past it get 507.
    pub max_store_bytes: u64,
}

impl Default for ApiPolicy {
    fn default() -> Self {
        Self {
            loopback_listener: true,
            allowed_origins: Vec::new(),
            max_jobs_per_request: 10_000,
            max_event_clients: 64,
            max_store_bytes: crate::config::FirmwareSection::default().max_store_bytes,
        }
    }
}

pub fn router(state: ApiState) -> Router {
    let upload_limit = usize::try_from(state.limits.max_bytes).unwrap_or(usize::MAX);
    Router::new()
        .route(
            "/jobs",
            post(jobs::create)
                .get(jobs::list)
                .layer(DefaultBodyLimit::max(jobs_body_limit(state.policy.max_jobs_per_request))),
        )
        .route("/job", post(jobs::create_original).layer(DefaultBodyLimit::max(MAX_JSON_BODY)))
        .route("/jobs/{id}", get(jobs::show).delete(jobs::cancel))
        .route("/jobs/{id}/events", get(jobs::events))
        .route("/devices", get(devices::list))
        .route(
            "/devices/import",
            // The other methods are the device named "import", which the route would hide.
            post(devices::import)
                .layer(DefaultBodyLimit::max(devices::MAX_IMPORT_BODY))
                .get(|state| devices::show(state, Path("import".to_owned())))
                .put(|state, body| devices::put(state, Path("import".to_owned()), body))
                .delete(|state| devices::delete(state, Path("import".to_owned())))
                .layer(DefaultBodyLimit::max(MAX_JSON_BODY)),
        )
        .route(
            "/devices/{id}",
            get(devices::show)
                .put(devices::put)
                .delete(devices::delete)
                .layer(DefaultBodyLimit::max(MAX_JSON_BODY)),
        )
        .route(
            "/rollouts",
            post(rollouts::create).get(rollouts::list).layer(DefaultBodyLimit::max(ROLLOUT_BODY)),
        )
        .route("/rollouts/{id}", get(rollouts::show))
        .route("/rollouts/{id}/{action}", post(rollouts::control))
        .route(
            "/firmware",
            post(firmware::upload).get(firmware::list).layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route("/firmware/{sha256}", get(firmware::show))
        .route(
            "/firmware/{sha256}/manifest",
            put(firmware::put_manifest).layer(DefaultBodyLimit::max(crate::protocol::MAX_MANIFEST_BYTES)),
        )
        .route(
            "/firmware/{sha256}/aws-signature",
            put(firmware::put_aws_signature)
                .layer(DefaultBodyLimit::max(crate::firmware::MAX_AWS_SIGNATURE_BYTES)),
        )
        .route("/audit", get(audit::list))
        .route("/events", get(events::stream))
        .route("/healthz", get(jobs::health))
        .route("/metrics", get(metrics::render))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_token))
        // Outermost: a foreign page or name is refused before anything else looks at it.
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard::check_origin_and_host))
        // Around everything: an error the framework writes itself is JSON too.
        .layer(axum::middleware::from_fn(json_errors::errors_as_json))
        .with_state(state)
}

/// Serves plain HTTP with the default connection limit until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, None, state, DEFAULT_MAX_CONNECTIONS, shutdown).await
}

/// Serves HTTP, or HTTPS with `tls`, with at most `max_connections` connections at once.
pub async fn serve_with(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: ApiState,
    max_connections: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let state = ApiState { stopping, ..state };
    let shutdown = async move {
        shutdown.await;
        let _ = stop.send(true);
    };
    server::run(listener, tls, router(state), max_connections, shutdown).await
}
