//! What an operator can do, written once for every face: the HTTP API (`http/`) and the console
//! (`tui/`, in this process) call these, so a rule or a refusal cannot differ between them.
//! Each action takes the runtime's [`crate::runtime::Handle`] and answers a [`ServiceError`]
//! that names what was wrong; the faces only translate it (a status code, a line on screen).
//!
//! Here so far: rollouts (create, pause/resume/cancel, read), devices (register, import,
//! forget), a job's retry, and retention. Submitting and cancelling jobs are the runtime
//! `Handle`'s own calls.

mod devices;
mod error;
mod jobs;
mod retention;
mod rollouts;

pub use devices::{Imported, device, forget, import_devices, register};
pub use error::ServiceError;
pub use jobs::retry;
pub use retention::start_retention;
pub use rollouts::{NewRollout, RolloutVerb, control_rollout, plan_rollout, rollout_view, start_rollout};
