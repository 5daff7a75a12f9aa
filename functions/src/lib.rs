//! dropgate's services: the four functions (queue-api, admitter, goods-worker,
//! result-relay), one binary each in `src/bin/`, and the adapters they share:
//! configuration, logs, Redis, Kafka or Pub/Sub, PostgreSQL and HTTP, kept apart from
//! the rules in `dropgate-core`.
//!
//! Each binary is thin: it parses one config struct, wires adapters from here and
//! calls core for every decision. A business rule found in a binary belongs in core.
//! The operator CLI, the local stack, the demo and the benchmarks are in
//! `dropgate-tools`, which depends on this crate and never the other way round, so the
//! services' image holds the services only.

pub mod admitter;
pub mod auth;
pub mod bus;
pub mod config;
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
pub mod telemetry;
pub mod tls;
