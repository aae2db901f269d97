//! The rollout endpoints: `POST /rollouts`, `GET /rollouts`, `GET /rollouts/{id}` and
//! `POST /rollouts/{id}/pause|resume|cancel`.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::jobs::{FirmwareJson, pacing};
use super::{ApiError, ApiState};
use crate::firmware::resolve;
use crate::inventory::{DeviceQuery, Labels, labels};
use crate::protocol::DeviceId;
use crate::rollout::{AbortRule, Gates, RolloutPlan, RolloutView, WaveSize, wave_ends};
use crate::runtime::RolloutError;
use crate::snapshot::ImageInfo;

/// The most devices one rollout targets.
pub const MAX_TARGETS: usize = 100_000;
/// Rollouts a listing shows (the newest).
const LIST_LIMIT: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRollout {
    name: String,
    firmware: FirmwareJson,
    targets: Targets,
    chunk_size: Option<u64>,
    max_rate: Option<crate::units::Rate>,
    waves: Option<Vec<WaveSize>>,
    max_per_minute: Option<u32>,
    max_concurrent: Option<u32>,
    success_threshold: Option<f64>,
    abort: Option<AbortRule>,
    retries: Option<u32>,
    retry_backoff_s: Option<u64>,
    gates: Option<Gates>,
    skip_up_to_date: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Targets {
    devices: Option<Vec<String>>,
    glob: Option<String>,
    labels: Option<Labels>,
}

impl From<RolloutError> for ApiError {
    fn from(e: RolloutError) -> Self {
        match e {
            RolloutError::NotFound(_) => Self::NotFound(e.to_string()),
            RolloutError::Ended(text) => Self::Conflict(text),
            RolloutError::TooMany => Self::Conflict(e.to_string()),
            RolloutError::Store(e) => crate::runtime::RuntimeError::Store(e).into(),
        }
    }
}

fn bad(text: impl Into<String>) -> ApiError {
    ApiError::BadRequest(text.into())
}

/// The targets, resolved now: explicit ids as given (registered or not), or the inventory's
/// devices a pattern or a label selector matches, by id.
fn resolve_targets(state: &ApiState, targets: Targets) -> Result<Vec<DeviceId>, ApiError> {
    let devices = match (targets.devices, targets.glob, targets.labels) {
        (Some(ids), None, None) => {
            let mut seen = std::collections::HashSet::new();
            let mut devices = Vec::with_capacity(ids.len());
            for id in &ids {
                let device = DeviceId::parse(id).map_err(|e| bad(format!("targets.devices: {e}")))?;
                if !seen.insert(device.clone()) {
                    return Err(bad(format!("targets.devices names {id:?} more than once")));
                }
                devices.push(device);
            }
            devices
        }
        (None, Some(glob), None) => {
            let query =
                DeviceQuery::default().with_glob(&glob).map_err(|e| bad(format!("targets.glob: {e}")))?;
            let devices = state.handle.inventory().ids(&query);
            if devices.is_empty() {
                return Err(bad(format!("targets.glob {glob:?} matches no device in the inventory")));
            }
            devices
        }
        (None, None, Some(selector)) => {
            labels::check(&selector).map_err(|e| bad(format!("targets.labels: {e}")))?;
            if selector.is_empty() {
                return Err(bad("targets.labels is empty: name at least one label"));
            }
            let query = DeviceQuery { labels: selector.clone(), ..DeviceQuery::default() };
            let devices = state.handle.inventory().ids(&query);
            if devices.is_empty() {
                let shown: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
                return Err(bad(format!(
                    "targets.labels {} match no device in the inventory",
                    shown.join(",")
                )));
            }
            devices
        }
        _ => return Err(bad("targets needs exactly one of \"devices\", \"glob\" or \"labels\"")),
    };
    if devices.is_empty() {
        return Err(bad("targets.devices is empty"));
    }
    if devices.len() > MAX_TARGETS {
        return Err(bad(format!("{} devices; a rollout targets at most {MAX_TARGETS}", devices.len())));
    }
    Ok(devices)
}

fn check_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(bad("name is empty"));
    }
    if name.len() > 128 {
        return Err(bad(format!("name is {} bytes; the limit is 128", name.len())));
    }
    if let Some(position) = name.chars().position(char::is_control) {
        return Err(bad(format!("name contains a control character at position {position}")));
    }
    Ok(name.to_owned())
}

fn share(field: &str, value: f64, zero_ok: bool) -> Result<f64, ApiError> {
    let low_ok = if zero_ok { value >= 0.0 } else { value > 0.0 };
    if low_ok && value <= 1.0 {
        Ok(value)
    } else {
        Err(bad(format!(
            "{field} is a share {} 0 and 1 (0.95 = 95%), not {value}",
            if zero_ok { "from" } else { "over" }
        )))
    }
}

pub async fn create(
    State(state): State<ApiState>,
    body: Result<Json<CreateRollout>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(request) = body?;
    let name = check_name(&request.name)?;
    let devices = resolve_targets(&state, request.targets)?;
    let wave_ends = wave_ends(request.waves.as_deref().unwrap_or_default(), devices.len())
        .map_err(|e| bad(format!("waves: {e}")))?;
    let success_threshold = share("success_threshold", request.success_threshold.unwrap_or(0.95), true)?;
    if let Some(rule) = &request.abort {
        share("abort.failure_share", rule.failure_share, false)?;
    }
    let retries = request.retries.unwrap_or(0);
    if retries > 10 {
        return Err(bad(format!("retries is at most 10, not {retries}")));
    }
    let retry_backoff_s = request.retry_backoff_s.unwrap_or(30);
    if !(1..=3600).contains(&retry_backoff_s) {
        return Err(bad(format!("retry_backoff_s is from 1 to 3600, not {retry_backoff_s}")));
    }
    if request.max_per_minute == Some(0) || request.max_concurrent == Some(0) {
        return Err(bad("max_per_minute and max_concurrent are at least 1 (leave them out for no cap)"));
    }
    let (chunk_size, chunk_interval) = pacing(&state, request.chunk_size, None, request.max_rate)?;
    let source = request.firmware.source()?;
    let image = resolve(&source, state.handle.library(), Some(&state.firmware_dir), &state.limits).await?;
    // Kept by content beside the job store, so jobs made after a restart still find it.
    if let Some(disk) = state.handle.library().disk() {
        let saved = image.clone();
        tokio::task::spawn_blocking(move || disk.save(&saved))
            .await
            .map_err(|_| ApiError::Internal("saving the image stopped".into()))?
            .map_err(|e| {
                if crate::store::is_disk_full(&e) {
                    ApiError::InsufficientStorage(
                        "the disk is full: the rollout's image could not be kept".into(),
                    )
                } else {
                    ApiError::Internal(format!("the rollout's image could not be kept: {e}"))
                }
            })?;
    }
    let plan = RolloutPlan {
        name,
        image: ImageInfo::from(&image),
        chunk_size: chunk_size.map(|c| c.get()),
        max_rate: request.max_rate.map(|r| r.0).filter(|r| *r > 0),
        chunk_interval_ms: chunk_interval.map(|d| d.as_millis() as u64),
        devices,
        wave_ends,
        max_per_minute: request.max_per_minute,
        max_concurrent: request.max_concurrent,
        success_threshold,
        abort: request.abort,
        retries,
        retry_backoff_ms: retry_backoff_s * 1000,
        gates: request.gates.unwrap_or_default(),
        skip_up_to_date: request.skip_up_to_date.unwrap_or(false),
    };
    let rollout = state.handle.rollouts().create(plan).await?;
    Ok((StatusCode::CREATED, Json(json!(RolloutView::full(&rollout, now(&state))))))
}

/// Unix ms on the runtime's clock, for a view's ETA.
fn now(state: &ApiState) -> u64 {
    let clock = state.handle.clock();
    clock.unix_ms(clock.now())
}

fn rollout_id(raw: &str) -> Result<u64, ApiError> {
    raw.parse().map_err(|_| bad(format!("rollout id {raw:?} is not a number")))
}

pub async fn list(State(state): State<ApiState>) -> Json<Value> {
    Json(json!({ "rollouts": state.handle.rollouts().list(LIST_LIMIT) }))
}

pub async fn show(State(state): State<ApiState>, Path(raw): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = rollout_id(&raw)?;
    let rollout = state.handle.rollouts().view(id).ok_or(RolloutError::NotFound(id))?;
    Ok(Json(json!(rollout)))
}

/// `POST /rollouts/{id}/pause|resume|cancel`.
pub async fn control(
    State(state): State<ApiState>,
    Path((raw, verb)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let id = rollout_id(&raw)?;
    let rollouts = state.handle.rollouts();
    let rollout = match verb.as_str() {
        "pause" => rollouts.pause(id).await?,
        "resume" => rollouts.resume(id).await?,
        "cancel" => rollouts.cancel(id).await?,
        other => return Err(ApiError::NotFound(format!("no action {other:?}: use pause, resume or cancel"))),
    };
    Ok(Json(json!(RolloutView::summary(
        &rollout,
        rollout.wave_counts(),
        rollout.plan.devices.len(),
        now(&state)
    ))))
}
