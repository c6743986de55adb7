//! The OpenFGA sink: the same Authentik changes the Outline sink follows, kept as `member` tuples
//! (`user:<id> member group:<id>`). Each job reads the tuples it manages, diffs them against Authentik with the
//! pure planner of `tuples.rs`, and writes only the difference, in batches OpenFGA accepts
//! (docs/src/upstream/openfga.md §2.2).
//!
//! Only plain `user:` tuples on managed groups are ever written or deleted: usersets, wildcards, other types
//! and groups the bridge does not manage are someone else's. The runtime converges this sink through its
//! [`Sink`] contract, in its own lanes and with its own group locks, so an outage of one sink never delays
//! the other.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use futures::stream::{FuturesUnordered, StreamExt};
use serde::Serialize;
use serde_json::json;

use crate::clients::UpstreamError;
use crate::configuration::MembershipMode;
use crate::domain::snapshot::{ancestors, counted_group_ids, members_by_group};
use crate::domain::{AuthentikGroupId, AuthentikUserId, Email, GroupSnapshot, GroupSummary};
use crate::metrics::Metrics;
use crate::reason::WarnOnce;
use crate::runtime::changes::{GroupLocks, Tick};
use crate::runtime::context::SyncContext;
use crate::runtime::converge::{
    PassDone, PassPlan, PassWrites, PlanPart, Planned, Sink, WriteFailure,
};
use crate::runtime::job::{
    GroupChange, GroupInterest, JobKey, JobOutcome, ReconcileOptions, SyncError, SyncReport,
};
use crate::sinks::openfga::client::OpenFgaClient;
use crate::sinks::openfga::tuples::{
    InvalidId, MemberTuple, Person, TupleNaming, TuplePlan, UserIdForm,
};
use crate::store::{Remembered, Store, StoreError};

/// OpenFGA's default cap on tuples per Write (docs/src/upstream/openfga.md §2.2). An operator can lower it, and no
/// call reveals it, but 100 is what every release ships.
pub const MAX_TUPLES_PER_WRITE: usize = 100;
/// Groups whose tuples a pass reads at once. OpenFGA has no rate limit; this only keeps a pass polite.
const READS_AT_ONCE: usize = 8;

pub struct OpenFgaSink {
    ctx: Arc<SyncContext>,
    pub client: OpenFgaClient,
    pub naming: TupleNaming,
    locks: GroupLocks,
    /// The object id last written for each group: with `OPENFGA_GROUP_ID=name` a rename is seen as a change
    /// of object, and the old one's tuples are moved. In the store with `STATE_DIR`, so a rename while the
    /// bridge was down is moved too. Each person's user id is in the identity map: a deletion event carries
    /// no username or email (docs/src/upstream/authentik.md §4.4).
    objects: Remembered<AuthentikGroupId, Arc<str>>,
    warned: WarnOnce,
    metrics: Arc<Metrics>,
}

/// What the OpenFGA sink keeps in the store in `STATE_DIR` (in memory without it).
pub struct OpenFgaState {
    pub objects: Remembered<AuthentikGroupId, Arc<str>>,
}

/// The store's kind for the group objects written.
const OBJECTS: &str = "openfga_object";

impl OpenFgaState {
    pub fn in_memory() -> OpenFgaState {
        OpenFgaState {
            objects: Remembered::in_memory(OBJECTS),
        }
    }

    pub async fn open(store: &Store) -> Result<OpenFgaState, StoreError> {
        Ok(OpenFgaState {
            objects: Remembered::open(store, OBJECTS).await?,
        })
    }
}

/// What one pass into OpenFGA found and did, for the CLI's report.
#[derive(Debug, Default, Serialize)]
pub struct OpenFgaPassReport {
    pub managed_groups: usize,
    /// Tuples written (or, in a dry run, to write), as `{user, object}`; the relation is `relation`.
    pub writes: Vec<MemberTuple>,
    pub deletes: Vec<MemberTuple>,
    pub relation: String,
    /// People and groups whose Authentik value OpenFGA would refuse as an id.
    pub skipped_ids: Vec<InvalidId>,
    pub guarded: bool,
    /// Deletes the pass planned: with `guarded`, more than were made.
    pub planned_deletes: usize,
    /// In a run (not a dry run) that the guard held: the deletes it did not make.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub held_deletes: Vec<MemberTuple>,
    pub refused_groups: usize,
    pub handed_to_group_jobs: Vec<AuthentikGroupId>,
    /// Every tuple the bridge keeps in OpenFGA once the pass is written: what `fga model test` is fed.
    pub desired: Vec<MemberTuple>,
}

/// Another writer changed the same tuples between the read and the write: re-read and re-diff
/// (docs/src/upstream/openfga.md §3.4).
fn is_conflict(e: &UpstreamError) -> bool {
    match e {
        UpstreamError::Status { status: 409, .. } => true,
        UpstreamError::Status {
            status: 400,
            message,
            ..
        } => message.contains("already exist") || message.contains("which does not exist"),
        _ => false,
    }
}

impl OpenFgaSink {
    pub fn new(
        ctx: Arc<SyncContext>,
        client: OpenFgaClient,
        naming: TupleNaming,
        state: OpenFgaState,
    ) -> OpenFgaSink {
        let metrics = ctx.metrics.clone();
        OpenFgaSink {
            ctx,
            client,
            naming,
            locks: GroupLocks::default(),
            objects: state.objects,
            warned: WarnOnce::default(),
            metrics,
        }
    }

    /// An id OpenFGA would refuse is skipped, logged once and counted; the rest of the job goes on.
    fn note_invalid(&self, e: &InvalidId) {
        self.metrics
            .ids_skipped
            .with_label_values(&["openfga", e.kind])
            .inc();
        if self.warned.first(format!("{}\u{0}{}", e.kind, e.value)) {
            tracing::warn!(kind = e.kind, value = %e.value, reason = e.reason, "not synced to OpenFGA: it cannot be an OpenFGA id");
        }
    }

    fn object(&self, group: &GroupSummary, skipped: &mut Vec<InvalidId>) -> Option<Arc<str>> {
        match self.naming.group(group) {
            Ok(o) => Some(o),
            Err(e) => {
                self.note_invalid(&e);
                skipped.push(e);
                None
            }
        }
    }

    /// The person's id, remembered for a later deletion (whose event carries no username or email).
    fn user(&self, person: &Person, skipped: &mut Vec<InvalidId>) -> Option<Arc<str>> {
        let id = self.user_id(person, skipped)?;
        self.remember_user(person.pk, &id);
        Some(id)
    }

    fn remember_user(&self, pk: AuthentikUserId, id: &Arc<str>) {
        self.ctx.reader.caches.identities.wrote_openfga(pk, id);
    }

    /// Writes what this sink learned (objects, user ids) to the store.
    async fn save(&self) {
        self.ctx.reader.caches.identities.save().await;
        if let Err(e) = self.objects.save().await {
            tracing::error!(error = %e, "cannot write the OpenFGA objects to the store; kept in memory and written at the next save");
        }
    }

    /// For `reconcile --dry-run`: what it learns is not written.
    pub fn freeze(&self) {
        self.objects.freeze();
    }

    /// The person's id, not remembered: a user job remembers it only once its writes are done, so a retry
    /// still knows the id it replaces.
    fn user_id(&self, person: &Person, skipped: &mut Vec<InvalidId>) -> Option<Arc<str>> {
        match self.naming.user(person) {
            Ok(u) => Some(u),
            Err(e) => {
                self.note_invalid(&e);
                skipped.push(e);
                None
            }
        }
    }

    /// The managed users of one group object, as stored.
    async fn members_of(&self, object: &Arc<str>) -> Result<BTreeSet<MemberTuple>, UpstreamError> {
        let stored = self
            .client
            .read_all(json!({"object": &**object, "relation": self.naming.relation}))
            .await?;
        Ok(stored
            .into_iter()
            .filter(|t| t.relation == self.naming.relation && self.naming.is_managed_user(&t.user))
            .map(|t| MemberTuple {
                user: Arc::from(t.user),
                object: object.clone(),
            })
            .collect())
    }

    /// The group objects one user is a member of, among `managed`.
    async fn groups_of(
        &self,
        user: &Arc<str>,
        managed: &HashSet<Arc<str>>,
    ) -> Result<BTreeSet<MemberTuple>, UpstreamError> {
        let stored = self
            .client
            .read_all(json!({
                "user": &**user,
                "relation": self.naming.relation,
                "object": self.naming.group_prefix(),
            }))
            .await?;
        Ok(stored
            .into_iter()
            .filter(|t| t.relation == self.naming.relation && managed.contains(t.object.as_str()))
            .map(|t| MemberTuple {
                user: user.clone(),
                object: Arc::from(t.object),
            })
            .collect())
    }

    /// Writes a plan in batches. Each batch commits on its own (docs/src/upstream/openfga.md §4); a failure stops
    /// the rest, and the next run re-reads and writes what is still missing.
    async fn write_tuples(&self, plan: &TuplePlan) -> Result<(), UpstreamError> {
        for batch in plan.batches(MAX_TUPLES_PER_WRITE) {
            self.client.write(&batch, &self.naming.relation).await?;
            self.metrics
                .membership_changes
                .with_label_values(&["openfga", "add"])
                .inc_by(batch.writes.len() as u64);
            self.metrics
                .membership_changes
                .with_label_values(&["openfga", "remove"])
                .inc_by(batch.deletes.len() as u64);
        }
        Ok(())
    }
}

/// The people each managed group should hold, direct or inherited (docs/src/upstream/authentik.md §7.5).
fn desired_people(
    directory: &[GroupSnapshot],
    membership: MembershipMode,
) -> BTreeMap<AuthentikGroupId, BTreeSet<Person>> {
    members_by_group(
        directory,
        membership == MembershipMode::Inherited,
        GroupSnapshot::active_people,
    )
}

/// The tuples a push or a pass writes: a [`TuplePlan`], and with `OPENFGA_GROUP_ID=name` the tuples of
/// renamed groups' old objects, which go once the new ones have theirs.
pub struct TupleChanges {
    pub tuples: TuplePlan,
    moves: Vec<TupleMove>,
}

/// A renamed group's old object, and the managed tuples it still holds.
struct TupleMove {
    from: Arc<str>,
    to: Arc<str>,
    stale: Vec<MemberTuple>,
}

impl PlanPart for TupleChanges {
    /// Moved tuples remove nobody's access, so they do not count against the guard.
    fn removals(&self) -> usize {
        self.tuples.deletes.len()
    }

    fn writes(&self) -> usize {
        self.tuples.len() + self.moves.iter().map(|m| m.stale.len()).sum::<usize>()
    }

    fn is_empty(&self) -> bool {
        self.tuples.is_empty() && self.moves.is_empty()
    }

    /// A held plan makes no move either: the old object keeps its tuples until the new one is complete.
    fn hold_removals(self) -> (Self, Self) {
        let TupleChanges { tuples, moves } = self;
        let rest = TupleChanges {
            tuples: tuples.without_deletes(),
            moves: Vec::new(),
        };
        let held = TupleChanges {
            tuples: TuplePlan {
                writes: Vec::new(),
                deletes: tuples.deletes,
            },
            moves,
        };
        (rest, held)
    }
}

/// What the hook after an OpenFGA push remembers once the writes are made: a user's id, or each group's
/// object, so a later rename or deletion knows what it replaces.
pub enum FgaPush {
    User {
        pk: AuthentikUserId,
        user: Arc<str>,
    },
    Groups {
        objects: Vec<(AuthentikGroupId, Arc<str>)>,
        note: Option<String>,
    },
}

type PlannedPush = Planned<TupleChanges, FgaPush>;

/// An Authentik group changed: its tuples converge, and in inherited mode so do its managed ancestors'.
/// With `OPENFGA_GROUP_ID=name`, a renamed group's tuples move from the old object to the new one. The
/// runtime holds the group's lock for the whole job.
async fn plan_group(sink: &OpenFgaSink, id: &AuthentikGroupId) -> Result<PlannedPush, SyncError> {
    let engine = &*sink.ctx;
    let reader = &engine.reader;
    let targets: Vec<(GroupSummary, BTreeSet<Person>)> = match reader.membership {
        MembershipMode::Direct => {
            let Some(group) = reader.fresh_group(id).await? else {
                return Planned::noted("the Authentik group no longer exists");
            };
            vec![(group.summary.clone(), group.active_people())]
        }
        MembershipMode::Inherited => {
            let directory = reader.directory.list_groups(true).await?;
            let summaries: Vec<GroupSummary> =
                directory.iter().map(|g| g.summary.clone()).collect();
            let mut affected = ancestors(&summaries).remove(id).unwrap_or_default();
            affected.insert(id.clone());
            let mut desired = desired_people(&directory, reader.membership);
            summaries
                .into_iter()
                .filter(|g| affected.contains(&g.id))
                .map(|g| {
                    let people = desired.remove(&g.id).unwrap_or_default();
                    (g, people)
                })
                .collect()
        }
    };
    let mut changes = TupleChanges {
        tuples: TuplePlan::default(),
        moves: Vec::new(),
    };
    let mut objects = Vec::new();
    let mut note = None;
    let mut skipped = Vec::new();
    for (group, people) in targets {
        if !reader.is_managed(&group) {
            if sink.objects.get(&group.id).is_some() {
                tracing::warn!(group = %group.name, authentik_group = %group.id, "this Authentik group no longer matches AUTHENTIK_GROUP_REGEXP: its OpenFGA tuples are kept and no longer synced");
            }
            note = Some("the group is not managed (AUTHENTIK_GROUP_REGEXP)".to_string());
            continue;
        }
        let Some(object) = sink.object(&group, &mut skipped) else {
            note = Some("the group's name cannot be an OpenFGA id".to_string());
            continue;
        };
        let desired: BTreeSet<MemberTuple> = people
            .iter()
            .filter_map(|p| sink.user(p, &mut skipped))
            .map(|user| MemberTuple {
                user,
                object: object.clone(),
            })
            .collect();
        let previous = sink.objects.get(&group.id);
        match previous.filter(|p| *p != object) {
            // The old name may belong to another managed group now (a swap, or a name reused at once): its
            // own jobs own that object, and its tuples are not this group's to delete.
            Some(old) if !claimed_by_another(engine, sink, &group.id, &old).await? => {
                let stale = sink.members_of(&old).await?.into_iter().collect();
                changes.moves.push(TupleMove {
                    from: old,
                    to: object.clone(),
                    stale,
                });
            }
            _ => {}
        }
        let current = sink.members_of(&object).await?;
        changes.tuples.extend(TuplePlan::diff(&desired, &current));
        objects.push((group.id.clone(), object));
    }
    Ok(Planned::Write(changes, FgaPush::Groups { objects, note }))
}

/// Whether another managed Authentik group now has the OpenFGA object `old` (with `OPENFGA_GROUP_ID=name`).
async fn claimed_by_another(
    engine: &SyncContext,
    sink: &OpenFgaSink,
    group: &AuthentikGroupId,
    old: &Arc<str>,
) -> Result<bool, UpstreamError> {
    let catalog = engine.reader.full_catalog().await?;
    Ok(catalog.iter().any(|g| {
        &g.id != group
            && engine.reader.is_managed(g)
            && sink.naming.group(g).ok().as_ref() == Some(old)
    }))
}

/// An Authentik user changed (groups, deactivation, username or email) or was deleted: their tuples on
/// every managed group follow. One Read finds every group tuple of the user (docs/src/upstream/openfga.md §2.3).
async fn plan_user(sink: &OpenFgaSink, pk: AuthentikUserId) -> Result<PlannedPush, SyncError> {
    let engine = &*sink.ctx;
    let reader = &engine.reader;
    let mut skipped = Vec::new();
    let remembered: Option<Arc<str>> = reader.caches.identities.openfga_user(pk).map(Arc::from);
    let (user, member_of) = match reader.fresh_user(pk).await? {
        Some(au) => {
            let Some(user) = sink.user_id(&au.person(), &mut skipped) else {
                return Planned::noted("the user's id cannot be an OpenFGA id");
            };
            let groups: BTreeSet<AuthentikGroupId> = if au.is_active {
                au.groups.iter().cloned().collect()
            } else {
                BTreeSet::new()
            };
            (user, groups)
        }
        None => {
            let known = match sink.naming.user_id {
                UserIdForm::Pk => sink
                    .naming
                    .user(&Person {
                        pk,
                        username: None,
                        email: None,
                    })
                    .ok(),
                _ => remembered.clone(),
            };
            let Some(user) = known else {
                tracing::info!(user = %pk, "deleted Authentik user's OpenFGA id is not remembered; an OpenFGA reconcile is queued");
                return Ok(Planned::Done(JobOutcome {
                    report: SyncReport::noted("id not remembered; a reconcile is queued"),
                    follow_ups: vec![JobKey::Reconcile],
                }));
            };
            // A late or retried deletion must not remove someone who holds the same id now: a user deleted
            // and re-created under the same username or email.
            if let Some(live) = live_holder(engine, sink, &user).await? {
                tracing::info!(user = %pk, now = %live, "the deleted user's OpenFGA id belongs to a live Authentik user; syncing that user instead");
                return Ok(Planned::Done(JobOutcome {
                    report: SyncReport::noted("the id belongs to a live Authentik user"),
                    follow_ups: vec![JobKey::AuthentikUser(live)],
                }));
            }
            (user, BTreeSet::new())
        }
    };
    // The catalog is kept honest by group events; a group the cached one lacks means one was lost.
    if !member_of.is_empty() {
        let cached = reader.full_catalog().await?;
        if member_of.iter().any(|g| !cached.iter().any(|c| &c.id == g)) {
            reader.caches.catalog.invalidate(&()).await;
        }
    }
    let catalog = reader.full_catalog().await?;
    let member_of = counted_group_ids(
        &catalog,
        &member_of,
        reader.membership == MembershipMode::Inherited,
    );
    let mut managed = HashSet::new();
    let mut desired = BTreeSet::new();
    for g in catalog.iter().filter(|g| reader.is_managed(g)) {
        let Some(object) = sink.object(g, &mut skipped) else {
            continue;
        };
        if member_of.contains(&g.id) {
            desired.insert(MemberTuple {
                user: user.clone(),
                object: object.clone(),
            });
        }
        managed.insert(object);
    }
    // A changed username or email is a new user id: the old id's tuples on managed groups go, unless a live
    // Authentik user holds the old id now (a name handed on), whose tuples they are.
    let replaced = match remembered.filter(|old| *old != user) {
        Some(old) if live_holder(engine, sink, &old).await?.is_none() => Some(old),
        _ => None,
    };
    let mut tuples = TuplePlan::diff(&desired, &sink.groups_of(&user, &managed).await?);
    if let Some(old) = &replaced {
        tuples.deletes.extend(sink.groups_of(old, &managed).await?);
    }
    Ok(Planned::Write(
        TupleChanges {
            tuples,
            moves: Vec::new(),
        },
        FgaPush::User { pk, user },
    ))
}

/// The live Authentik user whose OpenFGA id is `user`, for a username or email id; a pk is never reused.
async fn live_holder(
    engine: &SyncContext,
    sink: &OpenFgaSink,
    user: &str,
) -> Result<Option<AuthentikUserId>, UpstreamError> {
    let value = user
        .strip_prefix(sink.naming.user_type.as_str())
        .and_then(|rest| rest.strip_prefix(':'))
        .unwrap_or(user);
    let reader = &engine.reader;
    Ok(match sink.naming.user_id {
        UserIdForm::Pk => None,
        UserIdForm::Email => match Email::parse(value) {
            Some(email) => reader
                .authentik_user_by_email(&email)
                .await?
                .filter(|u| u.email.as_ref().map(Email::as_str) == Some(value))
                .map(|u| u.pk),
            None => None,
        },
        UserIdForm::Username => reader
            .directory
            .users_named(value)
            .await?
            .into_iter()
            .next()
            .map(|u| u.pk),
    })
}

/// Reads every managed group's tuples before anything is written; the runtime's pass path then writes group
/// by group under each group's lock, leaving a group that changed after the read to a fresh group job, as
/// for every sink. Tuples on objects the bridge does not manage are never read, so never touched.
async fn plan_pass(
    sink: &OpenFgaSink,
) -> Result<PassPlan<TupleChanges, OpenFgaPassReport>, SyncError> {
    let engine = &*sink.ctx;
    let reader = &engine.reader;
    let directory = reader.directory.list_groups(true).await?;
    let mut desired_by_group = desired_people(&directory, reader.membership);
    let mut report = OpenFgaPassReport {
        relation: sink.naming.relation.clone(),
        ..OpenFgaPassReport::default()
    };
    let mut handed_over = Vec::new();
    let mut wanted: Vec<(GroupSummary, Arc<str>, BTreeSet<MemberTuple>)> = Vec::new();
    for g in directory.iter().filter(|g| reader.is_managed(&g.summary)) {
        let Some(object) = sink.object(&g.summary, &mut report.skipped_ids) else {
            continue;
        };
        // A rename the pushes have not moved yet (a lost event, a guarded or failed job): a group job moves
        // the old object's tuples, which a pass, reading only current names, would leave behind.
        let renamed = sink
            .objects
            .get(&g.summary.id)
            .is_some_and(|known| known != object);
        if renamed {
            handed_over.push(g.summary.id.clone());
            continue;
        }
        let people = desired_by_group.remove(&g.summary.id).unwrap_or_default();
        let tuples: BTreeSet<MemberTuple> = people
            .iter()
            .filter_map(|p| sink.user(p, &mut report.skipped_ids))
            .map(|user| MemberTuple {
                user,
                object: object.clone(),
            })
            .collect();
        wanted.push((g.summary.clone(), object, tuples));
    }
    drop(directory);
    report.managed_groups = wanted.len();
    // Every read before any write: a failed read fails the pass with nothing written.
    let mut parts = Vec::with_capacity(wanted.len());
    let mut queued = wanted.iter();
    let mut reading = FuturesUnordered::new();
    loop {
        while reading.len() < READS_AT_ONCE {
            let Some((g, object, desired)) = queued.next() else {
                break;
            };
            reading.push(read_part(sink, g, object, desired));
        }
        let Some(part) = reading.next().await else {
            break;
        };
        parts.push(part?);
    }
    for (g, object, desired) in &wanted {
        sink.objects.insert(&g.id, object.clone());
        report.desired.extend(desired.iter().cloned());
    }
    report.planned_deletes = parts.iter().map(|(_, p)| p.removals()).sum();
    Ok(PassPlan {
        parts,
        handed_over,
        then: report,
    })
}

async fn read_part(
    sink: &OpenFgaSink,
    group: &GroupSummary,
    object: &Arc<str>,
    desired: &BTreeSet<MemberTuple>,
) -> Result<(AuthentikGroupId, TupleChanges), UpstreamError> {
    let current = sink.members_of(object).await?;
    Ok((
        group.id.clone(),
        TupleChanges {
            tuples: TuplePlan::diff(desired, &current),
            moves: Vec::new(),
        },
    ))
}

/// The report of a pass, from what the runtime wrote (or in a dry run, would write).
fn after_pass(
    mut report: OpenFgaPassReport,
    writes: PassWrites<TupleChanges>,
) -> PassDone<OpenFgaPassReport> {
    report.guarded = writes.removals_held;
    for part in writes.written {
        report.writes.extend(part.tuples.writes);
        report.deletes.extend(part.tuples.deletes);
    }
    for part in writes.held {
        report.held_deletes.extend(part.tuples.deletes);
    }
    report.refused_groups = writes.summary.refused_groups;
    report.handed_to_group_jobs = writes.handed_over;
    PassDone {
        summary: SyncReport {
            adds: report.writes.len(),
            removes: report.deletes.len(),
            refused_groups: report.refused_groups,
            ..SyncReport::default()
        },
        guarded: report.guarded,
        holds_gauge: false,
        follow_ups: Vec::new(),
        report,
    }
}

impl Sink for OpenFgaSink {
    type Part = TupleChanges;
    type Then = FgaPush;
    type Pass = OpenFgaPassReport;
    type Report = OpenFgaPassReport;

    fn name(&self) -> &'static str {
        OPENFGA
    }

    /// Authentik's users and groups, and passes; no other sink's own jobs.
    fn interested(&self, key: &JobKey) -> bool {
        !matches!(key, JobKey::Own(_))
    }

    /// A group renamed out of the filter is followed while the bridge knows its object, so its job warns that
    /// its tuples are no longer synced.
    async fn group_changed(&self, change: &GroupChange<'_>) -> GroupInterest {
        match GroupInterest::by_default(change) {
            GroupInterest::Nothing if !change.deleted && self.objects.get(change.id).is_some() => {
                GroupInterest::Group
            }
            interest => interest,
        }
    }

    fn check(
        &self,
    ) -> impl std::future::Future<Output = Vec<crate::runtime::check::CheckLine>> + Send + '_ {
        self.check_lines()
    }

    fn locks(&self) -> &GroupLocks {
        &self.locks
    }

    async fn plan_push(&self, key: &JobKey) -> Result<PlannedPush, SyncError> {
        let planned = match key {
            JobKey::AuthentikUser(pk) => plan_user(self, *pk).await,
            JobKey::AuthentikGroup(id) => plan_group(self, id).await,
            JobKey::Reconcile | JobKey::Own(_) => Ok(Planned::Done(JobOutcome::default())),
        };
        // What the reads taught the identity map is kept whatever the plan says.
        self.ctx.reader.caches.identities.save().await;
        planned
    }

    /// Writes the tuples in batches, then empties renamed groups' old objects. Each batch commits on its own
    /// (docs/src/upstream/openfga.md §4); a failure stops the rest, and the next run re-reads and writes what
    /// is still missing.
    async fn write(
        &self,
        part: &TupleChanges,
        _interactive: bool,
    ) -> Result<SyncReport, SyncError> {
        self.write_tuples(&part.tuples).await?;
        let mut report = SyncReport {
            adds: part.tuples.writes.len(),
            removes: part.tuples.deletes.len(),
            ..SyncReport::default()
        };
        for m in &part.moves {
            // OpenFGA has no rename. Grants naming the old object (`document:x#viewer@group:<old>#member`)
            // are the apps', not the bridge's.
            tracing::warn!(from = %m.from, to = %m.to, tuples = m.stale.len(), "group renamed with OPENFGA_GROUP_ID=name: its member tuples moved to the new name; grants written against the old name must be moved by hand");
            let drop_old = TuplePlan {
                writes: Vec::new(),
                deletes: m.stale.clone(),
            };
            self.write_tuples(&drop_old).await?;
            report.removes += drop_old.deletes.len();
            report.renames += 1;
        }
        Ok(report)
    }

    /// Another writer changed the same tuples between the read and the write: plan again
    /// (docs/src/upstream/openfga.md §3.4). A refusal stays with its group: an id the model does not accept.
    fn failure(&self, error: &SyncError) -> WriteFailure {
        match error {
            SyncError::Upstream(e) if is_conflict(e) => WriteFailure::Conflict,
            SyncError::Upstream(e) if e.is_permanent() => WriteFailure::Refused,
            _ => WriteFailure::Fail,
        }
    }

    async fn after_push(
        &self,
        then: FgaPush,
        mut report: SyncReport,
    ) -> Result<JobOutcome, SyncError> {
        match then {
            FgaPush::User { pk, user } => self.remember_user(pk, &user),
            FgaPush::Groups { objects, note } => {
                for (group, object) in objects {
                    self.objects.insert(&group, object);
                }
                report.note = report.note.or(note);
            }
        }
        self.save().await;
        Ok(report.into())
    }

    async fn plan_pass(
        &self,
        _read_at: Tick,
    ) -> Result<PassPlan<TupleChanges, OpenFgaPassReport>, SyncError> {
        plan_pass(self).await
    }

    async fn after_pass(
        &self,
        report: OpenFgaPassReport,
        writes: PassWrites<TupleChanges>,
        _options: ReconcileOptions,
    ) -> Result<PassDone<OpenFgaPassReport>, SyncError> {
        self.save().await;
        Ok(after_pass(report, writes))
    }
}

/// The OpenFGA sink's name: its jobs' and metrics' `sink` label.
pub const OPENFGA: &str = "openfga";
