//! One job, start to end: read both sides fresh (or from caches the events keep honest), plan with the pure
//! planner, apply the plan to Outline. Every job re-reads current state, so order and duplicates of the
//! webhooks that caused it do not matter.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;

use super::cache::{OutlineUserIndex, SnapshotCaches};
use crate::clients::outline::{CreateOutcome, OutlineUser};
use crate::clients::{AuthentikClient, Lane, OutlineClient, UpstreamError};
use crate::configuration::{MembershipMode, Settings};
use crate::domain::plan::GroupIndex;
use crate::domain::snapshot::ancestors;
use crate::domain::{
    plan_membership, AuthentikGroupId, AuthentikUserId, Email, GroupRef, GroupSelector,
    GroupSnapshot, GroupSummary, GroupTarget, MembershipPlan, OutlineGroup, OutlineGroupId,
    OutlineUserId, PlanInput, UserSnapshot,
};
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("the plan removes {removals} memberships, more than MAX_REMOVALS={max}; no removal was made (run `authentik-bridge reconcile --force` once you have checked the plan)")]
    Guarded { removals: usize, max: usize },
}

/// What one job did, for the log line and the CLI.
#[derive(Debug, Default, Clone, Serialize)]
pub struct SyncReport {
    pub adds: usize,
    pub removes: usize,
    pub creates: usize,
    pub renames: usize,
    pub links: usize,
    /// Authentik members with no Outline account yet (they are added once they exist).
    pub unmatched_members: usize,
    pub note: Option<String>,
}

impl SyncReport {
    fn noted(note: impl Into<String>) -> SyncReport {
        SyncReport {
            note: Some(note.into()),
            ..SyncReport::default()
        }
    }
}

pub struct SyncEngine {
    pub authentik: AuthentikClient,
    pub outline: OutlineClient,
    pub caches: SnapshotCaches,
    pub selector: GroupSelector,
    pub membership: MembershipMode,
    pub auto_create: bool,
    pub max_removals: usize,
    pub metrics: Arc<Metrics>,
    /// Creates go one at a time: Outline's name check is racy without a unique constraint (docs/upstream/outline.md §6.1).
    create_lock: tokio::sync::Mutex<()>,
}

/// Whether removals may exceed `MAX_REMOVALS` in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalGuard {
    Enforce,
    Force,
}

impl SyncEngine {
    pub fn new(
        settings: &Settings,
        authentik: AuthentikClient,
        outline: OutlineClient,
        metrics: Arc<Metrics>,
    ) -> SyncEngine {
        SyncEngine {
            authentik,
            outline,
            caches: SnapshotCaches::new(settings.cache_ttl, metrics.clone()),
            selector: GroupSelector {
                filter: settings.group_filter.clone(),
            },
            membership: settings.membership,
            auto_create: settings.auto_create_groups,
            max_removals: settings.max_removals,
            metrics,
            create_lock: tokio::sync::Mutex::new(()),
        }
    }

    // ----- reads, cached where events keep the cache honest -----

    /// The managed Authentik groups, without members.
    pub async fn managed_catalog(&self) -> Result<Arc<Vec<GroupSummary>>, UpstreamError> {
        let all = self.full_catalog().await?;
        Ok(Arc::new(
            all.iter()
                .filter(|g| self.selector.is_managed(&g.name, g.is_superuser))
                .cloned()
                .collect(),
        ))
    }

    /// All groups, managed or not, for walking parents in inherited mode.
    async fn full_catalog(&self) -> Result<Arc<Vec<GroupSummary>>, UpstreamError> {
        self.caches
            .get_or_load(&self.caches.catalog, (), async {
                let groups = self.authentik.list_groups(false).await?;
                Ok::<_, UpstreamError>(Arc::new(
                    groups.into_iter().map(|g| g.summary).collect::<Vec<_>>(),
                ))
            })
            .await
    }

    /// The Outline group index, read again when the cached one cannot be complete: a target with members
    /// to add has no Outline group in it, or a current membership names a group it does not know. Outline
    /// sends no group events, so a group created by hand is found this way instead of after the TTL.
    async fn outline_groups_for(
        &self,
        targets: &[GroupTarget],
        current: &BTreeMap<OutlineGroupId, BTreeSet<OutlineUserId>>,
    ) -> Result<Arc<Vec<OutlineGroup>>, UpstreamError> {
        let groups = self.outline_groups().await?;
        let index = GroupIndex::new(&groups);
        let known: BTreeSet<&OutlineGroupId> = groups.iter().map(|g| &g.id).collect();
        let unlinked = targets
            .iter()
            .any(|t| !t.desired.is_empty() && index.find(&t.group, &t.name).is_none());
        let unknown = current.keys().any(|id| !known.contains(id));
        if !(unlinked || unknown) {
            return Ok(groups);
        }
        self.caches.outline_groups.invalidate(&()).await;
        self.outline_groups().await
    }

    pub async fn outline_groups(&self) -> Result<Arc<Vec<OutlineGroup>>, UpstreamError> {
        self.caches
            .get_or_load(&self.caches.outline_groups, (), async {
                Ok(Arc::new(self.outline.list_groups().await?))
            })
            .await
    }

    async fn outline_user_index(
        &self,
        outline: &OutlineClient,
    ) -> Result<Arc<OutlineUserIndex>, UpstreamError> {
        self.caches
            .get_or_load(&self.caches.outline_users, (), async {
                let users = outline.list_users().await?;
                Ok(Arc::new(index_users(&users)))
            })
            .await
    }

    /// Maps Authentik members to Outline users by email. When some are missing from the cached index, one
    /// call asks Outline for its newest user and its count; only when those changed (someone signed up or
    /// was invited since) is the whole index read again. Members who never used Outline stay unmatched
    /// without costing a full listing per event.
    async fn resolve_emails(
        &self,
        outline: &OutlineClient,
        emails: &BTreeSet<Email>,
    ) -> Result<(BTreeMap<Email, OutlineUserId>, usize), UpstreamError> {
        let mut index = self.outline_user_index(outline).await?;
        let missing = |idx: &OutlineUserIndex| {
            emails
                .iter()
                .any(|e| !idx.by_email.contains_key(e.folded()))
        };
        if missing(&index) {
            let (total, newest) = outline.newest_user().await?;
            if total != index.total || newest != index.newest {
                self.caches.outline_users.invalidate(&()).await;
                index = self.outline_user_index(outline).await?;
            }
        }
        let mut found = BTreeMap::new();
        let mut unmatched = 0;
        for e in emails {
            match index.by_email.get(e.folded()) {
                Some(id) => {
                    found.insert(e.clone(), id.clone());
                }
                None => unmatched += 1,
            }
        }
        Ok((found, unmatched))
    }

    /// Finds the Authentik user for an email. Authentik's `email` filter is exact and case-sensitive (docs/upstream/authentik.md §7.4):
    /// the exact filter is tried first (one call, and what SSO-provisioned Outline accounts match), then
    /// `search=`, whose fields include email, compared here without case.
    async fn authentik_user_by_email(
        &self,
        email: &Email,
    ) -> Result<Option<UserSnapshot>, UpstreamError> {
        let mut found = self.authentik.users_with_exact_email(email).await?;
        if found.is_empty() {
            found = self.authentik.search_users(email.as_str()).await?;
            found.retain(|u| u.email.as_ref() == Some(email));
        }
        match found.len() {
            1 => Ok(found.pop()),
            0 => Ok(None),
            n => {
                tracing::warn!(
                    count = n,
                    "several Authentik users share this email; nothing changed"
                );
                Ok(None)
            }
        }
    }

    // ----- jobs -----

    /// A `users.signin` from Outline: the user's groups follow Authentik.
    pub async fn sync_signin(&self, id: &OutlineUserId) -> Result<SyncReport, SyncError> {
        let outline = self.outline.in_lane(Lane::Interactive);
        let Some(user) = outline.user(id).await? else {
            return Ok(SyncReport::noted(
                "Outline does not know this user (deleted?)",
            ));
        };
        let Some(email) = user.email.clone() else {
            return Ok(SyncReport::noted(
                "Outline shows no email for this user; is OUTLINE_TOKEN an admin's key?",
            ));
        };
        let Some(au) = self.authentik_user_by_email(&email).await? else {
            // Not an Authentik user: nothing is changed, and their groups are not removed.
            tracing::info!(user = %id, "no Authentik user with this email; memberships left as they are");
            return Ok(SyncReport::noted("no Authentik user with this email"));
        };
        self.caches.users.insert(au.pk, Arc::new(au.clone())).await;
        self.sync_user_memberships(&outline, &au, &user, RemovalGuard::Enforce)
            .await
    }

    /// An Authentik user changed (groups, deactivation) or was deleted.
    pub async fn sync_authentik_user(&self, pk: AuthentikUserId) -> Result<SyncReport, SyncError> {
        let outline = self.outline.in_lane(Lane::Interactive);
        let Some(au) = self.authentik.user(pk).await? else {
            return self.remove_deleted_user(pk).await;
        };
        self.caches.users.insert(pk, Arc::new(au.clone())).await;
        let Some(email) = au.email.clone() else {
            return Ok(SyncReport::noted("the Authentik user has no email"));
        };
        let Some(user) = outline.find_user_by_email(&email).await? else {
            return Ok(SyncReport::noted("no Outline user with this email yet"));
        };
        self.sync_user_memberships(&outline, &au, &user, RemovalGuard::Enforce)
            .await
    }

    /// A deleted Authentik user leaves every managed group. The event has no email (docs/upstream/authentik.md §4.4), so it comes from
    /// earlier reads; when none is remembered, every managed group is converged instead.
    async fn remove_deleted_user(&self, pk: AuthentikUserId) -> Result<SyncReport, SyncError> {
        let Some(email) = self.caches.remembered_email(pk).await else {
            tracing::info!(user = %pk, "deleted Authentik user's email is not remembered; converging all managed groups");
            return self.reconcile_for_deletion().await;
        };
        self.caches.users.invalidate(&pk).await;
        let outline = self.outline.in_lane(Lane::Interactive);
        let Some(user) = outline.find_user_by_email(&email).await? else {
            return Ok(SyncReport::noted(
                "deleted Authentik user has no Outline account",
            ));
        };
        let gone = UserSnapshot {
            pk,
            email: Some(email),
            is_active: false,
            groups: Vec::new(),
        };
        self.sync_user_memberships(&outline, &gone, &user, RemovalGuard::Enforce)
            .await
    }

    async fn reconcile_for_deletion(&self) -> Result<SyncReport, SyncError> {
        let report =
            super::reconcile::run_reconcile(self, super::reconcile::ReconcileOptions::default())
                .await?;
        Ok(report.summary)
    }

    /// One user against every managed group: desired from the Authentik user, current from `groups.list
    /// {userId}` (one call per 100 groups rather than one per group).
    async fn sync_user_memberships(
        &self,
        outline: &OutlineClient,
        au: &UserSnapshot,
        ou: &OutlineUser,
        guard: RemovalGuard,
    ) -> Result<SyncReport, SyncError> {
        // The catalog is kept honest by group events; when one was lost, the user's fresh group list names
        // a group the cached catalog lacks, and the catalog is read again rather than ignoring that group.
        let cached = self.full_catalog().await?;
        if au.groups.iter().any(|g| !cached.iter().any(|c| &c.id == g)) {
            self.caches.catalog.invalidate(&()).await;
        }
        let catalog = self.managed_catalog().await?;
        let mut member_of: BTreeSet<AuthentikGroupId> = if au.is_active {
            au.groups.iter().cloned().collect()
        } else {
            BTreeSet::new()
        };
        if self.membership == MembershipMode::Inherited && !member_of.is_empty() {
            let all = self.full_catalog().await?;
            let anc = ancestors(&all);
            let direct: Vec<AuthentikGroupId> = member_of.iter().cloned().collect();
            for g in direct {
                member_of.extend(anc.get(&g).into_iter().flatten().cloned());
            }
        }
        let targets: Vec<GroupTarget> = catalog
            .iter()
            .map(|g| GroupTarget {
                group: g.id.clone(),
                name: g.name.clone(),
                desired: if member_of.contains(&g.id) {
                    BTreeSet::from([ou.id.clone()])
                } else {
                    BTreeSet::new()
                },
            })
            .collect();
        let current_groups = outline.groups_of_user(&ou.id).await?;
        let current: BTreeMap<OutlineGroupId, BTreeSet<OutlineUserId>> = current_groups
            .into_iter()
            .map(|g| (g, BTreeSet::from([ou.id.clone()])))
            .collect();
        let groups = self.outline_groups_for(&targets, &current).await?;
        let plan = plan_membership(&PlanInput {
            targets: &targets,
            outline_groups: &groups,
            current: &current,
            auto_create: self.auto_create,
        });
        self.apply_guarded(outline, plan, guard).await
    }

    /// An Authentik group changed: its linked Outline group converges, adds and removes, and follows a rename.
    /// In inherited mode the group's managed ancestors converge too, since their members include its own.
    pub async fn sync_group(&self, id: &AuthentikGroupId) -> Result<SyncReport, SyncError> {
        let outline = self.outline.in_lane(Lane::Bulk);
        let mut targets_with_members: Vec<(GroupSummary, BTreeSet<Email>)> = Vec::new();
        match self.membership {
            MembershipMode::Direct => {
                let Some(group) = self.group_snapshot(id).await? else {
                    return Ok(SyncReport::noted("the Authentik group no longer exists"));
                };
                if !self
                    .selector
                    .is_managed(&group.summary.name, group.summary.is_superuser)
                {
                    return Ok(SyncReport::noted(
                        "the group is not managed (AUTHENTIK_GROUP_REGEXP)",
                    ));
                }
                targets_with_members.push((group.summary.clone(), active_emails(&group)));
            }
            MembershipMode::Inherited => {
                let directory = self.authentik.list_groups(true).await?;
                let desired = inherited_members(&directory);
                let summaries: Vec<GroupSummary> =
                    directory.iter().map(|g| g.summary.clone()).collect();
                let anc = ancestors(&summaries);
                let mut affected: BTreeSet<AuthentikGroupId> =
                    anc.get(id).cloned().unwrap_or_default();
                affected.insert(id.clone());
                for g in directory {
                    self.caches.store_group(g.clone()).await;
                    if affected.contains(&g.summary.id)
                        && self
                            .selector
                            .is_managed(&g.summary.name, g.summary.is_superuser)
                    {
                        let members = desired.get(&g.summary.id).cloned().unwrap_or_default();
                        targets_with_members.push((g.summary, members));
                    }
                }
            }
        }
        self.converge_groups(&outline, targets_with_members, RemovalGuard::Enforce)
            .await
    }

    /// Always a fresh read. A group job runs because an event for the group arrived, and a cached snapshot can
    /// only be one that a job read before that event: its read can be answered before the change and land in
    /// the cache after the event's invalidation, and a trailing run that planned from it would lose the change
    /// until the next reconcile. The snapshot is still cached, for `remembered_email`.
    async fn group_snapshot(
        &self,
        id: &AuthentikGroupId,
    ) -> Result<Option<Arc<GroupSnapshot>>, UpstreamError> {
        let Some(g) = self.authentik.group(id).await? else {
            return Ok(None);
        };
        Ok(Some(self.caches.store_group(g).await))
    }

    /// Converges whole groups: desired members by email against the current members of each linked Outline
    /// group, read fresh right before planning.
    pub(crate) async fn converge_groups(
        &self,
        outline: &OutlineClient,
        groups: Vec<(GroupSummary, BTreeSet<Email>)>,
        guard: RemovalGuard,
    ) -> Result<SyncReport, SyncError> {
        let (plan, unmatched) = self.plan_groups(outline, groups).await?;
        let mut report = self.apply_guarded(outline, plan, guard).await?;
        report.unmatched_members = unmatched;
        Ok(report)
    }

    /// Reads what a group plan needs and plans it; no writes.
    pub(crate) async fn plan_groups(
        &self,
        outline: &OutlineClient,
        groups: Vec<(GroupSummary, BTreeSet<Email>)>,
    ) -> Result<(MembershipPlan, usize), UpstreamError> {
        let all_emails: BTreeSet<Email> =
            groups.iter().flat_map(|(_, e)| e.iter().cloned()).collect();
        let (ids, unmatched) = self.resolve_emails(outline, &all_emails).await?;
        let targets: Vec<GroupTarget> = groups
            .into_iter()
            .map(|(summary, emails)| GroupTarget {
                group: summary.id,
                name: summary.name,
                desired: emails.iter().filter_map(|e| ids.get(e).cloned()).collect(),
            })
            .collect();
        let outline_groups = self.outline_groups_for(&targets, &BTreeMap::new()).await?;
        let index = GroupIndex::new(&outline_groups);
        let mut current = BTreeMap::new();
        for t in &targets {
            if let Some((og, _)) = index.find(&t.group, &t.name) {
                if !current.contains_key(&og.id) {
                    let members = outline.group_members(&og.id).await?;
                    current.insert(og.id.clone(), members.into_keys().collect::<BTreeSet<_>>());
                }
            }
        }
        let plan = plan_membership(&PlanInput {
            targets: &targets,
            outline_groups: &outline_groups,
            current: &current,
            auto_create: self.auto_create,
        });
        Ok((plan, unmatched))
    }

    // ----- writes -----

    /// Applies a plan unless its removals exceed `MAX_REMOVALS`: then the rest of the plan is applied and no
    /// removal is made (Entra ID's provisioning has the same safeguard against accidental deletion).
    pub(crate) async fn apply_guarded(
        &self,
        outline: &OutlineClient,
        plan: MembershipPlan,
        guard: RemovalGuard,
    ) -> Result<SyncReport, SyncError> {
        let removals = plan.removes.len();
        if guard == RemovalGuard::Enforce && removals > self.max_removals {
            self.metrics.removal_guard_tripped.inc();
            self.metrics.removal_guard_active.set(1);
            tracing::error!(removals, max = self.max_removals, "mass-removal guard: no removal made; check the plan with `authentik-bridge reconcile --dry-run`, then run it with --force");
            self.apply_plan(outline, &plan.without_removals()).await?;
            return Err(SyncError::Guarded {
                removals,
                max: self.max_removals,
            });
        }
        self.metrics.removal_guard_active.set(0);
        Ok(self.apply_plan(outline, &plan).await?)
    }

    /// Creates and links first, so the adds that follow know every group's id; then adds, then removes. A
    /// failure part-way leaves a state the next run's fresh reads plan from again.
    pub async fn apply_plan(
        &self,
        outline: &OutlineClient,
        plan: &MembershipPlan,
    ) -> Result<SyncReport, UpstreamError> {
        let mut report = SyncReport::default();
        let mut created: BTreeMap<&AuthentikGroupId, OutlineGroupId> = BTreeMap::new();
        let changed_groups =
            !plan.creates.is_empty() || !plan.links.is_empty() || !plan.renames.is_empty();
        for c in &plan.creates {
            if let Some(id) = self
                .create_or_link(outline, &c.authentik_group, &c.name)
                .await?
            {
                created.insert(&c.authentik_group, id);
                report.creates += 1;
            }
        }
        for l in &plan.links {
            outline
                .set_external_id(&l.outline_group, l.authentik_group.as_str())
                .await?;
            self.metrics
                .membership_changes
                .with_label_values(&["link_group"])
                .inc();
            tracing::info!(group = %l.name, outline_group = %l.outline_group, "linked Outline group by name; externalId written");
            report.links += 1;
        }
        for r in &plan.renames {
            outline.rename_group(&r.outline_group, &r.to).await?;
            self.metrics
                .membership_changes
                .with_label_values(&["rename_group"])
                .inc();
            tracing::info!(from = %r.from, to = %r.to, "renamed Outline group to follow Authentik");
            report.renames += 1;
        }
        if changed_groups {
            self.caches.outline_groups.invalidate(&()).await;
        }
        for a in &plan.adds {
            let group = match &a.group {
                GroupRef::Existing(id) => id,
                GroupRef::ToCreate(g) => match created.get(g) {
                    Some(id) => id,
                    None => continue,
                },
            };
            outline.add_user(group, &a.user).await?;
            self.metrics
                .membership_changes
                .with_label_values(&["add"])
                .inc();
            report.adds += 1;
        }
        for r in &plan.removes {
            outline.remove_user(&r.group, &r.user).await?;
            self.metrics
                .membership_changes
                .with_label_values(&["remove"])
                .inc();
            report.removes += 1;
        }
        Ok(report)
    }

    /// Creates the Outline group for an Authentik group. A 400 means the name is taken (perhaps by a create
    /// that raced this one, docs/upstream/outline.md §6.1): the existing group is linked instead, unless another group owns it.
    async fn create_or_link(
        &self,
        outline: &OutlineClient,
        group: &AuthentikGroupId,
        name: &crate::domain::GroupName,
    ) -> Result<Option<OutlineGroupId>, UpstreamError> {
        let _one_at_a_time = self.create_lock.lock().await;
        match outline.create_group(name, group.as_str()).await? {
            CreateOutcome::Created(og) => {
                self.metrics
                    .membership_changes
                    .with_label_values(&["create_group"])
                    .inc();
                tracing::info!(group = %name, outline_group = %og.id, "created Outline group");
                Ok(Some(og.id))
            }
            CreateOutcome::NameTaken => {
                self.caches.outline_groups.invalidate(&()).await;
                let groups = outline.list_groups().await?;
                let existing = groups.iter().find(|g| g.name == *name);
                match existing {
                    Some(og)
                        if og.external_id.is_none()
                            || og.linked_authentik_group().as_ref() == Some(group) =>
                    {
                        if og.external_id.is_none() {
                            outline.set_external_id(&og.id, group.as_str()).await?;
                            self.metrics
                                .membership_changes
                                .with_label_values(&["link_group"])
                                .inc();
                        }
                        tracing::info!(group = %name, outline_group = %og.id, "name already taken in Outline; linked the existing group");
                        Ok(Some(og.id.clone()))
                    }
                    _ => {
                        tracing::warn!(group = %name, "cannot create the Outline group: the name is taken by a group linked elsewhere; rename one of them");
                        Ok(None)
                    }
                }
            }
        }
    }
}

fn index_users(users: &[OutlineUser]) -> OutlineUserIndex {
    let mut by_email = BTreeMap::new();
    for u in users {
        if let Some(e) = &u.email {
            by_email
                .entry(e.folded().to_string())
                .or_insert_with(|| u.id.clone());
        }
    }
    OutlineUserIndex {
        by_email,
        total: users.len() as u64,
        newest: users.last().map(|u| u.id.clone()),
    }
}

/// A group's desired members: its active members with an email. An inactive user is removed from every
/// managed group.
pub(crate) fn active_emails(group: &GroupSnapshot) -> BTreeSet<Email> {
    group
        .members
        .iter()
        .filter(|m| m.is_active)
        .filter_map(|m| m.email.clone())
        .collect()
}

/// For `MEMBERSHIP=inherited`: each group's active members plus those of every group below it.
pub(crate) fn inherited_members(
    directory: &[GroupSnapshot],
) -> BTreeMap<AuthentikGroupId, BTreeSet<Email>> {
    let summaries: Vec<GroupSummary> = directory.iter().map(|g| g.summary.clone()).collect();
    let anc = ancestors(&summaries);
    let mut out: BTreeMap<AuthentikGroupId, BTreeSet<Email>> = BTreeMap::new();
    for g in directory {
        let emails = active_emails(g);
        out.entry(g.summary.id.clone())
            .or_default()
            .extend(emails.iter().cloned());
        for a in anc.get(&g.summary.id).into_iter().flatten() {
            out.entry(a.clone())
                .or_default()
                .extend(emails.iter().cloned());
        }
    }
    out
}
