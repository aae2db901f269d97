//! The job scheduler as a sans-IO state machine.
//!
//! Inputs are method calls (`submit`, `cancel`, `handle_response`, `set_connected`, `tick`), each
//! with the current time as an argument; outputs are pulled: `poll_publish` for the next MQTT
//! message to send, `poll_event` for what happened, `next_wakeup` for when to call `tick` again.
//! No sockets, no sleeping and no clock inside, so every timeout, retry and ordering rule is
//! tested in microseconds (see `tests.rs`).

mod event;
mod job;
mod publish;
mod scheduler;
mod settings;
mod signed;
mod timers;

#[cfg(test)]
mod aws_tests;
#[cfg(test)]
mod confirm_tests;
#[cfg(test)]
mod flow_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use event::{Event, retry_words};
pub use job::{JobId, JobState, JobView, Reported, RolloutId, UnknownState};
pub use publish::{Publish, PublishKind};
pub use scheduler::{AwsJob, CancelError, Engine, JobSpec, RECONNECT_RETRY, SubmitError, aws_job_name};
pub use settings::Settings;
pub use signed::manifest_to_send;
