//! Reading Authentik: the client, and the caches that events keep honest.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::clients::UpstreamError;
use crate::configuration::MembershipMode;
use crate::domain::{
    AuthentikGroupId, AuthentikUserId, DesiredMember, Email, GroupSelector, GroupSnapshot,
    GroupSummary, UserSnapshot,
};
use crate::source::cache::{get_or_load, SnapshotCaches};
use crate::source::directory::Directory;

pub struct SnapshotReader {
    /// Where desired state is read: Authentik's API or the SCIM store.
    pub directory: Arc<dyn Directory>,
    pub caches: SnapshotCaches,
    pub selector: GroupSelector,
    pub membership: MembershipMode,
}

impl SnapshotReader {
    pub fn is_managed(&self, group: &GroupSummary) -> bool {
        self.selector.is_managed(&group.name, group.is_superuser)
    }

    /// Every Authentik group, managed or not, without members. Group events invalidate it.
    pub async fn full_catalog(&self) -> Result<Arc<Vec<GroupSummary>>, UpstreamError> {
        get_or_load(&self.caches.metrics, &self.caches.catalog, (), async {
            let groups = self.directory.list_groups(false).await?;
            Ok::<_, UpstreamError>(Arc::new(
                groups.into_iter().map(|g| g.summary).collect::<Vec<_>>(),
            ))
        })
        .await
    }

    /// One group with its members, always read fresh. A group job runs because an event for the group
    /// arrived, and a cached snapshot can only be one read before that event: a read answered before the
    /// change can land in the cache after the event's invalidation, and planning from it would lose the
    /// change until the next pass. Its members' emails are remembered.
    pub async fn fresh_group(
        &self,
        id: &AuthentikGroupId,
    ) -> Result<Option<GroupSnapshot>, UpstreamError> {
        let Some(g) = self.directory.group(id).await? else {
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
        let user = self.directory.user(pk).await?;
        if let Some(u) = &user {
            self.caches.identities.remember_user(u);
        }
        Ok(user)
    }

    /// Finds the directory's user for an email. Several users with one email match none, with a warning.
    pub async fn authentik_user_by_email(
        &self,
        email: &Email,
    ) -> Result<Option<UserSnapshot>, UpstreamError> {
        let mut found = self.directory.users_with_email(email).await?;
        match found.len() {
            1 => {
                let user = found.pop();
                if let Some(u) = &user {
                    self.caches.identities.remember_user(u);
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
}

/// For `MEMBERSHIP=inherited`: each group's active members plus those of every group below it.
pub fn inherited_members(
    directory: &[GroupSnapshot],
) -> BTreeMap<AuthentikGroupId, BTreeSet<DesiredMember>> {
    crate::domain::snapshot::members_by_group(directory, true, GroupSnapshot::desired_members)
}
