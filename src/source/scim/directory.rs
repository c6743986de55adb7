//! The SCIM store seen as a directory: the reader and every sink plan from it exactly as from Authentik's
//! API. A SCIM group has no parents and never gives superuser rights; a group's key is its link key.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::clients::UpstreamError;
use crate::domain::{
    AuthentikGroupId, AuthentikUserId, Email, GroupName, GroupSnapshot, GroupSummary,
    MemberSnapshot, UserSnapshot,
};
use crate::source::directory::Directory;
use crate::store::scim::{GroupRow, UserColumn, UserRow};
use crate::store::{Store, StoreError};

pub struct ScimDirectory {
    store: Store,
}

impl ScimDirectory {
    pub fn new(store: Store) -> ScimDirectory {
        ScimDirectory { store }
    }
}

fn failed(call: &str) -> impl FnOnce(StoreError) -> UpstreamError + '_ {
    move |e| UpstreamError::Transport {
        upstream: "store",
        call: call.to_string(),
        message: e.to_string(),
    }
}

fn key(row: &GroupRow) -> Result<AuthentikGroupId, UpstreamError> {
    AuthentikGroupId::from_source_key(&row.link_key).ok_or_else(|| UpstreamError::Decode {
        upstream: "store",
        call: "groups".into(),
        message: format!("a stored group key is not one: {:?}", row.link_key),
    })
}

fn summary(row: &GroupRow) -> Result<GroupSummary, UpstreamError> {
    Ok(GroupSummary {
        id: key(row)?,
        name: GroupName::new(row.display_name.as_str()),
        is_superuser: false,
        parents: Vec::new(),
    })
}

fn member(row: &UserRow) -> MemberSnapshot {
    MemberSnapshot {
        pk: AuthentikUserId(row.pk),
        username: Some(Arc::from(row.user_name.as_str())),
        email: row.email.as_deref().and_then(Email::parse),
        is_active: row.active,
    }
}

fn user(row: &UserRow, groups: Vec<AuthentikGroupId>) -> UserSnapshot {
    UserSnapshot {
        pk: AuthentikUserId(row.pk),
        username: Some(Arc::from(row.user_name.as_str())),
        name: row.display_name.clone(),
        email: row.email.as_deref().and_then(Email::parse),
        is_active: row.active,
        groups,
    }
}

impl ScimDirectory {
    async fn groups_of(&self, pk: i64) -> Result<Vec<AuthentikGroupId>, UpstreamError> {
        let keys = self
            .store
            .groups_of(pk)
            .await
            .map_err(failed("users.groups"))?;
        Ok(keys
            .iter()
            .filter_map(|k| AuthentikGroupId::from_source_key(k))
            .collect())
    }

    async fn all_groups(&self, include_users: bool) -> Result<Vec<GroupSnapshot>, UpstreamError> {
        let groups = self
            .store
            .all_groups()
            .await
            .map_err(failed("groups.list"))?;
        let mut members: BTreeMap<String, Vec<MemberSnapshot>> = BTreeMap::new();
        if include_users {
            let users: BTreeMap<i64, UserRow> = self
                .store
                .all_users()
                .await
                .map_err(failed("users.list"))?
                .into_iter()
                .map(|u| (u.pk, u))
                .collect();
            for (group, pk) in self
                .store
                .all_memberships()
                .await
                .map_err(failed("members.list"))?
            {
                if let Some(u) = users.get(&pk) {
                    members.entry(group).or_default().push(member(u));
                }
            }
        }
        groups
            .iter()
            .map(|g| {
                Ok(GroupSnapshot {
                    summary: summary(g)?,
                    members: members.remove(&g.id).unwrap_or_default(),
                })
            })
            .collect()
    }

    async fn all_users(&self) -> Result<Vec<UserSnapshot>, UpstreamError> {
        let groups: BTreeMap<String, AuthentikGroupId> = self
            .store
            .all_groups()
            .await
            .map_err(failed("groups.list"))?
            .iter()
            .map(|g| Ok((g.id.clone(), key(g)?)))
            .collect::<Result<_, UpstreamError>>()?;
        let mut by_user: BTreeMap<i64, Vec<AuthentikGroupId>> = BTreeMap::new();
        for (group, pk) in self
            .store
            .all_memberships()
            .await
            .map_err(failed("members.list"))?
        {
            if let Some(k) = groups.get(&group) {
                by_user.entry(pk).or_default().push(k.clone());
            }
        }
        let users = self.store.all_users().await.map_err(failed("users.list"))?;
        Ok(users
            .iter()
            .map(|u| user(u, by_user.remove(&u.pk).unwrap_or_default()))
            .collect())
    }
}

impl Directory for ScimDirectory {
    fn group<'a>(
        &'a self,
        id: &'a AuthentikGroupId,
    ) -> BoxFuture<'a, Result<Option<GroupSnapshot>, UpstreamError>> {
        Box::pin(async move {
            let Some(row) = self
                .store
                .group_by_link_key(id.as_str())
                .await
                .map_err(failed("groups.retrieve"))?
            else {
                return Ok(None);
            };
            let members = self
                .store
                .member_users(&row.id)
                .await
                .map_err(failed("groups.members"))?;
            Ok(Some(GroupSnapshot {
                summary: summary(&row)?,
                members: members.iter().map(member).collect(),
            }))
        })
    }

    fn list_groups(
        &self,
        include_users: bool,
    ) -> BoxFuture<'_, Result<Vec<GroupSnapshot>, UpstreamError>> {
        Box::pin(self.all_groups(include_users))
    }

    fn user(
        &self,
        pk: AuthentikUserId,
    ) -> BoxFuture<'_, Result<Option<UserSnapshot>, UpstreamError>> {
        Box::pin(async move {
            let Some(row) = self
                .store
                .user_by_pk(pk.0)
                .await
                .map_err(failed("users.retrieve"))?
            else {
                return Ok(None);
            };
            let groups = self.groups_of(row.pk).await?;
            Ok(Some(user(&row, groups)))
        })
    }

    fn users_with_email<'a>(
        &'a self,
        email: &'a Email,
    ) -> BoxFuture<'a, Result<Vec<UserSnapshot>, UpstreamError>> {
        Box::pin(async move {
            let rows = self
                .store
                .users_with_email(&email.as_str().to_lowercase())
                .await
                .map_err(failed("users.list"))?;
            let mut found = Vec::with_capacity(rows.len());
            for row in &rows {
                found.push(user(row, self.groups_of(row.pk).await?));
            }
            Ok(found)
        })
    }

    fn users_named<'a>(
        &'a self,
        username: &'a str,
    ) -> BoxFuture<'a, Result<Vec<UserSnapshot>, UpstreamError>> {
        Box::pin(async move {
            let row = self
                .store
                .find_user(UserColumn::UserNameKey, &username.to_lowercase())
                .await
                .map_err(failed("users.list"))?;
            let mut found = Vec::new();
            for row in row.iter().filter(|r| r.user_name == username) {
                found.push(user(row, self.groups_of(row.pk).await?));
            }
            Ok(found)
        })
    }

    fn list_users(&self) -> BoxFuture<'_, Result<Vec<UserSnapshot>, UpstreamError>> {
        Box::pin(self.all_users())
    }
}
