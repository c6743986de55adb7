//! When a target's job runs, as a pure state machine, so that its one promise is property-tested: every
//! event is followed by a run that starts after it, so the last state of a target is never lost.
//!
//! The first event starts a run at once (Authentik already posts 0.3–0.8 s after the change, docs/src/upstream/authentik.md
//! §12, so a leading delay would spend the one-second budget). Events that arrive while it runs, or within
//! `window` of its start, fold into one trailing run.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct TargetSchedule {
    dirty: bool,
    window_end: Instant,
}

impl TargetSchedule {
    /// A target's first event: its run starts now.
    pub fn start(now: Instant, window: Duration) -> TargetSchedule {
        TargetSchedule {
            dirty: false,
            window_end: now + window,
        }
    }

    /// Another event for a target that is running or waiting: it folds into the next run.
    pub fn on_event(&mut self) {
        self.dirty = true;
    }

    /// A run (or a retry attempt) begins: it reads state after every event seen so far.
    pub fn on_run_start(&mut self, now: Instant, window: Duration) {
        self.dirty = false;
        self.window_end = now + window;
    }

    /// After a run, or after waiting: when to look again, or `None` when the target can be let go. The
    /// target is held until its window ends even when no event came, so that a burst's later events fold
    /// into one trailing run instead of each starting a run of its own.
    pub fn next_wake(&self, now: Instant) -> Option<Instant> {
        (self.dirty || now < self.window_end).then(|| self.window_end.max(now))
    }

    /// Whether an event came since the last run began, so another run is due.
    pub fn is_due(&self) -> bool {
        self.dirty
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Simulates one target: events at the given offsets (ms), each run taking `run_ms`.
    /// Returns the start times of the runs.
    fn simulate(mut events: Vec<u64>, run_ms: u64, window_ms: u64) -> Vec<u64> {
        events.sort_unstable();
        let base = Instant::now();
        let at = |ms: u64| base + Duration::from_millis(ms);
        let window = Duration::from_millis(window_ms);
        let mut runs = Vec::new();
        let mut i = 0;
        while i < events.len() {
            // Idle target: the next event starts a run.
            let mut start = events[i];
            let mut sched = TargetSchedule::start(at(start), window);
            i += 1;
            loop {
                sched.on_run_start(at(start), window);
                runs.push(start);
                let end = start + run_ms;
                // Events up to the end of the run fold in.
                while i < events.len() && events[i] <= end {
                    sched.on_event();
                    i += 1;
                }
                let mut now = end;
                let mut due = false;
                while let Some(wake) = sched.next_wake(at(now)) {
                    let wake_ms = wake.duration_since(base).as_millis() as u64;
                    // Events while waiting fold into the run that follows.
                    while i < events.len() && events[i] <= wake_ms {
                        sched.on_event();
                        i += 1;
                    }
                    now = wake_ms;
                    if sched.is_due() {
                        due = true;
                        break;
                    }
                }
                if !due {
                    break;
                }
                start = now;
            }
        }
        runs
    }

    proptest! {
        #[test]
        fn every_event_is_followed_by_a_run(events in prop::collection::vec(0u64..5_000, 1..200), run_ms in 0u64..400) {
            let runs = simulate(events.clone(), run_ms, 250);
            for e in &events {
                prop_assert!(runs.iter().any(|r| r >= e), "event at {} has no later run", e);
            }
            prop_assert!(runs.len() <= events.len());
        }

        #[test]
        fn a_burst_costs_a_few_runs(start in 0u64..1000, spread in 1u64..250, n in 2usize..200) {
            let events: Vec<u64> = (0..n).map(|k| start + (k as u64 * spread) / n as u64).collect();
            let runs = simulate(events, 20, 250);
            prop_assert!(runs.len() <= 2, "{} runs for one burst", runs.len());
        }
    }

    #[test]
    fn a_lone_event_runs_at_once_and_only_once() {
        assert_eq!(simulate(vec![100], 30, 250), vec![100]);
    }
}
