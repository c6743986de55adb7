//! The full pass. Webhooks are lossy on both sides (docs/upstream/outline.md §2.6, docs/upstream/authentik.md §2.5, §4.4: LDAP syncs and
//! worker tasks send no events at all), so the bridge also converges everything: at start-up, on a schedule,
//! and from the CLI.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::engine::{
    active_emails, inherited_members, RemovalGuard, SyncEngine, SyncError, SyncReport,
};
use crate::clients::Lane;
use crate::configuration::MembershipMode;
use crate::domain::{Email, GroupSummary, MembershipPlan, OutlineUserId};

#[derive(Debug, Clone, Copy, Default)]
pub struct ReconcileOptions {
    pub dry_run: bool,
    pub force: bool,
}

#[derive(Debug, Serialize)]
pub struct ReconcileReport {
    pub dry_run: bool,
    pub managed_groups: usize,
    pub plan: MembershipPlan,
    /// True when the removals exceed `MAX_REMOVALS` and `--force` was not given.
    pub guarded: bool,
    pub summary: SyncReport,
    pub duration_ms: u128,
    /// The emails of the users the plan names, so a person can read it.
    pub emails: BTreeMap<OutlineUserId, String>,
}

/// Reads every managed Authentik group with its members and every linked Outline group's members, plans with
/// the same pure planner, and applies it. Every read happens before any write, so a failed read fails the
/// pass with nothing written, and in particular nothing removed.
/// Looks up the users of a plan in the cached Outline user index (read by this pass).
async fn plan_emails(
    engine: &SyncEngine,
    plan: &MembershipPlan,
) -> BTreeMap<OutlineUserId, String> {
    let Some(index) = engine.caches.outline_users.get(&()).await else {
        return BTreeMap::new();
    };
    let wanted: BTreeSet<&OutlineUserId> = plan
        .adds
        .iter()
        .map(|a| &a.user)
        .chain(plan.removes.iter().map(|r| &r.user))
        .collect();
    index
        .by_email
        .iter()
        .filter(|(_, id)| wanted.contains(id))
        .map(|(email, id)| (id.clone(), email.clone()))
        .collect()
}

pub async fn run_reconcile(
    engine: &SyncEngine,
    options: ReconcileOptions,
) -> Result<ReconcileReport, SyncError> {
    let started = Instant::now();
    let outline = engine.outline.in_lane(Lane::Bulk);
    engine.caches.invalidate_all();
    let result = async {
        let directory = engine.authentik.list_groups(true).await?;
        let desired = match engine.membership {
            MembershipMode::Direct => directory
                .iter()
                .map(|g| (g.summary.id.clone(), active_emails(g)))
                .collect(),
            MembershipMode::Inherited => inherited_members(&directory),
        };
        let mut groups: Vec<(GroupSummary, BTreeSet<Email>)> = Vec::new();
        for g in &directory {
            engine.caches.store_group(g.clone()).await;
            if engine
                .selector
                .is_managed(&g.summary.name, g.summary.is_superuser)
            {
                groups.push((
                    g.summary.clone(),
                    desired.get(&g.summary.id).cloned().unwrap_or_default(),
                ));
            }
        }
        let catalog: Vec<GroupSummary> = directory.into_iter().map(|g| g.summary).collect();
        engine
            .caches
            .catalog
            .insert((), std::sync::Arc::new(catalog))
            .await;
        let managed = groups.len();
        let (plan, unmatched) = engine.plan_groups(&outline, groups).await?;
        Ok::<_, SyncError>((managed, plan, unmatched))
    }
    .await;
    let (managed_groups, plan, unmatched) = match result {
        Ok(r) => r,
        Err(e) => {
            engine
                .metrics
                .reconcile
                .with_label_values(&["failed"])
                .inc();
            return Err(e);
        }
    };
    let guarded = !options.force && plan.removes.len() > engine.max_removals;
    // A dry run reports what it would do; a real run overwrites this with what it did.
    let mut summary = SyncReport {
        adds: plan.adds.len(),
        removes: plan.removes.len(),
        creates: plan.creates.len(),
        renames: plan.renames.len(),
        links: plan.links.len(),
        unmatched_members: unmatched,
        note: options
            .dry_run
            .then(|| "dry run: nothing written".to_string()),
    };
    if !options.dry_run {
        let guard = if options.force {
            RemovalGuard::Force
        } else {
            RemovalGuard::Enforce
        };
        match engine.apply_guarded(&outline, plan.clone(), guard).await {
            Ok(applied) => {
                summary = SyncReport {
                    unmatched_members: unmatched,
                    ..applied
                }
            }
            Err(SyncError::Guarded { .. }) => {
                engine
                    .metrics
                    .reconcile
                    .with_label_values(&["guarded"])
                    .inc();
                summary.removes = 0;
            }
            Err(e) => {
                engine
                    .metrics
                    .reconcile
                    .with_label_values(&["failed"])
                    .inc();
                return Err(e);
            }
        }
    }
    if !guarded {
        engine.metrics.reconcile.with_label_values(&["ok"]).inc();
        if !options.dry_run {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            engine.metrics.reconcile_last_success.set(now as i64);
        }
    }
    let emails = plan_emails(engine, &plan).await;
    Ok(ReconcileReport {
        emails,
        dry_run: options.dry_run,
        managed_groups,
        plan,
        guarded,
        summary,
        duration_ms: started.elapsed().as_millis(),
    })
}
