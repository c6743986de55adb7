//! What every sink's jobs share: the Authentik reader (with its caches), the change clock, how far a pass
//! has got, the removal guard's bound and the metrics. A sink's jobs take this and their own state; they never
//! see another sink.

use std::sync::Arc;

use super::changes::ChangeClock;
use super::progress::PassProgress;
use super::snapshots::SnapshotReader;
use crate::metrics::Metrics;

pub struct SyncContext {
    pub reader: SnapshotReader,
    pub clock: ChangeClock,
    pub progress: PassProgress,
    pub max_removals: usize,
    pub metrics: Arc<Metrics>,
}
