//! The Authentik API client (docs/src/upstream/authentik.md §7). Reads only: the bridge never writes to Authentik.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::clients::retry::{Call, RetryPolicy, UpstreamError};
use crate::configuration::{Secret, UpstreamSettings};
use crate::domain::{
    AuthentikGroupId, AuthentikUserId, Email, GroupName, GroupSnapshot, GroupSummary,
    MemberSnapshot, UserSnapshot,
};
use crate::metrics::Metrics;

const UPSTREAM: &str = "authentik";
/// The tenant's default cap on `page_size` (docs/src/upstream/authentik.md §7.2); asking for more is silently clamped.
const PAGE_SIZE: usize = 100;
/// Reads of a listing that changed while it was walked, before the call fails as incomplete.
const LISTING_ATTEMPTS: u32 = 3;
/// Pages of one listing read at once. Authentik has no rate limit the bridge must keep; this only keeps a
/// pass from flooding its workers.
const PAGES_AT_ONCE: usize = 4;

#[derive(Clone)]
pub struct AuthentikClient {
    http: reqwest::Client,
    base: Arc<str>,
    token: Secret,
    metrics: Arc<Metrics>,
    policy: RetryPolicy,
}

/// A notification transport in webhook mode (docs/src/upstream/authentik.md §2).
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookTransport {
    pub name: String,
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// The header mapping that carries the bearer token; without it only a `?token=` authenticates.
    #[serde(default)]
    pub webhook_mapping_headers: Option<String>,
}

#[derive(Deserialize)]
struct Page<T> {
    pagination: RawPagination,
    results: Vec<T>,
}

/// `next` is `0`, not null, when there is no next page (docs/src/upstream/authentik.md §7.2). The schema says `number`; values are integers.
#[derive(Deserialize)]
struct RawPagination {
    next: f64,
    count: f64,
}

#[derive(Deserialize)]
struct RawPartialUser {
    pk: i64,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default = "yes")]
    is_active: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct RawGroup {
    pk: String,
    name: String,
    #[serde(default)]
    is_superuser: bool,
    #[serde(default)]
    parents: Vec<String>,
    #[serde(default)]
    users_obj: Option<Vec<RawPartialUser>>,
}

#[derive(Deserialize)]
struct RawPartialGroup {
    pk: String,
}

#[derive(Deserialize)]
struct RawUser {
    pk: i64,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default = "yes")]
    is_active: bool,
    #[serde(default)]
    groups_obj: Option<Vec<RawPartialGroup>>,
    #[serde(default)]
    groups: Option<Vec<String>>,
}

fn group_id(call: &str, pk: &str) -> Result<AuthentikGroupId, UpstreamError> {
    AuthentikGroupId::parse(pk).ok_or_else(|| UpstreamError::Decode {
        upstream: UPSTREAM,
        call: call.to_string(),
        message: format!("group pk is not a uuid: {pk}"),
    })
}

/// `with_members`: the read asked for `include_users`, so a group without `users_obj` is a broken answer,
/// never an empty group, whose planning would remove everyone.
/// Parses each member's email and username once per listing: a user in three groups shares one of each,
/// which at 100k users is the difference between 100k and 300k allocations held by a pass (the usernames,
/// there for sinks that name people by username, once added 14 MB to a 100k pass when each membership had its own).
#[derive(Default)]
struct MemberFields(HashMap<AuthentikUserId, (Option<Arc<str>>, Option<Email>)>);

impl MemberFields {
    fn of(
        &mut self,
        pk: AuthentikUserId,
        username: Option<&str>,
        email: Option<&str>,
    ) -> (Option<Arc<str>>, Option<Email>) {
        if let Some((known_name, known_email)) = self.0.get(&pk) {
            if known_name.as_deref() == username
                && known_email.as_ref().map(Email::as_str) == email.map(str::trim)
            {
                return (known_name.clone(), known_email.clone());
            }
        }
        let fields = (username.map(Arc::from), email.and_then(Email::parse));
        self.0.insert(pk, fields.clone());
        fields
    }
}

fn to_group(
    call: &str,
    g: RawGroup,
    with_members: bool,
    fields: &mut MemberFields,
) -> Result<GroupSnapshot, UpstreamError> {
    if with_members && g.users_obj.is_none() {
        return Err(UpstreamError::Decode {
            upstream: UPSTREAM,
            call: call.to_string(),
            message: format!("group {} came without its member list (users_obj)", g.pk),
        });
    }
    let summary = GroupSummary {
        id: group_id(call, &g.pk)?,
        name: GroupName::new(g.name),
        is_superuser: g.is_superuser,
        parents: g
            .parents
            .iter()
            .filter_map(|p| AuthentikGroupId::parse(p))
            .collect(),
    };
    let members = g
        .users_obj
        .unwrap_or_default()
        .into_iter()
        .map(|u| {
            let pk = AuthentikUserId(u.pk);
            let (username, email) = fields.of(pk, u.username.as_deref(), u.email.as_deref());
            MemberSnapshot {
                pk,
                username,
                email,
                is_active: u.is_active,
            }
        })
        .collect();
    Ok(GroupSnapshot { summary, members })
}

fn to_user(call: &str, u: RawUser) -> Result<UserSnapshot, UpstreamError> {
    let ids: Vec<String> = match (u.groups_obj, u.groups) {
        (Some(objs), _) => objs.into_iter().map(|g| g.pk).collect(),
        (None, Some(ids)) => ids,
        (None, None) => Vec::new(),
    };
    Ok(UserSnapshot {
        pk: AuthentikUserId(u.pk),
        username: u.username.map(Arc::from),
        name: u.name.filter(|n| !n.trim().is_empty()),
        email: u.email.as_deref().and_then(Email::parse),
        is_active: u.is_active,
        groups: ids
            .iter()
            .map(|id| group_id(call, id))
            .collect::<Result<_, _>>()?,
    })
}

impl AuthentikClient {
    pub fn new(
        settings: &UpstreamSettings,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<AuthentikClient, crate::clients::ClientBuildError> {
        let http = crate::clients::http_client("authentik", timeout)?;
        Ok(AuthentikClient {
            http,
            base: Arc::from(settings.url.as_str()),
            token: settings.token.clone(),
            metrics,
            policy: RetryPolicy::default(),
        })
    }

    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> AuthentikClient {
        self.policy = policy;
        self
    }

    async fn get<T: DeserializeOwned>(
        &self,
        call: &str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, UpstreamError> {
        let url = format!("{}/api/v3/{path}", self.base);
        let c = Call {
            upstream: UPSTREAM,
            name: call,
            metrics: &self.metrics,
            policy: self.policy,
            on_throttled: None,
        };
        let resp = c
            .execute(
                || async {},
                || {
                    self.http
                        .get(&url)
                        .bearer_auth(self.token.expose())
                        .query(query)
                        .send()
                },
            )
            .await?;
        let bytes = resp.bytes().await.map_err(|e| UpstreamError::Transport {
            upstream: UPSTREAM,
            call: call.to_string(),
            message: format!("reading the answer: {}", e.without_url()),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| UpstreamError::Decode {
            upstream: UPSTREAM,
            call: call.to_string(),
            message: e.to_string(),
        })
    }

    /// Follows `next` to its end (`0`, docs/src/upstream/authentik.md §7.2), then checks the rows against `count`: a page that came back
    /// short is an incomplete read, and an incomplete read must never look like "these users left".
    ///
    /// A group or user deleted mid-walk shifts the later pages, and the row after it is skipped; the count
    /// check catches that, and the listing is read again at once, a few times, before the call fails.
    async fn list_all<T: DeserializeOwned>(
        &self,
        call: &str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<T>, UpstreamError> {
        let mut attempt = 1;
        loop {
            match self.list_once(call, path, query).await {
                Err(UpstreamError::Incomplete { .. }) if attempt < LISTING_ATTEMPTS => attempt += 1,
                other => return other,
            }
        }
    }

    /// One walk. When the first page comes back full, the count gives the number of pages, and the rest are
    /// read a few at a time (a pass over 5,000 groups is 50 pages); otherwise `next` is followed.
    async fn list_once<T: DeserializeOwned>(
        &self,
        call: &str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<T>, UpstreamError> {
        let first: Page<T> = self.page(call, path, query, 1).await?;
        let count = first.pagination.count as u64;
        let mut next = first.pagination.next as u64;
        let full = first.results.len() == PAGE_SIZE;
        let mut rows = first.results;
        if full && next == 2 {
            let pages = count.div_ceil(PAGE_SIZE as u64);
            let mut rest = stream::iter(2..=pages)
                .map(|n| self.page::<T>(call, path, query, n))
                .buffered(PAGES_AT_ONCE);
            while let Some(page) = rest.next().await {
                rows.extend(page?.results);
            }
        } else {
            let mut page = 1u64;
            while next != 0 && next > page && (rows.len() as u64) < count {
                page = next;
                let p: Page<T> = self.page(call, path, query, page).await?;
                next = p.pagination.next as u64;
                rows.extend(p.results);
            }
        }
        if rows.len() as u64 != count {
            return Err(UpstreamError::Incomplete {
                upstream: UPSTREAM,
                call: call.to_string(),
                message: format!("read {} rows but the server counts {count}", rows.len()),
            });
        }
        Ok(rows)
    }

    async fn page<T: DeserializeOwned>(
        &self,
        call: &str,
        path: &str,
        query: &[(&str, String)],
        page: u64,
    ) -> Result<Page<T>, UpstreamError> {
        let mut q: Vec<(&str, String)> = query.to_vec();
        q.push(("page", page.to_string()));
        q.push(("page_size", PAGE_SIZE.to_string()));
        self.get(call, path, &q).await
    }

    /// One group with its direct members; `None` when it no longer exists.
    pub async fn group(
        &self,
        id: &AuthentikGroupId,
    ) -> Result<Option<GroupSnapshot>, UpstreamError> {
        let path = format!("core/groups/{}/", id.as_str());
        match self
            .get::<RawGroup>(
                "groups.retrieve",
                &path,
                &[("include_users", "true".into())],
            )
            .await
        {
            Ok(g) => to_group("groups.retrieve", g, true, &mut MemberFields::default()).map(Some),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every group; with `include_users`, with their direct members (`users_obj`, docs/src/upstream/authentik.md §7.3).
    pub async fn list_groups(
        &self,
        include_users: bool,
    ) -> Result<Vec<GroupSnapshot>, UpstreamError> {
        let rows: Vec<RawGroup> = self
            .list_all(
                "groups.list",
                "core/groups/",
                &[
                    ("include_users", include_users.to_string()),
                    ("ordering", "name".into()),
                ],
            )
            .await?;
        let mut fields = MemberFields::default();
        rows.into_iter()
            .map(|g| to_group("groups.list", g, include_users, &mut fields))
            .collect()
    }

    /// One user with their direct groups; `None` when they no longer exist.
    pub async fn user(&self, pk: AuthentikUserId) -> Result<Option<UserSnapshot>, UpstreamError> {
        let path = format!("core/users/{}/", pk.0);
        match self.get::<RawUser>("users.retrieve", &path, &[]).await {
            Ok(u) => to_user("users.retrieve", u).map(Some),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Users whose email is exactly `email`. Authentik's filter is exact and case-sensitive (docs/src/upstream/authentik.md §7.4), so a
    /// miss here is not proof of absence; the caller falls back to a case-insensitive scan.
    pub async fn users_with_exact_email(
        &self,
        email: &Email,
    ) -> Result<Vec<UserSnapshot>, UpstreamError> {
        let rows: Vec<RawUser> = self
            .list_all(
                "users.list",
                "core/users/",
                &[("email", email.as_str().to_string())],
            )
            .await?;
        rows.into_iter().map(|u| to_user("users.list", u)).collect()
    }

    /// Users matching a free-text `search`, whose fields include email (docs/src/upstream/authentik.md §7.2: tried as AKQL first, then as
    /// plain search). The caller compares the emails itself.
    pub async fn search_users(&self, text: &str) -> Result<Vec<UserSnapshot>, UpstreamError> {
        let rows: Vec<RawUser> = self
            .list_all("users.list", "core/users/", &[("search", text.to_string())])
            .await?;
        rows.into_iter().map(|u| to_user("users.list", u)).collect()
    }

    /// Every user with their direct groups.
    pub async fn list_users(&self) -> Result<Vec<UserSnapshot>, UpstreamError> {
        let rows: Vec<RawUser> = self
            .list_all("users.list", "core/users/", &[("ordering", "pk".into())])
            .await?;
        rows.into_iter().map(|u| to_user("users.list", u)).collect()
    }

    /// The notification transports that post webhooks, for `check` to find the one that points here. Needs
    /// `authentik_events.view_notificationtransport`, which the bridge itself never needs: a 403 here means
    /// only that `check` cannot tell.
    pub async fn webhook_transports(&self) -> Result<Vec<WebhookTransport>, UpstreamError> {
        self.list_all(
            "transports.list",
            "events/transports/",
            &[("mode", "webhook".into()), ("ordering", "name".into())],
        )
        .await
    }

    /// One harmless read per permission the bridge needs, for `check`: `view_user` and `view_group`. Without
    /// them Authentik answers 403 rather than an empty list (docs/src/upstream/authentik.md §7.7).
    pub async fn probe(&self, what: &str) -> Result<(), UpstreamError> {
        let path = if what == "users" {
            "core/users/"
        } else {
            "core/groups/"
        };
        self.get::<serde_json::Value>(
            &format!("{what}.list"),
            path,
            &[
                ("page_size", "1".into()),
                ("include_users", "false".into()),
                ("include_groups", "false".into()),
            ],
        )
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A person in several groups of one listing shares one username and one email, not a copy per
    /// membership; a changed value is taken as it is.
    #[test]
    fn a_listing_shares_each_members_username_and_email() {
        let mut fields = MemberFields::default();
        let pk = AuthentikUserId(7);
        let (a_name, a_email) = fields.of(pk, Some("jane"), Some("jane@example.com"));
        let (b_name, b_email) = fields.of(pk, Some("jane"), Some("jane@example.com"));
        let (a_name, b_name) = (a_name.expect("name"), b_name.expect("name"));
        assert!(Arc::ptr_eq(&a_name, &b_name));
        assert_eq!(a_email, b_email);
        let (c_name, _) = fields.of(pk, Some("jane.doe"), Some("jane@example.com"));
        assert_eq!(c_name.as_deref(), Some("jane.doe"));
    }
}
