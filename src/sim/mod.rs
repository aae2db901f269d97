//! Simulated devices that speak the protocol as a real device would: they verify the SHA-256
//! of what they reassemble and answer FOTA_DONE_SUCCESS only on a match. Each has its own MQTT
//! connection, so a fleet exercises the broker as a real one does. Misbehaviour (NACK, failure,
//! silence, corruption, garbage, slowness) is assigned per device to test the unhappy paths.

mod behavior;
mod device;
mod fleet;
mod model;
mod sample;

pub use behavior::{Behavior, BehaviorPlan, Selection, SelectionError};
pub use device::{DeviceReport, Verdict};
pub use fleet::{Fleet, FleetConfig};
pub use model::DeviceModel;
pub use sample::sample_image;
