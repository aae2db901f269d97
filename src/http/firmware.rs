//! `POST /firmware?name=…[&version=…&seq=…]`: upload an image into the firmware directory (and
//! sign it with Rocky's key when it holds one); `GET /firmware`, `GET /firmware/{sha256}`;
//! `PUT /firmware/{sha256}/manifest`: attach a manifest signed elsewhere, once verified.
//!
//! The body is streamed into a hidden file in the firmware directory while it is hashed, so an
//! unfinished upload holds a file (removed when the request fails or is abandoned), not memory;
//! only a complete image is renamed into place and loaded.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use futures_util::StreamExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{ApiError, ApiState};
use crate::api::{FirmwareImage, FirmwareList};
use crate::firmware::{Image, PartialFile, parse_sha256};

#[derive(Deserialize)]
pub struct UploadQuery {
    name: Option<String>,
    /// With Rocky's signing key: the manifest's version and security counter.
    version: Option<String>,
    seq: Option<u64>,
    /// Replace a manifest with a higher security counter (else 409).
    #[serde(default)]
    replace: bool,
}

#[derive(Deserialize)]
pub struct ManifestQuery {
    /// Replace a manifest with a higher security counter (else 409).
    #[serde(default)]
    replace: bool,
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

/// A write that failed: a full disk is 507 with the numbers, anything else 500; neither shows a
/// server path.
fn write_error(error: std::io::Error) -> ApiError {
    if crate::write_error::is_disk_full(&error) {
        ApiError::InsufficientStorage("the firmware directory's disk is full; nothing was kept".into())
    } else {
        tracing::error!(%error, "an upload could not be written");
        ApiError::Internal(format!("the image could not be written ({})", error.kind()))
    }
}

/// Bytes in the regular files directly inside `dir` (uploads and unfinished uploads).
async fn directory_bytes(dir: &std::path::Path) -> u64 {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|entry| entry.metadata().ok())
                    .filter(std::fs::Metadata::is_file)
                    .map(|meta| meta.len())
                    .sum()
            })
            .unwrap_or(0)
    })
    .await
    .unwrap_or(0)
}

/// The 507 for an upload past `firmware.max_store_bytes`, with the numbers.
fn over_cap(used: u64, upload: u64, cap: u64) -> ApiError {
    let upload = if upload > 0 { format!(" and this upload ({upload} bytes so far)") } else { String::new() };
    ApiError::InsufficientStorage(format!(
        "the firmware directory holds {used} bytes{upload}; firmware.max_store_bytes is {cap} bytes; nothing was kept"
    ))
}

pub async fn upload(
    super::Acting(state): super::Acting,
    query: Result<Query<UploadQuery>, axum::extract::rejection::QueryRejection>,
    body: Body,
) -> Result<(StatusCode, Json<FirmwareImage>), ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(crate::units::plain_words(&e.body_text())))?;
    if let Some(version) = &query.version
        && (version.len() > crate::protocol::MAX_VERSION_BYTES
            || version.chars().any(crate::text::is_unprintable))
    {
        return Err(ApiError::BadRequest(format!(
            "version must be at most {} printable bytes",
            crate::protocol::MAX_VERSION_BYTES
        )));
    }
    let name = query.name.as_deref().map(valid_name).transpose()?.map(str::to_owned);
    // Rocky signs an upload only when asked to (a version or a counter given): a re-upload of
    // an image signed elsewhere keeps that manifest.
    let signs = query.version.is_some() || query.seq.is_some();
    if signs && state.service.library().manifests().signer().is_none() {
        return Err(ApiError::BadRequest(
            "version and seq sign the upload, and Rocky holds no signing key (firmware.signing_key_file); \
             sign offline with `rocky sign` and PUT /firmware/{sha256}/manifest"
                .into(),
        ));
    }
    let max = state.limits.max_bytes;
    let cap = state.policy.max_store_bytes;
    let used_before = directory_bytes(&state.firmware_dir).await;
    if used_before >= cap {
        return Err(over_cap(used_before, 0, cap));
    }
    let mut partial = PartialFile::create(&state.firmware_dir).await.map_err(write_error)?;
    let mut stream = body.into_data_stream();
    let mut size: u64 = 0;
    // Hashed as it streams, so an upload without a name can be named by its content.
    let mut hasher = Sha256::new();
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(|e| ApiError::BadRequest(format!("the upload broke off: {e}")))?;
        size += piece.len() as u64;
        if size > max {
            return Err(ApiError::TooLarge(format!("image is larger than the limit of {max} bytes")));
        }
        if used_before.saturating_add(size) > cap {
            return Err(over_cap(used_before, size, cap));
        }
        hasher.update(&piece);
        partial.write(&piece).await.map_err(write_error)?;
    }
    if size == 0 {
        return Err(ApiError::BadRequest("the request body (the image) is empty".into()));
    }
    let file_name = name.unwrap_or_else(|| format!("{}.bin", hex::encode(hasher.finalize())));
    let target = state.firmware_dir.join(&file_name);
    // Other uploads may have finished meanwhile: the directory now holds this one's partial
    // file too, less the file it replaces.
    let replaced = tokio::fs::metadata(&target).await.map(|m| m.len()).unwrap_or(0);
    let used_now = directory_bytes(&state.firmware_dir).await.saturating_sub(replaced);
    if used_now > cap {
        return Err(over_cap(used_now.saturating_sub(size), size, cap));
    }
    let bytes = partial.commit(&target).await.map_err(write_error)?;
    let name = file_name.clone();
    let image = tokio::task::spawn_blocking(move || Image::new(name, bytes))
        .await
        .map_err(|_| ApiError::Internal("the uploaded image could not be hashed".into()))?;
    let signing = signs.then(|| (query.version, query.seq.unwrap_or(0), query.replace));
    Ok((StatusCode::CREATED, Json(state.service.keep_upload(image, target, file_name, signing).await?)))
}

fn sha256_of(raw: &str) -> Result<crate::protocol::Sha256, ApiError> {
    parse_sha256(raw).map_err(|e| ApiError::BadRequest(e.to_string()))
}

pub async fn list(State(state): State<ApiState>) -> Result<Json<FirmwareList>, ApiError> {
    Ok(Json(state.service.firmware_list().await?))
}

pub async fn show(
    State(state): State<ApiState>,
    Path(raw): Path<String>,
) -> Result<Json<FirmwareImage>, ApiError> {
    Ok(Json(state.service.firmware_image(&sha256_of(&raw)?).await?))
}

/// The body is the COSE_Sign1 as `rocky sign` writes it (at most 4 KiB).
pub async fn put_manifest(
    super::Acting(state): super::Acting,
    Path(raw): Path<String>,
    query: Result<Query<ManifestQuery>, axum::extract::rejection::QueryRejection>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<FirmwareImage>, ApiError> {
    let sha = sha256_of(&raw)?;
    let Query(query) = query.map_err(|e| ApiError::BadRequest(crate::units::plain_words(&e.body_text())))?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!("a manifest is at most {} bytes", crate::protocol::MAX_MANIFEST_BYTES))
        } else {
            ApiError::BadRequest(crate::units::plain_words(&e.body_text()))
        }
    })?;
    if body.is_empty() {
        return Err(ApiError::BadRequest("the request body (the manifest) is empty".into()));
    }
    Ok(Json(state.service.attach_manifest(&sha, &body, query.replace).await?))
}

/// The body is the `sig-sha256-ecdsa` as `rocky sign --format aws` writes it (base64 text).
pub async fn put_aws_signature(
    super::Acting(state): super::Acting,
    Path(raw): Path<String>,
    body: Result<String, axum::extract::rejection::StringRejection>,
) -> Result<Json<FirmwareImage>, ApiError> {
    let sha = sha256_of(&raw)?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!(
                "a sig-sha256-ecdsa is at most {} bytes",
                crate::firmware::MAX_AWS_SIGNATURE_BYTES
            ))
        } else {
            ApiError::BadRequest(crate::units::plain_words(&e.body_text()))
        }
    })?;
    Ok(Json(state.service.attach_aws_signature(&sha, &body).await?))
}
