//! The job queue: dedupe of event ids, coalescing per target, one job at a time per target, a bounded number
//! of targets at once, and retries that outlast an upstream outage.
//!
//! A "target" is what a job converges: an Outline user who signed in, an Authentik user, an Authentik group,
//! or everything (reconcile). The queue holds at most `capacity` targets; an event for a target already held
//! folds into it and costs nothing, so only distinct targets fill the queue. When it is full the webhook
//! answers 503 and the sender retries (Authentik does, docs/src/upstream/authentik.md §2.5).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

use super::coalesce::TargetSchedule;
use super::job::{JobKey, JobOutcome, SinkJobs, SyncError};
use crate::clients::retry::backoff_delay;

use crate::metrics::Metrics;

/// Events for one target within this window of a run's start fold into one trailing run.
pub const COALESCE_WINDOW: Duration = Duration::from_millis(250);
/// A failed job is retried with backoff for this long: Outline never re-sends a webhook, so dropping the job
/// would lose the change (docs/src/upstream/outline.md §2.6). Reconcile catches anything still missed after that.
pub const RETRY_BUDGET: Duration = Duration::from_secs(600);
/// Authentik retries a delivery for 4–8 minutes (docs/src/upstream/authentik.md §2.5); ids are kept a little longer.
pub const DEDUPE_TTL: Duration = Duration::from_secs(15 * 60);

/// Why a job was not queued. Both answer 503, so the sender retries later: Authentik retries its deliveries,
/// and what a stopping bridge refuses is caught by the next start-up reconcile.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the job queue is full ({0} targets waiting); retry later")]
    Full(usize),
    #[error("the bridge is shutting down; retry later")]
    Closed,
}

/// One target in one sink (by its place in the registered list): the unit the queue schedules, coalesces
/// and retries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SinkJob {
    sink: usize,
    key: JobKey,
}

/// Remembers event ids for at least [`DEDUPE_TTL`]; Authentik's retries and per-recipient fan-out repeat them
/// (docs/src/upstream/authentik.md §2.5, §11). Two generations of 128-bit keys: an id is looked up in both and inserted in the
/// current one, and the current one becomes the previous one every `DEDUPE_TTL`, or early when it holds
/// [`DEDUPE_GENERATION_CAP`] ids. Memory stays under ~5 MB whatever arrives (a cache of 200,000 strings held
/// ~85 MB), and an id forgotten early under a flood costs one more run of an idempotent job.
#[derive(Clone)]
pub struct EventDeduper {
    seen: Arc<Mutex<SeenIds>>,
}

/// At most this many ids per generation.
pub const DEDUPE_GENERATION_CAP: usize = 100_000;

struct SeenIds {
    current: HashSet<u128>,
    previous: HashSet<u128>,
    since: std::time::Instant,
}

/// Event ids are dashed UUIDs (`str(event.pk)`): their 128 bits are the key. Anything else is hashed.
fn id_key(id: &str) -> u128 {
    let hex: String = id.chars().filter(|c| *c != '-').collect();
    if hex.len() == 32 {
        if let Ok(v) = u128::from_str_radix(&hex, 16) {
            return v;
        }
    }
    let digest = Sha256::digest(id.as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(first)
}

impl EventDeduper {
    pub fn new() -> EventDeduper {
        EventDeduper {
            seen: Arc::new(Mutex::new(SeenIds {
                current: HashSet::new(),
                previous: HashSet::new(),
                since: std::time::Instant::now(),
            })),
        }
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, SeenIds> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// True the first time an id is offered.
    pub async fn first_time(&self, id: &str) -> bool {
        let key = id_key(id);
        let mut seen = self.lock();
        if seen.since.elapsed() >= DEDUPE_TTL || seen.current.len() >= DEDUPE_GENERATION_CAP {
            seen.previous = std::mem::take(&mut seen.current);
            seen.since = std::time::Instant::now();
        }
        if seen.previous.contains(&key) {
            return false;
        }
        seen.current.insert(key)
    }
    /// Forgets an id whose event could not be queued, so the sender's retry is not taken for a duplicate.
    pub async fn forget(&self, id: &str) {
        let key = id_key(id);
        let mut seen = self.lock();
        seen.current.remove(&key);
        seen.previous.remove(&key);
    }
}

impl Default for EventDeduper {
    fn default() -> Self {
        Self::new()
    }
}

struct Lanes {
    interactive: Semaphore,
    bulk: Semaphore,
}

impl Lanes {
    fn new(concurrency: usize) -> Lanes {
        Lanes {
            interactive: Semaphore::new(concurrency),
            bulk: Semaphore::new(concurrency),
        }
    }
}

struct Inner {
    /// The registered sinks, in the order their jobs are queued.
    sinks: Vec<Arc<dyn SinkJobs>>,
    targets: Mutex<HashMap<SinkJob, TargetSchedule>>,
    capacity: usize,
    /// Sign-ins and single users run in their own lane, so a bulk group change never starves them; and each
    /// sink has its own pair, so a sink whose calls hang never holds the other's jobs up.
    lanes: Vec<Lanes>,
    idle: Notify,
    metrics: Arc<Metrics>,
    /// Set once at shutdown: no new target is taken, and no run starts after the one in progress.
    closed: tokio::sync::watch::Sender<bool>,
    /// The runtime the queue was built on. Jobs are spawned here, not on the caller's runtime: handlers run
    /// on actix's per-worker runtimes, which stop at shutdown and would take their jobs with them.
    runtime: tokio::runtime::Handle,
}

#[derive(Clone)]
pub struct JobQueue {
    inner: Arc<Inner>,
}

impl JobQueue {
    /// Must be called inside a tokio runtime, which then runs every job.
    pub fn new(
        sinks: Vec<Arc<dyn SinkJobs>>,
        capacity: usize,
        concurrency: usize,
        metrics: Arc<Metrics>,
    ) -> JobQueue {
        metrics.queue_capacity.set(capacity as i64);
        JobQueue {
            inner: Arc::new(Inner {
                lanes: sinks.iter().map(|_| Lanes::new(concurrency)).collect(),
                sinks,
                targets: Mutex::new(HashMap::new()),
                capacity,
                idle: Notify::new(),
                metrics,
                closed: tokio::sync::watch::Sender::new(false),
                runtime: tokio::runtime::Handle::current(),
            }),
        }
    }

    fn sink_name(&self, sink: usize) -> &'static str {
        self.inner.sinks.get(sink).map_or("unknown", |s| s.name())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SinkJob, TargetSchedule>> {
        // A poisoned lock only means a panic elsewhere; the map itself is always consistent.
        self.inner.targets.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn depth(&self) -> usize {
        self.lock().len()
    }

    /// Stops taking work, for a graceful shutdown: new submissions are refused, and each target ends after
    /// the run in progress, without waiting out its coalescing window or a retry backoff. What is left undone
    /// is the start-up reconcile's to repair. [`JobQueue::wait_idle`] then resolves when the last run ends.
    pub fn close(&self) {
        self.inner.closed.send_replace(true);
    }

    /// Resolves once the queue is closed: for tasks that live as long as it does.
    pub async fn closed(&self) {
        let mut closed = self.inner.closed.subscribe();
        let _ = closed.wait_for(|c| *c).await;
    }

    fn is_closed(&self) -> bool {
        *self.inner.closed.borrow()
    }

    /// Sleeps until `at`, or less if the queue closes meanwhile; true when the queue is still open.
    async fn sleep_unless_closed(&self, at: Instant) -> bool {
        let mut closed = self.inner.closed.subscribe();
        tokio::select! {
            () = tokio::time::sleep_until(at) => !self.is_closed(),
            _ = closed.wait_for(|c| *c) => false,
        }
    }

    /// Queues a job for `key` in every configured sink that has one. The first event for an idle target starts
    /// its job at once; later ones fold in. Either every sink takes the job or none does, so a 503 never
    /// leaves one sink behind the other.
    pub fn submit(&self, key: JobKey) -> Result<(), SubmitError> {
        let sinks: Vec<usize> = (0..self.inner.sinks.len())
            .filter(|i| self.inner.sinks[*i].interested(&key))
            .collect();
        self.submit_to(&sinks, key)
    }

    /// Queues a job for `key` in the given sinks only: a follow-up stays in the sink that asked for it.
    ///
    /// Each sink holds at most `capacity` targets. When one sink is full and another takes the job, the full
    /// one gets a reconcile instead (one target, let past the bound), so a sink stuck behind an outage never
    /// makes the other's webhooks fail, and loses nothing. Only when no sink can take the job does the
    /// webhook get 503.
    fn submit_to(&self, sinks: &[usize], key: JobKey) -> Result<(), SubmitError> {
        if self.is_closed() {
            return Err(SubmitError::Closed);
        }
        let mut targets = self.lock();
        let mut started = Vec::new();
        let mut full = Vec::new();
        for sink in sinks {
            let job = SinkJob {
                sink: *sink,
                key: key.clone(),
            };
            if let Some(schedule) = targets.get_mut(&job) {
                schedule.on_event();
                continue;
            }
            if targets.keys().filter(|j| j.sink == *sink).count() >= self.inner.capacity {
                full.push(*sink);
                continue;
            }
            targets.insert(
                job.clone(),
                TargetSchedule::start(Instant::now(), COALESCE_WINDOW),
            );
            started.push(job);
        }
        if !full.is_empty() && full.len() == sinks.len() {
            return Err(SubmitError::Full(targets.len()));
        }
        for sink in full {
            self.inner
                .metrics
                .jobs
                .with_label_values(&[self.sink_name(sink), key.kind(), "deferred_to_reconcile"])
                .inc();
            tracing::warn!(
                sink = self.sink_name(sink),
                job = key.kind(),
                "this sink's queue is full; a reconcile of it is queued instead"
            );
            let job = SinkJob {
                sink,
                key: JobKey::Reconcile,
            };
            match targets.get_mut(&job) {
                Some(schedule) => schedule.on_event(),
                None => {
                    targets.insert(
                        job.clone(),
                        TargetSchedule::start(Instant::now(), COALESCE_WINDOW),
                    );
                    started.push(job);
                }
            }
        }
        self.inner.metrics.queue_depth.set(targets.len() as i64);
        drop(targets);
        for job in started {
            let queue = self.clone();
            self.inner
                .runtime
                .spawn(async move { queue.drive(job).await });
        }
        Ok(())
    }

    /// Resolves once no target is waiting or running (tests, the demo and the CLI use it).
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.inner.idle.notified();
            if self.depth() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Runs a target's jobs until no event is left for it and its coalescing window has passed.
    async fn drive(&self, key: SinkJob) {
        'runs: loop {
            self.run_with_retries(&key).await;
            loop {
                let wake = {
                    let mut targets = self.lock();
                    let Some(schedule) = targets.get(&key) else {
                        break 'runs;
                    };
                    let wake = schedule
                        .next_wake(Instant::now())
                        .filter(|_| !self.is_closed());
                    if wake.is_none() {
                        targets.remove(&key);
                        self.inner.metrics.queue_depth.set(targets.len() as i64);
                    }
                    wake
                };
                let Some(at) = wake else { break 'runs };
                if !self.sleep_unless_closed(at).await {
                    // Closed while waiting: the loop above removes the target without another run.
                    continue;
                }
                if self.lock().get(&key).is_some_and(TargetSchedule::is_due) {
                    continue 'runs;
                }
            }
        }
        self.inner.idle.notify_waiters();
    }

    async fn run_with_retries(&self, key: &SinkJob) {
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            if let Some(s) = self.lock().get_mut(key) {
                s.on_run_start(Instant::now(), COALESCE_WINDOW);
            }
            let result = self.run_once(key).await;
            match result {
                Ok(outcome) => {
                    for next in outcome.follow_ups {
                        if let Err(e) = self.submit_to(&[key.sink], next) {
                            tracing::warn!(sink = self.sink_name(key.sink), job = key.key.kind(), error = %e, "follow-up job not queued; the next reconcile covers it");
                        }
                    }
                    return;
                }
                Err(SyncError::Guarded { .. } | SyncError::SuspensionsGuarded { .. }) => return,
                Err(SyncError::Upstream(e)) if e.is_permanent() => {
                    // A refusal no retry can fix (writes are kept to their group before they get here; this
                    // is a read): retrying for ten minutes would only hold the target.
                    self.inner
                        .metrics
                        .jobs
                        .with_label_values(&[self.sink_name(key.sink), key.key.kind(), "failed"])
                        .inc();
                    tracing::error!(sink = self.sink_name(key.sink), job = key.key.kind(), error = %e, "upstream refused the job; not retried");
                    return;
                }
                Err(SyncError::Upstream(e)) => {
                    attempt += 1;
                    let delay =
                        backoff_delay(attempt, Duration::from_secs(1), Duration::from_secs(60));
                    if started.elapsed() + delay > RETRY_BUDGET {
                        self.inner
                            .metrics
                            .jobs
                            .with_label_values(&[
                                self.sink_name(key.sink),
                                key.key.kind(),
                                "failed",
                            ])
                            .inc();
                        tracing::error!(sink = self.sink_name(key.sink), job = key.key.kind(), error = %e, "giving up after retrying for 10 minutes; the next reconcile will repair this");
                        return;
                    }
                    self.inner
                        .metrics
                        .jobs
                        .with_label_values(&[self.sink_name(key.sink), key.key.kind(), "retry"])
                        .inc();
                    tracing::warn!(sink = self.sink_name(key.sink), job = key.key.kind(), error = %e, retry_in_ms = delay.as_millis() as u64, "job failed before any removal; retrying");
                    if !self.sleep_unless_closed(Instant::now() + delay).await {
                        return;
                    }
                }
            }
        }
    }

    async fn run_once(&self, job: &SinkJob) -> Result<JobOutcome, SyncError> {
        let key = &job.key;
        let Some(lanes) = self.inner.lanes.get(job.sink) else {
            return Ok(JobOutcome::default());
        };
        let semaphore = if key.interactive() {
            &lanes.interactive
        } else {
            &lanes.bulk
        };
        let _permit = semaphore.acquire().await;
        let started = std::time::Instant::now();
        let span = tracing::info_span!(
            "job",
            sink = self.sink_name(job.sink),
            kind = key.kind(),
            target = %key.target(),
            // Filled in by the job once it knows whom the target is: people read emails, not ids.
            email = tracing::field::Empty
        );
        let Some(sink) = self.inner.sinks.get(job.sink) else {
            return Ok(JobOutcome::default());
        };
        let result = sink.run(key);
        let result = tracing::Instrument::instrument(result, span.clone()).await;
        let elapsed = started.elapsed();
        self.inner
            .metrics
            .job_duration
            .with_label_values(&[self.sink_name(job.sink), key.kind()])
            .observe(elapsed.as_secs_f64());
        let _enter = span.enter();
        match &result {
            Ok(JobOutcome { report: r, .. }) => {
                self.inner
                    .metrics
                    .jobs
                    .with_label_values(&[self.sink_name(job.sink), key.kind(), "ok"])
                    .inc();
                tracing::info!(
                    adds = r.adds,
                    removes = r.removes,
                    creates = r.creates,
                    renames = r.renames,
                    unmatched = r.unmatched_members,
                    refused_groups = r.refused_groups,
                    note = r.note.as_deref().unwrap_or(""),
                    duration_ms = elapsed.as_millis() as u64,
                    "sync done"
                );
            }
            Err(SyncError::Guarded { .. } | SyncError::SuspensionsGuarded { .. }) => {
                self.inner
                    .metrics
                    .jobs
                    .with_label_values(&[self.sink_name(job.sink), key.kind(), "failed"])
                    .inc();
            }
            Err(SyncError::Upstream(_)) => {}
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Dedupe drops repeats only: every distinct id is let through exactly once, whatever the order.
        #[test]
        fn dedupe_lets_each_distinct_event_through_once(ids in prop::collection::vec(0u8..40, 0..200)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            rt.block_on(async {
                let dedupe = EventDeduper::new();
                let mut passed = std::collections::BTreeMap::new();
                for id in &ids {
                    if dedupe.first_time(&id.to_string()).await {
                        *passed.entry(*id).or_insert(0) += 1;
                    }
                }
                let distinct: std::collections::BTreeSet<u8> = ids.iter().copied().collect();
                prop_assert_eq!(passed.len(), distinct.len());
                prop_assert!(passed.values().all(|n| *n == 1));
                Ok(())
            })?;
        }

        /// An id whose event could not be queued is forgotten, so the sender's retry gets through.
        #[test]
        fn a_forgotten_id_passes_again(id in "[a-f0-9-]{1,36}") {
            let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            rt.block_on(async {
                let dedupe = EventDeduper::new();
                prop_assert!(dedupe.first_time(&id).await);
                prop_assert!(!dedupe.first_time(&id).await);
                dedupe.forget(&id).await;
                prop_assert!(dedupe.first_time(&id).await);
                Ok(())
            })?;
        }
    }
}
