//! The jobs a Rocky has recorded, read without starting one (`rocky jobs`): the data
//! directory's database read-only, or the shared PostgreSQL database, so it works while Rocky
//! runs and after it stopped.

use std::path::Path;

use super::ServiceError;
use crate::snapshot::JobSnapshot;
use crate::store::postgres::PgSettings;
use crate::store::{DB_FILE, open_read_only, read_jobs};

/// What the store holds, or `Err(location)` when there is no store there yet (a Rocky that
/// never ran here has recorded no jobs: an answer, not a failure).
pub async fn stored_jobs(
    postgres: Option<&PgSettings>,
    data_dir: &Path,
) -> Result<Result<Vec<JobSnapshot>, String>, ServiceError> {
    let failed = |e: &dyn std::fmt::Display| ServiceError::Internal(e.to_string());
    match postgres {
        Some(settings) => Ok(crate::store::postgres::read_jobs(settings)
            .await
            .map_err(|e| failed(&e))?
            .ok_or_else(|| settings.url().to_owned())),
        None => {
            let path = data_dir.join(DB_FILE);
            if !path.exists() {
                return Ok(Err(path.display().to_string()));
            }
            let conn = open_read_only(data_dir).map_err(|e| failed(&e))?;
            Ok(Ok(read_jobs(&conn).map_err(|e| failed(&e))?.0))
        }
    }
}
