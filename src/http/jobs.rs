//! The job endpoints and the health check.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiState};
use crate::api::{CreateJobs, CreateOriginal, CreatedJobs, JobPage, Timeline};
use crate::engine::{JobId, JobSpec, JobState};
use crate::firmware::{ChunkSize, FirmwareSource, resolve};
use crate::protocol::DeviceId;
use crate::runtime::JobFilter;
use crate::snapshot::JobSnapshot;

/// The request's devices, each once, at most `max` of them.
fn devices(request: &CreateJobs, max: usize) -> Result<Vec<DeviceId>, ApiError> {
    let raw: Vec<&String> = match (&request.device_ids, &request.device_id) {
        (Some(ids), None) => ids.iter().collect(),
        (None, Some(id)) => vec![id],
        _ => return Err(ApiError::BadRequest("give exactly one of \"device_ids\" or \"device_id\"".into())),
    };
    if raw.is_empty() {
        return Err(ApiError::BadRequest("device_ids is empty".into()));
    }
    if raw.len() > max {
        return Err(ApiError::BadRequest(format!(
            "{} devices in one request; the limit is {max} (http.max_jobs_per_request)",
            raw.len()
        )));
    }
    let mut seen = std::collections::HashSet::with_capacity(raw.len());
    let mut devices = Vec::with_capacity(raw.len());
    for id in raw {
        let device = DeviceId::parse(id).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        if !seen.insert(device.clone()) {
            return Err(ApiError::BadRequest(format!("device {id:?} is named more than once")));
        }
        devices.push(device);
    }
    Ok(devices)
}

/// A request's chunk size and the pause between chunks: `chunk_interval_ms`, or the pause a
/// `max_rate` makes (chunk size / rate); with both, the longer.
pub(super) fn pacing(
    state: &ApiState,
    chunk_size: Option<u64>,
    chunk_interval_ms: Option<u64>,
    max_rate: Option<crate::units::Rate>,
) -> Result<(Option<ChunkSize>, Option<Duration>), ApiError> {
    let paced =
        crate::firmware::Pacing::new(chunk_size, chunk_interval_ms, max_rate, state.handle.default_chunk())
            .map_err(ApiError::BadRequest)?;
    Ok((paced.chunk_size, paced.pause))
}

async fn create_jobs(
    state: &ApiState,
    devices: Vec<DeviceId>,
    source: FirmwareSource,
    chunk_size: Option<u64>,
    chunk_interval_ms: Option<u64>,
    max_rate: Option<crate::units::Rate>,
) -> Result<(StatusCode, Json<CreatedJobs>), ApiError> {
    let (chunk_size, chunk_interval) = pacing(state, chunk_size, chunk_interval_ms, max_rate)?;
    let image = resolve(&source, state.handle.library(), Some(&state.firmware_dir), &state.limits).await?;
    // Looked at before the jobs exist: making a job adds its device to the inventory.
    let unseen = state.handle.inventory().never_seen(&devices);
    let specs = devices
        .into_iter()
        .map(|device| JobSpec { device, image: image.clone(), chunk_size, chunk_interval })
        .collect();
    let jobs = state.handle.submit(specs).await?;
    let warning = crate::inventory::never_seen_note(&unseen);
    let never_seen = warning.is_some().then_some(unseen.len());
    Ok((StatusCode::CREATED, Json(CreatedJobs { jobs, warning, never_seen })))
}

pub async fn create(
    State(state): State<ApiState>,
    body: Result<Json<CreateJobs>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedJobs>), ApiError> {
    let Json(request) = body?;
    let devices = devices(&request, state.policy.max_jobs_per_request)?;
    let (chunk_size, interval, rate) = (request.chunk_size, request.chunk_interval_ms, request.max_rate);
    let source = request.firmware.source().map_err(ApiError::BadRequest)?;
    create_jobs(&state, devices, source, chunk_size, interval, rate).await
}

pub async fn create_original(
    State(state): State<ApiState>,
    body: Result<Json<CreateOriginal>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedJobs>), ApiError> {
    let Json(request) = body?;
    let device = DeviceId::parse(&request.device_id).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    create_jobs(&state, vec![device], FirmwareSource::Url(request.url), None, None, None).await
}

#[derive(Deserialize)]
pub struct ListQuery {
    state: Option<String>,
    device: Option<String>,
    /// Page size (default 1000, at most 10000).
    limit: Option<usize>,
    /// Cursor: only jobs with a larger id (`next_after` of the previous page).
    after: Option<JobId>,
    /// Only jobs created at or after this time (milliseconds since the Unix epoch).
    since: Option<u64>,
    /// Only the jobs this rollout created.
    rollout: Option<u64>,
}

pub const DEFAULT_PAGE: usize = 1000;
pub const MAX_PAGE: usize = 10_000;

pub async fn list(
    State(state): State<ApiState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<JobPage>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let filter = JobFilter {
        state: query
            .state
            .map(|s| JobState::parse(&s).map_err(|e| ApiError::BadRequest(e.to_string())))
            .transpose()?,
        device: query
            .device
            .map(|d| DeviceId::parse(&d).map_err(|e| ApiError::BadRequest(e.to_string())))
            .transpose()?,
        after: query.after,
        since: query.since,
        rollout: query.rollout,
        limit: None,
    };
    let limit = match query.limit {
        Some(0) => return Err(ApiError::BadRequest("limit must be at least 1".into())),
        Some(n) if n > MAX_PAGE => return Err(ApiError::BadRequest(format!("limit is at most {MAX_PAGE}"))),
        Some(n) => n,
        None => DEFAULT_PAGE,
    };
    // One more than asked tells whether another page follows.
    // Read from the job table in the request's own task: however many jobs there are, the
    // engine's task is never asked to scan them.
    let mut jobs = state.handle.jobs(&JobFilter { limit: Some(limit + 1), ..filter });
    let more = jobs.len() > limit;
    jobs.truncate(limit);
    let next_after = if more { jobs.last().map(|j| j.id) } else { None };
    let jobs = jobs.iter().map(|job| JobSnapshot::clone(job)).collect();
    Ok(Json(JobPage { jobs, next_after }))
}

fn job_id(raw: &str) -> Result<JobId, ApiError> {
    raw.parse().map_err(|_| ApiError::BadRequest(format!("job id {raw:?} is not a number")))
}

pub async fn show(
    State(state): State<ApiState>,
    Path(raw): Path<String>,
) -> Result<Json<JobSnapshot>, ApiError> {
    let id = job_id(&raw)?;
    let job = state.handle.job(id).ok_or_else(|| ApiError::NotFound(format!("no job {id}")))?;
    Ok(Json(JobSnapshot::clone(&job)))
}

/// `GET /jobs/{id}/events`: the job's stored timeline.
pub async fn events(
    State(state): State<ApiState>,
    Path(raw): Path<String>,
) -> Result<Json<Timeline>, ApiError> {
    let id = job_id(&raw)?;
    if state.handle.job(id).is_none() {
        return Err(ApiError::NotFound(format!("no job {id}")));
    }
    let history = state.handle.history(id).await?.map_err(ApiError::Unavailable)?;
    Ok(Json(Timeline { job: id, events: history }))
}

pub async fn cancel(
    State(state): State<ApiState>,
    Path(raw): Path<String>,
) -> Result<Json<JobSnapshot>, ApiError> {
    Ok(Json(state.handle.cancel(job_id(&raw)?).await?))
}

/// 200 while the broker connection is up, 503 otherwise; the body says which and why.
pub async fn health(State(state): State<ApiState>) -> Result<(StatusCode, Json<Value>), ApiError> {
    let status = state.handle.status().await?;
    let healthy = status.connection.is_connected()
        && status.store_problem.is_none()
        && status.publish_refused.is_none();
    let code = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let counts: serde_json::Map<String, Value> =
        status.counts.iter().map(|(state, n)| (state.as_str().to_owned(), json!(n))).collect();
    Ok((
        code,
        Json(json!({
            "broker": status.broker.to_string(),
            "connected": status.connection.is_connected(),
            "reason": status.connection.reason().or(status.store_problem.as_deref()).or(status.publish_refused.as_deref()),
            "publish_refused": status.publish_refused,
            "store": match &status.store_problem { Some(problem) => json!({"ok": false, "problem": problem}), None => json!({"ok": true}) },
            "insecure_tls": status.insecure_tls,
            "connection": status.connection,
            "jobs": counts,
        })),
    ))
}
