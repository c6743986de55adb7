//! Outline accounts that follow Authentik (Outline sink only): roles from `ROLE_MAP`, suspension of people
//! deactivated or deleted in Authentik (`SUSPEND_DEACTIVATED`). The rules and guards are the pure planner of
//! `account_plan.rs`; this module gathers its facts and applies its plan. Both settings are opt-in: with
//! neither, nothing here runs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tokio::sync::OnceCell;

use crate::clients::UpstreamError;
use crate::configuration::{MembershipMode, Settings};
use crate::domain::held::{HoldReason, GUARD_LOG};
use crate::domain::snapshot::counted_group_ids;
use crate::domain::{AuthentikGroupId, AuthentikUserId, GroupName, GroupSummary, OutlineUserId};
use crate::metrics::Metrics;
use crate::runtime::changes::Tick;
use crate::runtime::context::SyncContext;
use crate::runtime::job::{RemovalGuard, SyncError};
use crate::sinks::outline::account_plan::{
    plan_accounts, AccountFacts, AccountPlan, AccountRef, AccountRules, AuthentikState,
    OutlineRole, RoleMap,
};
use crate::sinks::outline::client::OutlineUser;
use crate::sinks::outline::invite_window::{unix_ms_now, WindowRule};
use crate::sinks::outline::suspensions::{RecordSnapshot, SuspensionRecord};
use crate::sinks::outline::OutlineClient;
use crate::store::StateDocument;

/// The span `MAX_SUSPENSIONS` covers.
const SUSPENSION_WINDOW: std::time::Duration = std::time::Duration::from_secs(3600);

pub struct AccountSync {
    pub role_map: Option<RoleMap>,
    pub suspend_deactivated: bool,
    pub max_suspensions: usize,
    /// Whom the bridge suspended: only they are activated again.
    pub record: SuspensionRecord,
    /// Held from reading an account's facts to applying its plan, by every job and the pass: a plan made
    /// from facts another job has just changed (a suspension, an activation) is never applied over it.
    pub changes: tokio::sync::Mutex<()>,
    /// The groups `ROLE_MAP` names, by id, as last seen, kept while the bridge runs: a rename or deletion
    /// names the group by id, and the cached catalog that knew its old name may have expired.
    role_groups: std::sync::Mutex<BTreeSet<AuthentikGroupId>>,
    /// Mapped names the bridge has seen in Authentik while it runs. A mapped name missing from Authentik that
    /// was seen was deleted or renamed, and its role goes; one never seen may be a typo, and lowers nobody.
    seen_mapped: std::sync::Mutex<BTreeSet<String>>,
    /// The `ROLE_MAP` last applied (in `STATE_DIR`, or memory): a new or changed map takes admin rights from
    /// nobody until `reconcile --force` has applied it or a pass found nobody to demote.
    applied_map: StateDocument<AppliedRoleMap>,
    /// Set once the map in force is known to be applied: it cannot change while the process runs, so every
    /// job after that skips the read of the applied map.
    map_applied: std::sync::atomic::AtomicBool,
    /// The owner of the API key, read once: it never changes while the key works.
    key_owner: OnceCell<OutlineUserId>,
    metrics: Arc<Metrics>,
}

/// The `ROLE_MAP` last applied, in its canonical form (`RoleMap::canonical`).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct AppliedRoleMap {
    pub role_map: Option<String>,
}

/// The applied map's name in the store, and the JSON file an earlier version kept it in.
pub const APPLIED_MAP: &str = "role-map";
pub const APPLIED_MAP_FILE: &str = "role-map.json";

/// What applying an account plan did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct AccountsDone {
    pub roles: usize,
    pub suspended: usize,
    pub activated: usize,
    pub refused: usize,
    /// People a pass left to fresh user jobs: an event for them, or for the role groups, arrived after the
    /// pass read their account.
    pub handed_over: BTreeSet<AuthentikUserId>,
}

/// How an account plan is written.
#[derive(Debug, Clone, Copy)]
pub enum AccountWrite<'a> {
    /// A job's plan, made from fresh reads while the job holds the accounts lock.
    Push,
    /// A pass's plan, made from reads at `read_at` without the lock: each change is made under the lock on
    /// the account as it is now, and only if no event for the person, or for the role groups, arrived since
    /// (the change clock, as for groups). Otherwise the person is handed to a fresh user job, so a pass never
    /// undoes a role or suspension change pushed while it ran.
    Pass {
        read_at: Tick,
        people: &'a BTreeMap<OutlineUserId, AuthentikUserId>,
    },
}

/// The turns of one plan's changes.
struct Turns<'a> {
    engine: &'a SyncContext,
    accounts: &'a AccountSync,
    outline: &'a OutlineClient,
    write: AccountWrite<'a>,
}

/// A turn to change one account; for a pass it holds the accounts lock until dropped.
struct Turn<'a>(#[allow(dead_code)] Option<tokio::sync::MutexGuard<'a, ()>>);

impl<'a> Turns<'a> {
    /// Whether to go ahead with one account's change. A job already holds the lock, and planned from what it
    /// just read. A pass takes the lock, then checks the change clock and the account as it is now.
    async fn take(
        &self,
        user: &OutlineUserId,
        as_planned: impl Fn(&OutlineUser) -> bool,
        done: &mut AccountsDone,
    ) -> Result<Option<Turn<'a>>, SyncError> {
        let AccountWrite::Pass { read_at, people } = self.write else {
            return Ok(Some(Turn(None)));
        };
        let turn = self.accounts.changes.lock().await;
        if let Some(pk) = people.get(user) {
            if self.engine.clock.account_changed_since(*pk, read_at) {
                done.handed_over.insert(*pk);
                return Ok(None);
            }
        }
        if !still(self.outline, user, as_planned).await? {
            return Ok(None);
        }
        Ok(Some(Turn(Some(turn))))
    }
}

fn email_of(email: &Option<crate::domain::Email>) -> String {
    email.as_ref().map(|e| e.to_string()).unwrap_or_default()
}

impl AccountSync {
    pub fn new(
        settings: &Settings,
        record: SuspensionRecord,
        applied_map: StateDocument<AppliedRoleMap>,
        metrics: Arc<Metrics>,
    ) -> AccountSync {
        AccountSync {
            role_map: settings.role_map.clone(),
            suspend_deactivated: settings.suspend_deactivated,
            max_suspensions: settings.max_suspensions,
            record,
            changes: tokio::sync::Mutex::new(()),
            role_groups: std::sync::Mutex::new(BTreeSet::new()),
            seen_mapped: std::sync::Mutex::new(BTreeSet::new()),
            applied_map,
            map_applied: std::sync::atomic::AtomicBool::new(false),
            key_owner: OnceCell::new(),
            metrics,
        }
    }

    pub async fn check_writable(&self) -> Result<(), crate::store::RecordError> {
        self.record.check_writable().await?;
        if self.role_map.is_some() {
            self.applied_map.check_writable().await?;
        }
        Ok(())
    }

    /// Whether the `ROLE_MAP` in force is the one last applied. Unreadable counts as not applied: the map then
    /// takes admin rights from nobody, which is the safe side.
    pub async fn role_map_applied(&self) -> bool {
        let Some(map) = &self.role_map else {
            return true;
        };
        if self.map_applied.load(std::sync::atomic::Ordering::Relaxed) {
            return true;
        }
        match self.applied_map.read().await {
            Ok(applied) => {
                let applied = applied.role_map.as_deref() == Some(map.canonical().as_str());
                self.map_applied
                    .store(applied, std::sync::atomic::Ordering::Relaxed);
                applied
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read the applied ROLE_MAP; admin rights are taken from nobody");
                false
            }
        }
    }

    /// Remembers the map in force as applied.
    async fn confirm_role_map(&self) {
        let Some(map) = &self.role_map else { return };
        let canonical = map.canonical();
        let result = self
            .applied_map
            .change(move |applied| {
                let changed = applied.role_map.as_deref() != Some(canonical.as_str());
                applied.role_map = Some(canonical);
                ((), changed)
            })
            .await;
        match result {
            Ok(()) => self
                .map_applied
                .store(true, std::sync::atomic::Ordering::Relaxed),
            Err(e) => tracing::error!(error = %e, "could not remember the applied ROLE_MAP"),
        }
    }

    /// The mapped names a complete catalog lacks, and whether any of them was never seen while the bridge
    /// ran (a typo, or a group deleted while it was down): then no role is lowered, as after a failed read.
    pub fn missing_mapped(&self, catalog: &[GroupSummary]) -> (Vec<GroupName>, bool) {
        let Some(map) = &self.role_map else {
            return (Vec::new(), false);
        };
        let seen = self.seen_mapped.lock().unwrap_or_else(|e| e.into_inner());
        let missing: Vec<GroupName> = map
            .groups
            .iter()
            .map(|(name, _)| name)
            .filter(|name| !catalog.iter().any(|g| &g.name == *name))
            .cloned()
            .collect();
        let unseen = missing.iter().any(|m| !seen.contains(&m.folded()));
        (missing, unseen)
    }

    /// A plan from a catalog that lacks a mapped group never seen: nothing lowered, and a warning that names
    /// the groups.
    pub fn hold_lowering_for_missing(
        &self,
        plan: AccountPlan,
        catalog: &[GroupSummary],
    ) -> AccountPlan {
        let (missing, unseen) = self.missing_mapped(catalog);
        if !unseen {
            return plan;
        }
        let names: Vec<&str> = missing.iter().map(|g| g.as_str()).collect();
        tracing::warn!(groups = %names.join(", "), "ROLE_MAP names groups that do not exist in Authentik; no role is lowered until they exist — fix: correct the names in ROLE_MAP (compared without case), or create the groups");
        plan.without_lowering()
    }

    pub fn enabled(&self) -> bool {
        self.role_map.is_some() || self.suspend_deactivated
    }

    /// Whether a change to this group can change someone's role.
    pub fn decides_roles(&self, group: &GroupName) -> bool {
        self.role_map.as_ref().is_some_and(|m| m.names(group))
    }

    /// Whether a group gives roles under `name`, or gave them under the name the bridge last saw it with.
    pub fn gives_roles(&self, id: &AuthentikGroupId, name: &GroupName) -> bool {
        self.decides_roles(name) || self.gave_roles(id)
    }

    /// Whether the group had a mapped name when the bridge last saw it.
    pub fn gave_roles(&self, id: &AuthentikGroupId) -> bool {
        self.role_groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(id)
    }

    /// Notes a group an event names with a mapped name; it is forgotten when a catalog no longer maps it.
    pub fn note_role_group(&self, id: &AuthentikGroupId, name: &GroupName) {
        if self.decides_roles(name) {
            self.role_groups
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id.clone());
        }
    }

    /// Notes which groups of a complete catalog give roles now.
    pub fn note_role_groups(&self, catalog: &[GroupSummary]) {
        if self.role_map.is_none() {
            return;
        }
        let mapped: Vec<&GroupSummary> = catalog
            .iter()
            .filter(|g| self.decides_roles(&g.name))
            .collect();
        self.seen_mapped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(mapped.iter().map(|g| g.name.folded()));
        *self.role_groups.lock().unwrap_or_else(|e| e.into_inner()) =
            mapped.iter().map(|g| g.id.clone()).collect();
    }

    fn suspension_rule(&self) -> WindowRule {
        WindowRule {
            limit: self.max_suspensions,
            window: SUSPENSION_WINDOW,
        }
    }

    /// Who of these the suspension guard holds back: those it holds already, and those over the hour's
    /// allowance left. A dry run reports it; a real run reads the same list from the record afterwards.
    pub async fn suspensions_held_back(&self, suspend: &[AccountRef]) -> Vec<OutlineUserId> {
        let held = self.record.snapshot().await.held_by_guard;
        let mut left = self
            .record
            .allowance_left(self.suspension_rule(), unix_ms_now())
            .await;
        let mut out = Vec::new();
        for s in suspend {
            if held.contains(&s.user) || left == 0 {
                out.push(s.user.clone());
            } else {
                left -= 1;
            }
        }
        out
    }

    /// Of these, the people the suspension guard holds now (after a real run).
    pub async fn held_now(&self, suspend: &[AccountRef]) -> Vec<OutlineUserId> {
        let held = self.record.snapshot().await.held_by_guard;
        suspend
            .iter()
            .filter(|s| held.contains(&s.user))
            .map(|s| s.user.clone())
            .collect()
    }

    /// Which guard, if any, holds back a plan's demotions from admin: a `ROLE_MAP` not yet applied (new or
    /// changed), or more removals and demotions together than `MAX_REMOVALS`. `apply` and the report both
    /// ask here, so they never disagree.
    pub async fn demotion_hold(
        &self,
        plan: &AccountPlan,
        removals: usize,
        max_removals: usize,
        guard: RemovalGuard,
    ) -> Option<HoldReason> {
        let demotions = plan.admin_removals();
        if guard == RemovalGuard::Force || demotions == 0 {
            None
        } else if !self.role_map_applied().await {
            Some(HoldReason::RoleMapNotApplied)
        } else if removals + demotions > max_removals {
            Some(HoldReason::MaxRemovals)
        } else {
            None
        }
    }

    async fn key_owner(&self, outline: &OutlineClient) -> Result<OutlineUserId, UpstreamError> {
        self.key_owner
            .get_or_try_init(|| async { outline.key_owner().await.map(|u| u.id) })
            .await
            .cloned()
    }

    /// The facts of one account, with the bridge's record as read once for the whole plan (`recorded`);
    /// the record is only read here, so a dry run changes nothing.
    pub fn facts(
        &self,
        user: &OutlineUser,
        authentik: AuthentikState,
        recorded: &RecordSnapshot,
    ) -> AccountFacts {
        AccountFacts {
            user: user.id.clone(),
            email: user.email.clone(),
            role: OutlineRole::parse(&user.role),
            suspended: user.suspended,
            authentik,
            suspended_by_bridge: recorded.suspended_by_bridge.contains(&user.id),
        }
    }

    /// `active_admins` is the count when the caller has just listed them; otherwise it is read here.
    pub async fn plan(
        &self,
        outline: &OutlineClient,
        facts: &[AccountFacts],
        active_admins: Option<usize>,
    ) -> Result<AccountPlan, UpstreamError> {
        let owner = self.key_owner(outline).await?;
        let rules = AccountRules {
            role_map: self.role_map.as_ref(),
            suspend_deactivated: self.suspend_deactivated,
            key_owner: &owner,
        };
        let may_lose_admin = facts
            .iter()
            .any(|f| f.role == Some(OutlineRole::Admin) && !f.suspended);
        let admins = match active_admins {
            _ if !may_lose_admin => 0,
            Some(n) => n,
            None => {
                active_admin_count(&outline.users_with_role(OutlineRole::Admin.as_str()).await?)
            }
        };
        Ok(plan_accounts(facts, rules, admins))
    }

    /// Applies a plan. Demotions from admin count with `removals` (the memberships the same run removes)
    /// against `MAX_REMOVALS`. Suspensions have their own guard (see [`AccountSync::suspend_all`]). A change
    /// Outline refuses is logged and counted, and the rest of the plan goes on; an outage stops the plan for a
    /// retry.
    pub async fn apply(
        &self,
        engine: &SyncContext,
        outline: &OutlineClient,
        plan: &AccountPlan,
        removals: usize,
        guard: RemovalGuard,
        write: AccountWrite<'_>,
    ) -> Result<AccountsDone, SyncError> {
        for r in &plan.refused {
            self.metrics
                .account_refusals
                .with_label_values(&[r.change, r.reason])
                .inc();
            tracing::warn!(user = %r.user, email = %email_of(&r.email), change = r.change, reason = r.reason, "refused: the bridge never demotes or suspends the API key's owner or the last admin (either would disable the key and its webhooks)");
        }
        for id in &plan.forget {
            self.record.remove(id).await;
        }
        let mut plan = plan.clone();
        let mut held = None;
        let demotions = plan.admin_removals();
        let map_applied = self.role_map_applied().await;
        let hold = self
            .demotion_hold(&plan, removals, engine.max_removals, guard)
            .await;
        if let Some(hold) = hold {
            engine.metrics.trip_removal_guard("outline");
            match hold {
                HoldReason::RoleMapNotApplied => {
                    let who: Vec<String> = plan
                        .roles
                        .iter()
                        .filter(|r| r.from == OutlineRole::Admin && r.to != OutlineRole::Admin)
                        .map(|r| {
                            format!(
                                "{} ({} -> {})",
                                email_of(&r.email),
                                r.from.as_str(),
                                r.to.as_str()
                            )
                        })
                        .collect();
                    tracing::error!(target: GUARD_LOG, demotions, plan = %who.join(", "), "{}", hold.explanation());
                }
                _ => {
                    tracing::error!(target: GUARD_LOG, removals = removals + demotions, max = engine.max_removals, "{}", hold.explanation());
                }
            }
            held = Some(SyncError::Guarded {
                removals: removals + demotions,
                max: engine.max_removals,
            });
            plan = plan.without_demotions();
        }
        let mut done = AccountsDone {
            refused: plan.refused.len(),
            ..AccountsDone::default()
        };
        let turns = Turns {
            engine,
            accounts: self,
            outline,
            write,
        };
        // Activations first: Outline sets no role on a suspended account.
        for a in &plan.activate {
            let Some(_turn) = turns.take(&a.user, |u| u.suspended, &mut done).await? else {
                continue;
            };
            if self.call(
                outline.activate(&a.user).await,
                "activate",
                (&a.user, &a.email),
                &mut done,
            )? {
                self.record.remove(&a.user).await;
                tracing::info!(user = %a.user, email = %email_of(&a.email), "activated in Outline again: active in Authentik, and the bridge had suspended them");
                done.activated += 1;
            }
        }
        for r in &plan.roles {
            let unchanged =
                |u: &OutlineUser| !u.suspended && OutlineRole::parse(&u.role) == Some(r.from);
            let Some(_turn) = turns.take(&r.user, unchanged, &mut done).await? else {
                continue;
            };
            let result = match outline.update_role(&r.user, r.to.as_str()).await {
                // Another job set it first (docs/src/upstream/outline.md §6.8): done.
                Err(UpstreamError::Status {
                    status: 400,
                    message,
                    ..
                }) if message.contains("already in that role") => Ok(()),
                other => other,
            };
            if self.call(result, "role", (&r.user, &r.email), &mut done)? {
                tracing::info!(user = %r.user, email = %email_of(&r.email), from = r.from.as_str(), to = r.to.as_str(), "Outline role set from Authentik groups");
                done.roles += 1;
            }
        }
        // A pass that took admin rights from everyone its map asked for (or had none to take) has applied it.
        let pass = matches!(write, AccountWrite::Pass { .. });
        if !map_applied && held.is_none() && (pass || guard == RemovalGuard::Force) {
            self.confirm_role_map().await;
        }
        if let Err(e) = self.suspend_all(&turns, &plan, guard, &mut done).await {
            held = match e {
                SyncError::SuspensionsGuarded { .. } => held.or(Some(e)),
                other => return Err(other),
            };
        }
        match held {
            Some(e) => Err(e),
            None => Ok(done),
        }
    }

    /// The suspensions of a plan, under the one rule of the suspension guard: without `--force`, at most
    /// `MAX_SUSPENSIONS` suspensions in any hour, by pushes and passes together (and by a CLI run sharing
    /// `STATE_DIR`). Whoever is over the allowance is held back, and stays held until `reconcile --force`,
    /// even once the hour has passed, or until they no longer need suspending. While anyone is held,
    /// `bridge_suspension_guard_active` is 1.
    async fn suspend_all(
        &self,
        turns: &Turns<'_>,
        plan: &AccountPlan,
        guard: RemovalGuard,
        done: &mut AccountsDone,
    ) -> Result<(), SyncError> {
        let already_held = self.record.snapshot().await.held_by_guard;
        let mut held_now = Vec::new();
        let mut outcome = Ok(());
        for s in &plan.suspend {
            let turn = match turns.take(&s.user, |u| !u.suspended, done).await {
                Ok(Some(turn)) => turn,
                Ok(None) => continue,
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            };
            // What `--force` makes is not counted: the operator has looked at the plan.
            let taken = match guard {
                RemovalGuard::Force => None,
                RemovalGuard::Enforce if already_held.contains(&s.user) => {
                    held_now.push(s.user.clone());
                    continue;
                }
                RemovalGuard::Enforce => {
                    match self
                        .record
                        .take_allowance(self.suspension_rule(), unix_ms_now())
                        .await
                    {
                        Some(at) => Some(at),
                        None => {
                            held_now.push(s.user.clone());
                            continue;
                        }
                    }
                }
            };
            let result = turns.outline.suspend(&s.user).await;
            // Recorded once Outline confirms, or when the answer was lost on the way (the suspension may have
            // happened, and an entry on an active account is dropped when it is next seen active): never for
            // a refusal, which gives its share of the hour back.
            if result.is_ok() || matches!(result, Err(ref e) if e.status().is_none()) {
                self.record.insert(&s.user).await;
            } else if let Some(at) = taken {
                self.record.give_back(at).await;
            }
            drop(turn);
            match self.call(result, "suspend", (&s.user, &s.email), done) {
                Ok(true) => {
                    tracing::info!(user = %s.user, email = %email_of(&s.email), "suspended in Outline: deactivated or deleted in Authentik");
                    done.suspended += 1;
                }
                Ok(false) => {}
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        let newly_held = held_now
            .iter()
            .filter(|id| !already_held.contains(*id))
            .count();
        let still_held = self
            .record
            .hold(held_now.clone(), plan.settled.clone())
            .await;
        self.metrics
            .suspension_guard_active
            .set(i64::from(still_held > 0));
        if newly_held > 0 {
            self.metrics.suspension_guard_tripped.inc();
        }
        outcome?;
        if held_now.is_empty() {
            return Ok(());
        }
        tracing::error!(target: GUARD_LOG, held = held_now.len(), max = self.max_suspensions, "{}", HoldReason::MaxSuspensions.explanation());
        Err(SyncError::SuspensionsGuarded {
            suspensions: held_now.len(),
            max: self.max_suspensions,
        })
    }

    /// One account call's outcome: `Ok(true)` when it was made, `Ok(false)` when Outline refused it (logged
    /// and counted; the rest of the plan goes on), an error when Outline could not be reached.
    fn call(
        &self,
        result: Result<(), UpstreamError>,
        change: &'static str,
        (user, email): (&OutlineUserId, &Option<crate::domain::Email>),
        done: &mut AccountsDone,
    ) -> Result<bool, SyncError> {
        match result {
            Ok(()) => {
                self.count(change);
                Ok(true)
            }
            Err(e) if e.is_refusal() => {
                done.refused += 1;
                self.metrics
                    .account_refusals
                    .with_label_values(&[change, "outline_refused"])
                    .inc();
                tracing::warn!(user = %user, email = %email_of(email), change, error = %e, "Outline refused an account change; the rest goes on");
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn count(&self, change: &str) {
        self.metrics
            .account_changes
            .with_label_values(&[change])
            .inc();
    }
}

/// Whether the account, read now, is still as the plan found it; a vanished account is not.
async fn still(
    outline: &OutlineClient,
    user: &OutlineUserId,
    as_planned: impl Fn(&OutlineUser) -> bool,
) -> Result<bool, UpstreamError> {
    Ok(outline.user(user).await?.as_ref().is_some_and(as_planned))
}

/// A person's groups that count: direct ones, plus their ancestors in `MEMBERSHIP=inherited`.
pub fn counted_groups<'a>(
    catalog: &'a [GroupSummary],
    direct: &[AuthentikGroupId],
    membership: MembershipMode,
) -> impl Iterator<Item = &'a GroupSummary> {
    let ids = counted_group_ids(catalog, direct, membership == MembershipMode::Inherited);
    catalog.iter().filter(move |g| ids.contains(&g.id))
}

/// The names of a person's groups that count for roles.
pub fn group_names(
    catalog: &[GroupSummary],
    direct: &[AuthentikGroupId],
    membership: MembershipMode,
) -> Vec<GroupName> {
    counted_groups(catalog, direct, membership)
        .map(|g| g.name.clone())
        .collect()
}

pub fn active_admin_count(users: &[OutlineUser]) -> usize {
    users
        .iter()
        .filter(|u| u.role == OutlineRole::Admin.as_str() && !u.suspended)
        .count()
}
