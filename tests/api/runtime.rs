//! The runtime against a recording sink with no Outline or OpenFGA behind it: coalescing, retries, the
//! guard's errors, refusals, the sink's own job kinds, and one sink that hangs while another goes on. That
//! the queue runs these with nothing but [`SinkJobs`] is what lets a third sink be one folder.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::Notify;

use authentik_bridge::clients::UpstreamError;
use authentik_bridge::domain::{AuthentikGroupId, AuthentikUserId};
use authentik_bridge::metrics::Metrics;
use authentik_bridge::runtime::job::SinkJobs;
use authentik_bridge::runtime::{JobKey, JobOutcome, JobQueue, OwnJob, SubmitError, SyncError};

/// What a recording sink answers for a run, in order; `Ok` once the script is spent.
type Script = VecDeque<Result<(), SyncError>>;

/// Records every run, answers from its script, and may hold its runs until released.
struct RecordingSink {
    name: &'static str,
    runs: Mutex<Vec<JobKey>>,
    script: Mutex<Script>,
    /// When set, each run waits for a release first: a sink whose upstream hangs.
    gate: Option<Arc<Notify>>,
    /// Rung at the start of each run.
    started: Notify,
}

impl RecordingSink {
    fn new(name: &'static str) -> Arc<RecordingSink> {
        Arc::new(RecordingSink {
            name,
            runs: Mutex::new(Vec::new()),
            script: Mutex::new(VecDeque::new()),
            gate: None,
            started: Notify::new(),
        })
    }

    fn gated(name: &'static str, gate: Arc<Notify>) -> Arc<RecordingSink> {
        Arc::new(RecordingSink {
            gate: Some(gate),
            ..Arc::into_inner(RecordingSink::new(name)).expect("fresh")
        })
    }

    fn answer(&self, results: impl IntoIterator<Item = Result<(), SyncError>>) {
        self.script.lock().expect("lock").extend(results);
    }

    fn runs(&self) -> Vec<JobKey> {
        self.runs.lock().expect("lock").clone()
    }
}

impl SinkJobs for RecordingSink {
    fn name(&self) -> &'static str {
        self.name
    }

    fn interested(&self, key: &JobKey) -> bool {
        !matches!(key, JobKey::Own(own) if own.sink != self.name)
    }

    fn run<'a>(&'a self, key: &'a JobKey) -> BoxFuture<'a, Result<JobOutcome, SyncError>> {
        async move {
            self.runs.lock().expect("lock").push(key.clone());
            self.started.notify_waiters();
            if let Some(gate) = &self.gate {
                gate.notified().await;
            }
            let next = self.script.lock().expect("lock").pop_front();
            next.unwrap_or(Ok(())).map(|()| JobOutcome::default())
        }
        .boxed()
    }
}

fn queue(sinks: &[&Arc<RecordingSink>], capacity: usize) -> JobQueue {
    let sinks: Vec<Arc<dyn SinkJobs>> = sinks
        .iter()
        .map(|s| Arc::clone(s) as Arc<dyn SinkJobs>)
        .collect();
    JobQueue::new(sinks, capacity, 4, Arc::new(Metrics::new()))
}

fn group(n: u8) -> JobKey {
    let id = format!("00000000-0000-4000-8000-0000000000{n:02}");
    JobKey::AuthentikGroup(AuthentikGroupId::parse(&id).expect("a uuid"))
}

fn outage() -> SyncError {
    SyncError::Upstream(UpstreamError::Transport {
        upstream: "recorder",
        call: "write".into(),
        message: "connection refused".into(),
    })
}

fn refusal() -> SyncError {
    SyncError::Upstream(UpstreamError::Status {
        upstream: "recorder",
        call: "write".into(),
        status: 400,
        message: "no such thing".into(),
    })
}

async fn idle(queue: &JobQueue) {
    tokio::time::timeout(Duration::from_secs(600), queue.wait_idle())
        .await
        .expect("the queue drains");
}

/// A burst of events for one target while its job runs folds into one trailing run.
#[tokio::test(start_paused = true)]
async fn a_burst_for_one_target_costs_at_most_two_runs() {
    let gate = Arc::new(Notify::new());
    let sink = RecordingSink::gated("recorder", gate.clone());
    let q = queue(&[&sink], 16);
    let started = sink.started.notified();
    q.submit(group(1)).expect("queued");
    started.await;
    for _ in 0..50 {
        q.submit(group(1)).expect("folds in");
    }
    gate.notify_one();
    // The trailing run waits at the gate too.
    while sink.runs().len() < 2 {
        tokio::task::yield_now().await;
        tokio::time::advance(Duration::from_millis(50)).await;
    }
    gate.notify_one();
    idle(&q).await;
    assert_eq!(sink.runs(), vec![group(1), group(1)]);
}

/// An outage is retried with backoff until the job succeeds; a refusal and the guard's errors are not
/// retried, and hold nothing else up.
#[tokio::test(start_paused = true)]
async fn outages_are_retried_and_refusals_and_guards_are_not() {
    let sink = RecordingSink::new("recorder");
    let q = queue(&[&sink], 16);
    sink.answer([Err(outage()), Err(outage())]);
    q.submit(group(1)).expect("queued");
    idle(&q).await;
    assert_eq!(sink.runs().len(), 3, "two failures, then done");

    sink.answer([Err(refusal())]);
    q.submit(group(2)).expect("queued");
    idle(&q).await;
    sink.answer([Err(SyncError::Guarded {
        removals: 9,
        max: 1,
    })]);
    q.submit(group(3)).expect("queued");
    idle(&q).await;
    let runs = sink.runs();
    assert_eq!(runs.iter().filter(|k| **k == group(2)).count(), 1);
    assert_eq!(runs.iter().filter(|k| **k == group(3)).count(), 1);
}

/// A key of a sink's own kind runs in that sink alone; shared keys run in every sink.
#[tokio::test]
async fn own_job_kinds_stay_in_their_sink() {
    let (a, b) = (RecordingSink::new("a"), RecordingSink::new("b"));
    let q = queue(&[&a, &b], 16);
    let own = JobKey::Own(OwnJob {
        sink: "b",
        kind: "special",
        target: "x".into(),
        interactive: true,
    });
    q.submit(own.clone()).expect("queued");
    q.submit(JobKey::AuthentikUser(AuthentikUserId(7)))
        .expect("queued");
    idle(&q).await;
    assert_eq!(a.runs(), vec![JobKey::AuthentikUser(AuthentikUserId(7))]);
    assert!(b.runs().contains(&own) && b.runs().len() == 2);
}

/// A sink whose calls hang fills its own queue; the other sink's jobs still run, and the full one is owed a
/// reconcile instead of losing the change.
#[tokio::test(start_paused = true)]
async fn a_hanging_sink_never_holds_the_other_up() {
    let gate = Arc::new(Notify::new());
    let stuck = RecordingSink::gated("stuck", gate.clone());
    let fine = RecordingSink::new("fine");
    let q = queue(&[&stuck, &fine], 2);
    for n in 1..=2 {
        q.submit(group(n)).expect("queued");
    }
    // `fine` is done with both once their coalescing windows pass (on the paused clock); `stuck` still
    // holds its two.
    while q.depth() > 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fine.runs().len(), 2);
    // `stuck` holds two targets, its capacity: the next goes to `fine` alone, and `stuck` is owed a pass.
    q.submit(group(3)).expect("the other sink takes it");
    while fine.runs().len() < 3 {
        tokio::task::yield_now().await;
    }
    assert!(!stuck.runs().contains(&group(3)));
    while q.depth() > 0 {
        gate.notify_waiters();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        stuck.runs().contains(&JobKey::Reconcile) && !stuck.runs().contains(&group(3)),
        "the full sink got a reconcile instead: {:?}",
        stuck.runs()
    );
}

/// Only when no sink can take a job is it refused, so the sender retries.
#[tokio::test(start_paused = true)]
async fn a_job_no_sink_can_take_is_refused() {
    let gate = Arc::new(Notify::new());
    let stuck = RecordingSink::gated("stuck", gate.clone());
    let q = queue(&[&stuck], 1);
    q.submit(group(1)).expect("queued");
    assert!(matches!(q.submit(group(2)), Err(SubmitError::Full(_))));
    assert!(
        q.submit(group(1)).is_ok(),
        "an event for a held target folds in"
    );
    while q.depth() > 0 {
        gate.notify_waiters();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
