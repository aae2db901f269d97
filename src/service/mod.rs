//! What an operator can do, written once for every face: the HTTP API (`http/`) and the console
//! (`tui/`, in this process) call these, so a rule or a refusal cannot differ between them.
//! Each action takes the runtime's [`crate::runtime::Handle`] and answers a [`ServiceError`]
//! that names what was wrong; the faces only translate it (a status code, a line on screen).
//!
//! Rollout creation and retention live here so far; jobs and devices follow (issue 21).

mod error;
mod retention;
mod rollouts;

pub use error::ServiceError;
pub use retention::start_retention;
pub use rollouts::{NewRollout, plan_rollout, start_rollout};
