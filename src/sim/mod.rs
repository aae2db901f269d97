//! Simulated devices that speak the protocol as a real device would: they verify the SHA-256
//! of what they reassemble and answer FOTA_DONE_SUCCESS only on a match. Each has its own MQTT
//! connection, so a fleet exercises the broker as a real one does. Misbehaviour (NACK, failure,
//! silence, corruption, garbage, slowness) is assigned per device to test the unhappy paths.
//!
//! The protocol side is sans-IO (`DeviceMachine`): the fleet drives it from MQTT connections,
//! and `Pair` drives it beside the engine on virtual time.

mod aws_agent;
mod behavior;
mod boot;
#[cfg(test)]
mod delta_tests;
mod device;
mod fleet;
mod machine;
#[cfg(test)]
mod manifest_tests;
mod model;
mod pair;
#[cfg(test)]
mod pair_tests;
mod report;
mod sample;
mod shared;
mod transfer;

pub use aws_agent::{AGENT_BLOCK, AgentOut, AwsAgent};
pub use behavior::{Behavior, BehaviorPlan, Selection, SelectionError};
pub use boot::{AfterUpdate, FACTORY_VERSION, factory_image};
pub use fleet::{Fleet, FleetConfig, device_ids};
pub use machine::{DeviceMachine, GARBAGE_FRAME, IDLE_CONFIRM};
pub use model::DeviceModel;
pub use pair::{Pair, PairDevice};
pub use report::{DeviceReport, Verdict};
pub use sample::sample_image;
