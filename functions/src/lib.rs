//! dropgate's services: the four functions (queue-api, admitter, goods-worker,
//! result-relay), one binary each in `src/bin/`, and the adapters they share:
//! configuration, logs, Redis, Kafka or Pub/Sub, PostgreSQL and HTTP, kept apart from
//! the rules in `dropgate-core`.
//!
//! Each service has a module named like its binary ([`queue_api`], [`admitter`],
//! [`goods_worker`], [`result_relay`]) holding its settings and its
//! [`service::Service`]; each binary is `service::main` over it. The other modules are
//! the adapters they share. A business rule found outside core belongs in core.
//! The operator CLI, the local stack, the demo and the benchmarks are in
//! `dropgate-tools`, which depends on this crate and never the other way round, so the
//! services' image holds the services only.

pub mod admitter;
pub mod auth;
pub mod bus;
pub mod config;
pub mod dead_letter;
pub mod event_lifecycle;
pub mod failpoint;
pub mod fairness;
pub mod goods_worker;
pub mod http_server;
pub mod kafka;
pub mod lifecycle;
pub mod ops_server;
pub mod postgres;
pub mod pubsub;
pub mod queue;
pub mod queue_api;
pub mod result_relay;
pub mod seed_vault;
pub mod service;
pub mod telemetry;
pub mod tls;
