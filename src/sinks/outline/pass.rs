//! The full pass. Webhooks are lossy on both sides (docs/src/upstream/outline.md §2.6, docs/src/upstream/authentik.md
//! §2.5, §4.4: LDAP syncs and worker tasks send no events at all), so the bridge also converges everything:
//! at start-up, on a schedule, and from the CLI.
//!
//! This is the Outline sink's half: every read of the pass (`plan_pass`), and what follows its writes
//! (`after_pass`: accounts, invitations, the report). The runtime's pass path (`runtime/converge.rs`) writes
//! the plan in between, group by group under each group's lock, handing a group that changed since the read
//! to a fresh group job, so a pass, however long, never undoes a change pushed while it ran.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use serde::Serialize;

use crate::clients::Lane;
use crate::configuration::MembershipMode;
use crate::domain::held::HoldReason;
use crate::domain::{
    AuthentikGroupId, AuthentikUserId, DesiredMember, GroupSummary, OutlineUserId,
};
use crate::runtime::changes::Tick;
use crate::runtime::converge::{PassDone, PassPlan, PassWrites};
use crate::runtime::job::{JobKey, SyncError, SyncReport};
use crate::runtime::progress::{PassPhase, PassProgress};
use crate::sinks::outline::account_jobs::plan_all;
use crate::sinks::outline::account_plan::AccountPlan;
use crate::sinks::outline::invites::InvitePreview;
use crate::sinks::outline::plan::MembershipPlan;
use crate::sinks::outline::sink::OutlineSync;
use crate::sinks::outline::OutlineClient;
use crate::source::reader::inherited_members;

pub use crate::runtime::job::ReconcileOptions;

#[derive(Debug, Serialize)]
/// What the Outline pass found and did.
pub struct OutlinePassReport {
    pub dry_run: bool,
    pub managed_groups: usize,
    pub plan: MembershipPlan,
    /// True when a guard held anything of Outline's back (`held_back` says what) and `--force` was not
    /// given.
    pub guarded: bool,
    /// What the guards held back of Outline's changes, or would in a dry run.
    pub held_back: HeldBack,
    pub summary: SyncReport,
    pub duration_ms: u128,
    /// The emails of the users the plan names, so a person can read it.
    pub emails: BTreeMap<OutlineUserId, String>,
    /// Groups that changed in Authentik while the pass ran: left to fresh group jobs, not written from the
    /// pass's plan.
    pub handed_to_group_jobs: Vec<AuthentikGroupId>,
    /// People whose account changed in Authentik (or whose role groups did) while the pass ran: left to fresh
    /// user jobs, not changed from the pass's plan.
    pub handed_to_user_jobs: Vec<AuthentikUserId>,
    /// Outline roles, suspensions and activations (`ROLE_MAP`, `SUSPEND_DEACTIVATED`), when either is set;
    /// with the guards' refusals.
    pub accounts: Option<AccountPlan>,
    /// Members of managed groups without an Outline account, and the invite allowance left
    /// (`INVITE_MEMBERS`).
    pub invites: Option<InvitePreview>,
}

/// What the guards held back in one pass, or would in a dry run: the report marks each such line
/// "(held back)" and explains each guard once.
#[derive(Debug, Default, Serialize)]
pub struct HeldBack {
    /// Outline's membership removals, held by `MAX_REMOVALS`.
    pub removals: bool,
    /// Demotions from admin, and the guard that holds them.
    pub demotions: Option<HoldReason>,
    /// The people whose suspension the suspension guard holds.
    pub suspensions: Vec<OutlineUserId>,
}

impl OutlinePassReport {
    /// The report of a pass without Outline: empty.
    pub fn empty(dry_run: bool) -> OutlinePassReport {
        OutlinePassReport {
            dry_run,
            managed_groups: 0,
            plan: MembershipPlan::default(),
            guarded: false,
            held_back: HeldBack::default(),
            summary: SyncReport::default(),
            duration_ms: 0,
            emails: BTreeMap::new(),
            handed_to_group_jobs: Vec::new(),
            handed_to_user_jobs: Vec::new(),
            accounts: None,
            invites: None,
        }
    }
}

/// What the Outline pass read and planned, for the hook after its writes.
pub struct OutlinePass {
    plan: MembershipPlan,
    unmatched: Vec<DesiredMember>,
    managed_groups: usize,
    started: Instant,
}

/// Every read of the Outline pass, cut into one part per Authentik group for the runtime's pass path.
pub async fn plan_pass(
    engine: &OutlineSync,
    read_at: Tick,
) -> Result<PassPlan<MembershipPlan, OutlinePass>, SyncError> {
    let started = Instant::now();
    let outline = engine.outline.in_lane(Lane::Bulk);
    let planned = plan_everything(engine, &outline, read_at).await?;
    Ok(PassPlan {
        parts: planned.plan.clone().split_by_group().into_iter().collect(),
        handed_over: Vec::new(),
        then: OutlinePass {
            plan: planned.plan,
            unmatched: planned.unmatched,
            managed_groups: planned.managed_groups,
            started,
        },
    })
}

/// The hook after the Outline pass's writes: accounts follow memberships, the invitation book becomes what
/// the pass found, and the report is written.
pub async fn after_pass(
    engine: &OutlineSync,
    pass: OutlinePass,
    writes: PassWrites<MembershipPlan>,
    options: ReconcileOptions,
) -> Result<PassDone<OutlinePassReport>, SyncError> {
    let OutlinePass {
        plan,
        unmatched,
        managed_groups,
        started,
    } = pass;
    let outline = engine.outline.in_lane(Lane::Bulk);
    let guard = options.guard();
    let mut held_back = HeldBack {
        removals: writes.removals_held,
        ..HeldBack::default()
    };
    let summary = if options.dry_run {
        SyncReport {
            adds: plan.adds.len(),
            // What a run would do: the guard would hold these back.
            removes: if writes.removals_held {
                0
            } else {
                plan.removes.len()
            },
            creates: plan.creates.len(),
            renames: plan.renames.len(),
            links: plan.links.len(),
            unmatched_members: unmatched.len(),
            refused_groups: 0,
            note: Some("dry run: nothing written".to_string()),
        }
    } else {
        SyncReport {
            unmatched_members: unmatched.len(),
            ..writes.summary
        }
    };
    // Accounts follow memberships, read fresh after the membership writes.
    let mut handed_to_user_jobs = Vec::new();
    let accounts = if engine.accounts.enabled() {
        let pass_plan = plan_all(engine, &outline).await?;
        let account_plan = &pass_plan.plan;
        // Asked before the writes: a pass that applies the map confirms it.
        held_back.demotions = engine
            .accounts
            .demotion_hold(account_plan, plan.removes.len(), engine.max_removals, guard)
            .await;
        if options.dry_run {
            if !options.force {
                held_back.suspensions = engine
                    .accounts
                    .suspensions_held_back(&account_plan.suspend)
                    .await;
            }
        } else {
            match engine
                .accounts
                .apply(
                    engine,
                    &outline,
                    account_plan,
                    plan.removes.len(),
                    guard,
                    pass_plan.write(),
                )
                .await
            {
                Ok(done) => handed_to_user_jobs.extend(done.handed_over),
                Err(SyncError::Guarded { .. } | SyncError::SuspensionsGuarded { .. }) => {}
                Err(e) => return Err(e),
            }
            held_back.suspensions = engine.accounts.held_now(&account_plan.suspend).await;
        }
        Some(pass_plan.plan)
    } else {
        None
    };
    // Members without an account: the book becomes what the pass found. The invitations job sends them
    // (`serve`), or the CLI right after the pass (`invite_and_place`).
    let invites = if engine.invites.enabled {
        let preview = engine.invites.preview(&unmatched).await;
        if !options.dry_run {
            engine.invites.replace(&unmatched, started);
        }
        Some(preview)
    } else {
        None
    };
    let guarded =
        held_back.removals || held_back.demotions.is_some() || !held_back.suspensions.is_empty();
    let mut named: BTreeSet<&OutlineUserId> = plan
        .adds
        .iter()
        .map(|a| &a.user)
        .chain(plan.removes.iter().map(|r| &r.user))
        .collect();
    let mut emails = BTreeMap::new();
    if let Some(a) = &accounts {
        // The account plan carries the emails it read.
        for (user, email) in a
            .roles
            .iter()
            .map(|r| (&r.user, &r.email))
            .chain(
                a.suspend
                    .iter()
                    .chain(&a.activate)
                    .map(|s| (&s.user, &s.email)),
            )
            .chain(a.refused.iter().map(|r| (&r.user, &r.email)))
        {
            if let Some(e) = email {
                emails.insert(user.clone(), e.to_string());
                named.remove(user);
            }
        }
    }
    emails.extend(engine.index.emails_of(&named).await);
    let holds_gauge = held_back.demotions.is_some();
    let follow_ups = handed_to_user_jobs
        .iter()
        .copied()
        .map(JobKey::AuthentikUser)
        .collect();
    let report = OutlinePassReport {
        emails,
        dry_run: options.dry_run,
        managed_groups,
        plan,
        guarded,
        held_back,
        summary: summary.clone(),
        duration_ms: started.elapsed().as_millis(),
        handed_to_group_jobs: writes.handed_over,
        handed_to_user_jobs,
        accounts,
        invites,
    };
    Ok(PassDone {
        report,
        summary,
        guarded,
        holds_gauge,
        follow_ups,
    })
}

struct PlannedPass {
    plan: MembershipPlan,
    unmatched: Vec<DesiredMember>,
    managed_groups: usize,
}

/// Every read of the pass: every Authentik group with its members, then every linked Outline group's
/// members, planned with the same pure planner as the push jobs.
async fn plan_everything(
    engine: &OutlineSync,
    outline: &OutlineClient,
    read_at: Tick,
) -> Result<PlannedPass, crate::clients::UpstreamError> {
    let reader = &engine.reader;
    engine.progress.start();
    reader.caches.invalidate_all();
    engine.index.invalidate_all();
    let directory = reader.directory.list_groups(true).await?;
    let mut desired: BTreeMap<AuthentikGroupId, BTreeSet<DesiredMember>> = match reader.membership {
        MembershipMode::Direct => directory
            .iter()
            .map(|g| (g.summary.id.clone(), g.desired_members()))
            .collect(),
        MembershipMode::Inherited => inherited_members(&directory),
    };
    let existing: BTreeSet<AuthentikGroupId> =
        directory.iter().map(|g| g.summary.id.clone()).collect();
    let mut groups: Vec<(GroupSummary, BTreeSet<DesiredMember>)> = Vec::new();
    let mut catalog = Vec::with_capacity(directory.len());
    for g in directory {
        let summary = g.summary.clone();
        // A group read before an event for it must not overwrite what the event's job remembered since.
        if !engine.clock.changed_since(&summary.id, read_at) {
            reader.caches.remember_members(&g);
        }
        if reader.is_managed(&summary) {
            let members = desired.remove(&summary.id).unwrap_or_default();
            groups.push((summary.clone(), members));
        }
        catalog.push(summary);
    }
    if engine.clock.now() == read_at {
        engine.accounts.note_role_groups(&catalog);
    }
    // The early group list goes into the cache only if no event made it stale meanwhile: sign-ins would
    // plan from it, and rename a group back.
    if engine.clock.now() == read_at {
        reader
            .caches
            .catalog
            .insert((), std::sync::Arc::new(catalog))
            .await;
    }
    let managed_groups = groups.len();
    engine.progress.set_phase(PassPhase::ReadingOutline);
    PassProgress::add(&engine.progress.groups_planned, managed_groups);
    let planned = engine
        .plan_groups(outline, groups, Some(&existing), BTreeMap::new())
        .await?;
    Ok(PlannedPass {
        plan: planned.plan,
        unmatched: planned.unmatched,
        managed_groups,
    })
}
