//! `GET /metrics`: the Prometheus text exposition of [`crate::metrics::Metrics`].

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

use super::{ApiError, ApiState};

pub async fn render(State(state): State<ApiState>) -> Result<impl IntoResponse, ApiError> {
    let status = state.service.status().await?;
    let text = state.service.metrics().render(&status.counts, state.service.library().usage());
    Ok(([(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text))
}
