//! The runtime against a recording sink with no Outline or OpenFGA behind it: coalescing, retries, the
//! guard's errors, refusals, the sink's own job kinds, and one sink that hangs while another goes on. That
//! the queue runs these with nothing but [`SinkJobs`] is what lets a third sink be one folder. Below, the
//! converge paths (hand-over, the guard, refusals, conflicts, locks) against a recording [`Sink`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::Notify;

use authentik_bridge::clients::UpstreamError;
use authentik_bridge::domain::{AuthentikGroupId, AuthentikUserId};
use authentik_bridge::metrics::Metrics;
use authentik_bridge::runtime::changes::{GroupLocks, Tick};
use authentik_bridge::runtime::context::Runtime;
use authentik_bridge::runtime::converge::{
    self, PassDone, PassPlan, PassWrites, PlanPart, Planned, Sink, WriteFailure,
};
use authentik_bridge::runtime::job::SinkJobs;
use authentik_bridge::runtime::{
    JobKey, JobOutcome, JobQueue, OwnJob, ReconcileOptions, SubmitError, SyncError, SyncReport,
};

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

// The converge paths (`runtime/converge.rs`) against a recording sink: a plan is a list of adds and removes
// per group, and every write is recorded. What these tests show holds for every sink, since the runtime
// knows no other.

/// A recording sink's plan for one group, or for a whole push.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Ops {
    adds: Vec<&'static str>,
    removes: Vec<&'static str>,
}

impl Ops {
    fn new(adds: &[&'static str], removes: &[&'static str]) -> Ops {
        Ops {
            adds: adds.to_vec(),
            removes: removes.to_vec(),
        }
    }
}

impl PlanPart for Ops {
    fn removals(&self) -> usize {
        self.removes.len()
    }
    fn writes(&self) -> usize {
        self.adds.len() + self.removes.len()
    }
    fn is_empty(&self) -> bool {
        self.adds.is_empty() && self.removes.is_empty()
    }
    fn hold_removals(mut self) -> (Ops, Ops) {
        let held = Ops::new(&[], &self.removes);
        self.removes.clear();
        (self, held)
    }
}

/// What a recording sink's pass reports: the runtime's view of it.
#[derive(Debug)]
struct RecordedPass {
    written: Vec<Ops>,
    held: Vec<Ops>,
    handed_over: Vec<AuthentikGroupId>,
    refused: usize,
}

/// Plans from its script, records every write, and answers writes from its script.
struct RecordingPlanSink {
    runtime: Arc<Runtime>,
    locks: GroupLocks,
    pass_parts: Mutex<Vec<(AuthentikGroupId, Ops)>>,
    push_plan: Mutex<Ops>,
    /// A push arriving while the pass reads: the clock ticks for this group during planning.
    pushed_while_planning: Mutex<Option<AuthentikGroupId>>,
    plans: Mutex<usize>,
    writes: Mutex<Vec<Ops>>,
    answers: Mutex<Script>,
}

impl RecordingPlanSink {
    fn new(max_removals: usize) -> RecordingPlanSink {
        RecordingPlanSink {
            runtime: Arc::new(Runtime::new(max_removals, Arc::new(Metrics::new()))),
            locks: GroupLocks::default(),
            pass_parts: Mutex::new(Vec::new()),
            push_plan: Mutex::new(Ops::default()),
            pushed_while_planning: Mutex::new(None),
            plans: Mutex::new(0),
            writes: Mutex::new(Vec::new()),
            answers: Mutex::new(VecDeque::new()),
        }
    }

    fn plan_pass_as(&self, parts: Vec<(u8, Ops)>) {
        *self.pass_parts.lock().expect("lock") =
            parts.into_iter().map(|(n, ops)| (gid(n), ops)).collect();
    }

    fn writes(&self) -> Vec<Ops> {
        self.writes.lock().expect("lock").clone()
    }

    fn gauge(&self) -> i64 {
        self.runtime
            .metrics
            .removal_guard_active
            .with_label_values(&["recorder"])
            .get()
    }

    async fn pass(&self) -> Result<PassDone<RecordedPass>, SyncError> {
        converge::pass(&self.runtime, self, ReconcileOptions::default()).await
    }
}

impl Sink for RecordingPlanSink {
    type Part = Ops;
    type Then = ();
    type Pass = ();
    type Report = RecordedPass;

    fn name(&self) -> &'static str {
        "recorder"
    }

    fn interested(&self, _key: &JobKey) -> bool {
        true
    }

    fn locks(&self) -> &GroupLocks {
        &self.locks
    }

    async fn plan_push(&self, _key: &JobKey) -> Result<Planned<Ops, ()>, SyncError> {
        *self.plans.lock().expect("lock") += 1;
        Ok(Planned::Write(
            self.push_plan.lock().expect("lock").clone(),
            (),
        ))
    }

    async fn write(&self, part: &Ops, _interactive: bool) -> Result<SyncReport, SyncError> {
        self.writes.lock().expect("lock").push(part.clone());
        let answer = self.answers.lock().expect("lock").pop_front();
        answer.unwrap_or(Ok(())).map(|()| SyncReport {
            adds: part.adds.len(),
            removes: part.removes.len(),
            ..SyncReport::default()
        })
    }

    fn failure(&self, error: &SyncError) -> WriteFailure {
        match error {
            SyncError::Upstream(UpstreamError::Status { status: 409, .. }) => {
                WriteFailure::Conflict
            }
            SyncError::Upstream(e) if e.is_permanent() => WriteFailure::Refused,
            _ => WriteFailure::Fail,
        }
    }

    async fn after_push(&self, _then: (), report: SyncReport) -> Result<JobOutcome, SyncError> {
        Ok(report.into())
    }

    async fn plan_pass(&self, _read_at: Tick) -> Result<PassPlan<Ops, ()>, SyncError> {
        if let Some(g) = self.pushed_while_planning.lock().expect("lock").take() {
            self.runtime.clock.group_changed(&g);
        }
        Ok(PassPlan {
            parts: self.pass_parts.lock().expect("lock").clone(),
            handed_over: Vec::new(),
            then: (),
        })
    }

    async fn after_pass(
        &self,
        _pass: (),
        writes: PassWrites<Ops>,
        _options: ReconcileOptions,
    ) -> Result<PassDone<RecordedPass>, SyncError> {
        Ok(PassDone {
            summary: writes.summary.clone(),
            guarded: writes.removals_held,
            holds_gauge: false,
            follow_ups: Vec::new(),
            report: RecordedPass {
                refused: writes.summary.refused_groups,
                written: writes.written,
                held: writes.held,
                handed_over: writes.handed_over,
            },
        })
    }
}

fn gid(n: u8) -> AuthentikGroupId {
    match group(n) {
        JobKey::AuthentikGroup(id) => id,
        _ => unreachable!("group() makes group keys"),
    }
}

fn conflict() -> SyncError {
    SyncError::Upstream(UpstreamError::Status {
        upstream: "recorder",
        call: "write".into(),
        status: 409,
        message: "someone else wrote first".into(),
    })
}

/// A group that changed after the pass read it is not written from the pass's plan: it goes to a fresh group
/// job, and the other groups are written. A part with nothing to write still reaches the sink, so it can note
/// what it skipped.
#[tokio::test]
async fn a_pass_hands_over_a_group_pushed_while_it_read_and_writes_the_rest() {
    let sink = RecordingPlanSink::new(10);
    sink.plan_pass_as(vec![
        (1, Ops::new(&["a"], &[])),
        (2, Ops::new(&["b"], &[])),
        (3, Ops::default()),
    ]);
    *sink.pushed_while_planning.lock().expect("lock") = Some(gid(2));
    let done = sink.pass().await.expect("the pass runs");
    assert_eq!(
        sink.writes(),
        vec![Ops::new(&["a"], &[]), Ops::default()],
        "group 2 is not written from the stale plan; the empty part still reaches the sink"
    );
    assert_eq!(done.report.handed_over, vec![gid(2)]);
    assert_eq!(done.follow_ups, vec![group(2)]);
    assert_eq!(done.summary.adds, 1);
}

/// `MAX_REMOVALS` weighs the whole plan, not each group: two groups of one removal each pass a bound of one.
/// The pass writes everything but the removals, raises the gauge, and the next pass let through lowers it.
#[tokio::test]
async fn the_guard_weighs_the_whole_plan_and_holds_only_removals() {
    let sink = RecordingPlanSink::new(1);
    sink.plan_pass_as(vec![
        (1, Ops::new(&[], &["x"])),
        (2, Ops::new(&["z"], &["y"])),
    ]);
    let done = sink.pass().await.expect("the pass runs");
    assert!(done.guarded);
    assert_eq!(
        sink.writes(),
        vec![Ops::default(), Ops::new(&["z"], &[])],
        "group 1 had only its removal"
    );
    assert_eq!(
        done.report.held,
        vec![Ops::new(&[], &["x"]), Ops::new(&[], &["y"])]
    );
    assert_eq!(sink.gauge(), 1);

    sink.plan_pass_as(vec![(1, Ops::new(&[], &["x"]))]);
    let done = sink.pass().await.expect("the pass runs");
    assert!(!done.guarded);
    assert_eq!(done.report.written, vec![Ops::new(&[], &["x"])]);
    assert_eq!(sink.gauge(), 0, "a pass let through lowers the gauge");

    // A push over the bound writes its adds, makes no removal, and says why.
    *sink.push_plan.lock().expect("lock") = Ops::new(&["w"], &["x", "y"]);
    let err = converge::push(&sink.runtime, &sink, &group(1))
        .await
        .expect_err("held");
    assert!(matches!(
        err,
        SyncError::Guarded {
            removals: 2,
            max: 1
        }
    ));
    assert_eq!(sink.writes().last(), Some(&Ops::new(&["w"], &[])));
    assert_eq!(sink.gauge(), 1);
}

/// A group the sink refuses for good is counted, and the other groups are written.
#[tokio::test]
async fn a_refused_group_is_counted_and_the_others_go_on() {
    let sink = RecordingPlanSink::new(10);
    sink.plan_pass_as(vec![(1, Ops::new(&["a"], &[])), (2, Ops::new(&["b"], &[]))]);
    sink.answers.lock().expect("lock").push_back(Err(refusal()));
    let done = sink.pass().await.expect("the pass goes on");
    assert_eq!(done.report.refused, 1);
    assert_eq!(done.report.written, vec![Ops::new(&["b"], &[])]);
    let refusals = sink
        .runtime
        .metrics
        .group_refusals
        .with_label_values(&["recorder.write"])
        .get();
    assert_eq!(refusals, 1);

    // An outage is no refusal: it fails the pass, for the queue to retry.
    sink.answers.lock().expect("lock").push_back(Err(outage()));
    assert!(sink.pass().await.is_err());
}

/// A write that met another writer: a push plans again from fresh reads, a few times, then leaves it to the
/// queue's retries; a pass hands the group to a group job.
#[tokio::test]
async fn a_conflict_is_planned_again_in_a_push_and_handed_over_in_a_pass() {
    let sink = RecordingPlanSink::new(10);
    *sink.push_plan.lock().expect("lock") = Ops::new(&["a"], &[]);
    sink.answers
        .lock()
        .expect("lock")
        .push_back(Err(conflict()));
    converge::push(&sink.runtime, &sink, &group(1))
        .await
        .expect("the second plan is written");
    assert_eq!(*sink.plans.lock().expect("lock"), 2);

    sink.answers
        .lock()
        .expect("lock")
        .extend([Err(conflict()), Err(conflict()), Err(conflict())]);
    let err = converge::push(&sink.runtime, &sink, &group(1))
        .await
        .expect_err("still in conflict");
    assert!(
        matches!(&err, SyncError::Upstream(e) if !e.is_permanent()),
        "retried by the queue, not refused: {err}"
    );
    assert_eq!(*sink.plans.lock().expect("lock"), 5);

    sink.plan_pass_as(vec![(1, Ops::new(&["a"], &[])), (2, Ops::new(&["b"], &[]))]);
    sink.answers
        .lock()
        .expect("lock")
        .push_back(Err(conflict()));
    let done = sink.pass().await.expect("the pass goes on");
    assert_eq!(done.report.handed_over, vec![gid(1)]);
    assert_eq!(done.follow_ups, vec![group(1)]);
}

/// A group job holds its group's lock from its first read to its last write: a pass's write to that group
/// waits for it.
#[tokio::test]
async fn a_pass_waits_for_a_group_job_on_the_same_group() {
    let sink = Arc::new(RecordingPlanSink::new(10));
    sink.plan_pass_as(vec![(1, Ops::new(&["from the pass"], &[]))]);
    let held = sink.locks.lock(&gid(1)).await;
    let s = sink.clone();
    let pass = tokio::spawn(async move { s.pass().await.map(|d| d.report.written.len()) });
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(sink.writes().is_empty(), "the pass waits for the lock");
    drop(held);
    assert_eq!(pass.await.expect("joins").expect("runs"), 1);
}
