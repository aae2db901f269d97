//! The audit trail as the service writes it: each state-changing action, once decided, is
//! written with this service's actor before the action answers, so every face (the API, the
//! CLI through it, the console in-process) is audited alike and none can forget to be.

use super::{Service, ServiceError};
use crate::audit::{Action, NewEntry, Page, Query};
use crate::runtime::RuntimeError;

/// The actor of a service no caller has named: Rocky's own actions (the demo's script).
pub const SYSTEM_ACTOR: &str = "rocky";

impl Service {
    /// This service acting for `actor` (a token's name, `console:<user>@<host>`): what it
    /// changes is written to the audit under that name.
    pub fn acting_as(&self, actor: &str) -> Self {
        Self { handle: self.handle.clone(), actor: actor.into() }
    }

    /// Who this service acts for.
    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// Writes what `result` says of `action` on `target` (made from the result when it has
    /// one), committed before it hands `result` back.
    pub(super) async fn audited<T>(
        &self,
        action: Action,
        result: Result<T, ServiceError>,
        target: impl FnOnce(Option<&T>) -> String,
    ) -> Result<T, ServiceError> {
        let outcome = match &result {
            Ok(_) => "ok".to_owned(),
            Err(error) if error.is_failure() => format!("failed: {error}"),
            Err(error) => format!("refused: {error}"),
        };
        let target = target(result.as_ref().ok());
        self.record(action, &target, &outcome).await;
        result
    }

    /// Writes one entry as this service's actor, now.
    pub async fn record(&self, action: Action, target: &str, outcome: &str) {
        let at = i64::try_from(self.clock().unix_ms(self.clock().now())).unwrap_or(i64::MAX);
        self.handle.audit().record(NewEntry::new(at, &self.actor, action, target, outcome)).await;
    }

    /// Writes a write refused for the caller's role (at most once a minute per actor; the
    /// rest are counted into the next).
    pub async fn record_refusal(&self, target: &str, outcome: &str) {
        let at = i64::try_from(self.clock().unix_ms(self.clock().now())).unwrap_or(i64::MAX);
        let entry = NewEntry::new(at, &self.actor, Action::Forbidden, target, outcome);
        self.handle.audit().record_refusal(entry).await;
    }

    /// One page of the audit entries `query` matches, oldest first.
    pub async fn audit(&self, query: &Query) -> Result<Page, ServiceError> {
        self.handle.audit().read(query).await.map_err(ServiceError::Unavailable)
    }
}

impl ServiceError {
    /// Whether this side failed (rather than refusing what was asked).
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            Self::Internal(_)
                | Self::DiskFull(_)
                | Self::Unavailable(_)
                | Self::Runtime(RuntimeError::Store(_) | RuntimeError::Stopped)
        )
    }
}

/// The audit's name for jobs: `job:12`, or `job:12,13,14` (the first ten, then the count).
pub fn jobs_target<'a>(ids: impl ExactSizeIterator<Item = &'a crate::engine::JobId>) -> String {
    let count = ids.len();
    let shown: Vec<String> = ids.take(10).map(|id| id.to_string()).collect();
    let mut target = format!("job:{}", shown.join(","));
    if count > shown.len() {
        target.push_str(&format!(",… ({count} jobs)"));
    }
    target
}
