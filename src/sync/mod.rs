//! From an accepted webhook to Outline calls, in the order of the data flow:
//!
//! - `intake`: an accepted change becomes a job key, with its cache invalidations and clock tick;
//! - `queue` (with `coalesce`): dedupe, coalescing, one job at a time per target, retries;
//! - `jobs` and `reconcile`: one function per kind of job, reading through `snapshots` (the caches in
//!   `cache`, the order of changes in `changes`) and planning in `engine`;
//! - `apply`: the plan written to Outline, each group on its own;
//! - `progress`: how far a pass has got, for the CLI.

pub mod account_jobs;
pub mod accounts;
pub mod apply;
pub mod cache;
pub mod changes;
pub mod coalesce;
pub mod context;
pub mod engine;
pub mod intake;
pub mod invite_jobs;
pub mod invites;
pub mod job;
pub mod jobs;
pub mod openfga;
pub mod progress;
pub mod queue;
pub mod reconcile;
pub mod sinks;
pub mod snapshots;
pub mod state_file;
pub mod suspensions;

pub use job::ReconcileOptions;
pub use job::{JobKey, JobOutcome, OwnJob, RemovalGuard, SyncError, SyncReport};
pub use queue::{EventDeduper, JobQueue, SubmitError};
pub use reconcile::ReconcileReport;
pub use sinks::run_reconcile;
pub use sinks::SyncEngine;
pub use state_file::RecordError;
pub use suspensions::SuspensionRecord;
