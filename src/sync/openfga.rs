//! The OpenFGA sink: the same Authentik changes the Outline sink follows, kept as `member` tuples
//! (`user:<id> member group:<id>`). Each job reads the tuples it manages, diffs them against Authentik with the
//! pure planner of `domain/tuples.rs`, and writes only the difference, in batches OpenFGA accepts
//! (docs/src/upstream/openfga.md §2.2).
//!
//! Only plain `user:` tuples on managed groups are ever written or deleted: usersets, wildcards, other types
//! and groups the bridge does not manage are someone else's. The queue runs this sink's jobs apart from
//! Outline's, with its own group locks, so an outage of one sink never delays the other.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures::stream::{FuturesUnordered, StreamExt};
use serde::Serialize;
use serde_json::json;

use super::apply::WarnOnce;
use crate::clients::openfga::OpenFgaClient;
use crate::clients::UpstreamError;
use crate::configuration::MembershipMode;
use crate::domain::snapshot::{ancestors, counted_group_ids};
use crate::domain::tuples::{InvalidId, MemberTuple, Person, TupleNaming, TuplePlan, UserIdForm};
use crate::domain::{AuthentikGroupId, AuthentikUserId, Email, GroupSnapshot, GroupSummary};
use crate::metrics::Metrics;
use crate::runtime::changes::{GroupLocks, Tick};
use crate::runtime::context::SyncContext;
use crate::runtime::job::{
    JobKey, JobOutcome, ReconcileOptions, RemovalGuard, SyncError, SyncReport,
};

/// OpenFGA's default cap on tuples per Write (docs/src/upstream/openfga.md §2.2). An operator can lower it, and no
/// call reveals it, but 100 is what every release ships.
pub const MAX_TUPLES_PER_WRITE: usize = 100;
/// Groups whose tuples a pass reads at once. OpenFGA has no rate limit; this only keeps a pass polite.
const READS_AT_ONCE: usize = 8;
/// A write that met another writer (409, or a pre-1.10 server's duplicate error) is re-read and re-diffed
/// this many times before the job fails and the queue retries it.
const CONFLICT_ATTEMPTS: usize = 3;

pub struct OpenFgaSink {
    pub client: OpenFgaClient,
    pub naming: TupleNaming,
    locks: GroupLocks,
    /// The object id last written for each group: with `OPENFGA_GROUP_ID=name` a rename is seen as a change
    /// of object, and the old one's tuples are moved. Kept in memory; docs/src/openfga.md says what a restart forgets.
    objects: Mutex<HashMap<AuthentikGroupId, Arc<str>>>,
    /// The user id last seen for each person: a deletion event carries no username or email
    /// (docs/src/upstream/authentik.md §4.4).
    users: Mutex<HashMap<AuthentikUserId, Arc<str>>>,
    warned: WarnOnce,
    metrics: Arc<Metrics>,
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
    pub fn new(client: OpenFgaClient, naming: TupleNaming, metrics: Arc<Metrics>) -> OpenFgaSink {
        OpenFgaSink {
            client,
            naming,
            locks: GroupLocks::default(),
            objects: Mutex::new(HashMap::new()),
            users: Mutex::new(HashMap::new()),
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
        lock(&self.users).insert(pk, id.clone());
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
    async fn write(&self, plan: &TuplePlan) -> Result<(), UpstreamError> {
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

    /// Applies a plan under the mass-removal guard shared with Outline: when its deletes, with those the same
    /// job made already (`deleted`), pass `MAX_REMOVALS`, only the writes are made.
    async fn write_guarded(
        &self,
        engine: &SyncContext,
        plan: &TuplePlan,
        guard: RemovalGuard,
        deleted: &mut usize,
    ) -> Result<SyncReport, SyncError> {
        let removals = *deleted + plan.deletes.len();
        if let Err(held) = engine.removal_guard(OPENFGA, removals, guard) {
            self.write(&plan.without_deletes()).await?;
            return Err(held);
        }
        self.write(plan).await?;
        *deleted = removals;
        Ok(SyncReport {
            adds: plan.writes.len(),
            removes: plan.deletes.len(),
            ..SyncReport::default()
        })
    }
}

/// The people each managed group should hold, direct or inherited (docs/src/upstream/authentik.md §7.5).
fn desired_people(
    directory: &[GroupSnapshot],
    membership: MembershipMode,
) -> BTreeMap<AuthentikGroupId, BTreeSet<Person>> {
    let mut out: BTreeMap<AuthentikGroupId, BTreeSet<Person>> = directory
        .iter()
        .map(|g| (g.summary.id.clone(), g.active_people()))
        .collect();
    if membership == MembershipMode::Inherited {
        let summaries: Vec<GroupSummary> = directory.iter().map(|g| g.summary.clone()).collect();
        for (group, above) in ancestors(&summaries) {
            let own = out.get(&group).cloned().unwrap_or_default();
            for a in above {
                out.entry(a).or_default().extend(own.iter().cloned());
            }
        }
    }
    out
}

/// An Authentik group changed: its tuples converge, and in inherited mode so do its managed ancestors'.
/// With `OPENFGA_GROUP_ID=name`, a renamed group's tuples move from the old object to the new one.
pub async fn group_job(
    engine: &SyncContext,
    sink: &OpenFgaSink,
    id: &AuthentikGroupId,
) -> Result<JobOutcome, SyncError> {
    let reader = &engine.reader;
    let _turn = sink.locks.lock(id).await;
    let targets: Vec<(GroupSummary, BTreeSet<Person>)> = match reader.membership {
        MembershipMode::Direct => {
            let Some(group) = reader.fresh_group(id).await? else {
                return Ok(SyncReport::noted("the Authentik group no longer exists").into());
            };
            vec![(group.summary.clone(), group.active_people())]
        }
        MembershipMode::Inherited => {
            let directory = reader.authentik.list_groups(true).await?;
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
    let mut report = SyncReport::default();
    // One budget for the whole job: in inherited mode a child's change touches its ancestors too, and their
    // deletes add up against MAX_REMOVALS as one plan's would.
    let mut deleted = 0;
    for (group, people) in targets {
        if !reader.is_managed(&group) {
            if lock(&sink.objects).contains_key(&group.id) {
                tracing::warn!(group = %group.name, authentik_group = %group.id, "this Authentik group no longer matches AUTHENTIK_GROUP_REGEXP: its OpenFGA tuples are kept and no longer synced");
            }
            report.note = Some("the group is not managed (AUTHENTIK_GROUP_REGEXP)".into());
            continue;
        }
        let done = converge_group(
            engine,
            sink,
            &group,
            &people,
            RemovalGuard::Enforce,
            &mut deleted,
        )
        .await?;
        report.adds += done.adds;
        report.removes += done.removes;
    }
    Ok(report.into())
}

/// One group's tuples against its desired people, re-read and re-diffed when another writer got in between.
async fn converge_group(
    engine: &SyncContext,
    sink: &OpenFgaSink,
    group: &GroupSummary,
    people: &BTreeSet<Person>,
    guard: RemovalGuard,
    deleted: &mut usize,
) -> Result<SyncReport, SyncError> {
    let mut skipped = Vec::new();
    let Some(object) = sink.object(group, &mut skipped) else {
        return Ok(SyncReport::noted(
            "the group's name cannot be an OpenFGA id",
        ));
    };
    let desired: BTreeSet<MemberTuple> = people
        .iter()
        .filter_map(|p| sink.user(p, &mut skipped))
        .map(|user| MemberTuple {
            user,
            object: object.clone(),
        })
        .collect();
    let previous = lock(&sink.objects).get(&group.id).cloned();
    let moved_from = match previous.filter(|p| *p != object) {
        // The old name may belong to another managed group now (a swap, or a name reused at once): its own
        // jobs own that object, and its tuples are not this group's to delete.
        Some(old) if !claimed_by_another(engine, sink, &group.id, &old).await? => Some(old),
        _ => None,
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = async {
            let current = sink.members_of(&object).await?;
            let plan = TuplePlan::diff(&desired, &current);
            let mut report = sink.write_guarded(engine, &plan, guard, deleted).await?;
            if let Some(old) = &moved_from {
                // OpenFGA has no rename: the old object's managed tuples go once the new one has its own.
                // Moved tuples remove nobody's access, so they do not count against the guard. Grants naming
                // the old object (`document:x#viewer@group:<old>#member`) are the apps', not the bridge's.
                let stale = sink.members_of(old).await?;
                tracing::warn!(from = %old, to = %object, tuples = stale.len(), "group renamed with OPENFGA_GROUP_ID=name: its member tuples moved to the new name; grants written against the old name must be moved by hand");
                let drop_old = TuplePlan {
                    writes: Vec::new(),
                    deletes: stale.into_iter().collect(),
                };
                sink.write(&drop_old).await?;
                report.removes += drop_old.deletes.len();
                report.renames = 1;
            }
            Ok::<_, SyncError>(report)
        }
        .await;
        match result {
            Ok(report) => {
                lock(&sink.objects).insert(group.id.clone(), object.clone());
                return Ok(report);
            }
            Err(SyncError::Upstream(e)) if is_conflict(&e) => {
                if attempt >= CONFLICT_ATTEMPTS {
                    return Err(still_conflicting(e).into());
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// A conflict that outlasted the re-reads is handed to the queue's retries: it is not a refusal, however
/// its status reads (docs/src/upstream/openfga.md §3.4).
fn still_conflicting(e: UpstreamError) -> UpstreamError {
    UpstreamError::Incomplete {
        upstream: "openfga",
        call: "write".into(),
        message: format!("other writers kept changing the same tuples: {e}"),
    }
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
pub async fn user_job(
    engine: &SyncContext,
    sink: &OpenFgaSink,
    pk: AuthentikUserId,
) -> Result<JobOutcome, SyncError> {
    let reader = &engine.reader;
    let mut skipped = Vec::new();
    let remembered = lock(&sink.users).get(&pk).cloned();
    let (user, member_of) = match reader.fresh_user(pk).await? {
        Some(au) => {
            let Some(user) = sink.user_id(&au.person(), &mut skipped) else {
                return Ok(SyncReport::noted("the user's id cannot be an OpenFGA id").into());
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
                return Ok(JobOutcome {
                    report: SyncReport::noted("id not remembered; a reconcile is queued"),
                    follow_ups: vec![JobKey::Reconcile],
                });
            };
            // A late or retried deletion must not remove someone who holds the same id now: a user deleted
            // and re-created under the same username or email.
            if let Some(live) = live_holder(engine, sink, &user).await? {
                tracing::info!(user = %pk, now = %live, "the deleted user's OpenFGA id belongs to a live Authentik user; syncing that user instead");
                return Ok(JobOutcome {
                    report: SyncReport::noted("the id belongs to a live Authentik user"),
                    follow_ups: vec![JobKey::AuthentikUser(live)],
                });
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
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut plan = TuplePlan::diff(&desired, &sink.groups_of(&user, &managed).await?);
        if let Some(old) = &replaced {
            plan.deletes.extend(sink.groups_of(old, &managed).await?);
        }
        match sink
            .write_guarded(engine, &plan, RemovalGuard::Enforce, &mut 0)
            .await
        {
            Ok(report) => {
                sink.remember_user(pk, &user);
                return Ok(report.into());
            }
            Err(SyncError::Upstream(e)) if is_conflict(&e) => {
                if attempt >= CONFLICT_ATTEMPTS {
                    return Err(still_conflicting(e).into());
                }
            }
            Err(e) => return Err(e),
        }
    }
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
            .authentik
            .search_users(value)
            .await?
            .into_iter()
            .find(|u| u.username.as_deref() == Some(value))
            .map(|u| u.pk),
    })
}

/// The full pass into OpenFGA, as a queued job.
pub async fn reconcile_job(
    engine: &SyncContext,
    sink: &OpenFgaSink,
) -> Result<JobOutcome, SyncError> {
    let report = run_reconcile(engine, sink, ReconcileOptions::default()).await?;
    Ok(JobOutcome {
        follow_ups: report
            .handed_to_group_jobs
            .iter()
            .cloned()
            .map(JobKey::AuthentikGroup)
            .collect(),
        report: SyncReport {
            adds: report.writes.len(),
            removes: report.deletes.len(),
            refused_groups: report.refused_groups,
            ..SyncReport::default()
        },
    })
}

/// Reads every managed group's tuples, then writes group by group under each group's lock, leaving a group
/// that changed after the read to a fresh group job, exactly as the Outline pass does (`reconcile.rs`).
/// Tuples on objects the bridge does not manage are never read, so never touched.
pub async fn run_reconcile(
    engine: &SyncContext,
    sink: &OpenFgaSink,
    options: ReconcileOptions,
) -> Result<OpenFgaPassReport, SyncError> {
    let started = Instant::now();
    let result = reconcile_inner(engine, sink, options).await;
    let outcome = match &result {
        Ok(r) if r.guarded => "guarded",
        Ok(_) => "ok",
        Err(_) => "failed",
    };
    engine
        .metrics
        .reconcile
        .with_label_values(&["openfga", outcome])
        .inc();
    if outcome == "ok" && !options.dry_run {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        engine
            .metrics
            .reconcile_last_success
            .with_label_values(&["openfga"])
            .set(now as i64);
    }
    tracing::debug!(
        duration_ms = started.elapsed().as_millis() as u64,
        "OpenFGA pass done"
    );
    result
}

struct GroupPart {
    group: AuthentikGroupId,
    plan: TuplePlan,
}

async fn read_part(
    sink: &OpenFgaSink,
    group: &GroupSummary,
    object: &Arc<str>,
    desired: &BTreeSet<MemberTuple>,
) -> Result<GroupPart, UpstreamError> {
    let current = sink.members_of(object).await?;
    Ok(GroupPart {
        group: group.id.clone(),
        plan: TuplePlan::diff(desired, &current),
    })
}

async fn reconcile_inner(
    engine: &SyncContext,
    sink: &OpenFgaSink,
    options: ReconcileOptions,
) -> Result<OpenFgaPassReport, SyncError> {
    let reader = &engine.reader;
    let read_at: Tick = engine.clock.now();
    let directory = reader.authentik.list_groups(true).await?;
    let mut desired_by_group = desired_people(&directory, reader.membership);
    let mut report = OpenFgaPassReport {
        relation: sink.naming.relation.clone(),
        ..OpenFgaPassReport::default()
    };
    let mut wanted: Vec<(GroupSummary, Arc<str>, BTreeSet<MemberTuple>)> = Vec::new();
    for g in directory.iter().filter(|g| reader.is_managed(&g.summary)) {
        let Some(object) = sink.object(&g.summary, &mut report.skipped_ids) else {
            continue;
        };
        // A rename the pushes have not moved yet (a lost event, a guarded or failed job): a group job moves
        // the old object's tuples, which a pass, reading only current names, would leave behind.
        let renamed = lock(&sink.objects)
            .get(&g.summary.id)
            .is_some_and(|known| *known != object);
        if renamed {
            report.handed_to_group_jobs.push(g.summary.id.clone());
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
    let mut parts: Vec<GroupPart> = Vec::with_capacity(wanted.len());
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
        lock(&sink.objects).insert(g.id.clone(), object.clone());
        report.desired.extend(desired.iter().cloned());
    }
    let deletes: usize = parts.iter().map(|p| p.plan.deletes.len()).sum();
    report.planned_deletes = deletes;
    let guard = options.guard();
    if options.dry_run {
        report.guarded = engine.holds_removals(deletes, guard);
        for p in parts {
            report.writes.extend(p.plan.writes);
            report.deletes.extend(p.plan.deletes);
        }
        return Ok(report);
    }
    report.guarded = engine.removal_guard(OPENFGA, deletes, guard).is_err();
    if !report.guarded {
        engine.removal_guard_clear(OPENFGA);
    }
    for part in parts {
        if part.plan.is_empty() {
            continue;
        }
        let turn = sink.locks.lock(&part.group).await;
        if engine.clock.changed_since(&part.group, read_at) {
            drop(turn);
            report.handed_to_group_jobs.push(part.group);
            continue;
        }
        let checked_at = engine.clock.now();
        let plan = if report.guarded {
            report
                .held_deletes
                .extend(part.plan.deletes.iter().cloned());
            part.plan.without_deletes()
        } else {
            part.plan
        };
        match sink.write(&plan).await {
            Ok(()) => {
                report.writes.extend(plan.writes);
                report.deletes.extend(plan.deletes);
            }
            // A refusal stays with its group (an id the model does not accept, say); the pass goes on.
            Err(e) if e.is_permanent() && !is_conflict(&e) => {
                engine
                    .metrics
                    .group_refusals
                    .with_label_values(&["openfga.write"])
                    .inc();
                tracing::warn!(authentik_group = %part.group, error = %e, "OpenFGA refused this group's tuples; the other groups go on");
                report.refused_groups += 1;
            }
            Err(e) if is_conflict(&e) => report.handed_to_group_jobs.push(part.group.clone()),
            Err(e) => return Err(e.into()),
        }
        drop(turn);
        if engine.clock.changed_since(&part.group, checked_at) {
            report.handed_to_group_jobs.push(part.group);
        }
    }
    Ok(report)
}

/// The OpenFGA sink's name: its jobs' and metrics' `sink` label.
pub const OPENFGA: &str = "openfga";
