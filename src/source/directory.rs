//! Where desired state is read from: Authentik's API, or the SCIM store. The reader, its caches and every
//! sink plan from a [`Directory`] and never know which one it is.

use futures::future::BoxFuture;

use crate::clients::UpstreamError;
use crate::domain::{AuthentikGroupId, AuthentikUserId, Email, GroupSnapshot, UserSnapshot};
use crate::source::AuthentikClient;

pub trait Directory: Send + Sync + 'static {
    /// One group with its direct members; `None` when it no longer exists.
    fn group<'a>(
        &'a self,
        id: &'a AuthentikGroupId,
    ) -> BoxFuture<'a, Result<Option<GroupSnapshot>, UpstreamError>>;
    /// Every group; with `include_users`, with their direct members.
    fn list_groups(
        &self,
        include_users: bool,
    ) -> BoxFuture<'_, Result<Vec<GroupSnapshot>, UpstreamError>>;
    /// One user with their direct groups; `None` when they no longer exist.
    fn user(
        &self,
        pk: AuthentikUserId,
    ) -> BoxFuture<'_, Result<Option<UserSnapshot>, UpstreamError>>;
    /// The users whose email is `email`, compared without case.
    fn users_with_email<'a>(
        &'a self,
        email: &'a Email,
    ) -> BoxFuture<'a, Result<Vec<UserSnapshot>, UpstreamError>>;
    /// The users whose username is exactly `username`.
    fn users_named<'a>(
        &'a self,
        username: &'a str,
    ) -> BoxFuture<'a, Result<Vec<UserSnapshot>, UpstreamError>>;
    /// Every user with their direct groups.
    fn list_users(&self) -> BoxFuture<'_, Result<Vec<UserSnapshot>, UpstreamError>>;
}

impl Directory for AuthentikClient {
    fn group<'a>(
        &'a self,
        id: &'a AuthentikGroupId,
    ) -> BoxFuture<'a, Result<Option<GroupSnapshot>, UpstreamError>> {
        Box::pin(AuthentikClient::group(self, id))
    }

    fn list_groups(
        &self,
        include_users: bool,
    ) -> BoxFuture<'_, Result<Vec<GroupSnapshot>, UpstreamError>> {
        Box::pin(AuthentikClient::list_groups(self, include_users))
    }

    fn user(
        &self,
        pk: AuthentikUserId,
    ) -> BoxFuture<'_, Result<Option<UserSnapshot>, UpstreamError>> {
        Box::pin(AuthentikClient::user(self, pk))
    }

    /// Authentik's `email` filter is exact and case-sensitive (docs/src/upstream/authentik.md §7.4): the exact
    /// filter is tried first (one call, and what SSO-provisioned Outline accounts match), then `search=`, whose
    /// fields include email, compared here without case.
    fn users_with_email<'a>(
        &'a self,
        email: &'a Email,
    ) -> BoxFuture<'a, Result<Vec<UserSnapshot>, UpstreamError>> {
        Box::pin(async move {
            let found = self.users_with_exact_email(email).await?;
            if !found.is_empty() {
                return Ok(found);
            }
            let mut found = self.search_users(email.as_str()).await?;
            found.retain(|u| u.email.as_ref() == Some(email));
            Ok(found)
        })
    }

    /// `search=` matches usernames among other fields; only the exact one is kept.
    fn users_named<'a>(
        &'a self,
        username: &'a str,
    ) -> BoxFuture<'a, Result<Vec<UserSnapshot>, UpstreamError>> {
        Box::pin(async move {
            let mut found = self.search_users(username).await?;
            found.retain(|u| u.username.as_deref() == Some(username));
            Ok(found)
        })
    }

    fn list_users(&self) -> BoxFuture<'_, Result<Vec<UserSnapshot>, UpstreamError>> {
        Box::pin(AuthentikClient::list_users(self))
    }
}
