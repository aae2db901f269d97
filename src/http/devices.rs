//! The inventory endpoints: `GET /devices` (filters `label=k=v`, repeatable; `glob`;
//! `seen_since`; paging with `after` and `limit`), `GET/PUT/DELETE /devices/{id}` and
//! `POST /devices/import`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;

use super::{ApiError, ApiState};
use crate::api::{self, DevicePage, PutDevice};
use crate::inventory::{Device, DeviceQuery, InventoryError};
use crate::protocol::DeviceId;
use crate::service::{self, RuntimeError};

/// Largest import body: about 20,000 devices with a few labels each.
pub const MAX_IMPORT_BODY: usize = 4 * 1024 * 1024;
const DEFAULT_PAGE: usize = 1000;
const MAX_PAGE: usize = 10_000;

impl From<InventoryError> for ApiError {
    fn from(e: InventoryError) -> Self {
        match e {
            InventoryError::Full { .. } => Self::InsufficientStorage(e.to_string()),
            InventoryError::Store(e) => RuntimeError::Store(e).into(),
        }
    }
}

fn device_id(raw: &str) -> Result<DeviceId, ApiError> {
    DeviceId::parse(raw).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// A version to filter by: what a status may name (at most 64 bytes).
fn version(text: &str) -> Result<String, ApiError> {
    if text.is_empty() || text.len() > crate::protocol::MAX_VERSION_BYTES {
        return Err(ApiError::BadRequest(format!(
            "version is 1 to {} bytes, got {}",
            crate::protocol::MAX_VERSION_BYTES,
            text.len()
        )));
    }
    Ok(text.to_owned())
}

pub async fn list(
    State(state): State<ApiState>,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DevicePage>, ApiError> {
    let Query(pairs) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let mut query = DeviceQuery { limit: DEFAULT_PAGE, ..DeviceQuery::default() };
    let now_ms = state.service.clock().unix_ms(state.service.clock().now());
    for (key, value) in pairs {
        let bad = |e: crate::inventory::QueryError| ApiError::BadRequest(e.to_string());
        match key.as_str() {
            "label" => query = query.with_label(&value).map_err(bad)?,
            "glob" => query = query.with_glob(&value).map_err(bad)?,
            "seen_since" => query.seen_since = Some(super::filters::since("seen_since", &value, now_ms)?),
            "after" => query.after = Some(device_id(&value)?),
            "running" => {
                let hash = crate::firmware::parse_sha256(&value)
                    .map_err(|e| ApiError::BadRequest(format!("running: {e}")))?;
                query.running = Some(crate::protocol::sha256_hex(&hash));
            }
            "version" => query.version = Some(version(&value)?),
            "version_not" => query.version_not = Some(version(&value)?),
            "limit" => query.limit = super::filters::limit(&value, MAX_PAGE)?,
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown filter {other:?}; use label=KEY=VALUE, glob, seen_since, running=SHA256, version, \
                     version_not, after or limit"
                )));
            }
        }
    }
    let (devices, next_after) = state.service.inventory().page(&query);
    Ok(Json(DevicePage { devices, next_after: next_after.map(|id| id.to_string()) }))
}

pub async fn show(State(state): State<ApiState>, Path(raw): Path<String>) -> Result<Json<Device>, ApiError> {
    Ok(Json(state.service.device(&device_id(&raw)?)?))
}

/// Registers a device with these labels (replacing its labels if it is known): 201 when new.
pub async fn put(
    super::Acting(state): super::Acting,
    Path(raw): Path<String>,
    body: Result<Json<PutDevice>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Device>), ApiError> {
    let id = device_id(&raw)?;
    let Json(body) = body?;
    let mut labels = body.labels;
    if let Some(profile) = body.profile {
        labels.insert(crate::inventory::profile::PROFILE_LABEL.to_owned(), profile);
    }
    let (device, added) = state.service.register(id, labels).await?;
    Ok((if added { StatusCode::CREATED } else { StatusCode::OK }, Json(device)))
}

pub async fn delete(
    super::Acting(state): super::Acting,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.service.forget(&device_id(&raw)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// JSON (`[{"device_id", "labels"}, …]`) or lines of `device_id,key=value,…`; all or nothing.
pub async fn import(
    super::Acting(state): super::Acting,
    body: Bytes,
) -> Result<Json<api::Imported>, ApiError> {
    let service::Imported { rows, added } = state.service.import_devices(&body).await?;
    Ok(Json(api::Imported { imported: rows, added, updated: rows - added }))
}
