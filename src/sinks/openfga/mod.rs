//! The OpenFGA sink: `client` talks to OpenFGA, `tuples` is the pure tuple planner and naming, `sink` the
//! [`Sink`](crate::runtime::converge::Sink) contract, `report` its half of `reconcile`'s report, and `check` its lines for `authentik-bridge check`.

pub mod check;
pub mod client;
pub mod report;
pub mod sink;
pub mod tuples;

pub use client::OpenFgaClient;
