//! Rocky pushes firmware to IoT devices over MQTT.
//!
//! Data flows one way through a few modules, each readable and testable alone:
//!
//! - [`protocol`]: pure wire contract: topics, device ids, CBOR frames, readable rendering.
//! - [`firmware`]: load an image (file or URL), hash it, slice it into chunks without copying.
//! - [`engine`]: the job scheduler as a sans-IO state machine; time is an argument.
//! - [`snapshot`]: a job's one shape outside the engine (API, events, store, CLI, console).
//! - [`clock`]: the engine's monotonic instants as wall-clock time.
//! - [`metrics`]: Prometheus counters and gauges for `GET /metrics`.
//! - [`mqtt`]: the broker connection: URLs, TLS, credentials, protocol versions, failures.
//! - [`runtime`]: wires the engine to tokio and rumqttc; the only place that owns tasks.
//! - [`http`]: the axum API over the runtime's handle.
//! - [`notify`]: signed webhooks for rollout changes, failed jobs and rollbacks.
//! - [`sim`]: simulated devices that speak the protocol and verify what they receive.
//! - [`broker`]: the embedded MQTT 3.1.1 broker for `rocky demo`, tests and benchmarks.
//! - [`inventory`]: the devices Rocky knows, their labels and what happened to them.
//! - [`rollout`]: staged rollouts as a sans-IO state machine: waves, pace, thresholds, retries.
//! - [`store`]: durable jobs in SQLite, content-addressed images, the data-dir lock.
//! - [`tui`]: the operator console: state fed by events, input to commands, a pure render.
//! - [`config`]: `rocky.toml`, `ROCKY_*` variables and flags, with where each value came from.
//! - [`audit`]: who changed what and how it went, written by the service before each answer.
//! - [`api`]: the HTTP API's wire contract and its one client; [`service`]: what an operator
//!   can do, written once for the API and the console.
//! - [`secret`], [`random`], [`write_error`]: small shared pieces below everything else (a
//!   secret that never prints, process-unique numbers, why a durable write failed).
#![forbid(unsafe_code)]

pub mod api;
pub mod audit;
pub mod broker;
pub mod clock;
pub mod config;
pub mod engine;
pub mod firmware;
#[doc(hidden)]
pub mod fuzz_targets;
pub mod http;
pub mod inventory;
pub mod metrics;
pub mod mqtt;
pub mod notify;
pub mod protocol;
pub mod random;
pub mod rollout;
pub mod runtime;
pub mod secret;
pub mod service;
pub mod signing;
pub mod sim;
mod small_file;
pub mod snapshot;
pub mod store;
pub mod text;
pub mod tls_files;
pub mod tui;
pub mod units;
pub mod write_error;
