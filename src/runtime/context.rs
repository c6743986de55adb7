//! What every sink's jobs share. [`Runtime`] is the runtime's own part: the change clock, the removal
//! guard and the metrics, all the converge paths need. [`SyncContext`] adds the source's reader (Authentik,
//! with its caches), which the sinks plan from. A sink's jobs take this and their own state; they never see
//! another sink.

use std::sync::Arc;

use super::changes::ChangeClock;
use super::job::{RemovalGuard, SyncError};
use crate::domain::held::{HoldReason, GUARD_LOG};
use crate::metrics::Metrics;
use crate::source::reader::SnapshotReader;

pub struct SyncContext {
    pub reader: SnapshotReader,
    pub runtime: Arc<Runtime>,
}

impl std::ops::Deref for SyncContext {
    type Target = Runtime;
    fn deref(&self) -> &Runtime {
        &self.runtime
    }
}

/// The change clock, the mass-removal guard and the metrics: what the runtime needs to converge any sink.
pub struct Runtime {
    pub clock: ChangeClock,
    pub max_removals: usize,
    pub metrics: Arc<Metrics>,
}

impl Runtime {
    pub fn new(max_removals: usize, metrics: Arc<Metrics>) -> Runtime {
        Runtime {
            clock: ChangeClock::new(),
            max_removals,
            metrics,
        }
    }

    /// The mass-removal guard, the same for every sink: `removals` (with any the same job made already) may be
    /// made unless they pass `MAX_REMOVALS` without `--force`. Then the alert goes up
    /// (`bridge_removal_guard_tripped_total`, and `bridge_removal_guard_active` for the sink), the explanation is
    /// logged once, and the caller writes the rest of its plan without them.
    ///
    /// The gauge stays up until a pass of that sink is let through ([`SyncContext::removal_guard_clear`]): a
    /// push that happens to remove nothing does not make the held removals any less pending.
    pub fn removal_guard(
        &self,
        sink: &'static str,
        removals: usize,
        guard: RemovalGuard,
    ) -> Result<(), SyncError> {
        if !self.holds_removals(removals, guard) {
            return Ok(());
        }
        self.metrics.trip_removal_guard(sink);
        tracing::error!(target: GUARD_LOG, sink, removals, max = self.max_removals, "{}", HoldReason::MaxRemovals.explanation());
        Err(SyncError::Guarded {
            removals,
            max: self.max_removals,
        })
    }

    /// Whether the guard holds `removals` back, without raising anything: what a dry run reports.
    pub fn holds_removals(&self, removals: usize, guard: RemovalGuard) -> bool {
        guard == RemovalGuard::Enforce && removals > self.max_removals
    }

    /// A pass of `sink` was let through: nothing of its is held back any more.
    pub fn removal_guard_clear(&self, sink: &'static str) {
        self.metrics
            .removal_guard_active
            .with_label_values(&[sink])
            .set(0);
    }
}
