//! `GET /audit`: who changed what, oldest first (or `order=newest`), filtered by `since` (Unix
//! ms or a span back like `2h`), `actor` and `target` (exact), paged with `after` (or `before`,
//! newest first) and `limit`.

use axum::Json;
use axum::extract::{Query, State};

use super::{ApiError, ApiState};
use crate::audit::{MAX_PAGE, Page, Query as AuditQuery};

pub async fn list(
    State(state): State<ApiState>,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Page>, ApiError> {
    let Query(pairs) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let now_ms = state.service.clock().unix_ms(state.service.clock().now());
    let mut query = AuditQuery::default();
    for (key, value) in pairs {
        match key.as_str() {
            "since" => {
                let ms = super::filters::since("since", &value, now_ms)?;
                query.since = Some(i64::try_from(ms).unwrap_or(i64::MAX));
            }
            "actor" => query.actor = Some(value),
            "target" => query.target = Some(value),
            "after" => {
                query.after = Some(value.parse::<i64>().map_err(|_| {
                    ApiError::BadRequest(format!(
                        "after {value:?} is not an entry id (a previous next_after)"
                    ))
                })?)
            }
            "before" => {
                query.before = Some(value.parse::<i64>().map_err(|_| {
                    ApiError::BadRequest(format!(
                        "before {value:?} is not an entry id (a previous next_before)"
                    ))
                })?)
            }
            "order" => {
                query.newest_first = match value.as_str() {
                    "oldest" => false,
                    "newest" => true,
                    _ => return Err(ApiError::BadRequest(format!("order {value:?} is oldest or newest"))),
                }
            }
            "limit" => query.limit = super::filters::limit(&value, MAX_PAGE)?,
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown filter {other:?}; use since, actor, target, after, before, order or limit"
                )));
            }
        }
    }
    Ok(Json(state.service.audit(&query).await?))
}
