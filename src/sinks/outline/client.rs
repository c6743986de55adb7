//! The Outline API client (docs/src/upstream/outline.md §3). Every call goes through the shared rate limiter, then the retry
//! loop; every answer is read into the domain's types here, so nothing else sees Outline's JSON.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::clients::retry::{Call, RetryPolicy, UpstreamError};
use crate::clients::Lane;
use crate::configuration::{RateLimit, Secret, UpstreamSettings};
use crate::domain::{Email, GroupName, OutlineGroup, OutlineGroupId, OutlineUserId, Permission};
use crate::metrics::Metrics;
use crate::sinks::outline::limiter::OutlineLimiter;

const UPSTREAM: &str = "outline";
/// Outline rejects `limit` above 100 with a 400 rather than clamping it (docs/src/upstream/outline.md §3.3).
const PAGE_LIMIT: usize = 100;
/// Reads of a listing that changed while it was walked, before the call fails as incomplete.
const LISTING_ATTEMPTS: u32 = 3;

#[derive(Clone)]
pub struct OutlineClient {
    http: reqwest::Client,
    base: Arc<str>,
    token: Secret,
    limiter: Arc<OutlineLimiter>,
    metrics: Arc<Metrics>,
    lane: Lane,
    policy: RetryPolicy,
}

/// An Outline user as the admin key sees them.
#[derive(Debug, Clone)]
pub struct OutlineUser {
    pub id: OutlineUserId,
    pub name: String,
    pub email: Option<Email>,
    pub role: String,
    pub suspended: bool,
}

/// One entry of `users.invite`.
#[derive(Debug, Clone)]
pub struct Invitation {
    pub email: Email,
    pub name: String,
    pub role: &'static str,
}

/// What `users.invite` did: the accounts it made, and how many addresses it already had.
#[derive(Debug, Clone)]
pub struct InviteAnswer {
    pub created: Vec<OutlineUser>,
    pub already_there: usize,
}

#[derive(Deserialize)]
struct RawUser {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default, rename = "isSuspended")]
    is_suspended: Option<bool>,
}

impl From<RawUser> for OutlineUser {
    fn from(u: RawUser) -> Self {
        OutlineUser {
            id: OutlineUserId::new(u.id),
            name: u.name.unwrap_or_default(),
            email: u.email.as_deref().and_then(Email::parse),
            role: u.role.unwrap_or_default(),
            suspended: u.is_suspended.unwrap_or(false),
        }
    }
}

#[derive(Deserialize)]
struct RawGroup {
    id: String,
    name: String,
    #[serde(default, rename = "externalId")]
    external_id: Option<String>,
}

impl From<RawGroup> for OutlineGroup {
    fn from(g: RawGroup) -> Self {
        OutlineGroup {
            id: OutlineGroupId::new(g.id),
            name: GroupName::new(g.name),
            external_id: g.external_id.filter(|e| !e.is_empty()),
        }
    }
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
    #[serde(default)]
    pagination: Option<Pagination>,
}

#[derive(Deserialize)]
struct Pagination {
    #[serde(default)]
    total: Option<u64>,
}

#[derive(Deserialize)]
struct GroupsPage {
    groups: Vec<RawGroup>,
}

#[derive(Deserialize)]
struct MembershipsPage {
    #[serde(rename = "groupMemberships")]
    group_memberships: Vec<RawMembership>,
}

#[derive(Deserialize)]
struct RawMembership {
    #[serde(rename = "userId")]
    user_id: String,
    #[serde(default)]
    permission: Option<String>,
}

/// What `groups.create` can answer besides success: the name is taken (case-insensitively, docs/src/upstream/outline.md §6.1).
pub enum CreateOutcome {
    Created(OutlineGroup),
    NameTaken,
}

impl OutlineClient {
    pub fn new(
        settings: &UpstreamSettings,
        rate: RateLimit,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<OutlineClient, crate::clients::ClientBuildError> {
        let http = crate::clients::http_client("outline", timeout)?;
        Ok(OutlineClient {
            http,
            base: Arc::from(settings.url.as_str()),
            token: settings.token.clone(),
            limiter: Arc::new(OutlineLimiter::new(rate)),
            metrics,
            lane: Lane::Interactive,
            policy: RetryPolicy::default(),
        })
    }

    /// The same client, queued in another lane of the rate limiter.
    pub fn in_lane(&self, lane: Lane) -> OutlineClient {
        OutlineClient {
            lane,
            ..self.clone()
        }
    }

    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> OutlineClient {
        self.policy = policy;
        self
    }

    pub fn limiter(&self) -> &OutlineLimiter {
        &self.limiter
    }

    async fn rpc<T: DeserializeOwned>(
        &self,
        method: &str,
        body: Value,
    ) -> Result<Envelope<T>, UpstreamError> {
        let url = format!("{}/api/{method}", self.base);
        let pause = |wait: Duration| self.limiter.pause_for(wait);
        let call = Call {
            upstream: UPSTREAM,
            name: method,
            metrics: &self.metrics,
            policy: self.policy,
            on_throttled: Some(&pause),
        };
        let create = method == "groups.create";
        let resp = call
            .execute(
                || async move {
                    if create {
                        self.limiter.acquire_create().await;
                    }
                    self.limiter.acquire(self.lane).await
                },
                || {
                    self.http
                        .post(&url)
                        .bearer_auth(self.token.expose())
                        // An Accept that prefers HTML gets an HTML error page (docs/src/upstream/outline.md §3.6).
                        .header(reqwest::header::ACCEPT, "application/json")
                        .json(&body)
                        .send()
                },
            )
            .await?;
        let bytes = resp.bytes().await.map_err(|e| UpstreamError::Transport {
            upstream: UPSTREAM,
            call: method.to_string(),
            message: format!("reading the answer: {}", e.without_url()),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| UpstreamError::Decode {
            upstream: UPSTREAM,
            call: method.to_string(),
            message: e.to_string(),
        })
    }

    /// Reads every page of a listing. Outline sends `nextPath` even on the last page (docs/src/upstream/outline.md §9), so a short page
    /// ends the walk; the rows are then checked against `total`, so a listing that shifted while it was read
    /// (rows added or removed between pages) is an error, not a silently wrong snapshot.
    async fn list_all<T, R>(
        &self,
        method: &str,
        body: Value,
        extract: impl Fn(R) -> Vec<T>,
    ) -> Result<Vec<T>, UpstreamError>
    where
        R: DeserializeOwned,
    {
        // A listing that moved while it was read is read again at once, a few times, before the job fails.
        let mut attempt = 1;
        loop {
            match self.list_once(method, body.clone(), &extract).await {
                Err(UpstreamError::Incomplete { .. }) if attempt < LISTING_ATTEMPTS => attempt += 1,
                other => return other,
            }
        }
    }

    async fn list_once<T, R>(
        &self,
        method: &str,
        body: Value,
        extract: &impl Fn(R) -> Vec<T>,
    ) -> Result<Vec<T>, UpstreamError>
    where
        R: DeserializeOwned,
    {
        let mut rows = Vec::new();
        let mut total = None;
        loop {
            let mut page_body = body.clone();
            page_body["limit"] = json!(PAGE_LIMIT);
            page_body["offset"] = json!(rows.len());
            let page: Envelope<R> = self.rpc(method, page_body).await?;
            total = page.pagination.and_then(|p| p.total).or(total);
            let batch = extract(page.data);
            let n = batch.len();
            rows.extend(batch);
            if n < PAGE_LIMIT {
                break;
            }
        }
        if let Some(total) = total {
            if total != rows.len() as u64 {
                return Err(UpstreamError::Incomplete {
                    upstream: UPSTREAM,
                    call: method.to_string(),
                    message: format!("read {} rows but the server counts {total}", rows.len()),
                });
            }
        }
        Ok(rows)
    }

    /// `users.info` by id. The webhook carries no email (docs/src/upstream/outline.md §2.3); the admin key reads it
    /// here. An unknown or deleted user answers 403, not 404 (docs/src/upstream/outline.md §3.6), and so does a
    /// key that cannot read users (scope) or whose owner is suspended. The two are told apart by asking for the
    /// key's owner: when that works, the user is gone (`None`); when it fails, the key is the problem, which is
    /// an error the job retries and `/readyz` reports, never a sign-in silently dropped.
    pub async fn user(&self, id: &OutlineUserId) -> Result<Option<OutlineUser>, UpstreamError> {
        match self
            .rpc::<RawUser>("users.info", json!({ "id": id.as_str() }))
            .await
        {
            Ok(env) => Ok(Some(env.data.into())),
            Err(e) if e.status() == Some(403) => match self.key_owner().await {
                Ok(_) => Ok(None),
                Err(key) => {
                    self.metrics
                        .upstream_up
                        .with_label_values(&[UPSTREAM])
                        .set(0);
                    Err(UpstreamError::Status {
                        upstream: UPSTREAM,
                        call: "users.info".into(),
                        status: 401,
                        message: format!("the API key cannot read users: {key}"),
                    })
                }
            },
            Err(e) => Err(e),
        }
    }

    /// `users.info` without an id returns the key's owner (docs/src/upstream/outline.md §3.4): used by `check`.
    pub async fn key_owner(&self) -> Result<OutlineUser, UpstreamError> {
        Ok(self
            .rpc::<RawUser>("users.info", json!({}))
            .await?
            .data
            .into())
    }

    /// Finds a user by email without case. `users.list {emails}` lowercases its input and matches exactly, so
    /// it misses mixed-case stored emails (docs/src/upstream/outline.md §6.7); `query` is a case-insensitive substring match, and the
    /// exact comparison is made here.
    pub async fn find_user_by_email(
        &self,
        email: &Email,
    ) -> Result<Option<OutlineUser>, UpstreamError> {
        let users: Vec<OutlineUser> = self
            .list_all("users.list", json!({ "query": email.as_str(), "filter": "all", "sort": "createdAt", "direction": "ASC" }), |d: Vec<RawUser>| {
                d.into_iter().map(OutlineUser::from).collect()
            })
            .await?;
        Ok(users.into_iter().find(|u| u.email.as_ref() == Some(email)))
    }

    /// Every user, suspended ones included (`filter: "all"`, admins only, docs/src/upstream/outline.md §3.4).
    pub async fn list_users(&self) -> Result<Vec<OutlineUser>, UpstreamError> {
        self.list_all(
            "users.list",
            json!({ "filter": "all", "sort": "createdAt", "direction": "ASC" }),
            |d: Vec<RawUser>| d.into_iter().map(OutlineUser::from).collect(),
        )
        .await
    }

    /// Every user who has `role` now, suspended ones included: the people a change to a `ROLE_MAP` group may
    /// have to move back, and the admins the last-admin guard counts.
    pub async fn users_with_role(&self, role: &str) -> Result<Vec<OutlineUser>, UpstreamError> {
        self.list_all(
            "users.list",
            json!({ "role": role, "filter": "all", "sort": "createdAt", "direction": "ASC" }),
            |d: Vec<RawUser>| d.into_iter().map(OutlineUser::from).collect(),
        )
        .await
    }

    /// These users, suspended ones included, 100 ids a call. Never sends an empty `ids`.
    pub async fn users_by_ids(
        &self,
        ids: &[OutlineUserId],
    ) -> Result<Vec<OutlineUser>, UpstreamError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(PAGE_LIMIT) {
            let ids: Vec<&str> = chunk.iter().map(OutlineUserId::as_str).collect();
            out.extend(
                self.list_all(
                    "users.list",
                    json!({ "ids": ids, "filter": "all", "sort": "createdAt", "direction": "ASC" }),
                    |d: Vec<RawUser>| d.into_iter().map(OutlineUser::from).collect(),
                )
                .await?,
            );
        }
        Ok(out)
    }

    /// The number of users and the newest one (`users.list` sorted by creation, one row): enough to tell
    /// whether a cached index of users is still complete.
    pub async fn newest_user(&self) -> Result<(u64, Option<OutlineUserId>), UpstreamError> {
        let body = json!({ "filter": "all", "sort": "createdAt", "direction": "DESC", "limit": 1, "offset": 0 });
        let page: Envelope<Vec<RawUser>> = self.rpc("users.list", body).await?;
        let total = page.pagination.and_then(|p| p.total).unwrap_or(0);
        Ok((
            total,
            page.data
                .into_iter()
                .next()
                .map(|u| OutlineUserId::new(u.id)),
        ))
    }

    /// Every group, in creation order so pages stay stable while groups are renamed.
    pub async fn list_groups(&self) -> Result<Vec<OutlineGroup>, UpstreamError> {
        self.list_all(
            "groups.list",
            json!({ "sort": "createdAt", "direction": "ASC" }),
            |d: GroupsPage| d.groups.into_iter().map(OutlineGroup::from).collect(),
        )
        .await
    }

    /// The groups a user is in: one call for up to 100 groups instead of one call per group.
    pub async fn groups_of_user(
        &self,
        user: &OutlineUserId,
    ) -> Result<BTreeSet<OutlineGroupId>, UpstreamError> {
        let groups = self
            .list_all(
                "groups.list",
                json!({ "userId": user.as_str(), "sort": "createdAt", "direction": "ASC" }),
                |d: GroupsPage| {
                    d.groups
                        .into_iter()
                        .map(|g| OutlineGroupId::new(g.id))
                        .collect()
                },
            )
            .await?;
        Ok(groups.into_iter().collect())
    }

    /// A group's full member list with permissions (`groups.list` only previews six, docs/src/upstream/outline.md §3.4).
    ///
    /// Memberships come newest first and are paged by offset, so a walk over several pages can miss a row when
    /// one member leaves and another joins between two page reads: the count still matches, but the newcomer
    /// is on a page already read. A missed member would be "added" again, which demotes a group admin
    /// (docs/src/upstream/outline.md §6.3). After a walk of more than one page the first page is read again; if it
    /// changed, so did the listing, and the walk starts over.
    pub async fn group_members(
        &self,
        group: &OutlineGroupId,
    ) -> Result<BTreeMap<OutlineUserId, Permission>, UpstreamError> {
        let body = json!({ "id": group.as_str() });
        let mut attempt = 1;
        let rows = loop {
            let rows = self
                .list_all("groups.memberships", body.clone(), |d: MembershipsPage| {
                    d.group_memberships
                })
                .await?;
            if rows.len() < PAGE_LIMIT {
                break rows;
            }
            let mut first_page = body.clone();
            first_page["limit"] = json!(PAGE_LIMIT);
            first_page["offset"] = json!(0);
            let again: Envelope<MembershipsPage> =
                self.rpc("groups.memberships", first_page).await?;
            let before: Vec<&str> = rows[..PAGE_LIMIT]
                .iter()
                .map(|m| m.user_id.as_str())
                .collect();
            let now: Vec<&str> = again
                .data
                .group_memberships
                .iter()
                .map(|m| m.user_id.as_str())
                .collect();
            if before == now {
                break rows;
            }
            if attempt >= LISTING_ATTEMPTS {
                return Err(UpstreamError::Incomplete {
                    upstream: UPSTREAM,
                    call: "groups.memberships".into(),
                    message: "the member list kept changing while it was read".into(),
                });
            }
            attempt += 1;
        };
        Ok(rows
            .into_iter()
            .map(|m| {
                let permission = if m.permission.as_deref() == Some("admin") {
                    Permission::Admin
                } else {
                    Permission::Member
                };
                (OutlineUserId::new(m.user_id), permission)
            })
            .collect())
    }

    /// Creates a group with its `externalId`. Names are unique without case and the check is racy (docs/src/upstream/outline.md §6.1), so
    /// the 400 "already in use" is reported as `NameTaken` for the caller to link to the existing group.
    pub async fn create_group(
        &self,
        name: &GroupName,
        external_id: &str,
    ) -> Result<CreateOutcome, UpstreamError> {
        let body = json!({ "name": name.as_str(), "externalId": external_id });
        match self.rpc::<RawGroup>("groups.create", body).await {
            Ok(env) => Ok(CreateOutcome::Created(env.data.into())),
            // Other 400s (a URL in the name, a name too long) are refusals for the caller to keep to the group.
            Err(UpstreamError::Status {
                status: 400,
                ref message,
                ..
            }) if message.contains("already in use") => Ok(CreateOutcome::NameTaken),
            Err(e) => Err(e),
        }
    }

    pub async fn set_external_id(
        &self,
        group: &OutlineGroupId,
        external_id: &str,
    ) -> Result<(), UpstreamError> {
        self.rpc::<Value>(
            "groups.update",
            json!({ "id": group.as_str(), "externalId": external_id }),
        )
        .await
        .map(|_| ())
    }

    pub async fn rename_group(
        &self,
        group: &OutlineGroupId,
        name: &GroupName,
    ) -> Result<(), UpstreamError> {
        self.rpc::<Value>(
            "groups.update",
            json!({ "id": group.as_str(), "name": name.as_str() }),
        )
        .await
        .map(|_| ())
    }

    /// Adds a user who is not yet a member. `permission` is explicit; callers never add an existing member,
    /// because for one the call would overwrite their permission and demote a group admin (docs/src/upstream/outline.md §6.3).
    pub async fn add_user(
        &self,
        group: &OutlineGroupId,
        user: &OutlineUserId,
    ) -> Result<(), UpstreamError> {
        self.rpc::<Value>(
            "groups.add_user",
            json!({ "id": group.as_str(), "userId": user.as_str(), "permission": "member" }),
        )
        .await
        .map(|_| ())
    }

    /// Removing a non-member is a harmless no-op (docs/src/upstream/outline.md §6.4).
    pub async fn remove_user(
        &self,
        group: &OutlineGroupId,
        user: &OutlineUserId,
    ) -> Result<(), UpstreamError> {
        self.rpc::<Value>(
            "groups.remove_user",
            json!({ "id": group.as_str(), "userId": user.as_str() }),
        )
        .await
        .map(|_| ())
    }

    /// `users.update_role` (admin-only; docs/src/upstream/outline.md §3.4). Outline refuses "already in that role"
    /// and the caller's own account; the planner sends neither.
    pub async fn update_role(&self, user: &OutlineUserId, role: &str) -> Result<(), UpstreamError> {
        self.rpc::<Value>(
            "users.update_role",
            json!({ "id": user.as_str(), "role": role }),
        )
        .await
        .map(|_| ())
    }

    /// `users.suspend`: the account keeps its group memberships (docs/src/upstream/outline.md §6.6).
    pub async fn suspend(&self, user: &OutlineUserId) -> Result<(), UpstreamError> {
        self.rpc::<Value>("users.suspend", json!({ "id": user.as_str() }))
            .await
            .map(|_| ())
    }

    pub async fn activate(&self, user: &OutlineUserId) -> Result<(), UpstreamError> {
        self.rpc::<Value>("users.activate", json!({ "id": user.as_str() }))
            .await
            .map(|_| ())
    }

    /// `users.invite` (docs/src/upstream/outline.md §6.8): placeholder accounts that the person's first sign-in
    /// claims by email. Outline skips an address it already has (compared lowercased) and lists it as unsent.
    /// The call has its own limit, 50 requests an hour, so its 429 is returned at once, with the wait asked
    /// for, rather than waited out or allowed to pause the other calls: the invite book waits instead.
    pub async fn invite(
        &self,
        invites: &[Invitation],
        suppress_email: bool,
    ) -> Result<InviteAnswer, UpstreamError> {
        #[derive(Deserialize)]
        struct RawAnswer {
            #[serde(default)]
            unsent: Vec<Value>,
            #[serde(default)]
            users: Vec<RawUser>,
        }
        // One attempt: every request counts against the hour's 50, so the invite book counts and retries.
        let once = self.clone().with_retry_policy(RetryPolicy {
            attempts: 1,
            throttled_attempts: 1,
            ..self.policy
        });
        let body = json!({
            "invites": invites
                .iter()
                .map(|i| json!({ "email": i.email.as_str(), "name": i.name, "role": i.role }))
                .collect::<Vec<_>>(),
            "suppressEmail": suppress_email,
        });
        let answer = once.rpc::<RawAnswer>("users.invite", body).await?.data;
        Ok(InviteAnswer {
            created: answer.users.into_iter().map(OutlineUser::from).collect(),
            already_there: answer.unsent.len(),
        })
    }

    /// The group calls this key may not make, found without writing anything: each call the bridge writes
    /// with is sent with an id that does not exist (or, for `groups.create`, no name). A key allowed the call
    /// gets past the scope check to "Authorization error" (unknown id) or a 400 (no name); a key without the
    /// scope gets "API key does not have access to this resource" (docs/src/upstream/outline.md §3.5, §3.6).
    /// Route scopes can allow one call and not another, so every call is probed.
    pub async fn missing_group_scopes(&self) -> Result<Vec<&'static str>, UpstreamError> {
        const NIL: &str = "00000000-0000-4000-8000-000000000000";
        let probes: [(&'static str, Value); 5] = [
            ("groups.memberships", json!({ "id": NIL, "limit": 1 })),
            (
                "groups.add_user",
                json!({ "id": NIL, "userId": NIL, "permission": "member" }),
            ),
            ("groups.remove_user", json!({ "id": NIL, "userId": NIL })),
            ("groups.update", json!({ "id": NIL })),
            ("groups.create", json!({})),
        ];
        self.missing_scopes(probes).await
    }

    /// The same probe for the user calls of `ROLE_MAP` and `SUSPEND_DEACTIVATED`, which need `users:write`
    /// (docs/src/upstream/outline.md §3.5). `users.invite` is not probed: its limiter counts every request,
    /// even a refused one, against the hour's 50.
    pub async fn missing_user_scopes(&self) -> Result<Vec<&'static str>, UpstreamError> {
        const NIL: &str = "00000000-0000-4000-8000-000000000000";
        let probes: [(&'static str, Value); 3] = [
            ("users.update_role", json!({ "id": NIL, "role": "member" })),
            ("users.suspend", json!({ "id": NIL })),
            ("users.activate", json!({ "id": NIL })),
        ];
        self.missing_scopes(probes).await
    }

    async fn missing_scopes<const N: usize>(
        &self,
        probes: [(&'static str, Value); N],
    ) -> Result<Vec<&'static str>, UpstreamError> {
        let mut missing = Vec::new();
        for (method, body) in probes {
            match self.rpc::<Value>(method, body).await {
                Ok(_) => {}
                Err(UpstreamError::Status {
                    status: 403,
                    message,
                    ..
                }) if message.contains("does not have access") => missing.push(method),
                // Past the scope check: a refusal of the made-up id (404 from the user calls).
                Err(UpstreamError::Status {
                    status: 400 | 403 | 404,
                    ..
                }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(missing)
    }
}
