//! dropgate's tooling: what operators and developers run around the services, never
//! the services themselves (those are `dropgate-functions`).
//!
//! The `dropgate` binary is its command line ([`cli`]). The modules are
//! a library so the workspace tests drive the same code the CLI runs: they start the
//! local stack, create events and send the demo's crowd through it.

pub mod bench;
pub mod chart;
pub mod cli;
pub mod dead_letter_cli;
pub mod demo;
pub mod event_cli;
pub mod event_settings;
pub mod events;
pub mod independent;
pub mod settings_table;
pub mod stack;
pub mod stack_cli;
pub mod watch;
