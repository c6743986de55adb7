//! Outline's group and user indexes, cached. Outline memberships are never cached (see `source`'s cache
//! notes): a stale "not a member" would make the bridge call `groups.add_user` for an existing member, which
//! demotes a group admin (docs/src/upstream/outline.md §6.3). The indexes are, and are read again whenever a
//! cached one cannot be complete for the question asked.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use crate::clients::UpstreamError;
use crate::domain::{
    AuthentikGroupId, AuthentikUserId, DesiredMember, Email, OutlineGroup, OutlineGroupId,
    OutlineUserId,
};
use crate::metrics::Metrics;
use crate::sinks::outline::client::OutlineUser;
use crate::sinks::outline::plan::GroupIndex;
use crate::sinks::outline::plan::GroupTarget;
use crate::sinks::outline::OutlineClient;
use crate::source::cache::{build, get_or_load};
use crate::source::identities::IdentityMap;

/// Outline users by folded email, with the count and newest user the listing had: a cheap call tells whether
/// anyone joined since.
pub struct OutlineUserIndex {
    pub by_email: BTreeMap<String, OutlineUserId>,
    pub total: u64,
    pub newest: Option<OutlineUserId>,
}

/// Authentik members matched to Outline users.
pub struct ResolvedMembers {
    pub ids: BTreeMap<DesiredMember, OutlineUserId>,
    /// Members with no Outline account yet (they are added once they have one, or invited with
    /// `INVITE_MEMBERS`).
    pub unmatched: Vec<DesiredMember>,
}

pub struct OutlineIndex {
    pub groups: Cache<(), Arc<Vec<OutlineGroup>>>,
    pub users: Cache<(), Arc<OutlineUserIndex>>,
    metrics: Arc<Metrics>,
}

impl OutlineIndex {
    pub fn new(ttl: Duration, metrics: Arc<Metrics>) -> OutlineIndex {
        OutlineIndex {
            groups: build("outline_groups", 1, ttl, &metrics),
            users: build("outline_users", 1, ttl, &metrics),
            metrics,
        }
    }

    /// Both indexes, emptied: a pass reads everything fresh.
    pub fn invalidate_all(&self) {
        self.groups.invalidate_all();
        self.users.invalidate_all();
    }

    pub async fn groups(
        &self,
        outline: &OutlineClient,
    ) -> Result<Arc<Vec<OutlineGroup>>, UpstreamError> {
        get_or_load(&self.metrics, &self.groups, (), async {
            Ok(Arc::new(outline.list_groups().await?))
        })
        .await
    }

    /// The Outline group index, read again when the cached one cannot be complete: a target with members to
    /// add has no Outline group in it, or a current membership names a group it does not know. Outline sends
    /// no group events, so a group created by hand is found this way instead of after the TTL.
    pub async fn groups_for(
        &self,
        outline: &OutlineClient,
        targets: &[GroupTarget],
        current: &BTreeMap<OutlineGroupId, BTreeSet<OutlineUserId>>,
        existing: Option<&BTreeSet<AuthentikGroupId>>,
    ) -> Result<Arc<Vec<OutlineGroup>>, UpstreamError> {
        let groups = self.groups(outline).await?;
        let index = GroupIndex::new(&groups, existing);
        let known: BTreeSet<&OutlineGroupId> = groups.iter().map(|g| &g.id).collect();
        let unlinked = targets
            .iter()
            .any(|t| !t.desired.is_empty() && index.find(&t.group, &t.name).is_none());
        let unknown = current.keys().any(|id| !known.contains(id));
        if !(unlinked || unknown) {
            return Ok(groups);
        }
        self.groups.invalidate(&()).await;
        self.groups(outline).await
    }

    async fn user_index(
        &self,
        outline: &OutlineClient,
    ) -> Result<Arc<OutlineUserIndex>, UpstreamError> {
        get_or_load(&self.metrics, &self.users, (), async {
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
        emails: &IdentityMap,
        members: &BTreeSet<DesiredMember>,
    ) -> Result<ResolvedMembers, UpstreamError> {
        let mut previous: BTreeMap<AuthentikUserId, Email> = BTreeMap::new();
        for m in members {
            if let Some(old) = emails.previous(m.pk) {
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
        let mut index = self.user_index(outline).await?;
        if members.iter().any(|m| lookup(&index, m).is_none()) {
            let (total, newest) = outline.newest_user().await?;
            if total != index.total || newest != index.newest {
                self.users.invalidate(&()).await;
                index = self.user_index(outline).await?;
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
        let Some(index) = self.users.get(&()).await else {
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
