//! Reading both sides: the Authentik client, and the caches that events keep honest.
//!
//! Outline memberships are never cached (see `cache.rs`); Outline's group and user indexes are, and are read
//! again whenever a cached one cannot be complete for the question asked.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::cache::{OutlineUserIndex, SnapshotCaches};
use crate::clients::outline::OutlineUser;
use crate::clients::{AuthentikClient, OutlineClient, UpstreamError};
use crate::configuration::MembershipMode;
use crate::domain::plan::GroupIndex;
use crate::domain::{
    AuthentikGroupId, AuthentikUserId, DesiredMember, Email, GroupSelector, GroupSnapshot,
    GroupSummary, GroupTarget, OutlineGroup, OutlineGroupId, OutlineUserId, UserSnapshot,
};

pub struct SnapshotReader {
    pub authentik: AuthentikClient,
    pub caches: SnapshotCaches,
    pub selector: GroupSelector,
    pub membership: MembershipMode,
}

/// Authentik members matched to Outline users.
pub struct ResolvedMembers {
    pub ids: BTreeMap<DesiredMember, OutlineUserId>,
    /// Members with no Outline account yet (they are added once they have one, or invited with
    /// `INVITE_MEMBERS`).
    pub unmatched: Vec<DesiredMember>,
}

impl SnapshotReader {
    pub fn is_managed(&self, group: &GroupSummary) -> bool {
        self.selector.is_managed(&group.name, group.is_superuser)
    }

    /// Every Authentik group, managed or not, without members. Group events invalidate it.
    pub async fn full_catalog(&self) -> Result<Arc<Vec<GroupSummary>>, UpstreamError> {
        self.caches
            .get_or_load(&self.caches.catalog, (), async {
                let groups = self.authentik.list_groups(false).await?;
                Ok::<_, UpstreamError>(Arc::new(
                    groups.into_iter().map(|g| g.summary).collect::<Vec<_>>(),
                ))
            })
            .await
    }

    /// The managed Authentik groups, without members.
    pub async fn managed_catalog(&self) -> Result<Vec<GroupSummary>, UpstreamError> {
        let all = self.full_catalog().await?;
        Ok(all.iter().filter(|g| self.is_managed(g)).cloned().collect())
    }

    /// One group with its members, always read fresh. A group job runs because an event for the group
    /// arrived, and a cached snapshot can only be one read before that event: a read answered before the
    /// change can land in the cache after the event's invalidation, and planning from it would lose the
    /// change until the next pass. Its members' emails are remembered.
    pub async fn fresh_group(
        &self,
        id: &AuthentikGroupId,
    ) -> Result<Option<GroupSnapshot>, UpstreamError> {
        let Some(g) = self.authentik.group(id).await? else {
            return Ok(None);
        };
        self.caches.remember_members(&g);
        Ok(Some(g))
    }

    /// One user with their groups, fresh; their email is remembered for a later deletion event.
    pub async fn fresh_user(
        &self,
        pk: AuthentikUserId,
    ) -> Result<Option<UserSnapshot>, UpstreamError> {
        let user = self.authentik.user(pk).await?;
        if let Some(email) = user.as_ref().and_then(|u| u.email.as_ref()) {
            self.caches.emails.remember(pk, email);
        }
        Ok(user)
    }

    /// Finds the Authentik user for an email. Authentik's `email` filter is exact and case-sensitive
    /// (docs/src/upstream/authentik.md §7.4): the exact filter is tried first (one call, and what SSO-provisioned
    /// Outline accounts match), then `search=`, whose fields include email, compared here without case.
    /// Several users with one email match none, with a warning.
    pub async fn authentik_user_by_email(
        &self,
        email: &Email,
    ) -> Result<Option<UserSnapshot>, UpstreamError> {
        let mut found = self.authentik.users_with_exact_email(email).await?;
        if found.is_empty() {
            found = self.authentik.search_users(email.as_str()).await?;
            found.retain(|u| u.email.as_ref() == Some(email));
        }
        match found.len() {
            1 => {
                let user = found.pop();
                if let Some(u) = &user {
                    self.caches.emails.remember(u.pk, email);
                }
                Ok(user)
            }
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

    pub async fn outline_groups(
        &self,
        outline: &OutlineClient,
    ) -> Result<Arc<Vec<OutlineGroup>>, UpstreamError> {
        self.caches
            .get_or_load(&self.caches.outline_groups, (), async {
                Ok(Arc::new(outline.list_groups().await?))
            })
            .await
    }

    /// The Outline group index, read again when the cached one cannot be complete: a target with members to
    /// add has no Outline group in it, or a current membership names a group it does not know. Outline sends
    /// no group events, so a group created by hand is found this way instead of after the TTL.
    pub async fn outline_groups_for(
        &self,
        outline: &OutlineClient,
        targets: &[GroupTarget],
        current: &BTreeMap<OutlineGroupId, BTreeSet<OutlineUserId>>,
        existing: Option<&BTreeSet<AuthentikGroupId>>,
    ) -> Result<Arc<Vec<OutlineGroup>>, UpstreamError> {
        let groups = self.outline_groups(outline).await?;
        let index = GroupIndex::new(&groups, existing);
        let known: BTreeSet<&OutlineGroupId> = groups.iter().map(|g| &g.id).collect();
        let unlinked = targets
            .iter()
            .any(|t| !t.desired.is_empty() && index.find(&t.group, &t.name).is_none());
        let unknown = current.keys().any(|id| !known.contains(id));
        if !(unlinked || unknown) {
            return Ok(groups);
        }
        self.caches.outline_groups.invalidate(&()).await;
        self.outline_groups(outline).await
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

    /// Matches Authentik members to Outline users by email, or by the member's previous email while Outline
    /// still has that one. When some are missing from the cached index, one call asks Outline for its newest
    /// user and its count; only when those changed (someone signed up or was invited since) is the whole
    /// index read again. Members who never used Outline stay unmatched without a full listing per event.
    pub async fn resolve_members(
        &self,
        outline: &OutlineClient,
        members: &BTreeSet<DesiredMember>,
    ) -> Result<ResolvedMembers, UpstreamError> {
        let mut previous: BTreeMap<AuthentikUserId, Email> = BTreeMap::new();
        for m in members {
            if let Some(old) = self.caches.emails.previous(m.pk) {
                if old != m.email {
                    previous.insert(m.pk, old);
                }
            }
        }
        let lookup = |idx: &OutlineUserIndex, m: &DesiredMember| {
            idx.by_email.get(m.email.folded()).cloned().or_else(|| {
                previous
                    .get(&m.pk)
                    .and_then(|old| idx.by_email.get(old.folded()).cloned())
            })
        };
        let mut index = self.outline_user_index(outline).await?;
        if members.iter().any(|m| lookup(&index, m).is_none()) {
            let (total, newest) = outline.newest_user().await?;
            if total != index.total || newest != index.newest {
                self.caches.outline_users.invalidate(&()).await;
                index = self.outline_user_index(outline).await?;
            }
        }
        let mut ids = BTreeMap::new();
        let mut unmatched = Vec::new();
        for m in members {
            match lookup(&index, m) {
                Some(id) => {
                    ids.insert(m.clone(), id);
                }
                None => unmatched.push(m.clone()),
            }
        }
        Ok(ResolvedMembers { ids, unmatched })
    }

    /// The emails of Outline users, from the cached index, for reports a person reads.
    pub async fn emails_of(
        &self,
        users: &BTreeSet<&OutlineUserId>,
    ) -> BTreeMap<OutlineUserId, String> {
        let Some(index) = self.caches.outline_users.get(&()).await else {
            return BTreeMap::new();
        };
        index
            .by_email
            .iter()
            .filter(|(_, id)| users.contains(id))
            .map(|(email, id)| (id.clone(), email.clone()))
            .collect()
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

/// For `MEMBERSHIP=inherited`: each group's active members plus those of every group below it.
pub fn inherited_members(
    directory: &[GroupSnapshot],
) -> BTreeMap<AuthentikGroupId, BTreeSet<DesiredMember>> {
    let summaries: Vec<GroupSummary> = directory.iter().map(|g| g.summary.clone()).collect();
    let anc = crate::domain::snapshot::ancestors(&summaries);
    let mut out: BTreeMap<AuthentikGroupId, BTreeSet<DesiredMember>> = BTreeMap::new();
    for g in directory {
        let members = g.desired_members();
        out.entry(g.summary.id.clone())
            .or_default()
            .extend(members.iter().cloned());
        for a in anc.get(&g.summary.id).into_iter().flatten() {
            out.entry(a.clone())
                .or_default()
                .extend(members.iter().cloned());
        }
    }
    out
}
