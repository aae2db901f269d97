//! Rollouts: one image to many devices in waves, at a capped pace, stopping by itself when
//! failures climb. [`Rollout`] is a sans-IO state machine (time is an argument, the jobs it asks
//! for come back as calls), driven by the runtime's rollout task and persisted: its head as one row, each device in its own.

mod devices;
mod plan;
mod request;
mod state;
mod view;
pub mod window;

#[cfg(test)]
mod tests;

pub use devices::{Devices, Slot};
pub use plan::{AbortRule, Gates, MAX_RETRY_BACKOFF_MS, RolloutPlan, WaveSize, parse_share, wave_ends};
pub use request::{MAX_NAME, MAX_TARGETS, RolloutRequest, Targets, check_name};
pub use state::{
    Action, BUSY_RETRIES, Outcome, Rollout, RolloutBytes, RolloutChange, RolloutId, RolloutState,
    UNCAPPED_AT_ONCE, WaveCounts,
};
pub use view::{DeviceWindow, RolloutView, Settings, WaveView};
