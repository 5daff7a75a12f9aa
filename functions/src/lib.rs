//! dropgate's adapters: everything that touches the outside world (configuration,
//! logs, and, as the functions grow, Redis, Kafka, PostgreSQL and HTTP), kept apart
//! from the rules in `dropgate-core`.
//!
//! Each binary in `src/bin/` is thin: it parses one config struct, wires adapters from
//! here and calls core for every decision. A business rule found in a binary belongs
//! in core.

pub mod admitter;
pub mod auth;
pub mod bench;
pub mod bus;
pub mod chart;
pub mod cli_event;
pub mod cli_stack;
pub mod config;
pub mod crowd;
pub mod event_settings;
pub mod events;
pub mod failpoint;
pub mod goods;
pub mod http;
pub mod kafka;
pub mod lifecycle;
pub mod ops_server;
pub mod postgres;
pub mod pubsub;
pub mod queue;
pub mod relay;
pub mod service;
pub mod settings_table;
pub mod stack;
pub mod telemetry;
pub mod tls;
