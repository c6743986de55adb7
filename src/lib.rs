//! authentik-bridge: the apps behind Authentik (Outline, and more through its sinks) follow its groups in
//! real time.
//!
//! The folders follow the data flow (docs/src/architecture.md):
//! `source (Authentik: client, reader, webhook) -> runtime (intake, job keys, queue, change clock, converge)
//! -> sinks (one folder each: plan, apply) -> http (routes) -> app (cli, startup, report, demo)`.
//! `domain` holds the pure types every layer shares; `clients` the HTTP plumbing every upstream client uses.
//! Imports go one way, down that list; `tests/api/layers.rs` keeps it so.

pub mod app;
pub mod clients;
pub mod configuration;
pub mod domain;
pub mod http;
pub mod metrics;
pub mod reason;
pub mod runtime;
pub mod sinks;
pub mod source;
pub mod store;
