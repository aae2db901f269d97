//! The rollout endpoints: `POST /rollouts`, `GET /rollouts`, `GET /rollouts/{id}` and
//! `POST /rollouts/{id}/pause|resume|cancel`.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiState};
use crate::api::{Firmware, RolloutList};
use crate::rollout::{DeviceWindow, RolloutId, RolloutRequest, RolloutView};
use crate::service::{self, RolloutError, RuntimeError};

/// Rollouts a listing shows (the newest).
const LIST_LIMIT: usize = 1000;

impl From<service::ServiceError> for ApiError {
    fn from(e: service::ServiceError) -> Self {
        match e {
            service::ServiceError::Invalid(text) => Self::BadRequest(text),
            service::ServiceError::NotFound(text) => Self::NotFound(text),
            service::ServiceError::Conflict(text) => Self::Conflict(text),
            service::ServiceError::Inventory(e) => e.into(),
            service::ServiceError::Runtime(e) => e.into(),
            service::ServiceError::DiskFull(text) => Self::InsufficientStorage(text),
            service::ServiceError::Internal(text) => Self::Internal(text),
            service::ServiceError::Rollout(e) => e.into(),
            service::ServiceError::Unavailable(text) => Self::Unavailable(text),
            service::ServiceError::Firmware(e) => e.into(),
        }
    }
}

impl From<RolloutError> for ApiError {
    fn from(e: RolloutError) -> Self {
        match e {
            RolloutError::NotFound(_) => Self::NotFound(e.to_string()),
            RolloutError::Ended(text) => Self::Conflict(text),
            RolloutError::TooMany | RolloutError::Elsewhere(_) => Self::Conflict(e.to_string()),
            RolloutError::Store(e) => RuntimeError::Store(e).into(),
        }
    }
}

/// `POST /rollouts`: the request's rules are checked (see [`RolloutRequest::plan`]), its image
/// resolved and kept by content, and the rollout written before the answer. With
/// `?dry_run=true`, the plan a real run would follow is answered (200) and nothing is created.
#[derive(Deserialize)]
pub struct CreateQuery {
    /// `true`: answer the plan (`service::RolloutDryRun`) and create nothing.
    #[serde(default)]
    dry_run: bool,
}

pub async fn create(
    super::Acting(state): super::Acting,
    query: Result<Query<CreateQuery>, axum::extract::rejection::QueryRejection>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let Query(query) = query.map_err(|e| ApiError::BadRequest(crate::units::plain_words(&e.body_text())))?;
    let Json(mut body) = body?;
    // The firmware is the API's to resolve; the rest is the one request shape.
    let firmware = body.as_object_mut().and_then(|fields| fields.remove("firmware"));
    let firmware: Firmware = match firmware {
        Some(value) => {
            serde_json::from_value(value).map_err(|e| ApiError::BadRequest(format!("firmware: {e}")))?
        }
        None => return Err(ApiError::BadRequest("missing field `firmware`".into())),
    };
    let request: RolloutRequest =
        serde_json::from_value(body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    // Checked and planned before the image is fetched: a mistake costs no download.
    let plan = state.service.plan_rollout(&request)?;
    let source = firmware.source().map_err(ApiError::BadRequest)?;
    let image = state.service.rollout_image(&source, &state.firmware_dir, &state.limits).await?;
    if query.dry_run {
        let run = state.service.dry_run_rollout(&plan, &image).await?;
        return Ok((StatusCode::OK, Json(run)).into_response());
    }
    let started = state.service.start_rollout(plan, image).await?;
    let warning = crate::inventory::never_seen_note(&started.never_seen);
    let answer = Started {
        never_seen: warning.is_some().then_some(started.never_seen.len()),
        warning,
        rollout: RolloutView::full(&started.rollout, now(&state)),
    };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// `POST /rollouts`'s answer: the rollout with every device, and a warning naming the devices
/// never heard from. Serialized straight into the body: a rollout of 100,000 devices made into
/// a `serde_json::Value` first held 68 MB for a moment (the server's peak), the body 17.
/// The warning comes first, where a reader of a long answer sees it.
#[derive(serde::Serialize)]
struct Started {
    #[serde(skip_serializing_if = "Option::is_none")]
    never_seen: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warning: Option<String>,
    #[serde(flatten)]
    rollout: RolloutView,
}

/// Unix ms on the runtime's clock, for a view's ETA.
fn now(state: &ApiState) -> u64 {
    let clock = state.service.clock();
    clock.unix_ms(clock.now())
}

fn rollout_id(raw: &str) -> Result<RolloutId, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::BadRequest(format!("{raw:?} is not a rollout id (a whole number from 0 to {})", u64::MAX))
    })
}

pub async fn list(State(state): State<ApiState>) -> Json<RolloutList> {
    Json(RolloutList { rollouts: state.service.rollouts(LIST_LIMIT) })
}

/// `?from=&limit=`: a window of the rollout's devices rather than all of them.
#[derive(Deserialize)]
pub struct ShowQuery {
    /// The first device's position, from 0.
    from: Option<usize>,
    /// How many devices (default 1000, at most 10000).
    limit: Option<usize>,
}

/// Devices in a window that names only where it starts.
const DEFAULT_WINDOW: usize = 1000;

/// `GET /rollouts/{id}`: the rollout with its history and every device's outcome, or with the
/// devices of one window (`from`, `limit`) — `devices_from` then says where it starts.
pub async fn show(
    State(state): State<ApiState>,
    Path(raw): Path<String>,
    query: Result<Query<ShowQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<RolloutView>, ApiError> {
    let id = rollout_id(&raw)?;
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let window = match (query.from, query.limit) {
        (None, None) => None,
        (from, limit) => {
            Some(DeviceWindow { from: from.unwrap_or(0), limit: limit.unwrap_or(DEFAULT_WINDOW) })
        }
    };
    Ok(Json(state.service.rollout_view(id, window)?))
}

/// `POST /rollouts/{id}/pause|resume|cancel`.
pub async fn control(
    super::Acting(state): super::Acting,
    Path((raw, verb)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let id = rollout_id(&raw)?;
    let Some(verb) = service::RolloutVerb::parse(&verb) else {
        return Err(ApiError::NotFound(format!("no action {verb:?}: use pause, resume or cancel")));
    };
    let rollout = state.service.control_rollout(id, verb).await?;
    Ok(Json(json!(RolloutView::summary(
        &rollout,
        rollout.wave_counts(),
        rollout.plan.device_count(),
        now(&state)
    ))))
}
