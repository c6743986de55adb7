//! The Outline sink's account jobs: every account's role and suspension planned from fresh reads (a pass's
//! account step, and the job a change to a role group queues), and one person's account converged by their
//! user job. The rules are `account_plan.rs`; the state and the guarded writes are `accounts.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use futures::stream::{FuturesUnordered, StreamExt};

use crate::clients::{Lane, UpstreamError};
use crate::configuration::MembershipMode;
use crate::domain::{
    AuthentikGroupId, AuthentikUserId, DesiredMember, GroupName, GroupSummary, OutlineUserId,
};
use crate::runtime::changes::Tick;
use crate::runtime::job::{JobOutcome, RemovalGuard, SyncError, SyncReport};
use crate::sinks::outline::account_plan::{
    AccountPlan, AuthentikState, OutlineRole, RoleDefault, RoleMap,
};
use crate::sinks::outline::accounts::{
    active_admin_count, group_names, AccountWrite, AccountsDone,
};
use crate::sinks::outline::client::OutlineUser;
use crate::sinks::outline::sink::OutlineSync;
use crate::sinks::outline::OutlineClient;
use crate::source::identities::IdentityMap;
use crate::source::reader::inherited_members;

/// Plans the accounts of every Outline user who is an Authentik user (matched by email): the account step
/// of a pass, and the job a change to a role group queues. Outline users unknown to Authentik (local
/// accounts) are left alone; so is an Authentik user deleted before the pass, whose deletion event does it.
pub async fn plan_all(
    engine: &OutlineSync,
    outline: &OutlineClient,
) -> Result<PassAccountPlan, UpstreamError> {
    let accounts = &engine.accounts;
    let reader = &engine.reader;
    let read_at = engine.clock.now();
    let (users, people, catalog) = tokio::join!(
        outline.list_users(),
        reader.directory.list_users(),
        reader.full_catalog()
    );
    let (users, people, mut catalog) = (users?, people?, catalog?);
    let known: std::collections::HashSet<&AuthentikGroupId> =
        catalog.iter().map(|c| &c.id).collect();
    let unknown = people
        .iter()
        .flat_map(|p| &p.groups)
        .any(|g| !known.contains(g));
    drop(known);
    if unknown {
        // A group the cached catalog lacks would hide the role it gives: read it again.
        reader.caches.catalog.invalidate(&()).await;
        catalog = reader.full_catalog().await?;
    }
    accounts.note_role_groups(&catalog);
    // A deletion event carries no email, and a deletion while the bridge was down carries nothing: the map
    // keeps everyone the pass sees, with the Outline account they are matched to below.
    let identities = &reader.caches.identities;
    // Another process sharing the store may have learned or forgotten people since this one read it.
    identities.reload().await;
    for p in &people {
        identities.remember_user(p);
    }
    // An email two Authentik users share names nobody: an inactive namesake must not suspend the active
    // one (`authentik_user_by_email` refuses such an email the same way).
    let mut by_email: BTreeMap<String, Option<&crate::domain::UserSnapshot>> = BTreeMap::new();
    for p in &people {
        if let Some(e) = &p.email {
            by_email
                .entry(e.folded().to_string())
                .and_modify(|held| *held = None)
                .or_insert(Some(p));
        }
    }
    let shared = by_email.values().filter(|p| p.is_none()).count();
    if shared > 0 {
        tracing::warn!(
            emails = shared,
            "several Authentik users share an email; their Outline accounts are left alone"
        );
    }
    let mapped = MappedAccounts::new(identities, &people, &users);
    let recorded = accounts.record.snapshot().await;
    let mut facts = Vec::new();
    let mut pks = BTreeMap::new();
    let mut forget = Vec::new();
    let mut gone = Vec::new();
    for u in &users {
        let Some(email) = u.email.as_ref() else {
            continue;
        };
        let p = match by_email.get(email.folded()).copied() {
            Some(Some(p)) => p,
            // Shared by several Authentik users: left alone.
            Some(None) => continue,
            // No Authentik user has this email. The identity map may know the account: a person whose email
            // changed (Outline keeps the old address until they sign in), or one deleted from Authentik
            // without an event the bridge saw. An account it never matched is not Authentik's to manage.
            None => match mapped.owner(u) {
                Some(Owner::Alive(p)) => p,
                Some(Owner::Gone(pk)) => {
                    gone.push((u, pk));
                    continue;
                }
                None => {
                    // The record still follows its rules for them. Someone a push found deleted and the
                    // guard held stays held until `--force` suspends them (or an admin suspends them by
                    // hand); someone the bridge suspended and an admin activated by hand leaves the record.
                    if recorded.held_by_guard.contains(&u.id) {
                        facts.push(accounts.facts(u, AuthentikState::Deleted, &recorded));
                    } else if !u.suspended && recorded.suspended_by_bridge.contains(&u.id) {
                        forget.push(u.id.clone());
                    }
                    continue;
                }
            },
        };
        let state = if p.is_active {
            AuthentikState::Active(group_names(&catalog, &p.groups, reader.membership))
        } else {
            AuthentikState::Inactive
        };
        identities.matched_outline(p.pk, &u.id);
        facts.push(accounts.facts(u, state, &recorded));
        pks.insert(u.id.clone(), p.pk);
    }
    // Mapped people missing from the list are asked for one by one before anything is done to them: a list
    // that missed a row (a page shifted by a deletion mid-walk) must not offboard anyone.
    let missing: Vec<AuthentikUserId> = gone
        .iter()
        .map(|(_, pk)| *pk)
        .chain(mapped.gone_without_account())
        .collect();
    let deleted = confirmed_deleted(reader, missing).await;
    for (u, pk) in gone.into_iter().filter(|(_, pk)| deleted.contains(pk)) {
        if u.suspended || !accounts.suspend_deactivated {
            // Offboarded (suspended by the bridge, or by hand), or nothing more to do: the map lets them
            // go, so a later activation by hand is the admin's to keep.
            identities.forget(pk);
            continue;
        }
        if recorded.suspended_by_bridge.contains(&u.id) {
            // The bridge suspended them and an admin activated them by hand since: theirs to keep, as for
            // anyone the record names.
            identities.forget(pk);
            forget.push(u.id.clone());
            continue;
        }
        tracing::info!(user = %pk, email = u.email.as_ref().map(|e| e.as_str()).unwrap_or_default(), "this Authentik user is gone (deleted without an event the bridge saw); their Outline account follows the rules for the deleted");
        facts.push(accounts.facts(u, AuthentikState::Deleted, &recorded));
        pks.insert(u.id.clone(), pk);
    }
    // Gone, with no Outline account to offboard: nothing is left to remember them for.
    for pk in mapped.gone_without_account() {
        if deleted.contains(&pk) {
            identities.forget(pk);
        }
    }
    identities.save().await;
    let plan = accounts
        .plan(outline, &facts, Some(active_admin_count(&users)))
        .await?;
    let mut plan = accounts.hold_lowering_for_missing(plan, &catalog);
    plan.forget.extend(forget);
    Ok(PassAccountPlan {
        plan,
        read_at,
        people: pks,
    })
}

/// A pass's account plan, with what it needs to hand a person changed since over to a user job.
pub struct PassAccountPlan {
    pub plan: AccountPlan,
    pub read_at: Tick,
    pub people: BTreeMap<OutlineUserId, AuthentikUserId>,
}

impl PassAccountPlan {
    pub fn write(&self) -> AccountWrite<'_> {
        AccountWrite::Pass {
            read_at: self.read_at,
            people: &self.people,
        }
    }
}

/// The accounts a change to a `ROLE_MAP` group can move: the members of the mapped groups, and the Outline
/// users who hold a mapped role now (someone who left such a group). It reads the mapped groups and short
/// Outline listings, not both directories, so a promotion on a large instance still lands within a second.
/// Suspensions are left to user events and the pass.
pub async fn plan_role_groups(
    engine: &OutlineSync,
    outline: &OutlineClient,
) -> Result<AccountPlan, UpstreamError> {
    let accounts = &engine.accounts;
    let reader = &engine.reader;
    let Some(map) = &accounts.role_map else {
        return Ok(AccountPlan::default());
    };
    // Who holds a mapped role now; with `ROLE_DEFAULT=keep` nobody is moved back, so nobody is listed.
    let held: BTreeSet<OutlineRole> = match map.default {
        RoleDefault::Keep => BTreeSet::new(),
        RoleDefault::Role(default) => map
            .groups
            .iter()
            .map(|(_, r)| *r)
            .filter(|r| *r != default)
            .collect(),
    };
    let holders = async {
        let mut lists = Vec::new();
        for role in &held {
            lists.push((*role, outline.users_with_role(role.as_str()).await?));
        }
        Ok::<_, UpstreamError>(lists)
    };
    // The mapped groups and the role holders are read at the same time.
    let (mapped, holders, catalog) =
        tokio::join!(mapped_members(engine, map), holders, reader.full_catalog());
    let (mapped, holders, catalog) = (mapped?, holders?, catalog?);
    let (mapped, vanished) = mapped;
    // The catalog as read last (the mapped groups' read may have refreshed it): which groups give roles now.
    let latest = reader.full_catalog().await?;
    accounts.note_role_groups(&latest);

    let members: BTreeSet<DesiredMember> = mapped.keys().cloned().collect();
    let resolved = engine
        .index
        .resolve_members(outline, &reader.caches.identities, &members)
        .await?;
    let by_id: BTreeMap<&OutlineUserId, &DesiredMember> =
        resolved.ids.iter().map(|(m, id)| (id, m)).collect();
    let known: BTreeMap<&OutlineUserId, &OutlineUser> = holders
        .iter()
        .flat_map(|(_, users)| users.iter().map(|u| (&u.id, u)))
        .collect();
    // Members already listed as holders need no second read.
    let unread: Vec<OutlineUserId> = by_id
        .keys()
        .filter(|id| !known.contains_key(*id))
        .map(|id| (*id).clone())
        .collect();
    let leavers: Vec<&OutlineUser> = known
        .values()
        .filter(|u| !by_id.contains_key(&u.id))
        .copied()
        .collect();
    // The members' Outline accounts, and where each leaver stands in Authentik, at the same time.
    let leaver_states = async {
        let mut states = Vec::new();
        let mut lookups = leavers
            .iter()
            .filter_map(|u| u.email.as_ref().map(|e| (*u, e)))
            .map(|(u, e)| async move { (u, reader.authentik_user_by_email(e).await) })
            .collect::<FuturesUnordered<_>>();
        while let Some((u, person)) = lookups.next().await {
            // Not an Authentik user: never touched.
            let Some(person) = person? else { continue };
            let state = if person.is_active {
                AuthentikState::Active(group_names(&catalog, &person.groups, reader.membership))
            } else {
                AuthentikState::Inactive
            };
            states.push((u, state));
        }
        Ok::<_, UpstreamError>(states)
    };
    let (read, leaver_states) = tokio::join!(outline.users_by_ids(&unread), leaver_states);
    let (read, leaver_states) = (read?, leaver_states?);

    let recorded = accounts.record.snapshot().await;
    let mut facts = Vec::new();
    for u in read.iter().chain(known.values().copied()) {
        if let Some(groups) = by_id.get(&u.id).and_then(|m| mapped.get(*m)) {
            facts.push(accounts.facts(u, AuthentikState::Active(groups.clone()), &recorded));
        }
    }
    for (u, state) in leaver_states {
        facts.push(accounts.facts(u, state, &recorded));
    }
    let admins = holders
        .iter()
        .find(|(role, _)| *role == OutlineRole::Admin)
        .map(|(_, users)| active_admin_count(users));
    let plan = accounts.plan(outline, &facts, admins).await?;
    let plan = accounts.hold_lowering_for_missing(plan, &latest);
    if vanished {
        tracing::warn!("a group ROLE_MAP names vanished while it was read; nobody's role is lowered until the next pass");
        return Ok(plan.without_lowering());
    }
    Ok(plan)
}

/// Active members of the mapped groups, each with the mapped groups they are in: all that `role_for` reads.
/// The flag is true when a mapped group vanished under its id even after the catalog was read again: then
/// nobody should be moved down on what was read.
async fn mapped_members(
    engine: &OutlineSync,
    map: &RoleMap,
) -> Result<(BTreeMap<DesiredMember, Vec<GroupName>>, bool), UpstreamError> {
    let reader = &engine.reader;
    let mut mapped: BTreeMap<DesiredMember, Vec<GroupName>> = BTreeMap::new();
    let mut vanished = false;
    match reader.membership {
        MembershipMode::Direct => {
            // A mapped group the cached catalog lacks, or that is gone under its cached id (deleted and
            // re-created while its event was lost), would make its members look like leavers: the catalog
            // is read again once before that is believed.
            for attempt in 0..2 {
                let catalog = reader.full_catalog().await?;
                let named: Vec<&GroupSummary> =
                    catalog.iter().filter(|g| map.names(&g.name)).collect();
                // A name the cached catalog lacks is worth one fresh read; after it, a missing group simply
                // does not exist (it has no members).
                let mut stale = attempt == 0
                    && map
                        .groups
                        .iter()
                        .any(|(name, _)| !named.iter().any(|g| &g.name == name));
                vanished = false;
                let mut reads = named
                    .iter()
                    .map(|g| reader.fresh_group(&g.id))
                    .collect::<FuturesUnordered<_>>();
                mapped.clear();
                while let Some(group) = reads.next().await {
                    match group? {
                        Some(group) => {
                            for m in group.desired_members() {
                                mapped
                                    .entry(m)
                                    .or_default()
                                    .push(group.summary.name.clone());
                            }
                        }
                        None => {
                            stale = true;
                            vanished = true;
                        }
                    }
                }
                drop(reads);
                if !stale || attempt == 1 {
                    break;
                }
                reader.caches.catalog.invalidate(&()).await;
            }
        }
        MembershipMode::Inherited => {
            let directory = reader.directory.list_groups(true).await?;
            let desired = inherited_members(&directory);
            for g in directory.iter().filter(|g| map.names(&g.summary.name)) {
                for m in desired.get(&g.summary.id).into_iter().flatten() {
                    mapped
                        .entry(m.clone())
                        .or_default()
                        .push(g.summary.name.clone());
                }
            }
        }
    }
    Ok((mapped, vanished))
}

/// The accounts pass as a queued job, after a change to a group that `ROLE_MAP` names.
pub async fn accounts_job(engine: &OutlineSync) -> Result<JobOutcome, SyncError> {
    let outline = engine.outline.in_lane(Lane::Bulk);
    if !engine.accounts.enabled() {
        return Ok(JobOutcome::default());
    }
    let _turn = engine.accounts.changes.lock().await;
    let plan = plan_role_groups(engine, &outline).await?;
    let done = engine
        .accounts
        .apply(
            engine,
            &outline,
            &plan,
            0,
            RemovalGuard::Enforce,
            AccountWrite::Push,
        )
        .await?;
    Ok(SyncReport {
        note: Some(format!(
            "{} roles set, {} suspended, {} activated, {} refused",
            done.roles, done.suspended, done.activated, done.refused
        )),
        ..Default::default()
    }
    .into())
}

/// One account, from a user job or a sign-in: its role and suspension follow the person's Authentik state.
pub async fn converge_one(
    engine: &OutlineSync,
    outline: &OutlineClient,
    user: &OutlineUser,
    authentik: AuthentikState,
) -> Result<AccountsDone, SyncError> {
    let accounts = &engine.accounts;
    if !accounts.enabled() {
        return Ok(AccountsDone::default());
    }
    let _turn = accounts.changes.lock().await;
    // Read again under the lock: another job may have suspended or activated the account meanwhile.
    let Some(user) = outline.user(&user.id).await? else {
        return Ok(AccountsDone::default());
    };
    let recorded = accounts.record.snapshot().await;
    let was_held = recorded.held_by_guard.contains(&user.id);
    let facts = accounts.facts(&user, authentik, &recorded);
    let plan = accounts.plan(outline, &[facts], None).await?;
    if plan.is_empty() && plan.refused.is_empty() && plan.forget.is_empty() && !was_held {
        return Ok(AccountsDone::default());
    }
    accounts
        .apply(
            engine,
            outline,
            &plan,
            0,
            RemovalGuard::Enforce,
            AccountWrite::Push,
        )
        .await
}

/// The identity map's people, joined to the pass's reads: who owns an Outline account that no Authentik user
/// has the email of.
struct MappedAccounts<'a> {
    identities: &'a IdentityMap,
    alive: HashMap<AuthentikUserId, &'a crate::domain::UserSnapshot>,
    /// Last emails, folded; an email two people had names nobody. A previous email links no account on its
    /// own: someone else (a shared mailbox, a new hire) may hold that address now.
    by_email: HashMap<String, Option<AuthentikUserId>>,
    /// Emails Outline has now: a person whose new email has an account of its own keeps only that one.
    outline_emails: HashSet<&'a str>,
    /// Mapped people who are not in the list and have no Outline account the map can name.
    unclaimed: Vec<AuthentikUserId>,
}

enum Owner<'a> {
    Alive(&'a crate::domain::UserSnapshot),
    Gone(AuthentikUserId),
}

impl<'a> MappedAccounts<'a> {
    fn new(
        identities: &'a IdentityMap,
        people: &'a [crate::domain::UserSnapshot],
        users: &'a [OutlineUser],
    ) -> MappedAccounts<'a> {
        let alive: HashMap<_, _> = people.iter().map(|p| (p.pk, p)).collect();
        let accounts: HashSet<&OutlineUserId> = users.iter().map(|u| &u.id).collect();
        let outline_emails: HashSet<&str> = users
            .iter()
            .filter_map(|u| u.email.as_ref())
            .map(|e| e.folded())
            .collect();
        let mut by_email: HashMap<String, Option<AuthentikUserId>> = HashMap::new();
        let mut unclaimed = Vec::new();
        for (pk, who) in identities.people() {
            let emails = [&who.email, &who.previous_email];
            let has_account = who
                .outline_user
                .as_ref()
                .is_some_and(|u| accounts.contains(u))
                || emails
                    .iter()
                    .filter_map(|e| e.as_ref())
                    .any(|e| outline_emails.contains(e.folded()));
            if !alive.contains_key(&pk) && !has_account {
                unclaimed.push(pk);
            }
            if let Some(e) = &who.email {
                by_email
                    .entry(e.folded().to_string())
                    .and_modify(|held| {
                        if *held != Some(pk) {
                            *held = None
                        }
                    })
                    .or_insert(Some(pk));
            }
        }
        MappedAccounts {
            identities,
            alive,
            by_email,
            outline_emails,
            unclaimed,
        }
    }

    /// The person the map matched to this account, when no Authentik user has its email now.
    fn owner(&self, u: &OutlineUser) -> Option<Owner<'a>> {
        let pk = self.identities.owner_of(&u.id).or_else(|| {
            let email = u.email.as_ref()?;
            self.by_email.get(email.folded()).copied().flatten()
        })?;
        match self.alive.get(&pk) {
            Some(p) => {
                let own_account = p
                    .email
                    .as_ref()
                    .is_some_and(|e| self.outline_emails.contains(e.folded()));
                (!own_account).then_some(Owner::Alive(p))
            }
            None => Some(Owner::Gone(pk)),
        }
    }

    fn gone_without_account(&self) -> Vec<AuthentikUserId> {
        self.unclaimed.clone()
    }
}

/// Which of the mapped people the source's list lacks one read each confirms are gone. A read that fails, or
/// finds the person after all, leaves their account alone.
async fn confirmed_deleted(
    reader: &crate::source::reader::SnapshotReader,
    missing: Vec<AuthentikUserId>,
) -> HashSet<AuthentikUserId> {
    futures::stream::iter(missing)
        .map(|pk| async move {
            match reader.directory.user(pk).await {
                Ok(None) => Some(pk),
                Ok(Some(_)) => None,
                Err(e) => {
                    tracing::warn!(user = %pk, error = %e, "cannot confirm this mapped user is gone; their account is left alone until the next pass");
                    None
                }
            }
        })
        .buffer_unordered(8)
        .filter_map(|found| async move { found })
        .collect()
        .await
}
