//! `POST /firmware?name=…`: upload an image into the firmware directory.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiState};
use crate::firmware::{Image, write_atomically};
use crate::protocol::sha256_hex;

#[derive(Deserialize)]
pub struct UploadQuery {
    name: Option<String>,
}

/// A file name with no directory part and nothing hidden or special.
fn valid_name(name: &str) -> Result<&str, ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok {
        Ok(name)
    } else {
        Err(ApiError::BadRequest(format!(
            "bad image name {name:?}: use letters, digits, '.', '-' and '_' (no path, not starting with '.')"
        )))
    }
}

pub async fn upload(
    State(state): State<ApiState>,
    Query(query): Query<UploadQuery>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!("image is larger than the limit of {} bytes", state.limits.max_bytes))
        } else {
            ApiError::BadRequest(e.body_text())
        }
    })?;
    if body.is_empty() {
        return Err(ApiError::BadRequest("the request body (the image) is empty".into()));
    }
    let name = query.name.as_deref().map(valid_name).transpose()?.map(str::to_owned);
    let image = tokio::task::spawn_blocking({
        let name = name.clone().unwrap_or_else(|| "upload.bin".to_owned());
        move || Image::new(name, body)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let file_name = name.unwrap_or_else(|| format!("{}.bin", sha256_hex(image.sha256())));
    let path = state.firmware_dir.join(&file_name);
    let bytes = image.bytes().clone();
    let target = path.clone();
    tokio::task::spawn_blocking(move || write_atomically(&target, &bytes))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(format!("cannot write {}: {e}", path.display())))?;
    let image = state.handle.library().intern(image);
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "name": file_name,
            "path": file_name,
            "size": image.size(),
            "sha256": sha256_hex(image.sha256()),
        })),
    ))
}
