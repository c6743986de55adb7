//! From an accepted webhook to Outline calls: the queue (dedupe, coalescing, per-target serialization,
//! retries), the caches, the job bodies and the full reconcile pass.

pub mod cache;
pub mod coalesce;
pub mod engine;
pub mod queue;
pub mod reconcile;

pub use engine::{RemovalGuard, SyncEngine, SyncError, SyncReport};
pub use queue::{EventDeduper, JobKey, JobQueue, SubmitError};
pub use reconcile::{run_reconcile, ReconcileOptions, ReconcileReport};
