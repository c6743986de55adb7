//! The runtime: job keys and the sink contract (`job`), the queue with its coalescing, dedupe and retries
//! (`queue`, `coalesce`), what every sink's jobs share (`context`: the reader, the change clock and group
//! locks in `changes`, a pass's progress in `progress`, the mass-removal guard), and the lines a sink adds to `check` (`check`). It never names a sink.

pub mod changes;
pub mod check;
pub mod coalesce;
pub mod context;
pub mod converge;
pub mod intake;
pub mod job;
pub mod progress;
pub mod queue;

pub use job::{
    GroupChange, GroupInterest, JobKey, JobOutcome, OwnJob, ReconcileOptions, RemovalGuard,
    SinkJobs, SyncError, SyncReport,
};
pub use queue::{EventDeduper, JobQueue, SubmitError};
