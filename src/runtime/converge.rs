//! The one push path and the one pass path, for every sink.
//!
//! A sink says how to plan and how to write ([`Sink`]); this file says in which order, under which lock,
//! and behind which guard. Both paths are kube-style: read and plan everything first, weigh the whole plan
//! against `MAX_REMOVALS`, then write.
//!
//! - **Push** (a user, a group, a sink's own job): a group job holds its group's lock from its first read to
//!   its last write, so a pass's write to that group waits for it. A push needs no hand-over: it reads after
//!   the tick that queued it, and a later tick queues the same key again, behind it. A write that met another
//!   writer ([`WriteFailure::Conflict`]) is planned again from fresh reads, a few times.
//! - **Pass**: everything is read before anything is written, so a failed read writes nothing. Then the plan
//!   is written group by group, each under its lock; a group that changed after the pass read it is left to a
//!   fresh group job (the hand-over), so a pass never undoes a change pushed while it ran. A group the sink
//!   refused for good is counted and skipped, and the other groups go on.
//!
//! The sink's hooks after a push and after a pass are where its own features live (Outline's roles,
//! suspensions and invitations).

use std::future::Future;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::changes::{GroupLocks, Tick};
use super::context::Runtime;
use super::job::{
    GroupChange, GroupInterest, JobKey, JobOutcome, ReconcileOptions, RemovalGuard, SyncError,
    SyncReport,
};
use super::progress::{PassPhase, PassProgress};
use crate::clients::UpstreamError;
use crate::domain::AuthentikGroupId;

/// A write that met another writer is planned and written again this many times before the job fails and
/// the queue retries it.
const CONFLICT_ATTEMPTS: usize = 3;

/// A sink's plan, or one group's part of it.
pub trait PlanPart: Send + Sync + Sized {
    /// What `MAX_REMOVALS` counts: removals that take someone's access away.
    fn removals(&self) -> usize;
    /// Calls it will make, for a pass's progress.
    fn writes(&self) -> usize;
    fn is_empty(&self) -> bool;
    /// The plan without its removals, and the removals left out.
    fn hold_removals(self) -> (Self, Self);
}

/// What a failed write means for the job that made it: the sink's error policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFailure {
    /// Another writer changed the same target: plan again from fresh reads (a pass hands the group over).
    Conflict,
    /// Refused for good, and only for this group: a pass counts it and goes on.
    Refused,
    /// Anything else fails the job; the queue's retries take it from there.
    Fail,
}

/// What planning a push found.
pub enum Planned<P, T> {
    /// Nothing to write: the job is done (with a note, or follow-up jobs).
    Done(JobOutcome),
    /// A plan to write, then the sink's hook with what it planned from.
    Write(P, T),
    /// No memberships to write, only the sink's hook: a sink's own kind of job.
    Hook(T),
}

impl<P, T> Planned<P, T> {
    /// Done with nothing to write, and a note saying why.
    pub fn noted(note: &str) -> Result<Planned<P, T>, SyncError> {
        Ok(Planned::Done(SyncReport::noted(note).into()))
    }
}

/// What planning a pass found: one part per group, in the order they are written, and what the hook after
/// the pass needs.
pub struct PassPlan<P, T> {
    pub parts: Vec<(AuthentikGroupId, P)>,
    /// Groups the sink leaves to fresh group jobs without planning them.
    pub handed_over: Vec<AuthentikGroupId>,
    pub then: T,
}

/// What the pass path did with a pass's plan.
pub struct PassWrites<P> {
    /// The parts written, or in a dry run the parts a run would write.
    pub written: Vec<P>,
    /// Removals the guard held back from the parts it reached.
    pub held: Vec<P>,
    /// Groups left to fresh group jobs: changed since the pass read them, or in conflict.
    pub handed_over: Vec<AuthentikGroupId>,
    /// The sum of the writes' reports (nothing in a dry run).
    pub summary: SyncReport,
    /// Whether `MAX_REMOVALS` holds this pass's removals (in a dry run: would hold).
    pub removals_held: bool,
}

/// What the hook after a pass makes of it.
pub struct PassDone<R> {
    /// The sink's own report, for the CLI.
    pub report: R,
    /// What the pass did, for the queue's log line.
    pub summary: SyncReport,
    /// Whether any guard held something back: the pass's `outcome` metric says `guarded`.
    pub guarded: bool,
    /// Whether a guard of the sink's own keeps `bridge_removal_guard_active` up after this pass.
    pub holds_gauge: bool,
    /// Jobs besides the groups handed over (Outline's people whose account changed during the pass).
    pub follow_ups: Vec<JobKey>,
}

/// A sink, as the runtime converges it. The runtime never knows which sink it holds.
pub trait Sink: Send + Sync + 'static {
    type Part: PlanPart;
    /// What the hook after a push needs from planning it.
    type Then: Send;
    /// What the hook after a pass needs from planning it.
    type Pass: Send;
    /// The sink's report of a pass.
    type Report: Send;

    /// The metrics' `sink` label and the log field.
    fn name(&self) -> &'static str;
    /// Whether the sink has a job for `key`; a key of a sink's own kind goes to that sink alone.
    fn interested(&self, key: &JobKey) -> bool;
    /// What an Authentik group change asks of this sink, at intake.
    fn group_changed(
        &self,
        change: &GroupChange<'_>,
    ) -> impl Future<Output = GroupInterest> + Send {
        std::future::ready(GroupInterest::by_default(change))
    }
    /// The sink's lines for `authentik-bridge check`.
    fn check(&self) -> impl Future<Output = Vec<super::check::CheckLine>> + Send + '_ {
        std::future::ready(Vec::new())
    }
    /// The sink's group locks: its group jobs and its passes take turns on a group.
    fn locks(&self) -> &GroupLocks;
    /// Counters a person watching a pass sees, if the sink keeps them.
    fn progress(&self) -> Option<&PassProgress> {
        None
    }
    /// Reads what the key's target needs and plans it; nothing is written.
    fn plan_push<'a>(
        &'a self,
        key: &'a JobKey,
    ) -> impl Future<Output = Result<Planned<Self::Part, Self::Then>, SyncError>> + Send + 'a;
    /// Writes a plan. `interactive`: the job runs in the interactive lane.
    fn write<'a>(
        &'a self,
        part: &'a Self::Part,
        interactive: bool,
    ) -> impl Future<Output = Result<SyncReport, SyncError>> + Send + 'a;
    /// The error policy: what a failed write means.
    fn failure(&self, _error: &SyncError) -> WriteFailure {
        WriteFailure::Fail
    }
    /// After a push's writes: what the sink does besides memberships, and the job's outcome.
    fn after_push(
        &self,
        then: Self::Then,
        report: SyncReport,
    ) -> impl Future<Output = Result<JobOutcome, SyncError>> + Send + '_;
    /// Every read of a pass. `read_at` is the clock when it began.
    fn plan_pass(
        &self,
        read_at: Tick,
    ) -> impl Future<Output = Result<PassPlan<Self::Part, Self::Pass>, SyncError>> + Send + '_;
    /// After a pass's writes (or its dry run): the sink's own steps and its report.
    fn after_pass(
        &self,
        pass: Self::Pass,
        writes: PassWrites<Self::Part>,
        options: ReconcileOptions,
    ) -> impl Future<Output = Result<PassDone<Self::Report>, SyncError>> + Send + '_;
}

/// Converges one key's target in one sink: plan, guard, write, hook.
pub async fn push<S: Sink>(ctx: &Runtime, sink: &S, key: &JobKey) -> Result<JobOutcome, SyncError> {
    let _turn = match key {
        JobKey::AuthentikGroup(id) => Some(sink.locks().lock(id).await),
        _ => None,
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (part, then) = match sink.plan_push(key).await? {
            Planned::Done(outcome) => return Ok(outcome),
            Planned::Hook(then) => return sink.after_push(then, SyncReport::default()).await,
            Planned::Write(part, then) => (part, then),
        };
        match write_guarded(ctx, sink, part, key.interactive()).await {
            Ok(report) => return sink.after_push(then, report).await,
            Err(e) if sink.failure(&e) == WriteFailure::Conflict => {
                if attempt >= CONFLICT_ATTEMPTS {
                    return Err(still_conflicting(sink.name(), e));
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Writes a push's plan unless its removals pass `MAX_REMOVALS`: then the rest of it is written and no
/// removal is made (Entra ID's provisioning has the same safeguard against accidental deletion).
async fn write_guarded<S: Sink>(
    ctx: &Runtime,
    sink: &S,
    part: S::Part,
    interactive: bool,
) -> Result<SyncReport, SyncError> {
    if let Err(held) = ctx.removal_guard(sink.name(), part.removals(), RemovalGuard::Enforce) {
        let (rest, _) = part.hold_removals();
        sink.write(&rest, interactive).await?;
        return Err(held);
    }
    sink.write(&part, interactive).await
}

/// A conflict that outlasted the re-plans goes to the queue's retries: it is not a refusal, however its
/// status reads.
fn still_conflicting(sink: &'static str, e: SyncError) -> SyncError {
    SyncError::Upstream(UpstreamError::Incomplete {
        upstream: sink,
        call: "write".into(),
        message: format!("other writers kept changing the same members: {e}"),
    })
}

/// A full pass of one sink, with its metrics: `bridge_reconcile_runs_total{sink, outcome}`, the last
/// success, and the guard gauge, which a pass let through brings down.
pub async fn pass<S: Sink>(
    ctx: &Runtime,
    sink: &S,
    options: ReconcileOptions,
) -> Result<PassDone<S::Report>, SyncError> {
    let started = Instant::now();
    let result = pass_inner(ctx, sink, options).await;
    let outcome = match &result {
        Ok(done) if done.guarded => "guarded",
        Ok(_) => "ok",
        Err(_) => "failed",
    };
    ctx.metrics
        .reconcile
        .with_label_values(&[sink.name(), outcome])
        .inc();
    if outcome == "ok" && !options.dry_run {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        ctx.metrics
            .reconcile_last_success
            .with_label_values(&[sink.name()])
            .set(now as i64);
    }
    tracing::debug!(
        sink = sink.name(),
        duration_ms = started.elapsed().as_millis() as u64,
        "pass done"
    );
    result
}

/// A pass as a queued job: its summary, the groups it handed over, and the sink's own follow-ups.
pub async fn pass_job<S: Sink>(ctx: &Runtime, sink: &S) -> Result<JobOutcome, SyncError> {
    let done = pass(ctx, sink, ReconcileOptions::default()).await?;
    Ok(JobOutcome {
        report: done.summary,
        follow_ups: done.follow_ups,
    })
}

async fn pass_inner<S: Sink>(
    ctx: &Runtime,
    sink: &S,
    options: ReconcileOptions,
) -> Result<PassDone<S::Report>, SyncError> {
    let read_at = ctx.clock.now();
    let planned = sink.plan_pass(read_at).await?;
    let removals: usize = planned.parts.iter().map(|(_, p)| p.removals()).sum();
    let guard = options.guard();
    let writes = if options.dry_run {
        PassWrites {
            removals_held: ctx.holds_removals(removals, guard),
            written: planned.parts.into_iter().map(|(_, p)| p).collect(),
            held: Vec::new(),
            handed_over: planned.handed_over,
            summary: SyncReport::default(),
        }
    } else {
        // When it holds, this raises the alert and logs the explanation; the writes go on without removals.
        let held = ctx.removal_guard(sink.name(), removals, guard).is_err();
        write_pass(ctx, sink, planned.parts, read_at, held, planned.handed_over).await?
    };
    let removals_held = writes.removals_held;
    let handed_over = writes.handed_over.clone();
    if !handed_over.is_empty() {
        tracing::info!(
            sink = sink.name(),
            groups = handed_over.len(),
            "groups changed in Authentik during the pass; fresh group jobs converge them"
        );
    }
    let mut done = sink.after_pass(planned.then, writes, options).await?;
    if !options.dry_run && !removals_held && !done.holds_gauge {
        ctx.removal_guard_clear(sink.name());
    }
    let own = std::mem::take(&mut done.follow_ups);
    done.follow_ups = handed_over
        .into_iter()
        .map(JobKey::AuthentikGroup)
        .chain(own)
        .collect();
    Ok(done)
}

/// Writes a pass's plan one group at a time, under the group's lock. A group that changed after the pass
/// read it is skipped and handed to a group job; so is one that changed while it was being written (a user
/// job can write the same group without its lock), so the last word is always a fresh read. A part with
/// nothing to write is still given to the sink, unlocked, so it can note what it skipped.
async fn write_pass<S: Sink>(
    ctx: &Runtime,
    sink: &S,
    parts: Vec<(AuthentikGroupId, S::Part)>,
    read_at: Tick,
    removals_held: bool,
    mut handed_over: Vec<AuthentikGroupId>,
) -> Result<PassWrites<S::Part>, SyncError> {
    let progress = sink.progress();
    if let Some(p) = progress {
        p.set_phase(PassPhase::Writing);
        PassProgress::add(
            &p.writes_planned,
            parts.iter().map(|(_, part)| part.writes()).sum(),
        );
    }
    let mut reports = Vec::new();
    let mut written = Vec::new();
    let mut held = Vec::new();
    for (group, part) in parts {
        if part.is_empty() {
            reports.push(sink.write(&part, false).await?);
            continue;
        }
        let writes = part.writes();
        let turn = sink.locks().lock(&group).await;
        let checked_at = ctx.clock.now();
        if ctx.clock.changed_since(&group, read_at) {
            drop(turn);
            done_writing(progress, writes);
            handed_over.push(group);
            continue;
        }
        let part = if removals_held {
            let (rest, removals) = part.hold_removals();
            held.push(removals);
            rest
        } else {
            part
        };
        match sink.write(&part, false).await {
            Ok(report) => {
                reports.push(report);
                written.push(part);
            }
            Err(e) => match sink.failure(&e) {
                WriteFailure::Conflict => handed_over.push(group.clone()),
                WriteFailure::Refused => {
                    let call = format!("{}.write", sink.name());
                    ctx.metrics
                        .group_refusals
                        .with_label_values(&[call.as_str()])
                        .inc();
                    tracing::warn!(sink = sink.name(), authentik_group = %group, error = %e, "the sink refused this group's writes; the other groups go on");
                    reports.push(SyncReport {
                        refused_groups: 1,
                        ..SyncReport::default()
                    });
                }
                WriteFailure::Fail => return Err(e),
            },
        }
        done_writing(progress, writes);
        drop(turn);
        if ctx.clock.changed_since(&group, checked_at) {
            handed_over.push(group);
        }
    }
    if let Some(p) = progress {
        p.set_phase(PassPhase::Idle);
    }
    Ok(PassWrites {
        written,
        held,
        handed_over,
        summary: SyncReport::total(&reports),
        removals_held,
    })
}

fn done_writing(progress: Option<&PassProgress>, writes: usize) {
    if let Some(p) = progress {
        PassProgress::add(&p.writes_done, writes);
    }
}

/// The queue's view of a sink that converges through this file: a pass for [`JobKey::Reconcile`], a push
/// for anything else.
pub struct Converging<S> {
    pub runtime: std::sync::Arc<Runtime>,
    pub sink: std::sync::Arc<S>,
}

impl<S: Sink> super::job::SinkJobs for Converging<S> {
    fn name(&self) -> &'static str {
        self.sink.name()
    }

    fn interested(&self, key: &JobKey) -> bool {
        self.sink.interested(key)
    }

    fn run<'a>(
        &'a self,
        key: &'a JobKey,
    ) -> futures::future::BoxFuture<'a, Result<JobOutcome, SyncError>> {
        use futures::FutureExt;
        async move {
            match key {
                JobKey::Reconcile => pass_job(&self.runtime, &*self.sink).await,
                _ => push(&self.runtime, &*self.sink, key).await,
            }
        }
        .boxed()
    }

    fn group_changed<'a>(
        &'a self,
        change: &'a GroupChange<'a>,
    ) -> futures::future::BoxFuture<'a, GroupInterest> {
        use futures::FutureExt;
        self.sink.group_changed(change).boxed()
    }

    fn check(&self) -> futures::future::BoxFuture<'_, Vec<super::check::CheckLine>> {
        use futures::FutureExt;
        self.sink.check().boxed()
    }
}
