//! Rocky's integration tests, in one binary: real brokers (the embedded one and mosquitto),
//! real sockets for the HTTP API, a real terminal for the console, the local PostgreSQL, and
//! devices of the tests' own. One binary links once and lets the tests of every file run beside
//! each other; each module is one file of tests, named for what it covers
//! (`cargo test --test integration flow_control::`).

mod support;

mod api_hardening;
mod api_roles;
mod api_security;
mod async_workers;
mod audit;
mod aws_ota;
mod bench;
mod broker_attacks;
mod broker_connections;
mod broker_dns;
mod cli;
mod confirm;
mod console_tmux;
mod delta;
mod device_status;
mod disk_full;
mod durability;
mod end_to_end;
mod flow_control;
mod fuzz_seeds;
mod http_api;
mod http_connections;
mod image_memory;
mod instances;
mod inventory;
mod job_stream;
mod notify;
mod postgres_restart;
mod protocol_vectors;
mod quiet_events;
mod rollout_dry_run;
mod rollout_watch;
mod rollouts;
mod serve_log;
mod signed;
mod store_reads;
