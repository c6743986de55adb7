//! authentik-bridge: Outline follows Authentik's group memberships in real time.
//!
//! The modules follow the data flow:
//! `webhook in (routes, webhooks) -> event -> job (sync) -> plan (domain) -> Outline calls (clients)`.

pub mod cli;
pub mod clients;
pub mod configuration;
#[cfg(feature = "demo")]
pub mod demo;
pub mod domain;
pub mod metrics;
pub mod reason;
pub mod report;
pub mod routes;
pub mod runtime;
pub mod startup;
pub mod sync;
pub mod telemetry;
pub mod webhooks;
