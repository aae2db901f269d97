//! `GET /metrics`: the Prometheus text exposition of [`crate::metrics::Metrics`].

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

use super::{ApiError, ApiState};

pub async fn render(State(state): State<ApiState>) -> Result<impl IntoResponse, ApiError> {
    let status = state.handle.status().await?;
    let text = state.handle.metrics().render(&status.counts, state.handle.library().usage());
    Ok(([(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text))
}
