//! How far a pass has got, for a person watching `reconcile` on a terminal. Plain counters the pass bumps;
//! drawing them is the CLI's business.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassPhase {
    Idle,
    ReadingAuthentik,
    ReadingOutline,
    Writing,
}

#[derive(Default)]
pub struct PassProgress {
    phase: AtomicU8,
    /// Linked Outline groups whose members the pass reads.
    pub member_lists_total: AtomicUsize,
    pub member_lists_read: AtomicUsize,
    /// Managed groups the pass planned.
    pub groups_planned: AtomicUsize,
    pub writes_planned: AtomicUsize,
    pub writes_done: AtomicUsize,
}

impl PassProgress {
    pub fn start(&self) {
        for counter in [
            &self.member_lists_total,
            &self.member_lists_read,
            &self.groups_planned,
            &self.writes_planned,
            &self.writes_done,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
        self.set_phase(PassPhase::ReadingAuthentik);
    }

    pub fn set_phase(&self, phase: PassPhase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    pub fn phase(&self) -> PassPhase {
        match self.phase.load(Ordering::Relaxed) {
            1 => PassPhase::ReadingAuthentik,
            2 => PassPhase::ReadingOutline,
            3 => PassPhase::Writing,
            _ => PassPhase::Idle,
        }
    }

    pub fn get(counter: &AtomicUsize) -> usize {
        counter.load(Ordering::Relaxed)
    }

    pub fn add(counter: &AtomicUsize, n: usize) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
