//! The Outline sink's core: its state, planning groups and applying a plan. Its contract with the runtime is
//! `contract.rs`, its push planning `push.rs`, its pass `pass.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::stream::{FuturesUnordered, StreamExt};

use crate::clients::UpstreamError;
use crate::configuration::Settings;
use crate::domain::{AuthentikGroupId, DesiredMember, GroupSummary, OutlineGroupId, OutlineUserId};
use crate::reason::WarnOnce;
use crate::runtime::changes::GroupLocks;
use crate::runtime::context::SyncContext;
use crate::runtime::job::SyncReport;
use crate::runtime::progress::PassProgress;
use crate::sinks::outline::accounts::AccountSync;
use crate::sinks::outline::accounts::{AppliedRoleMap, APPLIED_MAP, APPLIED_MAP_FILE};
use crate::sinks::outline::apply::OutlineSink;
use crate::sinks::outline::index::OutlineIndex;
use crate::sinks::outline::invite_window::WindowLog;
use crate::sinks::outline::invites::InviteBook;
use crate::sinks::outline::plan::plan_membership;
use crate::sinks::outline::plan::GroupIndex;
use crate::sinks::outline::plan::GroupTarget;
use crate::sinks::outline::plan::MembershipPlan;
use crate::sinks::outline::plan::PlanInput;
use crate::sinks::outline::suspensions::SuspensionRecord;
use crate::sinks::outline::OutlineClient;
use crate::store::{Remembered, StateDocument, Store};

/// Outline member lists read at once while planning; the rate limiter paces them.
const MEMBER_LISTS_AT_ONCE: usize = 8;

/// The Outline sink's name: its jobs' and metrics' `sink` label.
pub const OUTLINE: &str = "outline";

/// The Outline sink: its client and writer, its roles and suspensions (`ROLE_MAP`, `SUSPEND_DEACTIVATED`)
/// and invitations (`INVITE_MEMBERS`), over the context every sink shares (reached through `Deref`, so a job
/// reads `engine.reader` and `engine.clock` as before).
pub struct OutlineSync {
    pub ctx: Arc<SyncContext>,
    pub outline: OutlineClient,
    /// Outline's group and user indexes, cached.
    pub index: OutlineIndex,
    pub sink: OutlineSink,
    /// Outline roles and suspensions (`ROLE_MAP`, `SUSPEND_DEACTIVATED`).
    pub accounts: AccountSync,
    /// People waiting for an Outline invitation (`INVITE_MEMBERS`).
    pub invites: InviteBook,
    pub auto_create: bool,
    /// Its group jobs and its passes take turns on a group.
    pub(super) locks: GroupLocks,
    /// How far a pass has got, for the CLI.
    pub progress: PassProgress,
    /// What `check` must prove of the key and the webhook.
    pub(super) checks: OutlineChecks,
    warned: WarnOnce,
}

/// The settings `check` weighs the Outline key against.
pub(super) struct OutlineChecks {
    /// `ROLE_MAP`, `SUSPEND_DEACTIVATED` or `INVITE_MEMBERS` is on: the key needs `users:write`.
    pub changes_users: bool,
    pub webhook_secret_set: bool,
}

impl std::ops::Deref for OutlineSync {
    type Target = SyncContext;
    fn deref(&self) -> &SyncContext {
        &self.ctx
    }
}

/// What the Outline sink keeps in the store in `STATE_DIR` (in memory without it).
pub struct OutlineState {
    pub record: SuspensionRecord,
    pub invite_requests: StateDocument<WindowLog>,
    pub invites_set_aside: Remembered<String, String>,
    pub applied_map: StateDocument<AppliedRoleMap>,
}

impl OutlineState {
    pub fn in_memory() -> OutlineState {
        OutlineState {
            record: SuspensionRecord::in_memory(),
            invite_requests: StateDocument::in_memory(),
            invites_set_aside: Remembered::in_memory(InviteBook::SET_ASIDE),
            applied_map: StateDocument::in_memory(),
        }
    }

    /// Opens every part in `store`, importing (with `import`; else reading) the JSON files an earlier version
    /// left in `dir`; a part that cannot be read stops the start-up.
    pub async fn open(
        store: &Store,
        dir: &std::path::Path,
        import: bool,
    ) -> Result<OutlineState, crate::store::RecordError> {
        let unreadable = |e: crate::store::StoreError| {
            crate::store::RecordError::new(store.path(), e.to_string())
        };
        Ok(OutlineState {
            record: SuspensionRecord::open(store, dir, import).await?,
            invite_requests: StateDocument::open(
                store,
                InviteBook::NAME,
                &dir.join(InviteBook::FILE_NAME),
                import,
            )
            .await?,
            invites_set_aside: Remembered::open(store, InviteBook::SET_ASIDE)
                .await
                .map_err(unreadable)?,
            applied_map: StateDocument::open(
                store,
                APPLIED_MAP,
                &dir.join(APPLIED_MAP_FILE),
                import,
            )
            .await?,
        })
    }

    /// The JSON files of an earlier version in `dir`, read into memory (for a look at a `STATE_DIR` with no
    /// store yet).
    pub fn from_files(dir: &std::path::Path) -> Result<OutlineState, crate::store::RecordError> {
        Ok(OutlineState {
            record: SuspensionRecord::from_file(dir)?,
            invite_requests: StateDocument::from_file(&dir.join(InviteBook::FILE_NAME))?,
            applied_map: StateDocument::from_file(&dir.join(APPLIED_MAP_FILE))?,
            ..OutlineState::in_memory()
        })
    }
}

/// A plan and what it was made from.
pub struct GroupPlan {
    pub plan: MembershipPlan,
    pub unmatched: Vec<DesiredMember>,
}

impl OutlineSync {
    pub fn new(
        settings: &Settings,
        ctx: Arc<SyncContext>,
        outline: OutlineClient,
        state: OutlineState,
    ) -> OutlineSync {
        let metrics = ctx.metrics.clone();
        OutlineSync {
            sink: OutlineSink::new(metrics.clone()),
            index: OutlineIndex::new(settings.cache_ttl, metrics.clone()),
            outline,
            accounts: AccountSync::new(settings, state.record, state.applied_map, metrics.clone()),
            invites: InviteBook::new(
                settings,
                state.invite_requests,
                state.invites_set_aside,
                metrics,
            ),
            auto_create: settings.auto_create_groups,
            locks: GroupLocks::default(),
            progress: PassProgress::default(),
            checks: OutlineChecks {
                changes_users: settings.role_map.is_some()
                    || settings.suspend_deactivated
                    || settings.invite_members,
                webhook_secret_set: settings.outline_webhook_secret.is_some(),
            },
            warned: WarnOnce::default(),
            ctx,
        }
    }

    /// The set of every Authentik group id, from the catalog, for taking over the Outline group of a deleted
    /// namesake (see `PlanInput::existing_groups`).
    pub async fn existing_groups(&self) -> Result<BTreeSet<AuthentikGroupId>, UpstreamError> {
        Ok(self
            .reader
            .full_catalog()
            .await?
            .iter()
            .map(|g| g.id.clone())
            .collect())
    }

    /// Reads what a group plan needs and plans it; no writes. Desired members are matched to Outline users,
    /// then each linked Outline group's members are read fresh, right before planning.
    ///
    /// `known_members`: Outline groups whose members the caller already read (fresh), so they are not read
    /// again.
    pub async fn plan_groups(
        &self,
        outline: &OutlineClient,
        groups: Vec<(GroupSummary, BTreeSet<DesiredMember>)>,
        existing: Option<&BTreeSet<AuthentikGroupId>>,
        known_members: BTreeMap<OutlineGroupId, BTreeSet<OutlineUserId>>,
    ) -> Result<GroupPlan, UpstreamError> {
        let all: BTreeSet<DesiredMember> =
            groups.iter().flat_map(|(_, m)| m.iter().cloned()).collect();
        let resolved = self
            .index
            .resolve_members(outline, &self.reader.caches.identities, &all)
            .await?;
        let targets: Vec<GroupTarget> = groups
            .into_iter()
            .map(|(summary, members)| GroupTarget {
                group: summary.id,
                name: summary.name,
                desired: members
                    .iter()
                    .filter_map(|m| resolved.ids.get(m).cloned())
                    .collect(),
            })
            .collect();
        let outline_groups = self
            .index
            .groups_for(outline, &targets, &BTreeMap::new(), existing)
            .await?;
        let index = GroupIndex::new(&outline_groups, existing);
        let mut current = known_members;
        // Member lists are read a few at a time: a pass over thousands of groups is bound by the rate
        // limit, not by one round trip after another.
        let to_read: BTreeSet<OutlineGroupId> = targets
            .iter()
            .filter_map(|t| index.find(&t.group, &t.name).map(|(og, _)| og.id.clone()))
            .filter(|id| !current.contains_key(id))
            .collect();
        PassProgress::add(&self.progress.member_lists_total, to_read.len());
        let known_ids: std::collections::HashSet<OutlineUserId> =
            resolved.ids.values().cloned().collect();
        let mut queued = to_read.into_iter();
        let mut reading = FuturesUnordered::new();
        loop {
            while reading.len() < MEMBER_LISTS_AT_ONCE {
                let Some(id) = queued.next() else { break };
                reading.push(read_members(outline, id));
            }
            let Some((id, members)) = reading.next().await else {
                break;
            };
            // Each member id is kept as the one already held for that user, not a copy per group.
            let members = members?
                .into_iter()
                .map(|u| known_ids.get(&u).cloned().unwrap_or(u))
                .collect();
            current.insert(id, members);
            PassProgress::add(&self.progress.member_lists_read, 1);
        }
        let plan = plan_membership(&PlanInput {
            targets: &targets,
            outline_groups: &outline_groups,
            current: &current,
            auto_create: self.auto_create,
            existing_groups: existing,
        });
        Ok(GroupPlan {
            plan,
            unmatched: resolved.unmatched,
        })
    }

    /// Applies a plan to Outline and notes what it skipped.
    pub async fn apply(
        &self,
        outline: &OutlineClient,
        plan: &MembershipPlan,
    ) -> Result<SyncReport, UpstreamError> {
        self.note_skipped(plan);
        let done = self.sink.apply(outline, plan).await?;
        if done.groups_changed {
            self.index.groups.invalidate(&()).await;
        }
        Ok(SyncReport {
            adds: done.adds,
            removes: done.removes,
            creates: done.creates,
            renames: done.renames,
            links: done.links,
            refused_groups: done.refused_groups,
            ..SyncReport::default()
        })
    }

    /// A managed group a plan cannot link is logged (once per group and reason) and counted while serving,
    /// not only shown by the CLI.
    fn note_skipped(&self, plan: &MembershipPlan) {
        for s in &plan.skipped {
            self.metrics
                .groups_skipped
                .with_label_values(&[s.code])
                .inc();
            if self
                .warned
                .first(format!("{}\u{0}{}", s.authentik_group, s.code))
            {
                tracing::warn!(group = %s.name, authentik_group = %s.authentik_group, reason = s.reason, "managed group not synced");
            }
        }
    }

    /// Logged once per group: a group whose new name the filter no longer matches stops being synced, and
    /// its Outline group keeps the members it has.
    pub fn warn_unmanaged_rename(&self, group: &GroupSummary) {
        if self.warned.first(format!("{}\u{0}unmanaged", group.id)) {
            tracing::warn!(group = %group.name, authentik_group = %group.id, "this Authentik group is linked to an Outline group, but its name no longer matches AUTHENTIK_GROUP_REGEXP: it is not synced any more, and its Outline group keeps its members");
        }
    }
}

async fn read_members(
    outline: &OutlineClient,
    id: OutlineGroupId,
) -> (
    OutlineGroupId,
    Result<BTreeSet<OutlineUserId>, UpstreamError>,
) {
    let members = outline.group_members(&id).await;
    (id, members.map(|m| m.into_keys().collect()))
}
