//! Every test but the log test, in one binary so that the workspace links two test binaries instead of
//! eight (`tests/logs.rs` stays alone: it installs a process-wide log subscriber).
//!
//! The integration tests run the real bridge, in-process on port 0, against the stateful fakes of
//! `crates/upstream-fakes`, which follow docs/src/upstream/. Assertions are on the fakes' final state and call
//! logs. Beside them: the fakes' contract tests against the vendored specs, the blueprint, the deployment
//! kit, `.env.example`, and the parser properties.

mod helpers;
mod openapi;

mod accounts;
mod authentik_push;
mod blueprint;
mod blueprint_mapping;
mod cli;
mod contract;
mod contract_openfga;
mod deploy;
mod env_example;
mod faults;
mod fga_engine;
mod fuzz_props;
mod hostile;
mod invites;
mod layers;
mod openfga;
mod races;
mod reconcile;
mod runtime;
mod scim;
mod scim_conformance;
mod scim_crash;
mod signin;
mod state_store;
