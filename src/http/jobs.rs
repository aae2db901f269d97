//! The job endpoints and the health check.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiState};
use crate::api::{CreateJobs, CreateOriginal, CreatedJobs, JobPage, Timeline};
use crate::engine::{JobId, JobState, RolloutId};
use crate::firmware::FirmwareSource;
use crate::protocol::DeviceId;
use crate::service::{JobFilter, NewJobs, SubmittedJobs};
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

async fn create_jobs(
    state: &ApiState,
    request: NewJobs,
) -> Result<(StatusCode, Json<CreatedJobs>), ApiError> {
    let SubmittedJobs { jobs, never_seen } =
        state.service.submit_jobs(request, &state.firmware_dir, &state.limits).await?;
    let warning = crate::inventory::never_seen_note(&never_seen);
    let never_seen = warning.is_some().then_some(never_seen.len());
    Ok((StatusCode::CREATED, Json(CreatedJobs { jobs, warning, never_seen })))
}

pub async fn create(
    super::Acting(state): super::Acting,
    body: Result<Json<CreateJobs>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedJobs>), ApiError> {
    let Json(request) = body?;
    let devices = devices(&request, state.policy.max_jobs_per_request)?;
    let firmware = request.firmware.source().map_err(ApiError::BadRequest)?;
    let (chunk_size, chunk_interval_ms, max_rate) =
        (request.chunk_size, request.chunk_interval_ms, request.max_rate);
    let force = request.force;
    let delta = request.delta.unwrap_or(true);
    let aws_ota = request.aws_ota;
    let jobs = NewJobs { devices, firmware, chunk_size, chunk_interval_ms, max_rate, force, delta, aws_ota };
    create_jobs(&state, jobs).await
}

pub async fn create_original(
    super::Acting(state): super::Acting,
    body: Result<Json<CreateOriginal>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedJobs>), ApiError> {
    let Json(request) = body?;
    let device = DeviceId::parse(&request.device_id).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let firmware = FirmwareSource::Url(request.url);
    let request = NewJobs {
        devices: vec![device],
        firmware,
        chunk_size: None,
        chunk_interval_ms: None,
        max_rate: None,
        force: false,
        delta: true,
        aws_ota: None,
    };
    create_jobs(&state, request).await
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
    rollout: Option<RolloutId>,
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
    let mut jobs = state.service.jobs(&JobFilter { limit: Some(limit + 1), ..filter });
    let more = jobs.len() > limit;
    jobs.truncate(limit);
    let next_after = if more { jobs.last().map(|j| j.id) } else { None };
    let jobs = jobs.iter().map(|job| JobSnapshot::clone(job)).collect();
    Ok(Json(JobPage { jobs, next_after }))
}

fn job_id(raw: &str) -> Result<JobId, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::BadRequest(format!("{raw:?} is not a job id (a whole number from 0 to {})", u64::MAX))
    })
}

pub async fn show(
    State(state): State<ApiState>,
    Path(raw): Path<String>,
) -> Result<Json<JobSnapshot>, ApiError> {
    let id = job_id(&raw)?;
    let job = state.service.job(id)?;
    Ok(Json(JobSnapshot::clone(&job)))
}

/// `GET /jobs/{id}/events`: the job's stored timeline.
pub async fn events(
    State(state): State<ApiState>,
    Path(raw): Path<String>,
) -> Result<Json<Timeline>, ApiError> {
    let id = job_id(&raw)?;
    Ok(Json(Timeline { job: id, events: state.service.job_history(id).await? }))
}

pub async fn cancel(
    super::Acting(state): super::Acting,
    Path(raw): Path<String>,
) -> Result<Json<JobSnapshot>, ApiError> {
    Ok(Json(state.service.cancel_job(job_id(&raw)?).await?))
}

/// 200 while the broker connection is up, 503 otherwise; the body says which and why.
pub async fn health(State(state): State<ApiState>) -> Result<(StatusCode, Json<Value>), ApiError> {
    let status = state.service.status().await?;
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
