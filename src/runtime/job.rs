//! What the runtime schedules and what it asks of a sink. The queue knows job keys, outcomes and errors, and
//! runs a job by calling [`SinkJobs::run`]: it never names a sink (the list is built in `sinks/mod.rs`), the way
//! kube-rs's controller calls one `reconcile` for whatever object it holds.

use futures::future::BoxFuture;
use serde::Serialize;

use crate::clients::UpstreamError;
use crate::domain::{AuthentikGroupId, AuthentikUserId, GroupName};

/// What a job converges. The queue runs one job at a time per key and sink, and folds events for a key into
/// it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JobKey {
    AuthentikUser(AuthentikUserId),
    AuthentikGroup(AuthentikGroupId),
    Reconcile,
    /// A job only one sink knows (Outline's sign-ins, accounts and invitations): it runs in that sink alone.
    Own(OwnJob),
}

/// A sink's own kind of job, opaque to the runtime: which sink, what kind (the metrics' `kind` label), and
/// the target's id as the sink wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OwnJob {
    pub sink: &'static str,
    pub kind: &'static str,
    pub target: String,
    /// Runs in the interactive lane, beside single users, never behind bulk work.
    pub interactive: bool,
}

impl JobKey {
    pub fn kind(&self) -> &'static str {
        match self {
            JobKey::AuthentikUser(_) => "user",
            JobKey::AuthentikGroup(_) => "group",
            JobKey::Reconcile => "reconcile",
            JobKey::Own(own) => own.kind,
        }
    }

    /// The target's id, for the job's log span.
    pub fn target(&self) -> String {
        match self {
            JobKey::AuthentikUser(pk) => pk.to_string(),
            JobKey::AuthentikGroup(id) => id.to_string(),
            JobKey::Reconcile => String::new(),
            JobKey::Own(own) => own.target.clone(),
        }
    }

    /// Single users (and a sink's interactive jobs, like sign-ins) run in their own lane, so bulk work
    /// (groups, passes) never delays them.
    pub fn interactive(&self) -> bool {
        match self {
            JobKey::AuthentikUser(_) => true,
            JobKey::Own(own) => own.interactive,
            JobKey::AuthentikGroup(_) | JobKey::Reconcile => false,
        }
    }
}

/// A job's report, and the jobs it leaves for the queue: a deletion that needs a pass asks for one instead
/// of running it inline, and a pass hands groups that changed under it to fresh group jobs.
#[derive(Debug, Default)]
pub struct JobOutcome {
    pub report: SyncReport,
    pub follow_ups: Vec<JobKey>,
}

impl From<SyncReport> for JobOutcome {
    fn from(report: SyncReport) -> JobOutcome {
        JobOutcome {
            report,
            follow_ups: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("the plan removes {removals} memberships, more than MAX_REMOVALS={max}; no removal was made (run `authentik-bridge reconcile --force` once you have checked the plan)")]
    Guarded { removals: usize, max: usize },
    #[error("the plan suspends {suspensions} people, more than MAX_SUSPENSIONS={max}; nobody was suspended (run `authentik-bridge reconcile --force` once you have checked the plan)")]
    SuspensionsGuarded { suspensions: usize, max: usize },
}

/// What one job did, for the log line and the CLI.
#[derive(Debug, Default, Clone, Serialize)]
pub struct SyncReport {
    pub adds: usize,
    pub removes: usize,
    pub creates: usize,
    pub renames: usize,
    pub links: usize,
    /// Authentik members with no account in the sink yet (they are added once they exist).
    pub unmatched_members: usize,
    /// Groups whose writes the sink refused for good.
    pub refused_groups: usize,
    pub note: Option<String>,
}

impl SyncReport {
    pub fn noted(note: impl Into<String>) -> SyncReport {
        SyncReport {
            note: Some(note.into()),
            ..SyncReport::default()
        }
    }

    /// The sum of several reports, as one pass writes group by group.
    pub fn total<'a>(reports: impl IntoIterator<Item = &'a SyncReport>) -> SyncReport {
        let mut sum = SyncReport::default();
        for r in reports {
            sum.add(r);
        }
        sum
    }

    fn add(&mut self, other: &SyncReport) {
        self.adds += other.adds;
        self.removes += other.removes;
        self.creates += other.creates;
        self.renames += other.renames;
        self.links += other.links;
        self.refused_groups += other.refused_groups;
    }
}

/// Whether removals may exceed `MAX_REMOVALS` in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalGuard {
    Enforce,
    Force,
}

/// How a full pass runs: `--dry-run` and `--force`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReconcileOptions {
    pub dry_run: bool,
    pub force: bool,
}

impl ReconcileOptions {
    /// The removal guard this pass runs under: `--force` lifts it.
    pub fn guard(&self) -> RemovalGuard {
        if self.force {
            RemovalGuard::Force
        } else {
            RemovalGuard::Enforce
        }
    }
}

/// An accepted change to an Authentik group, as each sink weighs it at intake, after the clock ticked.
#[derive(Debug)]
pub struct GroupChange<'a> {
    pub id: &'a AuthentikGroupId,
    pub name: &'a GroupName,
    pub deleted: bool,
    /// Whether `AUTHENTIK_GROUP_REGEXP` selects the group.
    pub managed: bool,
    /// `MEMBERSHIP=inherited`: any group may sit below a synced one, so its job decides.
    pub inherited: bool,
}

/// What a group change asks of a sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupInterest {
    /// The group's job.
    Group,
    /// Only a job of the sink's own (Outline's accounts job, after a change to a group that gave roles).
    Own(JobKey),
    Nothing,
}

impl GroupInterest {
    /// What most sinks want: a live group's job when it is synced, or may sit below a synced one.
    pub fn by_default(change: &GroupChange<'_>) -> GroupInterest {
        if !change.deleted && (change.managed || change.inherited) {
            GroupInterest::Group
        } else {
            GroupInterest::Nothing
        }
    }
}

/// A sink as the queue sees it. The queue asks each registered sink whether a key is its business, and runs
/// the job through it; retries, coalescing, lanes and metrics are the queue's, the same for every sink.
pub trait SinkJobs: Send + Sync + 'static {
    /// The sink's name: its metrics' `sink` label and its log field.
    fn name(&self) -> &'static str;
    /// Whether this sink has a job for `key`. A key of the sink's own kind goes to that sink alone.
    fn interested(&self, key: &JobKey) -> bool;
    /// Converges the key's target in this sink, from fresh reads.
    fn run<'a>(&'a self, key: &'a JobKey) -> BoxFuture<'a, Result<JobOutcome, SyncError>>;
    /// What a group change asks of this sink, at intake.
    fn group_changed<'a>(&'a self, change: &'a GroupChange<'a>) -> BoxFuture<'a, GroupInterest> {
        Box::pin(std::future::ready(GroupInterest::by_default(change)))
    }
    /// The sink's lines for `authentik-bridge check`: its upstream's token, permissions and settings.
    fn check(&self) -> BoxFuture<'_, Vec<super::check::CheckLine>> {
        Box::pin(std::future::ready(Vec::new()))
    }
}
