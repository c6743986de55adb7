//! The Outline sink's push planning, one function per kind of target: an Outline user who signed in, an
//! Authentik user, an Authentik group; and the hook after the writes. The runtime's push path
//! (`runtime/converge.rs`) writes the plan under the guard. Every plan comes from fresh reads, so the order
//! and duplicates of the webhooks that caused it do not matter.

use std::collections::{BTreeMap, BTreeSet};

use super::keys::accounts_key;
use crate::clients::{Lane, UpstreamError};
use crate::configuration::MembershipMode;
use crate::domain::snapshot::{ancestors, counted_group_ids};
use crate::domain::{
    AuthentikGroupId, AuthentikUserId, DesiredMember, GroupSummary, OutlineGroupId, OutlineUserId,
    UserSnapshot,
};
use crate::runtime::converge::Planned;
use crate::runtime::job::{JobKey, JobOutcome, SyncError, SyncReport};
use crate::sinks::outline::account_jobs::{accounts_job, converge_one};
use crate::sinks::outline::account_plan::AuthentikState;
use crate::sinks::outline::accounts::{counted_groups, group_names};
use crate::sinks::outline::client::OutlineUser;
use crate::sinks::outline::invite_jobs::invites_job;
use crate::sinks::outline::plan::plan_membership;
use crate::sinks::outline::plan::GroupIndex;
use crate::sinks::outline::plan::GroupTarget;
use crate::sinks::outline::plan::MembershipPlan;
use crate::sinks::outline::plan::PlanInput;
use crate::sinks::outline::sink::OutlineSync;
use crate::sinks::outline::OutlineClient;
use crate::source::reader::inherited_members;

/// What the hook after an Outline push does, once the memberships are written.
pub enum OutlinePush {
    /// A user job or a sign-in: the person's role and suspension follow, after their groups.
    Account { au: UserSnapshot, user: OutlineUser },
    /// A deleted Authentik user: their account follows the suspension rules for the deleted.
    Deleted { user: OutlineUser },
    /// A group job: the members without an account wait for an invitation, and a role group's change
    /// queues the accounts job.
    Group {
        unmatched: Vec<DesiredMember>,
        follow_ups: Vec<JobKey>,
    },
    /// The accounts job (`ROLE_MAP`, `SUSPEND_DEACTIVATED`).
    Accounts,
    /// The invitations job (`INVITE_MEMBERS`).
    Invites,
}

type PlannedPush = Planned<MembershipPlan, OutlinePush>;

/// Plans a push for `key`; nothing is written.
pub async fn plan_push(engine: &OutlineSync, key: &JobKey) -> Result<PlannedPush, SyncError> {
    match key {
        JobKey::AuthentikUser(pk) => plan_user(engine, *pk).await,
        JobKey::AuthentikGroup(id) => plan_group(engine, id).await,
        JobKey::Own(own) => match own.kind {
            "signin" => plan_signin(engine, &OutlineUserId::new(own.target.clone())).await,
            "accounts" => Ok(Planned::Hook(OutlinePush::Accounts)),
            "invites" => Ok(Planned::Hook(OutlinePush::Invites)),
            _ => Ok(Planned::Done(JobOutcome::default())),
        },
        JobKey::Reconcile => Ok(Planned::Done(JobOutcome::default())),
    }
}

/// The hook after an Outline push: accounts, invitations and follow-ups.
pub async fn after_push(
    engine: &OutlineSync,
    then: OutlinePush,
    mut report: SyncReport,
) -> Result<JobOutcome, SyncError> {
    let outline = engine.outline.in_lane(Lane::Interactive);
    match then {
        OutlinePush::Account { au, user } => {
            converge_account(engine, &outline, &au, &user).await?;
            Ok(report.into())
        }
        OutlinePush::Deleted { user } => {
            converge_one(engine, &outline, &user, AuthentikState::Deleted).await?;
            Ok(report.into())
        }
        OutlinePush::Group {
            unmatched,
            follow_ups,
        } => {
            report.unmatched_members = unmatched.len();
            engine.invites.note(&unmatched);
            Ok(JobOutcome { report, follow_ups })
        }
        OutlinePush::Accounts => accounts_job(engine).await,
        OutlinePush::Invites => invites_job(engine).await,
    }
}

/// A `users.signin` from Outline: the user's groups follow Authentik.
async fn plan_signin(engine: &OutlineSync, id: &OutlineUserId) -> Result<PlannedPush, SyncError> {
    let outline = engine.outline.in_lane(Lane::Interactive);
    let Some(user) = outline.user(id).await? else {
        return Planned::noted("Outline does not know this user (deleted?)");
    };
    let Some(email) = user.email.clone() else {
        return Planned::noted(
            "Outline shows no email for this user; is OUTLINE_TOKEN an admin's key?",
        );
    };
    tracing::Span::current().record("email", email.as_str());
    let Some(au) = engine.reader.authentik_user_by_email(&email).await? else {
        // Not an Authentik user: nothing is changed, and their groups are not removed.
        tracing::info!(user = %id, "no Authentik or SCIM user has this email; memberships left as they are");
        return Planned::noted("no Authentik or SCIM user has this email");
    };
    let plan = plan_user_memberships(engine, &outline, &au, &user).await?;
    Ok(Planned::Write(plan, OutlinePush::Account { au, user }))
}

/// The account step of a user job or a sign-in: role and suspension follow the Authentik user.
async fn converge_account(
    engine: &OutlineSync,
    outline: &OutlineClient,
    au: &UserSnapshot,
    ou: &OutlineUser,
) -> Result<(), SyncError> {
    if !engine.accounts.enabled() {
        return Ok(());
    }
    let state = if au.is_active {
        let catalog = engine.reader.full_catalog().await?;
        AuthentikState::Active(group_names(&catalog, &au.groups, engine.reader.membership))
    } else {
        AuthentikState::Inactive
    };
    converge_one(engine, outline, ou, state).await.map(drop)
}

/// An Authentik user changed (groups, deactivation, email) or was deleted.
async fn plan_user(engine: &OutlineSync, pk: AuthentikUserId) -> Result<PlannedPush, SyncError> {
    let outline = engine.outline.in_lane(Lane::Interactive);
    let Some(au) = engine.reader.fresh_user(pk).await? else {
        return plan_deleted_user(engine, &outline, pk).await;
    };
    let Some(email) = au.email.clone() else {
        return Planned::noted("the Authentik user has no email");
    };
    tracing::Span::current().record("email", email.as_str());
    let find = async {
        Ok::<_, UpstreamError>(match outline.find_user_by_email(&email).await? {
            Some(u) => Some(u),
            // An email changed in Authentik: Outline keeps the old one until the next sign-in.
            None => match engine.reader.caches.identities.previous(pk) {
                Some(old) => outline.find_user_by_email(&old).await?,
                None => None,
            },
        })
    };
    // The Outline account is this user's only if nobody else in Authentik holds the address: an inactive
    // namesake must not take the active person's groups away, nor suspend them.
    let (found, holder) = tokio::join!(find, engine.reader.authentik_user_by_email(&email));
    let (found, holder) = (found?, holder?);
    if holder.as_ref().map(|h| h.pk) != Some(pk) {
        tracing::warn!(user = %pk, "another Authentik user has this email; their Outline account is left alone");
        return Planned::noted("another Authentik user has this email; left alone");
    }
    let Some(user) = found else {
        if au.is_active && engine.invites.enabled {
            let catalog = engine.reader.full_catalog().await?;
            let managed = counted_groups(&catalog, &au.groups, engine.reader.membership)
                .any(|c| engine.reader.is_managed(c));
            if managed {
                engine.invites.note(&[DesiredMember { email, pk }]);
            }
        }
        return Planned::noted("no Outline user with this email yet");
    };
    engine
        .reader
        .caches
        .identities
        .matched_outline(pk, &user.id);
    let plan = plan_user_memberships(engine, &outline, &au, &user).await?;
    Ok(Planned::Write(plan, OutlinePush::Account { au, user }))
}

/// A deleted Authentik user leaves every managed group. The event carries no email
/// (docs/src/upstream/authentik.md §4.4), so it comes from what the bridge saw earlier. When none was seen, a
/// pass is queued: it is coalesced with other deletions' passes, and never runs inside this job.
async fn plan_deleted_user(
    engine: &OutlineSync,
    outline: &OutlineClient,
    pk: AuthentikUserId,
) -> Result<PlannedPush, SyncError> {
    let Some(email) = engine.reader.caches.identities.current(pk) else {
        tracing::info!(user = %pk, "deleted Authentik user's email is not remembered; a reconcile is queued");
        return Ok(Planned::Done(JobOutcome {
            report: SyncReport::noted("email not remembered; a reconcile is queued"),
            follow_ups: vec![JobKey::Reconcile],
        }));
    };
    // A late or retried deletion must not remove someone who holds the email now: a user deleted and
    // re-created, or the address handed to someone else.
    if let Some(live) = engine.reader.authentik_user_by_email(&email).await? {
        tracing::info!(user = %pk, now = %live.pk, "the deleted user's email belongs to a live Authentik user; syncing that user instead");
        return Ok(Planned::Done(JobOutcome {
            report: SyncReport::noted("the email belongs to a live Authentik user"),
            follow_ups: vec![JobKey::AuthentikUser(live.pk)],
        }));
    }
    let Some(user) = outline.find_user_by_email(&email).await? else {
        return Planned::noted("deleted Authentik user has no Outline account");
    };
    let gone = UserSnapshot {
        pk,
        username: None,
        name: None,
        email: Some(email),
        is_active: false,
        groups: Vec::new(),
    };
    let plan = plan_user_memberships(engine, outline, &gone, &user).await?;
    Ok(Planned::Write(plan, OutlinePush::Deleted { user }))
}

/// One user against every managed group: desired from the Authentik user, current from `groups.list
/// {userId}` (one call per 100 groups rather than one per group).
async fn plan_user_memberships(
    engine: &OutlineSync,
    outline: &OutlineClient,
    au: &UserSnapshot,
    ou: &OutlineUser,
) -> Result<MembershipPlan, SyncError> {
    let reader = &engine.reader;
    // The catalog is kept honest by group events; when one was lost, the user's fresh group list names a
    // group the cached catalog lacks, and the catalog is read again rather than ignoring that group.
    let cached = reader.full_catalog().await?;
    if au.groups.iter().any(|g| !cached.iter().any(|c| &c.id == g)) {
        reader.caches.catalog.invalidate(&()).await;
    }
    let all = reader.full_catalog().await?;
    let existing: BTreeSet<AuthentikGroupId> = all.iter().map(|g| g.id.clone()).collect();
    let member_of: BTreeSet<AuthentikGroupId> = if au.is_active {
        counted_group_ids(
            &all,
            &au.groups,
            reader.membership == MembershipMode::Inherited,
        )
    } else {
        BTreeSet::new()
    };
    let targets: Vec<GroupTarget> = all
        .iter()
        .filter(|g| reader.is_managed(g))
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
    let groups = engine
        .index
        .groups_for(outline, &targets, &current, Some(&existing))
        .await?;
    Ok(plan_membership(&PlanInput {
        targets: &targets,
        outline_groups: &groups,
        current: &current,
        auto_create: engine.auto_create,
        existing_groups: Some(&existing),
    }))
}

/// An Authentik group changed: its linked Outline group converges (adds, removes, a rename, or a takeover of
/// the Outline group of a deleted namesake). In inherited mode the group's managed ancestors converge too,
/// since their members include its own. Runs under the group's lock, so a pass never writes the group at the
/// same time (the runtime holds it for the whole job).
async fn plan_group(engine: &OutlineSync, id: &AuthentikGroupId) -> Result<PlannedPush, SyncError> {
    let outline = engine.outline.in_lane(Lane::Bulk);
    let reader = &engine.reader;
    // Read before anything below refreshes what the bridge knows of the group's name.
    let gave_roles = engine.accounts.gave_roles(id);
    let mut targets: Vec<(GroupSummary, BTreeSet<DesiredMember>)> = Vec::new();
    let mut known_members = BTreeMap::new();
    let mut linked_by_id = false;
    let role_group: Option<GroupSummary>;
    match reader.membership {
        MembershipMode::Direct => {
            // The Outline group linked by `externalId` is known from the cached index, so its members are
            // read at the same time as the Authentik group: the job costs two round trips before its writes.
            let outline_groups = engine.index.groups(&outline).await?;
            let linked = GroupIndex::new(&outline_groups, None)
                .linked(id)
                .map(|og| og.id.clone());
            let (group, members) = match &linked {
                Some(og) => {
                    let (group, members) =
                        tokio::join!(reader.fresh_group(id), outline.group_members(og));
                    let members = match members {
                        Ok(m) => Some(m),
                        // The cached index named a group Outline no longer has (deleted by hand): read
                        // the index again while planning.
                        Err(e) if e.is_refusal() => {
                            engine.index.groups.invalidate(&()).await;
                            None
                        }
                        Err(e) => return Err(e.into()),
                    };
                    (group?, members)
                }
                None => (reader.fresh_group(id).await?, None),
            };
            let Some(group) = group else {
                return Planned::noted("the Authentik group no longer exists");
            };
            if !reader.is_managed(&group.summary) {
                if linked.is_some() {
                    engine.warn_unmanaged_rename(&group.summary);
                }
                return Ok(Planned::Done(JobOutcome {
                    report: SyncReport::noted("the group is not managed (AUTHENTIK_GROUP_REGEXP)"),
                    follow_ups: roles_follow_up(engine, &group.summary, gave_roles),
                }));
            }
            role_group = Some(group.summary.clone());
            if let (Some(og), Some(members)) = (linked, members) {
                known_members.insert(og, members.into_keys().collect::<BTreeSet<_>>());
                linked_by_id = true;
            }
            targets.push((group.summary.clone(), group.desired_members()));
        }
        MembershipMode::Inherited => {
            // Intake passes every group here. One that is neither synced nor mapped, and not below such a
            // group, costs only the catalog (which has the parents), not the directory with its members.
            let catalog = reader.full_catalog().await?;
            let above = ancestors(&catalog);
            let counts = |g: &AuthentikGroupId| {
                catalog.iter().any(|c| {
                    &c.id == g && (reader.is_managed(c) || engine.accounts.decides_roles(&c.name))
                })
            };
            let known = catalog.iter().any(|c| &c.id == id);
            if known && !counts(id) && !above.get(id).into_iter().flatten().any(counts) {
                return Planned::noted("neither synced nor mapped, nor below such a group");
            }
            let directory = reader.directory.list_groups(true).await?;
            let desired = inherited_members(&directory);
            let summaries: Vec<GroupSummary> =
                directory.iter().map(|g| g.summary.clone()).collect();
            let anc = ancestors(&summaries);
            let mut affected: BTreeSet<AuthentikGroupId> = anc.get(id).cloned().unwrap_or_default();
            affected.insert(id.clone());
            // In inherited mode a change below a mapped group changes the roles it gives too.
            role_group = summaries
                .iter()
                .filter(|g| affected.contains(&g.id))
                .find(|g| engine.accounts.decides_roles(&g.name))
                .or_else(|| summaries.iter().find(|g| &g.id == id))
                .cloned();
            for g in directory {
                let summary = g.summary.clone();
                reader.caches.remember_members(&g);
                if affected.contains(&summary.id) && reader.is_managed(&summary) {
                    let members = desired.get(&summary.id).cloned().unwrap_or_default();
                    targets.push((summary, members));
                }
            }
        }
    }
    // Taking over the Outline group of a deleted namesake needs the list of groups that exist; a group
    // already linked by its own id needs none.
    let existing = if linked_by_id {
        None
    } else {
        Some(engine.existing_groups().await?)
    };
    let planned = engine
        .plan_groups(&outline, targets, existing.as_ref(), known_members)
        .await?;
    Ok(Planned::Write(
        planned.plan,
        OutlinePush::Group {
            unmatched: planned.unmatched,
            follow_ups: role_group
                .map(|g| roles_follow_up(engine, &g, gave_roles))
                .unwrap_or_default(),
        },
    ))
}

/// A change to a group `ROLE_MAP` names can change anyone's role: the accounts job follows. So does a change
/// to a group that gave roles before this job (`gave_roles`): renamed to another synced name, it gives none.
fn roles_follow_up(engine: &OutlineSync, group: &GroupSummary, gave_roles: bool) -> Vec<JobKey> {
    if gave_roles || engine.accounts.decides_roles(&group.name) {
        vec![accounts_key()]
    } else {
        Vec::new()
    }
}
