//! A stateful fake of the Authentik 2026.8 core API (docs/src/upstream/authentik.md §7) that also plays
//! the notification pipeline of docs/src/upstream/authentik.md §12: every change records the event Authentik would create and,
//! when a webhook is set, posts the project's v1 body-mapping document for it.
//!
//! HTTP surface: `GET /api/v3/core/users/`, `/core/users/{pk}/`, `/core/users/me/`,
//! `/core/groups/`, `/core/groups/{uuid}/` (dashed or 32-hex), and `POST
//! /core/groups/{uuid}/add_user/` and `remove_user/` (body `{"pk": n}`, 204). DRF's answers are
//! copied: 403 with `{"detail": …}` for a missing or bad token (authentik's `TokenAuthentication`
//! sets no `WWW-Authenticate`, so DRF answers 403, not 401), 404 `{"detail": "Invalid page."}` past
//! the last page, `next`/`previous` 0 when there is no such page (docs/src/upstream/authentik.md §7.2), and the page-size cap.
//!
//! Simplifications: no roles (always empty), `search` is a plain case-insensitive substring match
//! (no AKQL), `autocomplete` is `{}`, and the webhook retries back off from 50 ms (doubling) instead
//! of Dramatiq's 15 s, so tests of the retry path finish in under two seconds (docs/src/upstream/authentik.md §2.5 has the real
//! schedule).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use actix_web::dev::ServerHandle;
use actix_web::http::{Method, StatusCode};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use rand::Rng;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{http_post, iso_micros, new_uuid, parse_query};

/// First pk handed out by [`FakeAuthentik::add_user`].
const FIRST_USER_PK: i64 = 1000;
/// The built-in admin's pk.
const AKADMIN_PK: i64 = 4;
/// Dramatiq's `worker.task_max_retries` (docs/src/upstream/authentik.md §2.5).
const MAX_RETRIES: u32 = 5;
/// First retry delay in the fake; doubles each time (the real base is 15 s, docs/src/upstream/authentik.md §2.5).
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// `http_timeout` (docs/src/upstream/authentik.md §2.4).
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(30);
const USER_AGENT: &str = "authentik@2026.8.0";

/// Settings of a [`FakeAuthentik`].
#[derive(Clone, Debug)]
pub struct FakeAuthentikOptions {
    /// The only API token the fake accepts; it belongs to `akadmin`.
    pub api_token: String,
    /// `pagination_max_page_size` (docs/src/upstream/authentik.md §7.2).
    pub max_page_size: usize,
    /// `pagination_default_page_size` (docs/src/upstream/authentik.md §7.2).
    pub default_page_size: usize,
    /// Delay added before every answer.
    pub latency: Duration,
}

impl Default for FakeAuthentikOptions {
    fn default() -> Self {
        const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        let mut rng = rand::rng();
        let key: String = (0..60)
            .map(|_| ALNUM[rng.random_range(0..ALNUM.len())] as char)
            .collect();
        FakeAuthentikOptions {
            api_token: key,
            max_page_size: 100,
            default_page_size: 20,
            latency: Duration::ZERO,
        }
    }
}

/// One request the fake answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthentikCall {
    /// `GET` or `POST`.
    pub method: String,
    /// The path, e.g. `/api/v3/core/groups/`.
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    /// The status the fake answered.
    pub status: u16,
}

/// A group as the fake stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeAuthentikGroup {
    /// Dashed UUID.
    pub pk: String,
    /// The group's name.
    pub name: String,
    /// Members are superusers.
    pub is_superuser: bool,
    /// Dashed UUIDs of the direct parents.
    pub parents: Vec<String>,
    /// Direct members' pks, ascending.
    pub users: Vec<i64>,
}

/// One attempt to post an event document to the webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookDelivery {
    /// The delivered document's `event_pk`.
    pub event_pk: String,
    /// 0 for the first try, 1..=5 for the retries.
    pub attempt: u32,
    /// The receiver's status, or None when the request failed.
    pub status: Option<u16>,
    /// The transport error, when there was no answer.
    pub error: Option<String>,
}

#[derive(Clone, Debug)]
struct AkUser {
    pk: i64,
    username: String,
    name: String,
    email: String,
    is_active: bool,
    uuid: String,
    date_joined: SystemTime,
    last_updated: SystemTime,
    user_type: &'static str,
    path: &'static str,
}

#[derive(Clone, Debug)]
struct AkGroup {
    uuid: String,
    name: String,
    is_superuser: bool,
    parents: Vec<String>,
    users: BTreeSet<i64>,
}

struct Webhook {
    url: String,
    bearer: Option<String>,
}

struct State {
    token: String,
    install_id: String,
    owner_pk: i64,
    users: BTreeMap<i64, AkUser>,
    groups: BTreeMap<String, AkGroup>,
    next_pk: i64,
    max_page_size: usize,
    default_page_size: usize,
    calls: Vec<AuthentikCall>,
    latency: Duration,
    /// Delay between reading the state and answering: a read that is stale by the time it arrives.
    answer_delay: Duration,
    fail_remaining: usize,
    fail_status: u16,
    down: bool,
    partial_pages: bool,
    /// Group answers carry `users_obj: null` even when members were asked for: a broken proxy or
    /// serializer, which the client must treat as an error, never as an empty group.
    omit_member_lists: bool,
    forbidden: bool,
    /// Notification transports, as the API presents them (docs/src/upstream/authentik.md §2).
    transports: Vec<Value>,
    /// The token may read users and groups but not transports (no `view_notificationtransport`).
    transports_forbidden: bool,
    licensed: bool,
    webhook: Option<Webhook>,
    events: Vec<Value>,
    /// Documents recorded but not yet handed to a delivery task.
    pending: Vec<Value>,
    deliveries: Vec<WebhookDelivery>,
    /// The runtime `start` ran on, for deliveries triggered from outside any runtime.
    runtime: tokio::runtime::Handle,
}

type Answer = (u16, Option<Value>);

fn detail(status: u16, text: &str) -> Answer {
    (status, Some(json!({ "detail": text })))
}

/// `"3b9f…"` or `"3b9f1d6e-…"` (any case, optional braces or `urn:uuid:`) to the dashed form;
/// Django's `UUIDField` accepts all of these, so `model.pk` from an event works as-is (docs/src/upstream/authentik.md §7.3).
fn normalize_uuid(s: &str) -> Option<String> {
    let s = s.trim();
    let s = s.strip_prefix("urn:uuid:").unwrap_or(s);
    let s = s.trim_start_matches('{').trim_end_matches('}');
    let hex: String = s
        .chars()
        .filter(|c| *c != '-')
        .collect::<String>()
        .to_ascii_lowercase();
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    Some(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

fn hex_pk(uuid: &str) -> String {
    uuid.replace('-', "")
}

/// `Group.num_pk`: the first five decimal digits of the UUID as an integer.
fn num_pk(uuid: &str) -> i64 {
    let n = u128::from_str_radix(&hex_pk(uuid), 16).unwrap_or(0);
    n.to_string()
        .chars()
        .take(5)
        .collect::<String>()
        .parse()
        .unwrap_or(0)
}

/// django-filter's `BooleanWidget`: anything else means "no filter".
fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// The serializers' `include_*` switches compare `str(value).lower() == "true"`.
fn include(q: &Query, key: &str, default: bool) -> bool {
    match q.get(key) {
        Some(v) => v.eq_ignore_ascii_case("true"),
        None => default,
    }
}

struct Query(Vec<(String, String)>);

impl Query {
    /// Django's `QueryDict.get` answers the last value of a repeated key.
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    /// A filter value; django-filter skips empty ones.
    fn filter(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }
    fn get_list(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Python `int()` on a query value.
fn py_int(s: &str) -> Option<i64> {
    let t = s.trim();
    let t = t.strip_prefix('+').unwrap_or(t);
    if t.is_empty() || t.starts_with('+') {
        return None;
    }
    t.parse::<i64>().ok()
}

/// `json.dumps` with Python's defaults, as Authentik's `requests` encodes the webhook body (docs/src/upstream/authentik.md §12):
/// `", "` and `": "` separators, non-ASCII escaped as `\uXXXX`.
pub fn python_json(v: &Value) -> String {
    let mut out = String::new();
    write_python_json(v, &mut out);
    out
}

fn write_python_json(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_python_str(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python_json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python_str(k, out);
                out.push_str(": ");
                write_python_json(item, out);
            }
            out.push('}');
        }
    }
}

fn write_python_str(s: &str, out: &mut String) {
    use std::fmt::Write as _;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The v1 body-mapping document for one event (DESIGN.md "body mapping document"): `event_pk`
/// dashed, `app` the audit middleware, `created` in Python's isoformat with `Z`, `model` as stored
/// in `event.context["model"]` (null when absent), and `diff` only when given.
pub fn event_document(action: &str, model: Option<Value>, diff: Option<Value>) -> Value {
    let mut doc = json!({
        "schema": "authentik-bridge/v1",
        "event_pk": new_uuid(),
        "action": action,
        "app": "authentik.events.middleware",
        "created": iso_micros(SystemTime::now()),
        "model": model.unwrap_or(Value::Null),
    });
    if let (Some(diff), Some(obj)) = (diff, doc.as_object_mut()) {
        obj.insert("diff".into(), diff);
    }
    doc
}

/// What the transport's Test button sends through the body mapping: action
/// `custom_notification_test`, no model (docs/src/upstream/authentik.md §3.5, §12).
pub fn test_button_document() -> Value {
    json!({
        "schema": "authentik-bridge/v1",
        "event_pk": new_uuid(),
        "action": "custom_notification_test",
        "app": "authentik.events.api.notification_transports",
        "created": iso_micros(SystemTime::now()),
        "model": Value::Null,
    })
}

fn group_model(g: &AkGroup) -> Value {
    // `Event.new` sanitizes the UUID pk to `.hex` (docs/src/upstream/authentik.md §4.2).
    json!({ "pk": hex_pk(&g.uuid), "app": "authentik_core", "name": g.name, "model_name": "group" })
}

fn user_model(u: &AkUser) -> Value {
    // The display name, not the username (docs/src/upstream/authentik.md §4.2).
    json!({ "pk": u.pk, "app": "authentik_core", "name": u.name, "model_name": "user" })
}

impl State {
    fn new_pk(&mut self) -> i64 {
        let pk = self.next_pk;
        self.next_pk += 1;
        pk
    }

    /// A group by dashed or hex UUID, or, for the seeding methods' convenience, by exact name.
    fn resolve_group(&self, group: &str) -> Option<String> {
        if let Some(uuid) = normalize_uuid(group) {
            if self.groups.contains_key(&uuid) {
                return Some(uuid);
            }
        }
        self.groups
            .values()
            .find(|g| g.name == group)
            .map(|g| g.uuid.clone())
    }

    fn uid(&self, pk: i64) -> String {
        hex::encode(Sha256::digest(
            format!("{pk}-{}", self.install_id).as_bytes(),
        ))
    }

    fn direct_groups(&self, pk: i64) -> Vec<&AkGroup> {
        let mut groups: Vec<&AkGroup> = self
            .groups
            .values()
            .filter(|g| g.users.contains(&pk))
            .collect();
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        groups
    }

    /// Direct groups plus all their ancestors: `User.all_groups()` (docs/src/upstream/authentik.md §7.5).
    fn all_groups(&self, pk: i64) -> Vec<&AkGroup> {
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut stack: Vec<String> = self
            .direct_groups(pk)
            .iter()
            .map(|g| g.uuid.clone())
            .collect();
        while let Some(uuid) = stack.pop() {
            if !seen.insert(uuid.clone()) {
                continue;
            }
            if let Some(g) = self.groups.get(&uuid) {
                stack.extend(g.parents.iter().cloned());
            }
        }
        let mut groups: Vec<&AkGroup> = seen.iter().filter_map(|u| self.groups.get(u)).collect();
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        groups
    }

    fn is_superuser(&self, pk: i64) -> bool {
        self.all_groups(pk).iter().any(|g| g.is_superuser)
    }

    fn avatar(u: &AkUser) -> String {
        let digest = hex::encode(Sha256::digest(u.email.trim().to_lowercase().as_bytes()));
        format!("https://www.gravatar.com/avatar/{digest}?size=158&rating=g&default=404")
    }

    fn partial_user(&self, u: &AkUser) -> Value {
        json!({
            "pk": u.pk,
            "username": u.username,
            "name": u.name,
            "is_active": u.is_active,
            "last_login": Value::Null,
            "email": u.email,
            "attributes": {},
            "uid": self.uid(u.pk),
        })
    }

    fn partial_group(g: &AkGroup) -> Value {
        json!({
            "pk": g.uuid,
            "num_pk": num_pk(&g.uuid),
            "name": g.name,
            "is_superuser": g.is_superuser,
            "attributes": {},
        })
    }

    fn related_group(g: &AkGroup) -> Value {
        json!({
            "pk": g.uuid,
            "name": g.name,
            "is_superuser": g.is_superuser,
            "attributes": {},
            "group_uuid": g.uuid,
        })
    }

    /// `UserSerializer` (docs/src/upstream/authentik.md §7.4): direct groups only.
    fn present_user(&self, u: &AkUser, q: &Query) -> Value {
        let groups = self.direct_groups(u.pk);
        let stamp = iso_micros(u.last_updated);
        json!({
            "pk": u.pk,
            "username": u.username,
            "name": u.name,
            "is_active": u.is_active,
            "last_login": Value::Null,
            "date_joined": iso_micros(u.date_joined),
            "is_superuser": self.is_superuser(u.pk),
            "groups": groups.iter().map(|g| g.uuid.clone()).collect::<Vec<_>>(),
            "groups_obj": if include(q, "include_groups", true) {
                Value::Array(groups.iter().map(|g| Self::partial_group(g)).collect())
            } else {
                Value::Null
            },
            "roles": [],
            "roles_obj": if include(q, "include_roles", true) { json!([]) } else { Value::Null },
            "email": u.email,
            "avatar": Self::avatar(u),
            "attributes": {},
            "uid": self.uid(u.pk),
            "path": u.path,
            "type": u.user_type,
            "uuid": u.uuid,
            "password_change_date": iso_micros(u.date_joined),
            "last_updated": stamp,
        })
    }

    fn children(&self, uuid: &str) -> Vec<&AkGroup> {
        let mut children: Vec<&AkGroup> = self
            .groups
            .values()
            .filter(|g| g.parents.iter().any(|p| p == uuid))
            .collect();
        children.sort_by(|a, b| a.name.cmp(&b.name));
        children
    }

    /// `GroupSerializer` (docs/src/upstream/authentik.md §7.3): `users_obj` null with `include_users=false`; `parents_obj` and
    /// `children_obj` only when asked for.
    fn present_group(&self, g: &AkGroup, q: &Query) -> Value {
        let members: Vec<&AkUser> = g.users.iter().filter_map(|pk| self.users.get(pk)).collect();
        let parents: Vec<&AkGroup> = g
            .parents
            .iter()
            .filter_map(|p| self.groups.get(p))
            .collect();
        let children = self.children(&g.uuid);
        json!({
            "pk": g.uuid,
            "num_pk": num_pk(&g.uuid),
            "name": g.name,
            "is_superuser": g.is_superuser,
            "parents": g.parents,
            "parents_obj": if include(q, "include_parents", false) {
                Value::Array(parents.iter().map(|p| Self::related_group(p)).collect())
            } else {
                Value::Null
            },
            "users": members.iter().map(|u| u.pk).collect::<Vec<_>>(),
            "users_obj": if include(q, "include_users", true) && !self.omit_member_lists {
                Value::Array(members.iter().map(|u| self.partial_user(u)).collect())
            } else {
                Value::Null
            },
            "attributes": {},
            "roles": [],
            "roles_obj": [],
            "inherited_roles_obj": if include(q, "include_inherited_roles", false) { json!([]) } else { Value::Null },
            "children": children.iter().map(|c| c.uuid.clone()).collect::<Vec<_>>(),
            "children_obj": if include(q, "include_children", false) {
                Value::Array(children.iter().map(|c| Self::related_group(c)).collect())
            } else {
                Value::Null
            },
        })
    }

    /// `UserSelfSerializer` inside `SessionUser` (2026.8 schema): groups include ancestors.
    fn present_me(&self, u: &AkUser) -> Value {
        let me = json!({
            "pk": u.pk,
            "username": u.username,
            "name": u.name,
            "is_active": u.is_active,
            "is_superuser": self.is_superuser(u.pk),
            "is_current": true,
            "groups": self
                .all_groups(u.pk)
                .iter()
                .map(|g| json!({ "name": g.name, "pk": g.uuid }))
                .collect::<Vec<_>>(),
            "roles": [],
            "email": u.email,
            "avatar": Self::avatar(u),
            "uid": self.uid(u.pk),
            "settings": {},
            "type": u.user_type,
            "system_permissions": [],
        });
        json!({ "user": me, "users": [me] })
    }

    /// DRF `PageNumberPagination` with authentik's page-size rules (docs/src/upstream/authentik.md §7.2).
    fn paginate<T: Clone>(&self, rows: Vec<T>, q: &Query) -> Result<(Vec<T>, Value), Answer> {
        let page_size = match q.get("page_size").and_then(py_int) {
            Some(n) if n > 0 => (n as usize).min(self.max_page_size),
            // Missing, zero, negative or not a number: the default (goauthentik/authentik#18879).
            _ => self.default_page_size,
        }
        .max(1);
        let count = rows.len();
        let total_pages = if count == 0 {
            1
        } else {
            count.div_ceil(page_size)
        };
        let raw = q.filter("page").unwrap_or("1");
        let page = if raw == "last" {
            total_pages as i64
        } else {
            py_int(raw).ok_or_else(|| detail(404, "Invalid page."))?
        };
        if page < 1 || page as usize > total_pages {
            return Err(detail(404, "Invalid page."));
        }
        let page = page as usize;
        let start = (page - 1) * page_size;
        let mut slice: Vec<T> = rows.into_iter().skip(start).take(page_size).collect();
        let start_index = if count == 0 { 0 } else { start + 1 };
        let end_index = if page == total_pages {
            count
        } else {
            page * page_size
        };
        if self.partial_pages {
            slice.pop();
        }
        let pagination = json!({
            "next": if page < total_pages { page + 1 } else { 0 },
            "previous": page.saturating_sub(1),
            "count": count,
            "current": page,
            "total_pages": total_pages,
            "start_index": start_index,
            "end_index": end_index,
        });
        Ok((slice, pagination))
    }

    fn list_users(&self, q: &Query) -> Result<Value, Answer> {
        let mut group_filter: Option<BTreeSet<String>> = None;
        for key in ["groups_by_pk", "groups_by_name"] {
            let values = q.get_list(key);
            if values.is_empty() {
                continue;
            }
            let mut set = group_filter.take().unwrap_or_default();
            let mut matched = BTreeSet::new();
            for v in values {
                let found = if key == "groups_by_pk" {
                    let Some(uuid) = normalize_uuid(v) else {
                        return Err((
                            400,
                            Some(json!({ key: [format!("“{v}” is not a valid value.")] })),
                        ));
                    };
                    self.groups.get(&uuid).map(|g| g.uuid.clone())
                } else {
                    self.groups
                        .values()
                        .find(|g| g.name == v)
                        .map(|g| g.uuid.clone())
                };
                match found {
                    Some(uuid) => {
                        matched.insert(uuid);
                    }
                    None => {
                        return Err((
                            400,
                            Some(
                                json!({ key: [format!("Select a valid choice. {v} is not one of the available choices.")] }),
                            ),
                        ))
                    }
                }
            }
            set.extend(matched);
            group_filter = Some(set);
        }
        let search = q
            .get("search")
            .filter(|s| !s.is_empty())
            .map(str::to_lowercase);
        let mut rows: Vec<&AkUser> = self
            .users
            .values()
            .filter(|u| q.filter("email").is_none_or(|e| u.email == e))
            .filter(|u| q.filter("username").is_none_or(|n| u.username == n))
            .filter(|u| q.filter("name").is_none_or(|n| u.name == n))
            .filter(|u| {
                q.filter("uuid")
                    .is_none_or(|id| Some(u.uuid.clone()) == normalize_uuid(id))
            })
            .filter(|u| {
                q.filter("is_active")
                    .and_then(parse_bool)
                    .is_none_or(|a| u.is_active == a)
            })
            .filter(|u| {
                q.filter("is_superuser")
                    .and_then(parse_bool)
                    .is_none_or(|s| self.direct_groups(u.pk).iter().any(|g| g.is_superuser) == s)
            })
            .filter(|u| {
                group_filter.as_ref().is_none_or(|set| {
                    set.iter().any(|uuid| {
                        self.groups
                            .get(uuid)
                            .is_some_and(|g| g.users.contains(&u.pk))
                    })
                })
            })
            .filter(|u| {
                search.as_ref().is_none_or(|s| {
                    [&u.email, &u.name, &u.username, &u.uuid]
                        .iter()
                        .any(|f| f.to_lowercase().contains(s.as_str()))
                })
            })
            .collect();
        let ordering = orderings(
            q,
            &[
                "pk",
                "id",
                "username",
                "name",
                "email",
                "is_active",
                "date_joined",
                "last_updated",
                "uuid",
            ],
            "username",
        );
        rows.sort_by(|a, b| {
            let mut ord = std::cmp::Ordering::Equal;
            for (field, desc) in &ordering {
                let o = match field.as_str() {
                    "pk" | "id" => a.pk.cmp(&b.pk),
                    "username" => a.username.cmp(&b.username),
                    "name" => a.name.cmp(&b.name),
                    "email" => a.email.cmp(&b.email),
                    "is_active" => a.is_active.cmp(&b.is_active),
                    "date_joined" => a.date_joined.cmp(&b.date_joined),
                    "last_updated" => a.last_updated.cmp(&b.last_updated),
                    "uuid" => a.uuid.cmp(&b.uuid),
                    _ => std::cmp::Ordering::Equal,
                };
                ord = ord.then(if *desc { o.reverse() } else { o });
            }
            ord.then(a.pk.cmp(&b.pk))
        });
        let (page, pagination) = self.paginate(rows, q)?;
        Ok(json!({
            "pagination": pagination,
            "results": page.iter().map(|u| self.present_user(u, q)).collect::<Vec<_>>(),
            "autocomplete": {},
        }))
    }

    fn list_groups(&self, q: &Query) -> Result<Value, Answer> {
        let mut member_filter: Option<BTreeSet<i64>> = None;
        let pks = q.get_list("members_by_pk");
        if !pks.is_empty() {
            let mut set = BTreeSet::new();
            for v in pks {
                let Some(pk) = py_int(v) else {
                    return Err((
                        400,
                        Some(json!({ "members_by_pk": [format!("“{v}” is not a valid value.")] })),
                    ));
                };
                if !self.users.contains_key(&pk) {
                    return Err((
                        400,
                        Some(
                            json!({ "members_by_pk": [format!("Select a valid choice. {v} is not one of the available choices.")] }),
                        ),
                    ));
                }
                set.insert(pk);
            }
            member_filter = Some(set);
        }
        let names = q.get_list("members_by_username");
        if !names.is_empty() {
            let mut set = member_filter.take().unwrap_or_default();
            for v in names {
                let Some(u) = self.users.values().find(|u| u.username == v) else {
                    return Err((
                        400,
                        Some(
                            json!({ "members_by_username": [format!("Select a valid choice. {v} is not one of the available choices.")] }),
                        ),
                    ));
                };
                set.insert(u.pk);
            }
            member_filter = Some(set);
        }
        let search = q
            .get("search")
            .filter(|s| !s.is_empty())
            .map(str::to_lowercase);
        let mut rows: Vec<&AkGroup> = self
            .groups
            .values()
            .filter(|g| q.filter("name").is_none_or(|n| g.name == n))
            .filter(|g| {
                q.filter("is_superuser")
                    .and_then(parse_bool)
                    .is_none_or(|s| g.is_superuser == s)
            })
            .filter(|g| {
                member_filter
                    .as_ref()
                    .is_none_or(|set| set.iter().any(|pk| g.users.contains(pk)))
            })
            .filter(|g| {
                search
                    .as_ref()
                    .is_none_or(|s| g.name.to_lowercase().contains(s.as_str()))
            })
            .collect();
        let ordering = orderings(q, &["pk", "name", "is_superuser"], "name");
        rows.sort_by(|a, b| {
            let mut ord = std::cmp::Ordering::Equal;
            for (field, desc) in &ordering {
                let o = match field.as_str() {
                    "pk" => a.uuid.cmp(&b.uuid),
                    "name" => a.name.cmp(&b.name),
                    "is_superuser" => a.is_superuser.cmp(&b.is_superuser),
                    _ => std::cmp::Ordering::Equal,
                };
                ord = ord.then(if *desc { o.reverse() } else { o });
            }
            ord.then(a.uuid.cmp(&b.uuid))
        });
        let (page, pagination) = self.paginate(rows, q)?;
        Ok(json!({
            "pagination": pagination,
            "results": page.iter().map(|g| self.present_group(g, q)).collect::<Vec<_>>(),
            "autocomplete": {},
        }))
    }

    // ---- events ----------------------------------------------------------------------------

    /// Records the document the bridge's notification rule would send for this event (docs/src/upstream/authentik.md §12).
    fn record(&mut self, action: &str, model: Value, diff: Option<Value>) {
        let diff = if self.licensed { diff } else { None };
        let doc = event_document(action, Some(model), diff);
        self.events.push(doc.clone());
        if self.webhook.is_some() {
            self.pending.push(doc);
        }
    }

    /// `group.users.add(user)`: one group `model_updated`, even when already a member (Django
    /// still sends `pre_add`, with an empty set; docs/src/upstream/authentik.md §4.5).
    fn add_member(&mut self, uuid: &str, pk: i64) {
        let Some(g) = self.groups.get_mut(uuid) else {
            return;
        };
        let added = g.users.insert(pk);
        let model = group_model(g);
        let diff = json!({ "users": { "add": if added { vec![pk] } else { vec![] } } });
        self.record("model_updated", model, Some(diff));
    }

    /// `group.users.remove(user)`: one group `model_updated`; `pre_remove` fires for non-members too.
    fn remove_member(&mut self, uuid: &str, pk: i64) {
        let Some(g) = self.groups.get_mut(uuid) else {
            return;
        };
        g.users.remove(&pk);
        let model = group_model(g);
        self.record(
            "model_updated",
            model,
            Some(json!({ "users": { "remove": [pk] } })),
        );
    }
}

/// DRF `OrderingFilter`: comma-separated fields, `-` for descending, unknown fields dropped; the
/// view's default when none is left.
fn orderings(q: &Query, valid: &[&str], default: &str) -> Vec<(String, bool)> {
    let parsed: Vec<(String, bool)> = q
        .get("ordering")
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(|f| match f.strip_prefix('-') {
            Some(name) => (name.to_string(), true),
            None => (f.to_string(), false),
        })
        .filter(|(f, _)| valid.contains(&f.as_str()))
        .collect();
    if parsed.is_empty() {
        vec![(default.to_string(), false)]
    } else {
        parsed
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Hands recorded documents to delivery tasks, one per event: like Authentik's worker, events are
/// delivered independently and may arrive out of order (docs/src/upstream/authentik.md §4.5).
fn flush(state: &Arc<Mutex<State>>) {
    let (docs, url, bearer, home) = {
        let mut st = lock(state);
        let docs = std::mem::take(&mut st.pending);
        match &st.webhook {
            Some(w) => (docs, w.url.clone(), w.bearer.clone(), st.runtime.clone()),
            None => return,
        }
    };
    let runtime = tokio::runtime::Handle::try_current().unwrap_or(home);
    for doc in docs {
        runtime.spawn(deliver(state.clone(), url.clone(), bearer.clone(), doc));
    }
}

/// One notification task: POST, and on a non-2xx answer or a transport error retry up to five
/// times (docs/src/upstream/authentik.md §2.5), here with a 50 ms doubling backoff.
async fn deliver(state: Arc<Mutex<State>>, url: String, bearer: Option<String>, doc: Value) {
    let body = python_json(&doc);
    let event_pk = doc
        .get("event_pk")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    // The order observed on the wire (docs/src/upstream/authentik.md §12): requests' defaults, then the mapped headers.
    let mut headers = vec![
        ("User-Agent".to_string(), USER_AGENT.to_string()),
        ("Accept-Encoding".to_string(), "gzip, deflate".to_string()),
        ("Accept".to_string(), "*/*".to_string()),
    ];
    if let Some(token) = bearer {
        headers.push(("Authorization".to_string(), format!("Bearer {token}")));
    }
    headers.push(("Content-Type".to_string(), "application/json".to_string()));
    let mut backoff = FIRST_BACKOFF;
    for attempt in 0..=MAX_RETRIES {
        let result = http_post(&url, &headers, body.as_bytes(), WEBHOOK_TIMEOUT).await;
        let (status, error) = match result {
            Ok((status, _)) => (Some(status), None),
            Err(e) => (None, Some(e.to_string())),
        };
        lock(&state).deliveries.push(WebhookDelivery {
            event_pk: event_pk.clone(),
            attempt,
            status,
            error,
        });
        if status.is_some_and(|s| (200..300).contains(&s)) || attempt == MAX_RETRIES {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff *= 2;
    }
}

fn route(
    state: &Arc<Mutex<State>>,
    req: &HttpRequest,
    raw: &[u8],
) -> (Answer, Vec<(String, String)>) {
    let mut st = lock(state);
    let path = req.path();
    if st.down {
        return (detail(503, "Service Unavailable"), vec![]);
    }
    if st.fail_remaining > 0 {
        st.fail_remaining -= 1;
        let status = st.fail_status;
        let text = StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error");
        return (detail(status, text), vec![]);
    }
    let Some(rest) = path.strip_prefix("/api/v3/") else {
        return (detail(404, "Not found."), vec![]);
    };
    // Django's APPEND_SLASH redirects a GET without the trailing slash.
    if !rest.ends_with('/') {
        if req.method() == Method::GET {
            let q = req.query_string();
            let location = if q.is_empty() {
                format!("{path}/")
            } else {
                format!("{path}/?{q}")
            };
            return ((301, None), vec![("Location".into(), location)]);
        }
        return (detail(404, "Not found."), vec![]);
    }
    let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let known = matches!(
        segments.as_slice(),
        ["core", "users"]
            | ["core", "users", _]
            | ["core", "groups"]
            | ["core", "groups", _]
            | ["core", "groups", _, "add_user" | "remove_user"]
            | ["events", "transports"]
    );
    if !known {
        return (detail(404, "Not found."), vec![]);
    }
    let is_write = segments.len() == 4;
    let allowed = if is_write { Method::POST } else { Method::GET };
    if req.method() != allowed {
        return (
            detail(405, &format!("Method \"{}\" not allowed.", req.method())),
            vec![],
        );
    }
    // TokenAuthentication (authentik/api/authentication.py).
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim();
    let token = match header.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Some(token),
        _ => None,
    };
    match token {
        None => {
            return (
                detail(403, "Authentication credentials were not provided."),
                vec![],
            )
        }
        Some(t) if t != st.token => return (detail(403, "Token invalid/expired"), vec![]),
        Some(_) => {}
    }
    let q = Query(parse_query(req.query_string()));
    let me = segments.get(2) == Some(&"me") && segments.len() == 3 && segments[1] == "users";
    if st.forbidden && !me {
        // ObjectFilter: no view permission at all is a 403, not an empty list (docs/src/upstream/authentik.md §7.7).
        return (
            detail(403, "You do not have permission to perform this action."),
            vec![],
        );
    }
    let answer = match segments.as_slice() {
        ["events", "transports"] if st.transports_forbidden => Err(detail(
            403,
            "You do not have permission to perform this action.",
        )),
        ["events", "transports"] => {
            let rows: Vec<Value> = st
                .transports
                .iter()
                .filter(|t| q.get("mode").is_none_or(|m| t["mode"] == m))
                .cloned()
                .collect();
            st.paginate(rows, &q).map(|(results, pagination)| {
                (
                    200,
                    Some(
                        json!({ "pagination": pagination, "results": results, "autocomplete": {} }),
                    ),
                )
            })
        }
        ["core", "users"] => st.list_users(&q).map(|v| (200, Some(v))),
        ["core", "users", "me"] => match st.users.get(&st.owner_pk) {
            Some(u) => Ok((200, Some(st.present_me(u)))),
            None => Err(detail(403, "Token invalid/expired")),
        },
        ["core", "users", id] => match py_int(id) {
            None => Err(detail(404, "Not found.")),
            Some(pk) => match st.users.get(&pk) {
                Some(u) => Ok((200, Some(st.present_user(u, &q)))),
                None => Err(detail(404, "No User matches the given query.")),
            },
        },
        ["core", "groups"] => st.list_groups(&q).map(|v| (200, Some(v))),
        ["core", "groups", id] => match normalize_uuid(id) {
            None => Err(detail(404, "Not found.")),
            Some(uuid) => match st.groups.get(&uuid) {
                Some(g) => Ok((200, Some(st.present_group(g, &q)))),
                None => Err(detail(404, "No Group matches the given query.")),
            },
        },
        ["core", "groups", id, action] => {
            let uuid = normalize_uuid(id).filter(|u| st.groups.contains_key(u));
            let body: Option<Value> = serde_json::from_slice(raw).ok();
            let pk = body.as_ref().and_then(|b| b.get("pk"));
            match (uuid, pk) {
                (None, _) => Err(detail(404, "No Group matches the given query.")),
                (Some(_), None) => Err((400, Some(json!({ "pk": ["This field is required."] })))),
                (Some(uuid), Some(pk)) => {
                    match pk.as_i64().or_else(|| pk.as_str().and_then(py_int)) {
                        None => Err((400, Some(json!({ "pk": ["A valid integer is required."] })))),
                        Some(pk) if !st.users.contains_key(&pk) => Err(detail(404, "Not found.")),
                        Some(pk) => {
                            if *action == "add_user" {
                                st.add_member(&uuid, pk);
                            } else {
                                st.remove_member(&uuid, pk);
                            }
                            Ok((204, None))
                        }
                    }
                }
            }
        }
        _ => Err(detail(404, "Not found.")),
    };
    (answer.unwrap_or_else(|e| e), vec![])
}

async fn handle(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Arc<Mutex<State>>>,
) -> HttpResponse {
    let latency = lock(&state).latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let ((status, payload), headers) = route(&state, &req, &body);
    {
        let mut st = lock(&state);
        st.calls.push(AuthentikCall {
            method: req.method().to_string(),
            path: req.path().to_string(),
            query: req.query_string().to_string(),
            status,
        });
    }
    flush(&state);
    let answer_delay = lock(&state).answer_delay;
    if !answer_delay.is_zero() {
        tokio::time::sleep(answer_delay).await;
    }
    let mut builder = HttpResponse::build(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
    );
    for (name, value) in &headers {
        builder.insert_header((name.as_str(), value.as_str()));
    }
    match payload {
        Some(v) => builder.content_type("application/json").body(v.to_string()),
        None => builder.finish(),
    }
}

/// The fake Authentik server. Dropping it stops the server.
pub struct FakeAuthentik {
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
    handle: ServerHandle,
}

impl Drop for FakeAuthentik {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

impl FakeAuthentik {
    /// Binds `127.0.0.1:0` and spawns the server on the current tokio runtime. Seeded like a fresh
    /// install: the groups "authentik Admins" (superuser) and "authentik Read-only", and `akadmin`
    /// (pk 4, the API token's owner) in "authentik Admins". Seeding records no events.
    pub async fn start(opts: FakeAuthentikOptions) -> io::Result<FakeAuthentik> {
        let now = SystemTime::now();
        let mut users = BTreeMap::new();
        users.insert(
            AKADMIN_PK,
            AkUser {
                pk: AKADMIN_PK,
                username: "akadmin".into(),
                name: "authentik Default Admin".into(),
                email: "admin@example.com".into(),
                is_active: true,
                uuid: new_uuid(),
                date_joined: now,
                last_updated: now,
                user_type: "internal",
                path: "users",
            },
        );
        let mut groups = BTreeMap::new();
        let admins = new_uuid();
        groups.insert(
            admins.clone(),
            AkGroup {
                uuid: admins,
                name: "authentik Admins".into(),
                is_superuser: true,
                parents: vec![],
                users: BTreeSet::from([AKADMIN_PK]),
            },
        );
        let read_only = new_uuid();
        groups.insert(
            read_only.clone(),
            AkGroup {
                uuid: read_only,
                name: "authentik Read-only".into(),
                is_superuser: false,
                parents: vec![],
                users: BTreeSet::new(),
            },
        );
        let state = Arc::new(Mutex::new(State {
            token: opts.api_token,
            install_id: new_uuid(),
            owner_pk: AKADMIN_PK,
            users,
            groups,
            next_pk: FIRST_USER_PK,
            max_page_size: opts.max_page_size.max(1),
            default_page_size: opts.default_page_size.max(1),
            calls: Vec::new(),
            latency: opts.latency,
            answer_delay: Duration::ZERO,
            fail_remaining: 0,
            fail_status: 500,
            down: false,
            partial_pages: false,
            omit_member_lists: false,
            forbidden: false,
            transports: Vec::new(),
            transports_forbidden: false,
            licensed: false,
            webhook: None,
            events: Vec::new(),
            pending: Vec::new(),
            deliveries: Vec::new(),
            runtime: tokio::runtime::Handle::current(),
        }));
        let data = web::Data::new(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(handle))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .bind(("127.0.0.1", 0))?;
        let addr = server
            .addrs()
            .first()
            .copied()
            .ok_or_else(|| io::Error::other("fake Authentik bound no address"))?;
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(FakeAuthentik {
            state,
            addr,
            handle,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Runs a mutation, then hands its event documents to the webhook.
    fn mutate<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let out = f(&mut self.lock());
        flush(&self.state);
        out
    }

    fn group_uuid(&self, group: &str) -> String {
        self.lock()
            .resolve_group(group)
            .unwrap_or_else(|| panic!("FakeAuthentik: no group {group}"))
    }

    /// The Test button's document; the same as the free [`test_button_document`].
    pub fn test_button_document() -> Value {
        test_button_document()
    }

    /// `http://127.0.0.1:PORT`; the API is under `/api/v3/`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The API token the fake accepts (owned by `akadmin`).
    pub fn token(&self) -> String {
        self.lock().token.clone()
    }

    // ---- seeding and inspection (groups are named by dashed UUID, hex UUID or exact name) -----

    /// Creates an active internal user; pks count up from 1000. Records the user `model_updated`
    /// the rule sends for an API-created user (docs/src/upstream/authentik.md §12: the API saves a new user twice).
    pub fn add_user(&self, username: &str, name: &str, email: &str) -> i64 {
        self.mutate(|st| {
            let pk = st.new_pk();
            let now = SystemTime::now();
            let user = AkUser {
                pk,
                username: username.to_string(),
                name: name.to_string(),
                email: email.to_string(),
                is_active: true,
                uuid: new_uuid(),
                date_joined: now,
                last_updated: now,
                user_type: "internal",
                path: "users",
            };
            let model = user_model(&user);
            st.users.insert(pk, user);
            st.record("model_updated", model, None);
            pk
        })
    }

    /// Creates a group (not superuser, no parents). Group creation is a `model_created`, which the
    /// bridge's rule does not match, so nothing is sent (docs/src/upstream/authentik.md §12).
    pub fn add_group(&self, name: &str) -> String {
        self.add_group_with(name, false, &[])
    }

    /// # Panics
    /// If a parent does not exist.
    pub fn add_group_with(&self, name: &str, is_superuser: bool, parents: &[String]) -> String {
        let parents: Vec<String> = parents.iter().map(|p| self.group_uuid(p)).collect();
        let uuid = new_uuid();
        self.lock().groups.insert(
            uuid.clone(),
            AkGroup {
                uuid: uuid.clone(),
                name: name.to_string(),
                is_superuser,
                parents,
                users: BTreeSet::new(),
            },
        );
        uuid
    }

    /// `group.users.add(user)`: one group `model_updated` with the hex pk (docs/src/upstream/authentik.md §12).
    ///
    /// # Panics
    /// If the group or the user does not exist.
    pub fn add_member(&self, group: &str, user_pk: i64) {
        let uuid = self.group_uuid(group);
        self.mutate(|st| {
            assert!(
                st.users.contains_key(&user_pk),
                "FakeAuthentik: no user {user_pk}"
            );
            st.add_member(&uuid, user_pk);
        });
    }

    /// `group.users.remove(user)`: one group `model_updated` (docs/src/upstream/authentik.md §12).
    pub fn remove_member(&self, group: &str, user_pk: i64) {
        let uuid = self.group_uuid(group);
        self.mutate(|st| st.remove_member(&uuid, user_pk));
    }

    /// `PATCH is_active`: one user `model_updated`, pk an integer (docs/src/upstream/authentik.md §12).
    pub fn set_active(&self, user_pk: i64, active: bool) {
        self.mutate(|st| {
            let Some(u) = st.users.get_mut(&user_pk) else {
                return;
            };
            let previous = u.is_active;
            u.is_active = active;
            u.last_updated = SystemTime::now();
            let model = user_model(u);
            let diff = json!({ "is_active": { "previous_value": previous, "new_value": active } });
            st.record("model_updated", model, Some(diff));
        });
    }

    /// `PATCH email`: one user `model_updated`.
    pub fn set_email(&self, user_pk: i64, email: &str) {
        self.mutate(|st| {
            let Some(u) = st.users.get_mut(&user_pk) else {
                return;
            };
            let previous = std::mem::replace(&mut u.email, email.to_string());
            u.last_updated = SystemTime::now();
            let model = user_model(u);
            let diff = json!({ "email": { "previous_value": previous, "new_value": email } });
            st.record("model_updated", model, Some(diff));
        });
    }

    /// `PATCH name`: one group `model_updated` carrying the new name (docs/src/upstream/authentik.md §12).
    pub fn rename_group(&self, group: &str, name: &str) {
        let uuid = self.group_uuid(group);
        self.mutate(|st| {
            let Some(g) = st.groups.get_mut(&uuid) else {
                return;
            };
            let previous = std::mem::replace(&mut g.name, name.to_string());
            let model = group_model(g);
            let diff = json!({ "name": { "previous_value": previous, "new_value": name } });
            st.record("model_updated", model, Some(diff));
        });
    }

    /// `DELETE` a user: `model_deleted` with the int pk and the display name; the user's groups
    /// get no event (docs/src/upstream/authentik.md §4.4, §12).
    pub fn delete_user(&self, user_pk: i64) {
        self.mutate(|st| {
            let Some(u) = st.users.remove(&user_pk) else {
                return;
            };
            for g in st.groups.values_mut() {
                g.users.remove(&user_pk);
            }
            st.record("model_deleted", user_model(&u), None);
        });
    }

    /// `DELETE` a group: `model_deleted`, no events for its members (docs/src/upstream/authentik.md §4.4, §12).
    pub fn delete_group(&self, group: &str) {
        let Some(uuid) = self.lock().resolve_group(group) else {
            return;
        };
        self.mutate(|st| {
            let Some(g) = st.groups.remove(&uuid) else {
                return;
            };
            for other in st.groups.values_mut() {
                other.parents.retain(|p| p != &uuid);
            }
            st.record("model_deleted", group_model(&g), None);
        });
    }

    /// Direct members' pks, ascending.
    pub fn group_members(&self, group: &str) -> Vec<i64> {
        let st = self.lock();
        st.resolve_group(group)
            .and_then(|uuid| st.groups.get(&uuid))
            .map(|g| g.users.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Every group, by name.
    pub fn groups(&self) -> Vec<FakeAuthentikGroup> {
        let st = self.lock();
        let mut out: Vec<FakeAuthentikGroup> = st
            .groups
            .values()
            .map(|g| FakeAuthentikGroup {
                pk: g.uuid.clone(),
                name: g.name.clone(),
                is_superuser: g.is_superuser,
                parents: g.parents.clone(),
                users: g.users.iter().copied().collect(),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The dashed UUID of the group with exactly this name.
    pub fn group_by_name(&self, name: &str) -> Option<String> {
        let st = self.lock();
        st.groups
            .values()
            .find(|g| g.name == name)
            .map(|g| g.uuid.clone())
    }

    /// The pk of the user with exactly this username.
    pub fn user_by_username(&self, username: &str) -> Option<i64> {
        let st = self.lock();
        st.users
            .values()
            .find(|u| u.username == username)
            .map(|u| u.pk)
    }

    /// Every request answered so far, oldest first.
    pub fn calls(&self) -> Vec<AuthentikCall> {
        self.lock().calls.clone()
    }

    /// Forgets the calls answered so far.
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// Requests whose path starts with `path_prefix` (e.g. `/api/v3/core/groups/`).
    pub fn count_calls(&self, path_prefix: &str) -> usize {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.path.starts_with(path_prefix))
            .count()
    }

    // ---- faults --------------------------------------------------------------------------

    /// Delay before every answer from now on.
    pub fn set_latency(&self, d: Duration) {
        self.lock().latency = d;
    }

    /// The next `n` requests answer `status` with `{"detail": <reason>}`.
    pub fn fail_next(&self, n: usize, status: u16) {
        let mut st = self.lock();
        st.fail_remaining = n;
        st.fail_status = status;
    }

    /// While down, every request answers 503.
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    /// List endpoints drop the last row of each page while `count` stays true, so a client that
    /// trusts `count` or page arithmetic notices, and one that follows `next` still ends.
    pub fn set_partial_pages(&self, partial: bool) {
        self.lock().partial_pages = partial;
    }

    /// Each answer is computed at once and sent `d` later, so what it says may be stale on arrival (unlike
    /// `set_latency`, which delays before reading the state).
    pub fn set_answer_delay(&self, d: Duration) {
        self.lock().answer_delay = d;
    }

    /// Group answers leave out the member list (`users_obj: null`) even when it was asked for.
    pub fn set_omit_member_lists(&self, omit: bool) {
        self.lock().omit_member_lists = omit;
    }

    /// The token stays valid but lacks `view_user`/`view_group`: lists and details answer 403
    /// (docs/src/upstream/authentik.md §7.7); `/users/me/` still works.
    pub fn set_forbidden(&self, forbidden: bool) {
        self.lock().forbidden = forbidden;
    }

    /// A webhook transport as the blueprint makes it: `send_once`, a body mapping, and a header mapping
    /// when `with_header` (the token travels there, or as `?token=` in the URL).
    pub fn add_webhook_transport(&self, name: &str, url: &str, with_header: bool) {
        let mut st = self.lock();
        st.transports.push(json!({
            "pk": new_uuid(),
            "name": name,
            "mode": "webhook",
            "mode_verbose": "Webhook (generic)",
            "webhook_url": url,
            "webhook_ca": null,
            "webhook_mapping_body": new_uuid(),
            "webhook_mapping_headers": if with_header {
                json!(new_uuid())
            } else {
                Value::Null
            },
            "email_subject_prefix": "authentik Notification: ",
            "email_template": "email/event_notification.html",
            "send_once": true,
        }));
    }

    /// The token lacks `authentik_events.view_notificationtransport`: the transports list answers 403.
    pub fn set_transports_forbidden(&self, forbidden: bool) {
        self.lock().transports_forbidden = forbidden;
    }

    /// With an enterprise licence, events carry a `diff` (docs/src/upstream/authentik.md §4.3); off by default.
    pub fn set_licensed(&self, licensed: bool) {
        self.lock().licensed = licensed;
    }

    // ---- events and the webhook ------------------------------------------------------------

    /// Where the notification transport posts, and the bearer token its header mapping adds.
    /// `None` stops delivery; events are still recorded.
    pub fn set_webhook(&self, url: Option<String>, bearer_token: Option<String>) {
        self.lock().webhook = url.map(|url| Webhook {
            url,
            bearer: bearer_token,
        });
    }

    /// Every document the rule sent (or would have sent without a webhook), oldest first.
    pub fn events(&self) -> Vec<Value> {
        self.lock().events.clone()
    }

    /// Forgets the recorded event documents.
    pub fn clear_events(&self) {
        self.lock().events.clear();
    }

    /// Every delivery attempt so far.
    pub fn deliveries(&self) -> Vec<WebhookDelivery> {
        self.lock().deliveries.clone()
    }

    /// `model` as stored in `event.context` for this group: hex pk (docs/src/upstream/authentik.md §4.2).
    pub fn group_model(&self, group: &str) -> Option<Value> {
        let st = self.lock();
        st.resolve_group(group)
            .and_then(|uuid| st.groups.get(&uuid))
            .map(group_model)
    }

    /// `model` as stored in `event.context` for this user: integer pk, display name (docs/src/upstream/authentik.md §4.2).
    pub fn user_model(&self, user_pk: i64) -> Option<Value> {
        self.lock().users.get(&user_pk).map(user_model)
    }

    /// Posts one document to the webhook once, the way the transport does (Python-style JSON,
    /// bearer header), without recording it; for tests of duplicates and of the Test button.
    /// Returns the receiver's status.
    pub async fn post_document(&self, doc: &Value) -> io::Result<u16> {
        let (url, bearer) = {
            let st = self.lock();
            match &st.webhook {
                Some(w) => (w.url.clone(), w.bearer.clone()),
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        "FakeAuthentik: no webhook set",
                    ))
                }
            }
        };
        let mut headers = vec![
            ("User-Agent".to_string(), USER_AGENT.to_string()),
            ("Accept".to_string(), "*/*".to_string()),
        ];
        if let Some(token) = bearer {
            headers.push(("Authorization".to_string(), format!("Bearer {token}")));
        }
        headers.push(("Content-Type".to_string(), "application/json".to_string()));
        let (status, _) =
            http_post(&url, &headers, python_json(doc).as_bytes(), WEBHOOK_TIMEOUT).await?;
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_json_matches_json_dumps_defaults() {
        let v = json!({"a": [1, "é"], "b": {"c": null}, "d": "q\"\n"});
        assert_eq!(
            python_json(&v),
            r#"{"a": [1, "\u00e9"], "b": {"c": null}, "d": "q\"\n"}"#
        );
        assert_eq!(python_json(&json!("😀")), r#""\ud83d\ude00""#);
        assert_eq!(python_json(&json!([])), "[]");
    }

    #[test]
    fn uuids_normalize() {
        let dashed = "3b9f1d6e-0c8e-4a0f-9d7b-5c3a1e2f4d6c";
        assert_eq!(
            normalize_uuid("3b9f1d6e0c8e4a0f9d7b5c3a1e2f4d6c").as_deref(),
            Some(dashed)
        );
        assert_eq!(
            normalize_uuid("3B9F1D6E-0C8E-4A0F-9D7B-5C3A1E2F4D6C").as_deref(),
            Some(dashed)
        );
        assert_eq!(normalize_uuid("nope"), None);
        assert!(num_pk(dashed) >= 10_000);
    }
}
