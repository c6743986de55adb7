//! Applying a plan to Outline.
//!
//! A write Outline refuses for good (a 4xx that no retry fixes: a name with a URL in it, a name clash through
//! its unescaped `ILIKE`, a group managed by an external provider, docs/src/upstream/outline.md §3.6) is kept to
//! its group: the group's remaining writes are skipped, a warning is logged once per group and reason, a
//! metric counts it, and every other group goes on. Membership changes go before renames, so a refused rename
//! costs no one their access. Anything else (an outage, a 5xx, a 401) fails the whole apply, and the job
//! retries from fresh reads.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};

use crate::clients::UpstreamError;
use crate::domain::{AuthentikGroupId, GroupName, OutlineGroupId, OutlineUserId};
use crate::metrics::Metrics;
use crate::reason::WarnOnce;
use crate::sinks::outline::client::CreateOutcome;
use crate::sinks::outline::plan::GroupRef;
use crate::sinks::outline::plan::MembershipPlan;
use crate::sinks::outline::OutlineClient;

/// Membership writes in flight at once. The limiter paces them; this only keeps the pace when Outline is
/// slower to answer than the limit's interval between calls.
const WRITE_CONCURRENCY: usize = 8;

/// How long a rename Outline refused is not sent again.
const RENAME_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// What one apply did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub adds: usize,
    pub removes: usize,
    pub creates: usize,
    pub renames: usize,
    pub links: usize,
    /// Groups whose writes Outline refused; their other writes were skipped.
    pub refused_groups: usize,
    /// Whether a group was created, linked or renamed, so the cached Outline group index is stale.
    pub groups_changed: bool,
}

pub struct OutlineSink {
    metrics: Arc<Metrics>,
    /// Renames Outline refused, by group and wanted name, and when. Every job plans the rename again until
    /// the name changes on one side, so it is not sent again for an hour: a bad name costs one refused
    /// call an hour, not one per job.
    refused_renames: Mutex<HashMap<(OutlineGroupId, String), Instant>>,
    /// Renames being sent right now: a second job planning the same rename meanwhile leaves it to the first,
    /// so a refused name is sent once, not once per concurrent job.
    renames_in_flight: Mutex<HashSet<(OutlineGroupId, String)>>,
    /// Creates go one at a time: Outline's name check is racy without a unique constraint
    /// (docs/src/upstream/outline.md §6.1).
    create_lock: tokio::sync::Mutex<()>,
    warned: WarnOnce,
}

/// One membership write of a plan.
struct Write<'a> {
    target: Target,
    group: &'a OutlineGroupId,
    user: &'a OutlineUserId,
    name: &'a GroupName,
    add: bool,
}

/// Which group a write belongs to, for keeping a refusal to its group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Outline(OutlineGroupId),
    New(AuthentikGroupId),
}

impl OutlineSink {
    pub fn new(metrics: Arc<Metrics>) -> OutlineSink {
        OutlineSink {
            metrics,
            refused_renames: Mutex::new(HashMap::new()),
            renames_in_flight: Mutex::new(HashSet::new()),
            create_lock: tokio::sync::Mutex::new(()),
            warned: WarnOnce::default(),
        }
    }

    /// Creates and links first, so the adds that follow know every group's id; then adds, then removes, then
    /// renames. A failure part-way leaves a state the next run's fresh reads plan from again.
    pub async fn apply(
        &self,
        outline: &OutlineClient,
        plan: &MembershipPlan,
    ) -> Result<Applied, UpstreamError> {
        let mut done = Applied::default();
        let mut refused: BTreeSet<Target> = BTreeSet::new();
        let mut created: BTreeMap<&AuthentikGroupId, OutlineGroupId> = BTreeMap::new();

        for c in &plan.creates {
            let result = self
                .create_or_link(outline, &c.authentik_group, &c.name)
                .await;
            match self.isolate(result, &c.name, "groups.create")? {
                Some(Some(id)) => {
                    created.insert(&c.authentik_group, id);
                    done.creates += 1;
                    done.groups_changed = true;
                }
                Some(None) => {}
                None => {
                    refused.insert(Target::New(c.authentik_group.clone()));
                }
            }
        }
        for l in &plan.links {
            let result = outline
                .set_external_id(&l.outline_group, l.authentik_group.as_str())
                .await;
            if self.isolate(result, &l.name, "groups.update")?.is_none() {
                refused.insert(Target::Outline(l.outline_group.clone()));
                continue;
            }
            self.count("link_group");
            match &l.replaces {
                Some(old) => {
                    tracing::warn!(group = %l.name, outline_group = %l.outline_group, replaced = %old, "the Authentik group this Outline group was linked to no longer exists; the group of the same name took it over")
                }
                None => {
                    tracing::info!(group = %l.name, outline_group = %l.outline_group, "linked Outline group by name; externalId written")
                }
            }
            done.links += 1;
            done.groups_changed = true;
        }
        // Adds, then removes, a few at a time: with Outline tens of milliseconds away, one call at a time
        // would leave the rate limit unused.
        let adds: Vec<Write<'_>> = plan
            .adds
            .iter()
            .filter_map(|a| {
                let (target, group) = match &a.group {
                    GroupRef::Existing(id) => (Target::Outline(id.clone()), id),
                    GroupRef::ToCreate(g) => (Target::New(g.clone()), created.get(g)?),
                };
                Some(Write {
                    target,
                    group,
                    user: &a.user,
                    name: &a.group_name,
                    add: true,
                })
            })
            .collect();
        let removes: Vec<Write<'_>> = plan
            .removes
            .iter()
            .map(|r| Write {
                target: Target::Outline(r.group.clone()),
                group: &r.group,
                user: &r.user,
                name: &r.group_name,
                add: false,
            })
            .collect();
        for batch in [adds, removes] {
            let mut queued = batch.into_iter();
            let mut running = FuturesUnordered::new();
            loop {
                while running.len() < WRITE_CONCURRENCY {
                    let Some(w) = queued.next() else { break };
                    if refused.contains(&w.target) {
                        continue;
                    }
                    running.push(self.write(outline, w));
                }
                let Some(result) = running.next().await else {
                    break;
                };
                match result? {
                    (_, true, true) => {
                        self.count("add");
                        done.adds += 1;
                    }
                    (_, false, true) => {
                        self.count("remove");
                        done.removes += 1;
                    }
                    (target, _, false) => {
                        refused.insert(target);
                    }
                }
            }
        }
        for r in &plan.renames {
            let target = Target::Outline(r.outline_group.clone());
            if refused.contains(&target) {
                continue;
            }
            let key = (r.outline_group.clone(), r.to.as_str().to_string());
            if self.rename_refused_recently(&key) {
                refused.insert(target);
                continue;
            }
            let in_flight = || {
                self.renames_in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
            };
            if !in_flight().insert(key.clone()) {
                continue;
            }
            let result = outline.rename_group(&r.outline_group, &r.to).await;
            let outcome = self.isolate(result, &r.to, "groups.update");
            // The refusal is noted before the rename leaves the in-flight set, so no job slips in between.
            if let Ok(None) = outcome {
                self.refused_renames
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key.clone(), Instant::now());
            }
            in_flight().remove(&key);
            match outcome? {
                Some(()) => {
                    self.count("rename_group");
                    tracing::info!(from = %r.from, to = %r.to, "renamed Outline group to follow Authentik");
                    done.renames += 1;
                    done.groups_changed = true;
                }
                None => {
                    refused.insert(target);
                }
            }
        }
        done.refused_groups = refused.len();
        Ok(done)
    }

    fn rename_refused_recently(&self, key: &(OutlineGroupId, String)) -> bool {
        let mut refused = self
            .refused_renames
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        refused.retain(|_, at| at.elapsed() < RENAME_RETRY_AFTER);
        refused.contains_key(key)
    }

    /// One membership write: `(target, was an add, done)`, where not done is a refusal kept to its group.
    async fn write(
        &self,
        outline: &OutlineClient,
        w: Write<'_>,
    ) -> Result<(Target, bool, bool), UpstreamError> {
        let (result, call) = if w.add {
            (outline.add_user(w.group, w.user).await, "groups.add_user")
        } else {
            (
                outline.remove_user(w.group, w.user).await,
                "groups.remove_user",
            )
        };
        let done = self.isolate(result, w.name, call)?.is_some();
        Ok((w.target, w.add, done))
    }

    /// `Ok(Some(v))` on success, `Ok(None)` for a refusal kept to its group, `Err` for anything a retry may fix.
    fn isolate<T>(
        &self,
        result: Result<T, UpstreamError>,
        group: &GroupName,
        call: &'static str,
    ) -> Result<Option<T>, UpstreamError> {
        match result {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_refusal() => {
                self.metrics.group_refusals.with_label_values(&[call]).inc();
                if self.warned.first(format!("{group}\u{0}{e}")) {
                    tracing::warn!(group = %group, error = %e, "Outline refused a write to this group; its other writes are skipped and every other group goes on. Fix the cause (often the group's name) in Authentik or Outline");
                }
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn count(&self, change: &str) {
        self.metrics
            .membership_changes
            .with_label_values(&["outline", change])
            .inc();
    }

    /// Creates the Outline group for an Authentik group. A 400 means the name is taken (perhaps by a create
    /// that raced this one, docs/src/upstream/outline.md §6.1): the existing group is linked instead, unless
    /// another group owns it.
    async fn create_or_link(
        &self,
        outline: &OutlineClient,
        group: &AuthentikGroupId,
        name: &GroupName,
    ) -> Result<Option<OutlineGroupId>, UpstreamError> {
        let _one_at_a_time = self.create_lock.lock().await;
        match outline.create_group(name, group.as_str()).await? {
            CreateOutcome::Created(og) => {
                self.count("create_group");
                tracing::info!(group = %name, outline_group = %og.id, "created Outline group");
                Ok(Some(og.id))
            }
            CreateOutcome::NameTaken => {
                let groups = outline.list_groups().await?;
                let existing = groups.iter().find(|g| g.name == *name);
                match existing {
                    Some(og)
                        if og.external_id.is_none()
                            || og.linked_authentik_group().as_ref() == Some(group) =>
                    {
                        if og.external_id.is_none() {
                            outline.set_external_id(&og.id, group.as_str()).await?;
                            self.count("link_group");
                        }
                        tracing::info!(group = %name, outline_group = %og.id, "name already taken in Outline; linked the existing group");
                        Ok(Some(og.id.clone()))
                    }
                    _ => {
                        if self.warned.first(format!("{name}\u{0}create")) {
                            tracing::warn!(group = %name, "cannot create the Outline group: the name is taken by a group linked elsewhere; rename one of them");
                        }
                        Ok(None)
                    }
                }
            }
        }
    }
}
