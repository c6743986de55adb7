//! The source and the sinks, until each has a folder of its own (docs/src/architecture.md):
//!
//! - `snapshots` and `cache` read Authentik (and Outline's indexes) through the caches; `intake` turns an
//!   accepted change into a job key, with its cache invalidations and clock tick;
//! - the Outline sink: `engine` (its state, planning and the guarded write), `apply` (the writer), `jobs`
//!   (users, groups, sign-ins), `reconcile` (its pass), `accounts`, `account_jobs` and `suspensions` (roles
//!   and suspensions), `invites` and `invite_jobs`;
//! - the OpenFGA sink: `openfga`;
//! - `sinks`: the registration, and both passes at once.

pub mod account_jobs;
pub mod accounts;
pub mod apply;
pub mod cache;
pub mod engine;
pub mod intake;
pub mod invite_jobs;
pub mod invites;
pub mod jobs;
pub mod openfga;
pub mod outline_index;
pub mod reconcile;
pub mod sinks;
pub mod snapshots;
pub mod suspensions;

pub use reconcile::ReconcileReport;
pub use sinks::run_reconcile;
pub use sinks::SyncEngine;
pub use suspensions::SuspensionRecord;
