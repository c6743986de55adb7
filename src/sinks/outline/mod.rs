//! The Outline sink. `sink` holds its state, `contract` its [`Sink`](crate::runtime::converge::Sink)
//! contract with the runtime, and `keys` its own kinds of job;
//! `push` and `pass` plan for the runtime's two converge paths; `plan` is the pure planner and `apply` the
//! writer that keeps a refusal to its group; `client` and `limiter` talk to Outline; `index` caches its
//! group and user indexes; `check` its lines for `authentik-bridge check`; `signin` verifies its signed `users.signin` webhook. Its own features live in the
//! hooks after a push or a pass: roles and suspensions (`accounts`, `account_plan`, `account_jobs`,
//! `suspensions`) and invitations (`invites`, `invite_window`, `invite_jobs`).

pub mod account_jobs;
pub mod account_plan;
pub mod accounts;
pub mod apply;
pub mod check;
pub mod client;
pub mod contract;
pub mod index;
pub mod invite_jobs;
pub mod invite_window;
pub mod invites;
pub mod keys;
pub mod limiter;
pub mod pass;
pub mod plan;
pub mod push;
pub mod signin;
pub mod sink;
pub mod suspensions;

pub use client::OutlineClient;
