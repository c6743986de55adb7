//! A stateful fake of the Outline v1.9.2 API (`docs/src/upstream/outline.md`).
//!
//! It answers `POST /api/<method>` the way the real server does for the methods the bridge uses:
//! the success envelope `{..., "status": 200, "ok": true}` and the error envelope of docs/src/upstream/outline.md §3.6, 403 (not
//! 404) for unknown ids, `limit > 100` rejected with 400, `pagination.nextPath` on every page, the
//! admin demotion of `groups.add_user` (docs/src/upstream/outline.md §6.3), case-insensitive group names (docs/src/upstream/outline.md §6.1), the
//! fixed-window rate limiter with a fractional `Retry-After` (docs/src/upstream/outline.md §4.4) and the details of docs/src/upstream/outline.md §9.1.
//!
//! Deliberate simplifications, none of which the bridge can observe through the methods it uses:
//! one team, one API key (owned by a team admin, so every admin-only call is allowed and emails are
//! always presented), no API-key scopes, `unaccent` is not applied to `users.list {query}`, and no
//! webhook is sent by the fake itself: `signin_delivery` builds the body and `deliver_signin` posts
//! it, signed as docs/src/upstream/outline.md §2.1 describes.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use hmac::{Hmac, Mac};
use rand::Rng;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::{http_post, iso_millis, js_date_string, new_uuid, parse_query, percent_encode};

/// Default and maximum page sizes (docs/src/upstream/outline.md §3.3).
const DEFAULT_LIMIT: u64 = 25;
const MAX_LIMIT: u64 = 100;
/// `MAX_AVATAR_DISPLAY`: the preview of members `groups.list` attaches per group (docs/src/upstream/outline.md §3.4).
const MEMBERSHIP_PREVIEW: usize = 6;
/// `GroupValidation.maxNameLength` / `maxDescriptionLength` (docs/src/upstream/outline.md §6.1).
const MAX_GROUP_NAME: usize = 255;
const MAX_GROUP_DESCRIPTION: usize = 2000;

/// Attributes of the `Group` model; `groups.list {sort}` accepts these and `"source"` (docs/src/upstream/outline.md §3.4).
const GROUP_SORT_KEYS: &[&str] = &[
    "id",
    "name",
    "description",
    "externalId",
    "disableMentions",
    "teamId",
    "createdById",
    "createdAt",
    "updatedAt",
    "deletedAt",
    "source",
];

/// Attributes of the `User` model; `users.list {sort}` accepts these.
const USER_SORT_KEYS: &[&str] = &[
    "id",
    "email",
    "name",
    "avatarUrl",
    "role",
    "language",
    "preferences",
    "notificationSettings",
    "timezone",
    "lastActiveAt",
    "lastActiveIp",
    "lastSignedInAt",
    "lastSignedInIp",
    "lastSigninEmailSentAt",
    "suspendedAt",
    "suspendedById",
    "invitedById",
    "flags",
    "jwtSecret",
    "teamId",
    "createdAt",
    "updatedAt",
    "deletedAt",
];

const USER_FILTERS: &[&str] = &[
    "invited",
    "viewers",
    "admins",
    "members",
    "active",
    "all",
    "suspended",
];
const USER_ROLES: &[&str] = &["admin", "member", "viewer", "guest"];
/// `UserRoleHelper.roles`, lowest first (shared/utils/UserRoleHelper.ts).
const ROLE_ORDER: &[&str] = &["guest", "viewer", "member", "admin"];
/// `UserValidation.maxInvitesPerRequest` (shared/validations.ts).
const MAX_INVITES: usize = 20;
/// `UserValidation.maxNameLength` / `maxEmailLength`, checked by the `User` model on create.
const MAX_USER_NAME: usize = 255;
const MAX_USER_EMAIL: usize = 255;
/// `RateLimiterStrategy.FiftyPerHour`, the limiter of `users.invite` (docs/src/upstream/outline.md §4.3).
const INVITE_LIMIT_PER_HOUR: u32 = 50;
const HOUR: Duration = Duration::from_secs(3600);

/// `EventHelper.ACTIVITY_EVENTS` (shared/utils/EventHelper.ts): what `events.list` shows without `auditLog`.
const ACTIVITY_EVENTS: &[&str] = &[
    "collections.create",
    "collections.delete",
    "collections.move",
    "collections.permission_changed",
    "collections.add_user",
    "collections.remove_user",
    "documents.publish",
    "documents.unpublish",
    "documents.archive",
    "documents.unarchive",
    "documents.move",
    "documents.delete",
    "documents.permanent_delete",
    "documents.restore",
    "documents.add_user",
    "documents.remove_user",
    "revisions.create",
    "users.create",
    "users.demote",
    "userMemberships.update",
];

/// `EventHelper.AUDIT_EVENTS` (shared/utils/EventHelper.ts): what `events.list {auditLog: true}` shows.
const AUDIT_EVENTS: &[&str] = &[
    "api_keys.create",
    "api_keys.delete",
    "authenticationProviders.update",
    "collections.create",
    "collections.update",
    "collections.permission_changed",
    "collections.move",
    "collections.add_user",
    "collections.remove_user",
    "collections.add_group",
    "collections.remove_group",
    "collections.delete",
    "documents.create",
    "documents.publish",
    "documents.update",
    "documents.archive",
    "documents.unarchive",
    "documents.move",
    "documents.delete",
    "documents.permanent_delete",
    "documents.restore",
    "documents.add_user",
    "documents.remove_user",
    "documents.add_group",
    "documents.remove_group",
    "groups.create",
    "groups.update",
    "groups.delete",
    "pins.create",
    "pins.update",
    "pins.delete",
    "revisions.create",
    "revisions.delete",
    "shares.create",
    "shares.update",
    "shares.revoke",
    "teams.update",
    "users.create",
    "users.update",
    "users.signin",
    "users.signout",
    "users.promote",
    "users.demote",
    "users.invite",
    "users.suspend",
    "users.activate",
    "users.delete",
    "fileOperations.create",
    "fileOperations.delete",
    "webhookSubscriptions.create",
    "webhookSubscriptions.delete",
];
const GROUP_PERMISSIONS: &[&str] = &["admin", "member"];

/// Avatar colours; the real server derives one from the user id (`stringToColor`).
const PALETTE: &[&str] = &[
    "#FF5C80", "#3633FF", "#9E5CF7", "#FF4DFA", "#7B61FF", "#3AD984", "#F5BE31", "#C7304F",
    "#0500FF", "#6A1BD9", "#E600E0", "#3E20FF", "#1F9E5B", "#D49B0B",
];

/// Settings of a [`FakeOutline`].
#[derive(Clone, Debug)]
pub struct FakeOutlineOptions {
    /// The only API key the fake accepts. Its owner is a team admin.
    pub api_token: String,
    /// Requests allowed per window by the default limiter (`RATE_LIMITER_REQUESTS`, docs/src/upstream/outline.md §4.1).
    pub rate_limit_requests: u32,
    /// The default limiter's fixed window (`RATE_LIMITER_DURATION_WINDOW`, docs/src/upstream/outline.md §4.1).
    pub rate_limit_window: Duration,
    /// `groups.create`'s own limit per 60 s (`TenPerMinute`, docs/src/upstream/outline.md §4.3).
    pub create_limit_per_minute: u32,
    /// Delay added before every answer.
    pub latency: Duration,
}

impl Default for FakeOutlineOptions {
    /// A fresh `ol_api_` key of 38 word characters (docs/src/upstream/outline.md §3.2), Outline's default limits, no latency.
    fn default() -> Self {
        const WORD: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        let mut rng = rand::rng();
        let key: String = (0..38)
            .map(|_| WORD[rng.random_range(0..WORD.len())] as char)
            .collect();
        FakeOutlineOptions {
            api_token: format!("ol_api_{key}"),
            rate_limit_requests: 1000,
            rate_limit_window: Duration::from_secs(60),
            create_limit_per_minute: 10,
            latency: Duration::ZERO,
        }
    }
}

/// A group as the fake stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeGroup {
    /// The group's UUID.
    pub id: String,
    /// The group's name.
    pub name: String,
    /// `externalId`, where the bridge keeps the Authentik group id (docs/src/upstream/outline.md §5.3).
    pub external_id: Option<String>,
}

/// One request the fake answered.
#[derive(Clone, Debug)]
pub struct OutlineCall {
    /// The RPC method, e.g. `groups.add_user` (the path after `/api/`).
    pub method: String,
    /// The JSON body as sent (`null` if it was not JSON).
    pub body: Value,
    /// The status the fake answered.
    pub status: u16,
    /// When the request was answered.
    pub at: Instant,
}

#[derive(Clone, Debug)]
struct UserRec {
    id: String,
    seq: u64,
    name: String,
    /// `stringToColor(id)`, computed once.
    color: &'static str,
    email: Option<String>,
    role: String,
    suspended_at: Option<SystemTime>,
    created_at: SystemTime,
    updated_at: SystemTime,
    deleted_at: Option<SystemTime>,
    last_active_at: Option<SystemTime>,
    /// `suspendedById`: who suspended the user (not presented by `presentUser`).
    suspended_by_id: Option<String>,
    /// `invitedById`: who invited the user through `users.invite`.
    invited_by_id: Option<String>,
}

impl UserRec {
    /// A signed-in, active user; callers change what differs (an invite has no `lastActiveAt`).
    fn new(id: String, seq: u64, name: &str, email: &str, role: &str, now: SystemTime) -> UserRec {
        UserRec {
            color: color_for(&id),
            id,
            seq,
            name: name.to_string(),
            email: Some(email.to_string()),
            role: role.to_string(),
            suspended_at: None,
            created_at: now,
            updated_at: now,
            deleted_at: None,
            last_active_at: Some(now),
            suspended_by_id: None,
            invited_by_id: None,
        }
    }
}

/// A row of the `events` table, as `Model.insertEvent` writes it for a user model
/// (server/models/base/Model.ts): `modelId` and `userId` are the user, `actorId` the caller.
#[derive(Clone, Debug)]
struct EventRec {
    id: String,
    seq: u64,
    name: String,
    model_id: String,
    user_id: String,
    actor_id: Option<String>,
    ip: Option<String>,
    created_at: SystemTime,
    /// `previousChangeset`: `{attributes, previous}`.
    changes: Option<Value>,
}

#[derive(Clone, Debug)]
struct GroupRec {
    id: String,
    seq: u64,
    name: String,
    description: Option<String>,
    external_id: Option<String>,
    disable_mentions: bool,
    created_at: SystemTime,
    updated_at: SystemTime,
}

#[derive(Clone, Debug)]
struct MemberRec {
    permission: String,
    created_at: SystemTime,
    seq: u64,
}

/// A fixed window: it opens at the first request and admits `limit` requests until it closes, as
/// `rate-limiter-flexible` does (docs/src/upstream/outline.md §4).
#[derive(Debug)]
struct Window {
    limit: u32,
    length: Duration,
    opened: Option<Instant>,
    consumed: u32,
}

impl Window {
    fn new(limit: u32, length: Duration) -> Self {
        Window {
            limit,
            length,
            opened: None,
            consumed: 0,
        }
    }

    /// Ok(remaining) or Err(milliseconds until the window closes).
    fn consume(&mut self, now: Instant) -> Result<u32, u64> {
        let open = matches!(self.opened, Some(t) if now < t + self.length);
        if !open {
            self.opened = Some(now);
            self.consumed = 0;
        }
        self.consumed = self.consumed.saturating_add(1);
        if self.consumed > self.limit {
            let closes = self.opened.unwrap_or(now) + self.length;
            let ms = closes.saturating_duration_since(now).as_millis() as u64;
            Err(ms.max(1))
        } else {
            Ok(self.limit - self.consumed)
        }
    }
}

struct State {
    token: String,
    admin_id: String,
    subscription_id: String,
    users: BTreeMap<String, UserRec>,
    groups: BTreeMap<String, GroupRec>,
    /// Keyed by (group id, user id), the primary key of `group_users` (docs/src/upstream/outline.md §6.2).
    members: BTreeMap<(String, String), MemberRec>,
    seq: u64,
    calls: Vec<OutlineCall>,
    throttled: usize,
    latency: Duration,
    fail_remaining: usize,
    fail_status: u16,
    down: bool,
    global: Window,
    create: Window,
    /// `users.invite`'s own limiter (`FiftyPerHour`), keyed by client IP for API keys; the fake has one client.
    invite: Window,
    /// Whether `users.invite`'s limiter exists yet: `rateLimiter()` registers it lazily on the route, after
    /// the app-wide limiter has already drawn the first request from the default bucket
    /// (server/middlewares/rateLimiter.ts, docs/src/upstream/outline.md §4.3).
    invite_registered: bool,
    /// The `events` table.
    events: Vec<EventRec>,
    /// Emails (lowercased) of the users `users.invite` created, oldest first.
    invited: Vec<String>,
    /// `env.isCloudHosted`: only app.getoutline.com passes the `audit` policy `events.list {auditLog}` needs.
    cloud_hosted: bool,
    /// The key's scopes; `None` is full access (docs/src/upstream/outline.md §3.5).
    scopes: Option<Vec<String>>,
    /// Membership changes made by someone else between two page reads of `groups.memberships`.
    swaps: Vec<MemberSwap>,
    /// Per group id, the message a membership change answers 400 with: the group is managed by an external
    /// provider (docs/src/upstream/outline.md §3.6).
    provider_managed: BTreeMap<String, String>,
}

/// One member leaves and another joins a group right after the `after`-th read of its memberships: the
/// race that hides a member from an offset-paged walk while the row count still matches.
struct MemberSwap {
    group: String,
    after: usize,
    reads: usize,
    leaves: String,
    joins: String,
    permission: String,
}

/// Whether a key with `scopes` may call `method` (docs/src/upstream/outline.md §3.5): `list`, `info`, `config`,
/// `search`, … need Read, `create` needs Create, everything else needs Write, and `groups.memberships` is
/// Write in v1.9.2. `<ns>:write` covers the namespace, and a route scope names one method.
fn scope_allows(scopes: &[String], method: &str) -> bool {
    let (namespace, verb) = method.split_once('.').unwrap_or((method, ""));
    let needed = match verb {
        "list" | "info" | "config" | "search" | "documents" | "drafts" | "viewed" | "export" => {
            "read"
        }
        "create" => "create",
        _ => "write",
    };
    scopes.iter().any(|scope| {
        if scope == "*" || scope == &format!("/api/{method}") {
            return true;
        }
        let (ns, level) = scope.split_once(':').unwrap_or(("", scope.as_str()));
        (ns.is_empty() || ns == namespace)
            && (level == needed || level == "write" || (level == "create" && needed == "create"))
    })
}

/// An error answer, rendered as the envelope of docs/src/upstream/outline.md §3.6.
#[derive(Debug)]
struct ApiError {
    status: u16,
    id: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: u16, id: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            id,
            message: message.into(),
        }
    }
    fn validation(message: impl Into<String>) -> Self {
        Self::new(400, "validation_error", message)
    }
    fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request", message)
    }
    /// What `authorize(actor, …, null)` throws for a missing or unknown id (docs/src/upstream/outline.md §3.6).
    fn authorization() -> Self {
        Self::new(403, "authorization_error", "Authorization error")
    }
    fn authentication(message: impl Into<String>) -> Self {
        Self::new(401, "authentication_required", message)
    }
    fn not_found() -> Self {
        Self::new(404, "not_found", "Resource not found")
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: ReplyBody,
}

enum ReplyBody {
    Json(Value),
    Html(String),
}

/// The error id Outline would use for a status; for injected faults.
fn error_id(status: u16) -> &'static str {
    match status {
        400 => "invalid_request",
        401 => "authentication_required",
        403 => "authorization_error",
        404 => "not_found",
        429 => "rate_limit_exceeded",
        500 => "internal_error",
        502 => "bad_gateway",
        503 => "service_unavailable",
        504 => "gateway_timeout",
        _ => "internal_error",
    }
}

fn reason(status: u16) -> String {
    StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error")
        .to_string()
}

fn error_reply(err: ApiError, html: bool) -> Reply {
    let body = if html {
        ReplyBody::Html(format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>Outline</title></head>\n\
             <body><h1>{}</h1><p>{}</p></body>\n</html>\n",
            err.status,
            html_escape(&err.message)
        ))
    } else {
        ReplyBody::Json(json!({
            "ok": false,
            "error": err.id,
            "status": err.status,
            "message": err.message,
        }))
    };
    Reply {
        status: err.status,
        headers: Vec::new(),
        body,
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Koa's `ctx.accepts("json", "html")`: the better match by q, then specificity, then position in
/// `Accept`; ties and no header go to JSON (docs/src/upstream/outline.md §3.6).
fn prefers_html(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    // (q, specificity, -position); higher is better.
    let best = |full: &str, family: &str| -> Option<(u32, u8, i64)> {
        let mut best: Option<(u32, u8, i64)> = None;
        for (pos, entry) in accept.split(',').enumerate() {
            let mut parts = entry.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let mut q = 1000u32;
            for p in parts {
                if let Some(v) = p.trim().strip_prefix("q=") {
                    q = (v.trim().parse::<f64>().unwrap_or(0.0) * 1000.0) as u32;
                }
            }
            let spec = if media == full {
                2
            } else if media == format!("{family}/*") {
                1
            } else if media == "*/*" {
                0
            } else {
                continue;
            };
            if q == 0 {
                continue;
            }
            let cand = (q, spec, -(pos as i64));
            if best.is_none_or(|b| cand > b) {
                best = Some(cand);
            }
        }
        best
    };
    match (
        best("application/json", "application"),
        best("text/html", "text"),
    ) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(j), Some(h)) => h > j,
    }
}

/// The token the request carries: the `Authorization` header, else a body `token`, else `?token=`
/// (docs/src/upstream/outline.md §3.2).
fn extract_token(
    req: &HttpRequest,
    body: &Map<String, Value>,
    query: &[(String, String)],
) -> Result<Option<String>, ApiError> {
    if let Some(header) = req.headers().get("authorization") {
        let header = header.to_str().unwrap_or("");
        let parts: Vec<&str> = header.split(' ').collect();
        if parts.len() != 2 {
            return Err(ApiError::authentication(
                "Bad Authorization header format. Format is \"Authorization: Bearer <token>\"",
            ));
        }
        if parts[0].eq_ignore_ascii_case("bearer") {
            return Ok(Some(parts[1].to_string()));
        }
        return Ok(None);
    }
    if let Some(token) = body.get("token") {
        return Ok(Some(match token {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }));
    }
    Ok(query
        .iter()
        .find(|(k, v)| k == "token" && !v.is_empty())
        .map(|(_, v)| v.clone()))
}

/// The type name Zod reports in "expected string, received …".
fn js_type(v: Option<&Value>) -> &'static str {
    match v {
        None => "undefined",
        Some(Value::Null) => "null",
        Some(Value::Bool(_)) => "boolean",
        Some(Value::Number(_)) => "number",
        Some(Value::String(_)) => "string",
        Some(Value::Array(_)) => "array",
        Some(Value::Object(_)) => "object",
    }
}

fn expected(key: &str, want: &str, got: Option<&Value>) -> ApiError {
    ApiError::validation(format!(
        "{key}: Invalid input: expected {want}, received {}",
        js_type(got)
    ))
}

fn opt_string(body: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match body.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        other => Err(expected(key, "string", other)),
    }
}

fn opt_bool(body: &Map<String, Value>, key: &str) -> Result<Option<bool>, ApiError> {
    match body.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        other => Err(expected(key, "boolean", other)),
    }
}

/// Zod v4's `z.uuid()`: RFC 9562 versions 1–8 with the RFC variant, plus the nil and max UUIDs.
fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 36 {
        return false;
    }
    for (i, c) in b.iter().enumerate() {
        let ok = match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        };
        if !ok {
            return false;
        }
    }
    let lower = s.to_ascii_lowercase();
    if lower == "00000000-0000-0000-0000-000000000000"
        || lower == "ffffffff-ffff-ffff-ffff-ffffffffffff"
    {
        return true;
    }
    matches!(b[14], b'1'..=b'8') && matches!(b[19], b'8' | b'9' | b'a' | b'b' | b'A' | b'B')
}

fn opt_uuid(body: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match opt_string(body, key)? {
        None => Ok(None),
        Some(s) if is_uuid(&s) => Ok(Some(s.to_ascii_lowercase())),
        Some(_) => Err(ApiError::validation(format!("{key}: Invalid UUID"))),
    }
}

fn req_uuid(body: &Map<String, Value>, key: &str) -> Result<String, ApiError> {
    opt_uuid(body, key)?.ok_or_else(|| expected(key, "string", body.get(key)))
}

fn opt_enum(
    body: &Map<String, Value>,
    key: &str,
    allowed: &[&str],
) -> Result<Option<String>, ApiError> {
    match body.get(key) {
        None => Ok(None),
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(Some(s.clone())),
        _ => Err(enum_error(key, allowed)),
    }
}

/// Zod's message for a value (or a missing one) outside `z.enum(...)`.
fn enum_error(key: &str, allowed: &[&str]) -> ApiError {
    let options: Vec<String> = allowed.iter().map(|a| format!("\"{a}\"")).collect();
    ApiError::validation(format!(
        "{key}: Invalid option: expected one of {}",
        options.join("|")
    ))
}

/// `direction`: anything but `"ASC"` means descending (the Zod transform of docs/src/upstream/outline.md §3.4).
fn direction(body: &Map<String, Value>) -> Result<bool, ApiError> {
    Ok(opt_string(body, "direction")?.as_deref() == Some("ASC"))
}

fn sort_key(
    body: &Map<String, Value>,
    allowed: &[&str],
    default: &str,
) -> Result<String, ApiError> {
    match opt_string(body, "sort")? {
        None => Ok(default.to_string()),
        Some(s) if allowed.contains(&s.as_str()) => Ok(s),
        Some(_) => Err(ApiError::validation("sort: Invalid sort parameter")),
    }
}

/// Zod v4's email check, close enough for the addresses tests use.
fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    if local.is_empty()
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
        || !local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_'+-.".contains(c))
    {
        return false;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return false;
    }
    let tld = labels[labels.len() - 1];
    labels.iter().all(|l| {
        !l.is_empty()
            && !l.starts_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    }) && tld.len() >= 2
        && tld.chars().all(|c| c.is_ascii_alphabetic())
}

/// PostgreSQL `ILIKE`: `%` matches any run, `_` one character, `\` escapes. Outline v1.9.2 passes
/// user input unescaped, so wildcards in names and queries are live (docs/src/upstream/outline.md §3.4, §6.1).
fn ilike(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    // Tokens: Some(c) literal, None = '%', Some('\u{0}')-free handling of '_' via a flag.
    enum Tok {
        Lit(char),
        One,
        Any,
    }
    let mut toks = Vec::new();
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' if i + 1 < p.len() => {
                toks.push(Tok::Lit(p[i + 1]));
                i += 2;
            }
            '%' => {
                toks.push(Tok::Any);
                i += 1;
            }
            '_' => {
                toks.push(Tok::One);
                i += 1;
            }
            c => {
                toks.push(Tok::Lit(c));
                i += 1;
            }
        }
    }
    // dp[j] = tokens[..k] match text[..j]
    let mut dp = vec![false; t.len() + 1];
    dp[0] = true;
    for tok in &toks {
        let mut next = vec![false; t.len() + 1];
        match tok {
            Tok::Any => {
                let mut reach = false;
                for j in 0..=t.len() {
                    reach |= dp[j];
                    next[j] = reach;
                }
            }
            Tok::One => {
                next[1..].copy_from_slice(&dp[..t.len()]);
            }
            Tok::Lit(c) => {
                for j in 1..=t.len() {
                    next[j] = dp[j - 1] && t[j - 1] == *c;
                }
            }
        }
        dp = next;
    }
    dp[t.len()]
}

/// Sequelize's `NotContainsUrl`: `/(www\.|file:|http:|https:)[^\s]+[\w]/` (docs/src/upstream/outline.md §6.1).
fn contains_url(s: &str) -> bool {
    let lower = s.to_string();
    for prefix in ["www.", "file:", "http:", "https:"] {
        let mut start = 0;
        while let Some(found) = lower[start..].find(prefix) {
            let after = start + found + prefix.len();
            let run: Vec<char> = lower[after..]
                .chars()
                .take_while(|c| !c.is_whitespace())
                .collect();
            if run.len() >= 2 && run[1..].iter().any(|c| c.is_alphanumeric() || *c == '_') {
                return true;
            }
            start = after;
        }
    }
    false
}

/// The pagination of docs/src/upstream/outline.md §3.3, from the query string first, then the body.
struct Page {
    limit: u64,
    offset: u64,
    next_path: String,
}

impl Page {
    fn json(&self, total: usize) -> Value {
        json!({
            "limit": self.limit,
            "offset": self.offset,
            "nextPath": self.next_path,
            "total": total,
        })
    }

    fn slice<T: Clone>(&self, rows: &[T]) -> Vec<T> {
        rows.iter()
            .skip(self.offset as usize)
            .take(self.limit as usize)
            .cloned()
            .collect()
    }
}

/// One pagination parameter with JavaScript's truthiness, `isNaN` and `parseInt` (docs/src/upstream/outline.md §3.3): a numeric
/// `0` is falsy and means "default", while the string `"0"` is truthy and rejected later.
fn page_param(
    query: Option<&str>,
    body: Option<&Value>,
    name: &str,
) -> Result<Option<i64>, ApiError> {
    let invalid = || ApiError::invalid_request(format!("Pagination {name} must be a valid number"));
    let parse_int = |s: &str| -> Option<i64> {
        let t = s.trim_start();
        let (neg, digits) = match t.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, t.strip_prefix('+').unwrap_or(t)),
        };
        let n: String = digits.chars().take_while(|c| c.is_ascii_digit()).collect();
        let v = n.parse::<i64>().ok()?;
        Some(if neg { -v } else { v })
    };
    let from_str = |s: &str| -> Result<Option<i64>, ApiError> {
        if s.is_empty() {
            return Ok(None);
        }
        if s.trim().parse::<f64>().is_err() {
            return Err(invalid());
        }
        parse_int(s).map(Some).ok_or_else(invalid)
    };
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        return from_str(q);
    }
    match body {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(None),
        Some(Value::Number(n)) => {
            let f = n.as_f64().unwrap_or(0.0);
            if f == 0.0 {
                Ok(None)
            } else {
                Ok(Some(f.trunc() as i64))
            }
        }
        Some(Value::String(s)) => from_str(s),
        Some(_) => Err(invalid()),
    }
}

fn pagination(
    method: &str,
    query: &[(String, String)],
    body: &Map<String, Value>,
) -> Result<Page, ApiError> {
    let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let limit = page_param(q("limit"), body.get("limit"), "limit")?;
    let offset = page_param(q("offset"), body.get("offset"), "offset")?;
    let limit = limit.unwrap_or(DEFAULT_LIMIT as i64);
    let offset = offset.unwrap_or(0);
    if limit > MAX_LIMIT as i64 {
        return Err(ApiError::invalid_request(format!(
            "Pagination limit is too large (max {MAX_LIMIT})"
        )));
    }
    if limit <= 0 {
        return Err(ApiError::invalid_request(
            "Pagination limit must be greater than 0",
        ));
    }
    if offset < 0 {
        return Err(ApiError::invalid_request(
            "Pagination offset must be greater than or equal to 0",
        ));
    }
    // `nextPath` keeps the request's own query parameters and sets limit and offset (docs/src/upstream/outline.md §3.3).
    let mut pairs: Vec<(String, String)> = query.to_vec();
    for (key, value) in [("limit", limit), ("offset", limit + offset)] {
        match pairs.iter_mut().find(|(k, _)| k == key) {
            Some(pair) => pair.1 = value.to_string(),
            None => pairs.push((key.to_string(), value.to_string())),
        }
    }
    let qs: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    Ok(Page {
        limit: limit as u64,
        offset: offset as u64,
        next_path: format!("/api/{method}?{}", qs.join("&")),
    })
}

/// Orders optional values as PostgreSQL does: NULLs last ascending, first descending.
fn cmp_opt<T: Ord>(a: &Option<T>, b: &Option<T>) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    match (a, b) {
        (Some(x), Some(y)) => x.cmp(y),
        (None, None) => Equal,
        (None, Some(_)) => Greater,
        (Some(_), None) => Less,
    }
}

fn color_for(id: &str) -> &'static str {
    let digest = Sha256::digest(id.as_bytes());
    PALETTE[digest[0] as usize % PALETTE.len()]
}

fn ts(t: SystemTime) -> Value {
    Value::String(iso_millis(t))
}

fn opt_ts(t: Option<SystemTime>) -> Value {
    t.map(ts).unwrap_or(Value::Null)
}

impl State {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn live_user(&self, id: &str) -> Option<&UserRec> {
        // Ids are stored lower-case; only a caller's upper-case id needs the copy.
        self.users
            .get(id)
            .or_else(|| self.users.get(&id.to_ascii_lowercase()))
            .filter(|u| u.deleted_at.is_none())
    }

    fn group(&self, id: &str) -> Option<&GroupRec> {
        self.groups
            .get(id)
            .or_else(|| self.groups.get(&id.to_ascii_lowercase()))
    }

    fn actor(&self) -> Option<&UserRec> {
        self.users.get(&self.admin_id)
    }

    /// `memberCount` leaves suspended users out (docs/src/upstream/outline.md §3.4, §6.6).
    fn member_count(&self, group_id: &str) -> usize {
        self.group_members(group_id)
            .filter(|(uid, _)| {
                self.live_user(uid)
                    .is_some_and(|u| u.suspended_at.is_none())
            })
            .count()
    }

    fn group_members<'a>(
        &'a self,
        group_id: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a MemberRec)> + 'a {
        self.members
            .range((group_id.to_string(), String::new())..)
            .take_while(move |((g, _), _)| g == group_id)
            .map(|((_, u), m)| (u, m))
    }

    /// `presentUser` (docs/src/upstream/outline.md §2.3, §9.1). `details` adds what an admin caller sees: `email`, `language`,
    /// `preferences` (null) and `notificationSettings`.
    fn present_user(&self, u: &UserRec, details: bool) -> Value {
        let mut v = json!({
            "id": u.id,
            "name": u.name,
            // The model's getter answers null unless an avatar was uploaded (server/models/User.ts).
            "avatarUrl": Value::Null,
            "color": u.color,
            "role": u.role,
            "isSuspended": u.suspended_at.is_some(),
            "createdAt": ts(u.created_at),
            "updatedAt": ts(u.updated_at),
            "deletedAt": opt_ts(u.deleted_at),
            "lastActiveAt": opt_ts(u.last_active_at),
            "timezone": Value::Null,
        });
        if details {
            if let Some(obj) = v.as_object_mut() {
                obj.insert("email".into(), json!(u.email));
                obj.insert("language".into(), json!("en_US"));
                obj.insert("preferences".into(), Value::Null);
                obj.insert("notificationSettings".into(), json!({}));
            }
        }
        v
    }

    /// `presentGroup` (docs/src/upstream/outline.md §3.4); `member_count` is passed in because `groups.add_user` and
    /// `groups.remove_user` report the count from before their change (docs/src/upstream/outline.md §9.1).
    fn present_group(&self, g: &GroupRec, member_count: usize) -> Value {
        json!({
            "id": g.id,
            "name": g.name,
            "description": g.description,
            "externalId": g.external_id,
            "memberCount": member_count,
            "disableMentions": g.disable_mentions,
            "createdAt": ts(g.created_at),
            "updatedAt": ts(g.updated_at),
        })
    }

    fn present_group_live(&self, g: &GroupRec) -> Value {
        self.present_group(g, self.member_count(&g.id))
    }

    /// `presentGroupUser(…, {includeUser: true})`: the item shape of docs/src/upstream/outline.md §3.7, user without email.
    fn present_membership(&self, group_id: &str, user: &UserRec, m: &MemberRec) -> Value {
        json!({
            "id": format!("{}-{}", user.id, group_id),
            "userId": user.id,
            "groupId": group_id,
            "permission": m.permission,
            "user": self.present_user(user, false),
        })
    }

    fn group_policy(&self, id: &str) -> Value {
        json!({
            "id": id,
            "abilities": {
                "read": true,
                "update": true,
                "delete": true,
                "listMembers": true,
                "addMember": true,
                "removeMember": true,
            }
        })
    }

    /// The abilities of server/policies/user.ts for an admin caller.
    fn user_policy(&self, u: &UserRec) -> Value {
        let is_self = u.id == self.admin_id;
        let suspended = u.suspended_at.is_some();
        json!({
            "id": u.id,
            "abilities": {
                "read": true,
                "readEmail": true,
                "readDetails": true,
                "update": true,
                "delete": true,
                "suspend": !is_self,
                "activate": !is_self,
                "promote": u.role != "admin" && !suspended && !is_self,
                "demote": !suspended && !is_self,
            }
        })
    }

    /// A name is taken when an existing group's name matches it as an `ILIKE` pattern (docs/src/upstream/outline.md §6.1).
    fn name_taken(&self, name: &str, except: Option<&str>) -> bool {
        self.groups
            .values()
            .any(|g| Some(g.id.as_str()) != except && ilike(name, &g.name))
    }

    fn check_group_name(&self, name: &str, except: Option<&str>) -> Result<(), ApiError> {
        if name.chars().count() > MAX_GROUP_NAME {
            return Err(ApiError::validation(format!(
                "name: Too big: expected string to have <={MAX_GROUP_NAME} characters"
            )));
        }
        if contains_url(name) {
            return Err(ApiError::validation("Must not contain a URL (name)"));
        }
        if self.name_taken(name, except) {
            return Err(ApiError::validation(
                "The name of this group is already in use (isUniqueNameInTeam)",
            ));
        }
        Ok(())
    }

    fn check_description(body: &Map<String, Value>) -> Result<Option<String>, ApiError> {
        let d = opt_string(body, "description")?;
        if d.as_ref()
            .is_some_and(|d| d.chars().count() > MAX_GROUP_DESCRIPTION)
        {
            return Err(ApiError::validation(format!(
                "description: Too big: expected string to have <={MAX_GROUP_DESCRIPTION} characters"
            )));
        }
        Ok(d)
    }

    // ---- methods -------------------------------------------------------------------------

    fn users_info(&self, body: &Map<String, Value>) -> Result<Value, ApiError> {
        let id = opt_uuid(body, "id")?;
        let user = match id {
            Some(id) => self.live_user(&id),
            None => self.actor(),
        }
        .ok_or_else(ApiError::authorization)?;
        Ok(json!({
            "data": self.present_user(user, true),
            "policies": [self.user_policy(user)],
        }))
    }

    fn users_list(&self, page: &Page, body: &Map<String, Value>) -> Result<Value, ApiError> {
        let ascending = direction(body)?;
        let sort = sort_key(body, USER_SORT_KEYS, "createdAt")?;
        let ids = match body.get("ids") {
            None => None,
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item.as_str() {
                        Some(s) if is_uuid(s) => out.push(s.to_ascii_lowercase()),
                        Some(_) => return Err(ApiError::validation(format!("{i}: Invalid UUID"))),
                        None => return Err(expected(&i.to_string(), "string", Some(item))),
                    }
                }
                Some(out)
            }
            other => return Err(expected("ids", "array", other)),
        };
        // Lowercased, then matched exactly: mixed-case stored emails never match (docs/src/upstream/outline.md §6.7).
        let emails = match body.get("emails") {
            None => None,
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item.as_str() {
                        Some(s) if is_email(s) => out.push(s.to_lowercase()),
                        Some(_) => {
                            return Err(ApiError::validation(format!("{i}: Invalid email address")))
                        }
                        None => return Err(expected(&i.to_string(), "string", Some(item))),
                    }
                }
                Some(out)
            }
            other => return Err(expected("emails", "array", other)),
        };
        let query = opt_string(body, "query")?.filter(|q| !q.is_empty());
        let role = opt_enum(body, "role", USER_ROLES)?;
        let filter = opt_enum(body, "filter", USER_FILTERS)?;

        let mut rows: Vec<&UserRec> = self
            .users
            .values()
            .filter(|u| u.deleted_at.is_none())
            .filter(|u| match filter.as_deref() {
                Some("invited") => u.last_active_at.is_none(),
                Some("viewers") => u.role == "viewer",
                Some("admins") => u.role == "admin",
                Some("members") => u.role == "member",
                Some("suspended") => u.suspended_at.is_some(),
                Some("active") => u.last_active_at.is_some() && u.suspended_at.is_none(),
                Some("all") => true,
                // Suspended users are left out unless asked for (docs/src/upstream/outline.md §3.4).
                _ => u.suspended_at.is_none(),
            })
            .filter(|u| role.as_ref().is_none_or(|r| &u.role == r))
            .filter(|u| {
                query.as_ref().is_none_or(|q| {
                    let pattern = format!("%{q}%");
                    u.email.as_deref().is_some_and(|e| ilike(&pattern, e))
                        || ilike(&pattern, &u.name)
                })
            })
            .filter(|u| ids.as_ref().is_none_or(|ids| ids.contains(&u.id)))
            // `emails: []` renders as `IN (NULL)` in v1.9.2 and matches nothing (docs/src/upstream/outline.md §3.4).
            .filter(|u| {
                emails
                    .as_ref()
                    .is_none_or(|list| u.email.as_ref().is_some_and(|e| list.contains(e)))
            })
            .collect();
        rows.sort_by(|a, b| {
            let ord = match sort.as_str() {
                "id" => a.id.cmp(&b.id),
                "email" => cmp_opt(&a.email, &b.email),
                "name" => a.name.to_lowercase().cmp(&b.name.to_lowercase()),
                "role" => a.role.cmp(&b.role),
                "lastActiveAt" => cmp_opt(&a.last_active_at, &b.last_active_at),
                "suspendedAt" => cmp_opt(&a.suspended_at, &b.suspended_at),
                "suspendedById" => cmp_opt(&a.suspended_by_id, &b.suspended_by_id),
                "invitedById" => cmp_opt(&a.invited_by_id, &b.invited_by_id),
                "updatedAt" => a.updated_at.cmp(&b.updated_at),
                "createdAt" => a.created_at.cmp(&b.created_at),
                _ => std::cmp::Ordering::Equal,
            }
            .then(a.seq.cmp(&b.seq));
            if ascending {
                ord
            } else {
                ord.reverse()
            }
        });
        let total = rows.len();
        let rows = page.slice(&rows);
        Ok(json!({
            "pagination": page.json(total),
            "data": rows.iter().map(|u| self.present_user(u, true)).collect::<Vec<_>>(),
            "policies": rows.iter().map(|u| self.user_policy(u)).collect::<Vec<_>>(),
        }))
    }

    fn groups_list(&self, page: &Page, body: &Map<String, Value>) -> Result<Value, ApiError> {
        let ascending = direction(body)?;
        let sort = sort_key(body, GROUP_SORT_KEYS, "updatedAt")?;
        let user_id = opt_uuid(body, "userId")?;
        let external_id = opt_string(body, "externalId")?.filter(|s| !s.is_empty());
        let name = opt_string(body, "name")?.filter(|s| !s.is_empty());
        let query = opt_string(body, "query")?.filter(|s| !s.is_empty());
        let source = opt_string(body, "source")?.filter(|s| !s.is_empty());

        let mut rows: Vec<&GroupRec> = self
            .groups
            .values()
            .filter(|g| match (&name, &query) {
                // `name` is an exact, case-sensitive `=`; `query` an unescaped ILIKE (docs/src/upstream/outline.md §3.4).
                (Some(n), _) => &g.name == n,
                (None, Some(q)) => ilike(&format!("%{q}%"), &g.name),
                (None, None) => true,
            })
            .filter(|g| {
                external_id
                    .as_ref()
                    .is_none_or(|e| g.external_id.as_ref() == Some(e))
            })
            .filter(|g| {
                user_id
                    .as_ref()
                    .is_none_or(|u| self.members.contains_key(&(g.id.clone(), u.clone())))
            })
            // No group is synced from a provider here, so every group is "manual".
            .filter(|_| source.as_deref().is_none_or(|s| s == "manual"))
            .collect();
        rows.sort_by(|a, b| {
            let ord = match sort.as_str() {
                "id" => a.id.cmp(&b.id),
                "name" => a
                    .name
                    .to_lowercase()
                    .cmp(&b.name.to_lowercase())
                    .then(a.name.cmp(&b.name)),
                "description" => cmp_opt(&a.description, &b.description),
                "externalId" => cmp_opt(&a.external_id, &b.external_id),
                "disableMentions" => a.disable_mentions.cmp(&b.disable_mentions),
                "createdAt" => a.created_at.cmp(&b.created_at),
                "updatedAt" => a.updated_at.cmp(&b.updated_at),
                _ => std::cmp::Ordering::Equal,
            }
            .then(a.seq.cmp(&b.seq));
            if ascending {
                ord
            } else {
                ord.reverse()
            }
        });
        let total = rows.len();
        let rows = page.slice(&rows);
        // The deprecated preview: admins first, at most six per group (docs/src/upstream/outline.md §3.4).
        let mut previews = Vec::new();
        for g in &rows {
            let mut members: Vec<(&UserRec, &MemberRec)> = self
                .group_members(&g.id)
                .filter_map(|(uid, m)| self.live_user(uid).map(|u| (u, m)))
                .collect();
            members.sort_by(|a, b| {
                a.1.permission
                    .cmp(&b.1.permission)
                    .then(a.1.seq.cmp(&b.1.seq))
            });
            for (u, m) in members.into_iter().take(MEMBERSHIP_PREVIEW) {
                previews.push(self.present_membership(&g.id, u, m));
            }
        }
        Ok(json!({
            "pagination": page.json(total),
            "data": {
                "groups": rows.iter().map(|g| self.present_group_live(g)).collect::<Vec<_>>(),
                "groupMemberships": previews,
            },
            "policies": rows.iter().map(|g| self.group_policy(&g.id)).collect::<Vec<_>>(),
        }))
    }

    /// `groups.info {id | externalId}`; neither, or no match, is 403 (docs/src/upstream/outline.md §3.4, §9.1).
    fn groups_info(&self, body: &Map<String, Value>) -> Result<Value, ApiError> {
        let id = opt_uuid(body, "id")?;
        let external_id = opt_string(body, "externalId")?.filter(|s| !s.is_empty());
        let group = match (id, external_id) {
            (Some(id), _) => self.group(&id),
            (None, Some(ext)) => self
                .groups
                .values()
                .filter(|g| g.external_id.as_deref() == Some(ext.as_str()))
                .min_by_key(|g| g.seq),
            (None, None) => None,
        }
        .ok_or_else(ApiError::authorization)?;
        Ok(json!({
            "data": self.present_group_live(group),
            "policies": [self.group_policy(&group.id)],
        }))
    }

    /// `groups.create`: `description` is accepted and dropped, as v1.9.2's handler does (docs/src/upstream/outline.md §9).
    fn groups_create(&mut self, body: &Map<String, Value>) -> Result<Value, ApiError> {
        let name = match body.get("name") {
            Some(Value::String(s)) => s.clone(),
            other => return Err(expected("name", "string", other)),
        };
        if name.chars().count() > MAX_GROUP_NAME {
            return Err(ApiError::validation(format!(
                "name: Too big: expected string to have <={MAX_GROUP_NAME} characters"
            )));
        }
        Self::check_description(body)?;
        let external_id = opt_string(body, "externalId")?;
        let disable_mentions = opt_bool(body, "disableMentions")?.unwrap_or(false);
        self.check_group_name(&name, None)?;
        let now = SystemTime::now();
        let seq = self.next_seq();
        let g = GroupRec {
            id: new_uuid(),
            seq,
            name,
            description: None,
            external_id,
            disable_mentions,
            created_at: now,
            updated_at: now,
        };
        let out = json!({
            "data": self.present_group(&g, 0),
            "policies": [self.group_policy(&g.id)],
        });
        self.groups.insert(g.id.clone(), g);
        Ok(out)
    }

    fn groups_update(&mut self, body: &Map<String, Value>) -> Result<Value, ApiError> {
        let id = req_uuid(body, "id")?;
        let name = opt_string(body, "name")?;
        let description = Self::check_description(body)?;
        let external_id = opt_string(body, "externalId")?;
        let disable_mentions = opt_bool(body, "disableMentions")?;
        let group_id = self
            .group(&id)
            .ok_or_else(ApiError::authorization)?
            .id
            .clone();
        if let Some(name) = &name {
            self.check_group_name(name, Some(&group_id))?;
        }
        let Some(g) = self.groups.get_mut(&group_id) else {
            return Err(ApiError::authorization());
        };
        let mut changed = false;
        if let Some(name) = name {
            changed |= g.name != name;
            g.name = name;
        }
        if let Some(d) = description {
            changed |= g.description.as_deref() != Some(d.as_str());
            g.description = Some(d);
        }
        if let Some(e) = external_id {
            changed |= g.external_id.as_deref() != Some(e.as_str());
            g.external_id = Some(e);
        }
        if let Some(d) = disable_mentions {
            changed |= g.disable_mentions != d;
            g.disable_mentions = d;
        }
        if changed {
            g.updated_at = SystemTime::now();
        }
        let g = g.clone();
        Ok(json!({
            "data": self.present_group_live(&g),
            "policies": [self.group_policy(&g.id)],
        }))
    }

    fn groups_delete(&mut self, body: &Map<String, Value>) -> Result<Value, ApiError> {
        let id = req_uuid(body, "id")?;
        if self.group(&id).is_none() {
            return Err(ApiError::authorization());
        }
        self.remove_group(&id);
        Ok(json!({ "success": true }))
    }

    fn remove_group(&mut self, id: &str) {
        let id = id.to_ascii_lowercase();
        self.groups.remove(&id);
        self.members.retain(|(g, _), _| g != &id);
    }

    /// `groups.memberships`: newest membership first, suspended members included, users without
    /// email (docs/src/upstream/outline.md §3.4).
    fn groups_memberships(
        &self,
        page: &Page,
        body: &Map<String, Value>,
    ) -> Result<Value, ApiError> {
        let id = req_uuid(body, "id")?;
        let query = opt_string(body, "query")?.filter(|q| !q.is_empty());
        let permission = opt_enum(body, "permission", GROUP_PERMISSIONS)?;
        let group = self.group(&id).ok_or_else(ApiError::authorization)?;
        let mut rows: Vec<(&UserRec, &MemberRec)> = self
            .group_members(&group.id)
            .filter_map(|(uid, m)| self.live_user(uid).map(|u| (u, m)))
            .filter(|(u, _)| {
                query
                    .as_ref()
                    .is_none_or(|q| ilike(&format!("%{q}%"), &u.name))
            })
            .filter(|(_, m)| permission.as_ref().is_none_or(|p| &m.permission == p))
            .collect();
        rows.sort_by(|a, b| {
            b.1.created_at
                .cmp(&a.1.created_at)
                .then(b.1.seq.cmp(&a.1.seq))
        });
        let total = rows.len();
        let rows = page.slice(&rows);
        let mut memberships = Vec::with_capacity(rows.len());
        let mut users = Vec::with_capacity(rows.len());
        for (u, m) in &rows {
            let user = self.present_user(u, false);
            memberships.push(json!({
                "id": format!("{}-{}", u.id, group.id),
                "userId": u.id,
                "groupId": group.id,
                "permission": m.permission,
                "user": user.clone(),
            }));
            users.push(user);
        }
        Ok(json!({
            "pagination": page.json(total),
            "data": { "groupMemberships": memberships, "users": users },
        }))
    }

    /// `groups.add_user`. `permission` defaults to `"member"`, which demotes an existing group
    /// admin (docs/src/upstream/outline.md §6.3); the answer's `memberCount` is the one from before the change and there is no
    /// `policies` key (docs/src/upstream/outline.md §9.1). The user is checked before the group, as in the source.
    fn groups_add_user(&mut self, body: &Map<String, Value>) -> Result<Value, ApiError> {
        let id = req_uuid(body, "id")?;
        let user_id = req_uuid(body, "userId")?;
        let permission =
            opt_enum(body, "permission", GROUP_PERMISSIONS)?.unwrap_or_else(|| "member".into());
        let user = self
            .live_user(&user_id)
            .ok_or_else(ApiError::authorization)?
            .clone();
        let group = self.group(&id).ok_or_else(ApiError::authorization)?.clone();
        self.refuse_if_provider_managed(&group.id)?;
        let count_before = self.member_count(&group.id);
        self.upsert_member(&group.id, &user.id, &permission);
        let key = (group.id.clone(), user.id.clone());
        let membership = self
            .members
            .get(&key)
            .map(|m| self.present_membership(&group.id, &user, m))
            .unwrap_or(Value::Null);
        Ok(json!({
            "data": {
                "users": [self.present_user(&user, false)],
                "groupMemberships": [membership],
                "groups": [self.present_group(&group, count_before)],
            }
        }))
    }

    /// `groups.remove_user`: a non-member is a 200 no-op (docs/src/upstream/outline.md §6.4); group checked before user.
    fn groups_remove_user(&mut self, body: &Map<String, Value>) -> Result<Value, ApiError> {
        let id = req_uuid(body, "id")?;
        let user_id = req_uuid(body, "userId")?;
        let group = self.group(&id).ok_or_else(ApiError::authorization)?.clone();
        let user = self
            .live_user(&user_id)
            .ok_or_else(ApiError::authorization)?
            .clone();
        self.refuse_if_provider_managed(&group.id)?;
        let count_before = self.member_count(&group.id);
        self.members.remove(&(group.id.clone(), user.id.clone()));
        Ok(json!({
            "data": { "groups": [self.present_group(&group, count_before)] }
        }))
    }

    fn run_swaps(&mut self, body: &Value) {
        let group = body
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_ascii_lowercase();
        let mut due = Vec::new();
        for swap in self.swaps.iter_mut().filter(|s| s.group == group) {
            swap.reads += 1;
            if swap.reads == swap.after {
                due.push((
                    swap.leaves.clone(),
                    swap.joins.clone(),
                    swap.permission.clone(),
                ));
            }
        }
        self.swaps.retain(|s| s.reads < s.after);
        for (leaves, joins, permission) in due {
            self.members.remove(&(group.clone(), leaves));
            self.upsert_member(&group, &joins, &permission);
        }
    }

    fn refuse_if_provider_managed(&self, group_id: &str) -> Result<(), ApiError> {
        match self.provider_managed.get(group_id) {
            Some(message) => Err(ApiError::validation(message.clone())),
            None => Ok(()),
        }
    }

    /// `groups.update_user {id, userId, permission}`; a non-member is a `rejectOnEmpty` 404.
    fn groups_update_user(&mut self, body: &Map<String, Value>) -> Result<Value, ApiError> {
        let id = req_uuid(body, "id")?;
        let user_id = req_uuid(body, "userId")?;
        let permission = opt_enum(body, "permission", GROUP_PERMISSIONS)?.ok_or_else(|| {
            ApiError::validation("permission: Invalid option: expected one of \"admin\"|\"member\"")
        })?;
        let group = self.group(&id).ok_or_else(ApiError::authorization)?.clone();
        let user = self
            .live_user(&user_id)
            .ok_or_else(ApiError::authorization)?
            .clone();
        let key = (group.id.clone(), user.id.clone());
        let Some(m) = self.members.get_mut(&key) else {
            return Err(ApiError::not_found());
        };
        m.permission = permission;
        let m = m.clone();
        Ok(json!({
            "data": {
                "users": [self.present_user(&user, false)],
                "groupMemberships": [self.present_membership(&group.id, &user, &m)],
                "groups": [self.present_group_live(&group)],
            }
        }))
    }

    fn upsert_member(&mut self, group_id: &str, user_id: &str, permission: &str) {
        let key = (group_id.to_string(), user_id.to_string());
        if let Some(m) = self.members.get_mut(&key) {
            m.permission = permission.to_string();
            return;
        }
        let seq = self.next_seq();
        self.members.insert(
            key,
            MemberRec {
                permission: permission.to_string(),
                created_at: SystemTime::now(),
                seq,
            },
        );
    }

    // ---- user lifecycle (server/routes/api/users/users.ts) -----------------------------------

    fn actor_is_admin(&self) -> bool {
        self.actor().is_some_and(|a| a.role == "admin")
    }

    /// `auth({role: UserRole.Admin})`: runs before validation (server/middlewares/authentication.ts).
    fn require_admin_role(&self) -> Result<(), ApiError> {
        if self.actor_is_admin() {
            Ok(())
        } else {
            Err(ApiError::new(
                403,
                "authorization_error",
                "Admin role required",
            ))
        }
    }

    /// `User.findByPk(id, {rejectOnEmpty: true})`: an unknown or deleted id is 404 `not_found`, not the
    /// 403 of `users.info` (docs/src/upstream/outline.md §3.6).
    fn user_or_404(&self, id: &str) -> Result<UserRec, ApiError> {
        self.live_user(id).cloned().ok_or_else(ApiError::not_found)
    }

    fn record_event(
        &mut self,
        name: &str,
        user_id: &str,
        actor_id: Option<&str>,
        ip: Option<&str>,
        changes: Option<Value>,
    ) {
        let seq = self.next_seq();
        self.events.push(EventRec {
            id: new_uuid(),
            seq,
            name: name.to_string(),
            model_id: user_id.to_string(),
            user_id: user_id.to_string(),
            actor_id: actor_id.map(str::to_string),
            ip: ip.map(str::to_string),
            created_at: SystemTime::now(),
            changes,
        });
    }

    fn user_answer(&self, id: &str) -> Result<Value, ApiError> {
        let u = self.users.get(id).ok_or_else(ApiError::not_found)?;
        Ok(json!({
            "data": self.present_user(u, true),
            "policies": [self.user_policy(u)],
        }))
    }

    /// `users.update_role {id, role}` and its deprecated forms `users.promote {id}` (role admin) and
    /// `users.demote {id, to = "member"}`: all admin-only, sharing `updateRole`.
    fn users_role_change(
        &mut self,
        method: &str,
        body: &Map<String, Value>,
        ip: Option<&str>,
    ) -> Result<Value, ApiError> {
        self.require_admin_role()?;
        let id = req_uuid(body, "id")?;
        let role = match method {
            "users.promote" => "admin".to_string(),
            "users.demote" => opt_enum(body, "to", USER_ROLES)?.unwrap_or_else(|| "member".into()),
            _ => {
                opt_enum(body, "role", USER_ROLES)?.ok_or_else(|| enum_error("role", USER_ROLES))?
            }
        };
        self.update_role(&id, &role, ip)
    }

    fn update_role(&mut self, id: &str, role: &str, ip: Option<&str>) -> Result<Value, ApiError> {
        let user = self.user_or_404(id)?;
        // The order of `updateRole`: same role first, then self.
        if user.role == role {
            return Err(ApiError::validation("User is already in that role"));
        }
        if user.id == self.admin_id {
            return Err(ApiError::validation("You cannot change your own role"));
        }
        let rank = |r: &str| ROLE_ORDER.iter().position(|x| *x == r).unwrap_or(0);
        let actor_admin = self.actor_is_admin();
        let suspended = user.suspended_at.is_some();
        // `canDemote` → authorize "demote"; `canPromote` → authorize "promote" (server/policies/user.ts).
        let (name, allowed) = if rank(role) < rank(&user.role) {
            ("users.demote", actor_admin && !suspended)
        } else {
            (
                "users.promote",
                actor_admin && user.role != "admin" && !suspended,
            )
        };
        if !allowed {
            return Err(ApiError::authorization());
        }
        let actor = self.admin_id.clone();
        if let Some(u) = self.users.get_mut(&user.id) {
            u.role = role.to_string();
            u.updated_at = SystemTime::now();
        }
        let changes = json!({"attributes": {"role": role}, "previous": {"role": user.role}});
        self.record_event(name, &user.id, Some(&actor), ip, Some(changes));
        self.user_answer(&user.id)
    }

    /// `users.suspend {id}` / `users.activate {id}`: `auth()` only; the policy is
    /// `isTeamAdmin(actor, user) && user.id !== actor.id`, else 403.
    fn users_suspend(
        &mut self,
        body: &Map<String, Value>,
        suspend: bool,
        ip: Option<&str>,
    ) -> Result<Value, ApiError> {
        let id = req_uuid(body, "id")?;
        let user = self.user_or_404(&id)?;
        if !self.actor_is_admin() || user.id == self.admin_id {
            return Err(ApiError::authorization());
        }
        let actor = self.admin_id.clone();
        if suspend {
            self.apply_suspension(&user.id, &actor, ip);
        } else if user.suspended_at.is_some() || user.suspended_by_id.is_some() {
            let now = SystemTime::now();
            if let Some(u) = self.users.get_mut(&user.id) {
                u.suspended_at = None;
                u.suspended_by_id = None;
                u.updated_at = now;
            }
            let changes = json!({
                "attributes": {"suspendedById": Value::Null, "suspendedAt": Value::Null},
                "previous": {
                    "suspendedById": user.suspended_by_id,
                    "suspendedAt": opt_ts(user.suspended_at),
                },
            });
            self.record_event("users.activate", &user.id, Some(&actor), ip, Some(changes));
        }
        // Activating an active user changes nothing: Sequelize's `save` returns before its hooks, so no
        // event is written.
        self.user_answer(&user.id)
    }

    /// Sets `suspendedAt` (a new date every time) and `suspendedById`, and writes `users.suspend`.
    fn apply_suspension(&mut self, user_id: &str, actor_id: &str, ip: Option<&str>) {
        let now = SystemTime::now();
        let Some(u) = self.users.get_mut(user_id) else {
            return;
        };
        let previous = json!({
            "suspendedById": u.suspended_by_id,
            "suspendedAt": opt_ts(u.suspended_at),
        });
        u.suspended_at = Some(now);
        u.suspended_by_id = Some(actor_id.to_string());
        u.updated_at = now;
        let changes = json!({
            "attributes": {"suspendedById": actor_id, "suspendedAt": ts(now)},
            "previous": previous,
        });
        self.record_event("users.suspend", user_id, Some(actor_id), ip, Some(changes));
    }

    /// `users.invite {invites, suppressEmail?}` and `userInviter` (server/commands/userInviter.ts).
    fn users_invite(
        &mut self,
        body: &Map<String, Value>,
        ip: Option<&str>,
    ) -> Result<Value, ApiError> {
        let items = match body.get("invites") {
            Some(Value::Array(items)) => items,
            other => return Err(expected("invites", "array", other)),
        };
        let mut invites: Vec<(String, String, String)> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let Value::Object(obj) = item else {
                return Err(expected(&i.to_string(), "object", Some(item)));
            };
            let email = match obj.get("email") {
                Some(Value::String(e)) if is_email(e) => e.clone(),
                Some(Value::String(_)) => {
                    return Err(ApiError::validation("email: Invalid email address"))
                }
                other => return Err(expected("email", "string", other)),
            };
            let name = match obj.get("name") {
                Some(Value::String(n)) => n.clone(),
                other => return Err(expected("name", "string", other)),
            };
            let role = match obj.get("role") {
                Some(Value::String(r)) if USER_ROLES.contains(&r.as_str()) => r.clone(),
                _ => return Err(enum_error("role", USER_ROLES)),
            };
            invites.push((email, name, role));
        }
        opt_bool(body, "suppressEmail")?;
        if invites.len() > MAX_INVITES {
            return Err(ApiError::validation(format!(
                "You can only invite up to {MAX_INVITES} users at a time"
            )));
        }
        // `inviteUser` on the team: admins, or members when `MembersCanInvite` is set (default false).
        if !self.actor_is_admin() {
            return Err(ApiError::authorization());
        }
        // Lowercased and deduplicated by email, first one kept (`uniqBy`).
        let mut normalized: Vec<(String, String, String)> = Vec::new();
        for (email, name, role) in invites {
            if email.trim().is_empty() || !email.contains('@') {
                continue;
            }
            let email = email.to_lowercase();
            if normalized.iter().all(|(e, _, _)| e != &email) {
                normalized.push((email, name, role));
            }
        }
        // `User.findAll({where: {email: emails}})`: an exact match against the lowercased invites, so a
        // stored mixed-case email (docs/src/upstream/outline.md §6.7) is not found and gets a second account.
        let (unsent, sent): (Vec<_>, Vec<_>) = normalized.into_iter().partition(|(email, _, _)| {
            self.users
                .values()
                .any(|u| u.deleted_at.is_none() && u.email.as_deref() == Some(email.as_str()))
        });
        // The `User` model's validators run on each create inside one transaction: any failure rolls
        // back every invite of the request.
        for (email, name, _) in &sent {
            if email.chars().count() > MAX_USER_EMAIL {
                return Err(ApiError::validation(format!(
                    "User email must be between 1 and {MAX_USER_EMAIL} characters (email)"
                )));
            }
            if name.is_empty() || name.chars().count() > MAX_USER_NAME {
                return Err(ApiError::validation(format!(
                    "User name must be between 1 and {MAX_USER_NAME} characters (name)"
                )));
            }
            if contains_url(name) {
                return Err(ApiError::validation("Must not contain a URL (name)"));
            }
        }
        let actor = self.admin_id.clone();
        let mut created = Vec::with_capacity(sent.len());
        for (email, name, role) in &sent {
            // An admin inviter keeps `admin`; `viewer` stays; everything else (guest too) becomes member.
            let role = match role.as_str() {
                "admin" | "viewer" => role.clone(),
                _ => "member".to_string(),
            };
            let now = SystemTime::now();
            let seq = self.next_seq();
            let id = new_uuid();
            self.users.insert(
                id.clone(),
                UserRec {
                    last_active_at: None,
                    invited_by_id: Some(actor.clone()),
                    ..UserRec::new(id.clone(), seq, name, email, &role, now)
                },
            );
            self.invited.push(email.clone());
            let changes = json!({
                "attributes": {
                    "name": name,
                    "email": email,
                    "role": role,
                    "invitedById": actor,
                },
                "previous": {},
            });
            self.record_event("users.invite", &id, Some(&actor), ip, Some(changes));
            created.push(id);
        }
        let invite_json = |(email, name, role): &(String, String, String)| json!({"email": email, "name": name, "role": role});
        // `presentUser(user, {includeEmail})`: the email, none of the other details.
        let users: Vec<Value> = created
            .iter()
            .filter_map(|id| self.users.get(id))
            .map(|u| {
                let mut v = self.present_user(u, false);
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("email".into(), json!(u.email));
                }
                v
            })
            .collect();
        Ok(json!({
            "data": {
                "sent": sent.iter().map(invite_json).collect::<Vec<_>>(),
                "unsent": unsent.iter().map(invite_json).collect::<Vec<_>>(),
                "users": users,
            }
        }))
    }

    /// `events.list` (server/routes/api/events/events.ts). The fake has no documents or collections, so a
    /// `documentId` or `collectionId` resolves to null and is 403.
    fn events_list(&self, page: &Page, body: &Map<String, Value>) -> Result<Value, ApiError> {
        let events = match body.get("events") {
            None => None,
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item.as_str() {
                        Some(s) if ACTIVITY_EVENTS.contains(&s) || AUDIT_EVENTS.contains(&s) => {
                            out.push(s.to_string())
                        }
                        _ => return Err(ApiError::validation(format!("{i}: Invalid input"))),
                    }
                }
                Some(out)
            }
            other => return Err(expected("events", "array", other)),
        };
        let actor_id = opt_uuid(body, "actorId")?;
        let document_id = opt_uuid(body, "documentId")?;
        let collection_id = opt_uuid(body, "collectionId")?;
        let audit_log = opt_bool(body, "auditLog")?.unwrap_or(false);
        let name = opt_string(body, "name")?;
        let sort = match opt_string(body, "sort")? {
            None => "createdAt".to_string(),
            Some(s) if s == "name" || s == "createdAt" => s,
            Some(_) => return Err(ApiError::validation("sort: Invalid input")),
        };
        let ascending = direction(body)?;

        // `authorize(user, "audit", team)`: a team admin *and* `isCloudHosted()` (server/policies/team.ts),
        // so a self-hosted server refuses `auditLog: true` to everyone.
        if audit_log && !(self.cloud_hosted && self.actor_is_admin()) {
            return Err(ApiError::authorization());
        }
        let base = if audit_log {
            AUDIT_EVENTS
        } else {
            ACTIVITY_EVENTS
        };
        // `intersection(base, events)`; an empty list renders as `IN (NULL)` and matches nothing.
        let mut names: Vec<String> = match &events {
            Some(list) => base
                .iter()
                .filter(|n| list.iter().any(|e| e == *n))
                .map(|n| n.to_string())
                .collect(),
            None => base.iter().map(|n| n.to_string()).collect(),
        };
        if let Some(n) = name.filter(|n| !n.is_empty()) {
            if names.contains(&n) {
                names = vec![n];
            }
        }
        if let Some(a) = &actor_id {
            // `User.findByPk` then `authorize(user, "readDetails", actor)`.
            let found = self.live_user(a).is_some();
            if !found || !(self.actor_is_admin() || *a == self.admin_id) {
                return Err(ApiError::authorization());
            }
        }
        // `listAllEvents` has no rule, so non-admins must name a document or collection.
        if !self.actor_is_admin() && document_id.is_none() && collection_id.is_none() {
            return Err(ApiError::authorization());
        }
        if document_id.is_some() || collection_id.is_some() {
            return Err(ApiError::authorization());
        }
        let mut rows: Vec<&EventRec> = self
            .events
            .iter()
            .filter(|e| e.actor_id.is_some())
            .filter(|e| names.contains(&e.name))
            .filter(|e| {
                actor_id
                    .as_ref()
                    .is_none_or(|a| e.actor_id.as_ref() == Some(a))
            })
            .collect();
        rows.sort_by(|a, b| {
            let ord = match sort.as_str() {
                "name" => a.name.cmp(&b.name),
                _ => a.created_at.cmp(&b.created_at),
            }
            .then(a.seq.cmp(&b.seq));
            if ascending {
                ord
            } else {
                ord.reverse()
            }
        });
        let rows = page.slice(&rows);
        let data: Vec<Value> = rows
            .iter()
            .map(|e| self.present_event(e, audit_log))
            .collect();
        // `pagination: ctx.state.pagination`: no `total` on this method (docs/src/upstream/outline.md §3.3).
        Ok(json!({
            "pagination": {
                "limit": page.limit,
                "offset": page.offset,
                "nextPath": page.next_path,
            },
            "data": data,
        }))
    }

    /// `presentEvent(event, isAdmin)` (server/presenters/event.ts), `isAdmin` being the request's
    /// `auditLog`: `actorIpAddress` and `changes` only then. `data` is null for the user events here.
    fn present_event(&self, e: &EventRec, audit_log: bool) -> Value {
        let actor = e
            .actor_id
            .as_ref()
            .and_then(|a| self.users.get(a))
            .map(|u| self.present_user(u, false))
            .unwrap_or(Value::Null);
        let mut v = json!({
            "id": e.id,
            "name": e.name,
            "modelId": e.model_id,
            "userId": e.user_id,
            "actorId": e.actor_id,
            "collectionId": Value::Null,
            "documentId": Value::Null,
            "createdAt": ts(e.created_at),
            "data": Value::Null,
            "actor": actor,
        });
        if audit_log {
            if let Some(obj) = v.as_object_mut() {
                if let Some(ip) = e.ip.as_ref().filter(|ip| !ip.is_empty()) {
                    obj.insert("actorIpAddress".into(), json!(ip));
                }
                if let Some(changes) = &e.changes {
                    obj.insert("changes".into(), changes.clone());
                }
            }
        }
        v
    }

    // ---- request pipeline ----------------------------------------------------------------

    /// Rate limiter → route → authentication → pagination → validation → handler, the order of
    /// the real middleware stack (docs/src/upstream/outline.md §4, §3.1).
    fn dispatch(
        &mut self,
        req: &HttpRequest,
        method: &str,
        query: &[(String, String)],
        body: Result<Map<String, Value>, ApiError>,
    ) -> Result<Value, ApiError> {
        let known = matches!(
            method,
            "users.info"
                | "users.list"
                | "groups.list"
                | "groups.info"
                | "groups.create"
                | "groups.update"
                | "groups.delete"
                | "groups.memberships"
                | "groups.add_user"
                | "groups.remove_user"
                | "groups.update_user"
                | "users.update_role"
                | "users.promote"
                | "users.demote"
                | "users.suspend"
                | "users.activate"
                | "users.invite"
                | "events.list"
        );
        if req.method() != actix_web::http::Method::POST || !known {
            return Err(ApiError::not_found());
        }
        let body = body?;
        match extract_token(req, &body, query)? {
            None => return Err(ApiError::authentication("Authentication required")),
            Some(t) if t == self.token => {}
            Some(t) if t.starts_with("ol_api_") => {
                return Err(ApiError::authentication("Invalid API key"))
            }
            Some(_) => return Err(ApiError::authentication("Invalid token")),
        }
        if self.actor().is_some_and(|a| a.suspended_at.is_some()) {
            return Err(ApiError::new(
                403,
                "user_suspended",
                "Your access has been suspended by a workspace admin",
            ));
        }
        if let Some(scopes) = &self.scopes {
            if !scope_allows(scopes, method) {
                return Err(ApiError::new(
                    403,
                    "authorization_error",
                    "API key does not have access to this resource",
                ));
            }
        }
        // `ctx.ip` as `normalizeIp` stores it on events: IPv4-mapped IPv6 addresses lose their prefix.
        let ip = req.peer_addr().map(|a| match a.ip() {
            std::net::IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(|v4| v4.to_string())
                .unwrap_or_else(|| v6.to_string()),
            v4 => v4.to_string(),
        });
        match method {
            "users.info" => self.users_info(&body),
            "users.list" => {
                let page = pagination(method, query, &body)?;
                self.users_list(&page, &body)
            }
            "groups.list" => {
                let page = pagination(method, query, &body)?;
                self.groups_list(&page, &body)
            }
            "groups.info" => self.groups_info(&body),
            "groups.create" => self.groups_create(&body),
            "groups.update" => self.groups_update(&body),
            "groups.delete" => self.groups_delete(&body),
            "groups.memberships" => {
                let page = pagination(method, query, &body)?;
                self.groups_memberships(&page, &body)
            }
            "groups.add_user" => self.groups_add_user(&body),
            "groups.remove_user" => self.groups_remove_user(&body),
            "groups.update_user" => self.groups_update_user(&body),
            "users.update_role" | "users.promote" | "users.demote" => {
                self.users_role_change(method, &body, ip.as_deref())
            }
            "users.suspend" => self.users_suspend(&body, true, ip.as_deref()),
            "users.activate" => self.users_suspend(&body, false, ip.as_deref()),
            "users.invite" => self.users_invite(&body, ip.as_deref()),
            "events.list" => {
                let page = pagination(method, query, &body)?;
                self.events_list(&page, &body)
            }
            _ => Err(ApiError::not_found()),
        }
    }

    fn process(&mut self, req: &HttpRequest, raw: &[u8]) -> Reply {
        let path = req.path();
        let method = path.strip_prefix("/api/").unwrap_or(path).to_string();
        let query = parse_query(req.query_string());
        let parsed: Result<Value, _> = if raw.iter().all(|b| b.is_ascii_whitespace()) {
            Ok(Value::Object(Map::new()))
        } else {
            serde_json::from_slice(raw)
        };
        let logged_body = parsed.as_ref().cloned().unwrap_or(Value::Null);
        let body = match parsed {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Ok(Map::new()),
            Err(e) => Err(ApiError::invalid_request(format!("Invalid JSON body: {e}"))),
        };
        let html = prefers_html(req.headers().get("accept").and_then(|v| v.to_str().ok()));
        let now = Instant::now();

        let reply = if self.down {
            error_reply(
                ApiError::new(503, "service_unavailable", "Service Unavailable"),
                html,
            )
        } else if self.fail_remaining > 0 {
            self.fail_remaining -= 1;
            let status = self.fail_status;
            let mut reply = error_reply(
                ApiError::new(status, error_id(status), reason(status)),
                html,
            );
            if status == 429 {
                reply.headers.push(("Retry-After".into(), "0.05".into()));
            }
            reply
        } else {
            // `groups.create` has its own limiter and does not draw on the default one (docs/src/upstream/outline.md §4.2, §4.3).
            // So has `users.invite` (`FiftyPerHour`, one point per request whatever the number of invites),
            // but only once its route has registered it: the very first `users.invite` request draws on
            // the default limiter, as in v1.9.2 (server/middlewares/rateLimiter.ts, docs/src/upstream/outline.md §4.3).
            let is_post = req.method() == actix_web::http::Method::POST;
            let registers_invite = method == "users.invite" && is_post && !self.invite_registered;
            let limiter = if method == "groups.create" {
                &mut self.create
            } else if method == "users.invite" && self.invite_registered {
                &mut self.invite
            } else {
                &mut self.global
            };
            match limiter.consume(now) {
                Err(ms) => {
                    let mut reply = error_reply(
                        ApiError::new(
                            429,
                            "rate_limit_exceeded",
                            "Rate limit exceeded for this operation",
                        ),
                        html,
                    );
                    let reset = SystemTime::now() + Duration::from_millis(ms);
                    reply.headers = vec![
                        ("Retry-After".into(), retry_after(ms)),
                        ("RateLimit-Limit".into(), limiter.limit.to_string()),
                        ("RateLimit-Remaining".into(), "0".into()),
                        ("RateLimit-Reset".into(), js_date_string(reset)),
                    ];
                    reply
                }
                Ok(_) => {
                    if registers_invite {
                        self.invite_registered = true;
                    }
                    let result = self.dispatch(req, &method, &query, body);
                    answer(result, html)
                }
            }
        };
        if reply.status == 429 {
            self.throttled += 1;
        }
        if method == "groups.memberships" && reply.status == 200 {
            self.run_swaps(&logged_body);
        }
        self.calls.push(OutlineCall {
            method,
            body: logged_body,
            status: reply.status,
            at: now,
        });
        reply
    }
}

/// The success envelope (docs/src/upstream/outline.md §3.1) or the error envelope.
fn answer(result: Result<Value, ApiError>, html: bool) -> Reply {
    match result {
        Ok(Value::Object(mut obj)) => {
            obj.insert("status".into(), json!(200));
            obj.insert("ok".into(), json!(true));
            Reply {
                status: 200,
                headers: Vec::new(),
                body: ReplyBody::Json(Value::Object(obj)),
            }
        }
        Ok(other) => Reply {
            status: 200,
            headers: Vec::new(),
            body: ReplyBody::Json(other),
        },
        Err(e) => error_reply(e, html),
    }
}

/// `msBeforeNext / 1000` as JavaScript prints it: up to three decimals, no trailing zeros
/// (docs/src/upstream/outline.md §4.4: `"37.512"`, `"0.5"`, `"60"`).
fn retry_after(ms: u64) -> String {
    let whole = ms / 1000;
    let frac = ms % 1000;
    if frac == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{}", format!("{frac:03}").trim_end_matches('0'))
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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
    let reply = lock(&state).process(&req, &body);
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut builder = HttpResponse::build(status);
    for (name, value) in &reply.headers {
        builder.insert_header((name.as_str(), value.as_str()));
    }
    match reply.body {
        ReplyBody::Json(v) => builder
            .content_type("application/json; charset=utf-8")
            .body(v.to_string()),
        ReplyBody::Html(h) => builder.content_type("text/html; charset=utf-8").body(h),
    }
}

/// The fake Outline server. Dropping it stops the server.
pub struct FakeOutline {
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
    handle: ServerHandle,
}

impl Drop for FakeOutline {
    fn drop(&mut self) {
        // `stop` sends its command eagerly; the returned future only waits for completion.
        drop(self.handle.stop(false));
    }
}

impl FakeOutline {
    /// Binds `127.0.0.1:0` and spawns the server on the current tokio runtime. The team starts
    /// with one user, the admin who owns the API key ("Bridge Admin", `admin@example.com`).
    pub async fn start(opts: FakeOutlineOptions) -> io::Result<FakeOutline> {
        let now = SystemTime::now();
        let admin_id = new_uuid();
        let mut users = BTreeMap::new();
        users.insert(
            admin_id.clone(),
            UserRec::new(
                admin_id.clone(),
                0,
                "Bridge Admin",
                "admin@example.com",
                "admin",
                now,
            ),
        );
        let state = Arc::new(Mutex::new(State {
            token: opts.api_token,
            admin_id,
            subscription_id: new_uuid(),
            users,
            groups: BTreeMap::new(),
            members: BTreeMap::new(),
            seq: 0,
            calls: Vec::new(),
            throttled: 0,
            latency: opts.latency,
            fail_remaining: 0,
            fail_status: 500,
            down: false,
            scopes: None,
            swaps: Vec::new(),
            provider_managed: BTreeMap::new(),
            global: Window::new(opts.rate_limit_requests, opts.rate_limit_window),
            create: Window::new(opts.create_limit_per_minute, Duration::from_secs(60)),
            invite: Window::new(INVITE_LIMIT_PER_HOUR, HOUR),
            invite_registered: false,
            events: Vec::new(),
            invited: Vec::new(),
            cloud_hosted: false,
        }));
        let data = web::Data::new(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(5 * 1024 * 1024))
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
            .ok_or_else(|| io::Error::other("fake Outline bound no address"))?;
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(FakeOutline {
            state,
            addr,
            handle,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash; the API is under `/api/`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The API key the fake accepts.
    pub fn token(&self) -> String {
        self.lock().token.clone()
    }

    /// The id of the admin who owns the API key; `users.info {}` returns this user.
    pub fn admin_id(&self) -> String {
        self.lock().admin_id.clone()
    }

    /// The id of the (pretend) webhook subscription named in deliveries.
    pub fn webhook_subscription_id(&self) -> String {
        self.lock().subscription_id.clone()
    }

    // ---- seeding and inspection ----------------------------------------------------------

    /// A signed-in member. The email is stored as given: SSO sign-ups keep the IdP's case (docs/src/upstream/outline.md §6.7).
    pub fn add_user(&self, name: &str, email: &str) -> String {
        self.add_user_with(name, email, "member", false)
    }

    /// A signed-in user with `role` (`admin|member|viewer|guest`), suspended or not.
    pub fn add_user_with(&self, name: &str, email: &str, role: &str, suspended: bool) -> String {
        let mut st = self.lock();
        let now = SystemTime::now();
        let seq = st.next_seq();
        let id = new_uuid();
        st.users.insert(
            id.clone(),
            UserRec {
                suspended_at: suspended.then_some(now),
                ..UserRec::new(id.clone(), seq, name, email, role, now)
            },
        );
        id
    }

    /// An invited user who never signed in: `lastActiveAt` null, email lowercased as invites are
    /// (docs/src/upstream/outline.md §6.7, §9.1).
    pub fn invite_user(&self, name: &str, email: &str) -> String {
        let id = self.add_user(name, &email.to_lowercase());
        if let Some(u) = self.lock().users.get_mut(&id) {
            u.last_active_at = None;
        }
        id
    }

    /// Suspends or reactivates a user. Memberships are kept (docs/src/upstream/outline.md §6.6). Seeding: no
    /// event is written and no suspender is recorded.
    pub fn set_suspended(&self, user_id: &str, suspended: bool) {
        let mut st = self.lock();
        if let Some(u) = st.users.get_mut(&user_id.to_ascii_lowercase()) {
            u.suspended_at = if suspended {
                Some(SystemTime::now())
            } else {
                None
            };
            u.suspended_by_id = None;
            u.updated_at = SystemTime::now();
        }
    }

    /// Suspends a user as `actor_id` would through the UI ("suspended by another admin by hand"):
    /// `suspendedById` is the actor and a `users.suspend` event with that `actorId` is written (without an
    /// IP address).
    ///
    /// # Panics
    /// If either user does not exist.
    pub fn suspend_as(&self, user_id: &str, actor_id: &str) {
        let mut st = self.lock();
        let uid = st
            .live_user(user_id)
            .map(|u| u.id.clone())
            .unwrap_or_else(|| panic!("FakeOutline::suspend_as: no user {user_id}"));
        let aid = st
            .users
            .get(&actor_id.to_ascii_lowercase())
            .map(|u| u.id.clone())
            .unwrap_or_else(|| panic!("FakeOutline::suspend_as: no actor {actor_id}"));
        st.apply_suspension(&uid, &aid, None);
    }

    /// Whether the user is suspended (false for an unknown id).
    pub fn is_suspended(&self, user_id: &str) -> bool {
        self.lock()
            .users
            .get(&user_id.to_ascii_lowercase())
            .is_some_and(|u| u.suspended_at.is_some())
    }

    /// `suspendedById`: who suspended the user through `users.suspend` or [`Self::suspend_as`].
    pub fn suspended_by(&self, user_id: &str) -> Option<String> {
        self.lock()
            .users
            .get(&user_id.to_ascii_lowercase())
            .and_then(|u| u.suspended_by_id.clone())
    }

    /// The user's role (`admin|member|viewer|guest`), `None` for an unknown id.
    pub fn role_of(&self, user_id: &str) -> Option<String> {
        self.lock()
            .users
            .get(&user_id.to_ascii_lowercase())
            .map(|u| u.role.clone())
    }

    /// Seeds a role; no event is written. Setting the key owner's role below admin makes the admin-only
    /// methods answer 403 "Admin role required", as the real server would.
    pub fn set_role(&self, user_id: &str, role: &str) {
        let mut st = self.lock();
        if let Some(u) = st.users.get_mut(&user_id.to_ascii_lowercase()) {
            u.role = role.to_string();
            u.updated_at = SystemTime::now();
        }
    }

    /// The stored email of a user (`None` for an unknown or deleted user, whose email is cleared).
    pub fn user_email(&self, user_id: &str) -> Option<String> {
        self.lock()
            .users
            .get(&user_id.to_ascii_lowercase())
            .and_then(|u| u.email.clone())
    }

    /// The (lowercased) emails of the users `users.invite` created, oldest first.
    pub fn invited_emails(&self) -> Vec<String> {
        self.lock().invited.clone()
    }

    /// Replaces `users.invite`'s limiter (default 50 requests an hour) and starts a fresh window.
    /// Whether the route has registered it yet is kept: on a fresh fake the first `users.invite` request
    /// still draws on the default limiter (docs/src/upstream/outline.md §4.3).
    pub fn set_invite_limit(&self, per_hour: u32) {
        self.lock().invite = Window::new(per_hour, HOUR);
    }

    /// Pretends to be the cloud-hosted Outline (`env.isCloudHosted`), the only deployment where admins
    /// may read `events.list {auditLog: true}`. Off by default: a self-hosted server answers 403.
    pub fn set_cloud_hosted(&self, cloud: bool) {
        self.lock().cloud_hosted = cloud;
    }

    /// The names of the recorded events, oldest first (whatever their actor).
    pub fn event_names(&self) -> Vec<String> {
        self.lock().events.iter().map(|e| e.name.clone()).collect()
    }

    /// Changes a user's stored email (as a sign-in with a verified, changed email does, docs/src/upstream/outline.md §6.7).
    pub fn set_email(&self, user_id: &str, email: &str) {
        let mut st = self.lock();
        if let Some(u) = st.users.get_mut(&user_id.to_ascii_lowercase()) {
            u.email = Some(email.to_string());
            u.updated_at = SystemTime::now();
        }
    }

    /// Soft delete (docs/src/upstream/outline.md §6.6): email null, name "Unknown", every membership destroyed without events.
    pub fn delete_user(&self, id: &str) {
        let mut st = self.lock();
        let id = id.to_ascii_lowercase();
        let now = SystemTime::now();
        if let Some(u) = st.users.get_mut(&id) {
            u.deleted_at = Some(now);
            u.updated_at = now;
            u.email = None;
            u.name = "Unknown".into();
        }
        st.members.retain(|(_, u), _| u != &id);
    }

    /// Adds a group directly, skipping the name check: the real table has no unique constraint,
    /// so racing creates can leave duplicates (docs/src/upstream/outline.md §6.1), and tests may need that state.
    pub fn add_group(&self, name: &str, external_id: Option<&str>) -> String {
        let mut st = self.lock();
        let now = SystemTime::now();
        let seq = st.next_seq();
        let id = new_uuid();
        st.groups.insert(
            id.clone(),
            GroupRec {
                id: id.clone(),
                seq,
                name: name.to_string(),
                description: None,
                external_id: external_id.map(str::to_string),
                disable_mentions: false,
                created_at: now,
                updated_at: now,
            },
        );
        id
    }

    /// Deletes a group and its memberships.
    pub fn delete_group(&self, id: &str) {
        self.lock().remove_group(id);
    }

    /// Adds a member or changes an existing member's permission (`"member"` or `"admin"`).
    ///
    /// # Panics
    /// If the group or the user does not exist: that is a bug in the calling test.
    pub fn add_member(&self, group_id: &str, user_id: &str, permission: &str) {
        let mut st = self.lock();
        let gid = st
            .group(group_id)
            .map(|g| g.id.clone())
            .unwrap_or_else(|| panic!("FakeOutline::add_member: no group {group_id}"));
        let uid = st
            .live_user(user_id)
            .map(|u| u.id.clone())
            .unwrap_or_else(|| panic!("FakeOutline::add_member: no user {user_id}"));
        st.upsert_member(&gid, &uid, permission);
    }

    /// Removes a membership; a non-member is a no-op.
    pub fn remove_member(&self, group_id: &str, user_id: &str) {
        self.lock()
            .members
            .remove(&(group_id.to_ascii_lowercase(), user_id.to_ascii_lowercase()));
    }

    /// The group's members: user id → permission (`"member"` or `"admin"`). Suspended members
    /// are included, as in `groups.memberships`.
    pub fn members(&self, group_id: &str) -> BTreeMap<String, String> {
        let st = self.lock();
        let gid = group_id.to_ascii_lowercase();
        st.group_members(&gid)
            .map(|(u, m)| (u.clone(), m.permission.clone()))
            .collect()
    }

    /// Every group, in creation order.
    pub fn groups(&self) -> Vec<FakeGroup> {
        let st = self.lock();
        let mut groups: Vec<&GroupRec> = st.groups.values().collect();
        groups.sort_by_key(|g| g.seq);
        groups
            .into_iter()
            .map(|g| FakeGroup {
                id: g.id.clone(),
                name: g.name.clone(),
                external_id: g.external_id.clone(),
            })
            .collect()
    }

    /// The first group whose name equals `name` case-insensitively (names are unique that way,
    /// docs/src/upstream/outline.md §6.1).
    pub fn group_by_name(&self, name: &str) -> Option<FakeGroup> {
        let wanted = name.to_lowercase();
        self.groups()
            .into_iter()
            .find(|g| g.name.to_lowercase() == wanted)
    }

    /// The id of a live user with exactly this email.
    pub fn user_by_email(&self, email: &str) -> Option<String> {
        let st = self.lock();
        st.users
            .values()
            .filter(|u| u.deleted_at.is_none() && u.email.as_deref() == Some(email))
            .min_by_key(|u| u.seq)
            .map(|u| u.id.clone())
    }

    /// Every request answered so far, oldest first.
    pub fn calls(&self) -> Vec<OutlineCall> {
        self.lock().calls.clone()
    }

    /// Forgets the calls and the 429 count.
    pub fn clear_calls(&self) {
        let mut st = self.lock();
        st.calls.clear();
        st.throttled = 0;
    }

    /// Requests to `method` (e.g. `"groups.add_user"`), whatever their status.
    pub fn count_calls(&self, method: &str) -> usize {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.method == method)
            .count()
    }

    /// 429 answers so far (since the last `clear_calls`).
    pub fn throttled_count(&self) -> usize {
        self.lock().throttled
    }

    // ---- faults --------------------------------------------------------------------------

    /// Delay before every answer from now on.
    pub fn set_latency(&self, d: Duration) {
        self.lock().latency = d;
    }

    /// The next `n` requests answer `status` with Outline's error envelope (a 429 also carries
    /// `Retry-After: 0.05`).
    pub fn fail_next(&self, n: usize, status: u16) {
        let mut st = self.lock();
        st.fail_remaining = n;
        st.fail_status = status;
    }

    /// While down, every request answers 503.
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    /// Limits the API key to `scopes` (`None`: full access), as `apiKeys.create` does (docs/src/upstream/outline.md §3.5).
    pub fn set_key_scopes(&self, scopes: Option<Vec<String>>) {
        self.lock().scopes = scopes;
    }

    /// Right after the `after`-th page read of the group's memberships, `leaves` leaves the group and `joins`
    /// joins it with `permission`, as another admin's edits racing a paged read would.
    pub fn swap_member_after_reads(
        &self,
        group_id: &str,
        after: usize,
        leaves: &str,
        joins: &str,
        permission: &str,
    ) {
        self.lock().swaps.push(MemberSwap {
            group: group_id.to_ascii_lowercase(),
            after,
            reads: 0,
            leaves: leaves.to_ascii_lowercase(),
            joins: joins.to_ascii_lowercase(),
            permission: permission.to_string(),
        });
    }

    /// Makes a group refuse membership changes as a provider-managed group does (Outline 1.6 and later).
    pub fn set_provider_managed(&self, group_id: &str, managed: bool) {
        let mut st = self.lock();
        if managed {
            st.provider_managed.insert(
                group_id.to_ascii_lowercase(),
                "This group is managed by an external provider".to_string(),
            );
        } else {
            st.provider_managed.remove(&group_id.to_ascii_lowercase());
        }
    }

    /// Replaces the default limiter and starts a fresh window.
    pub fn set_rate_limit(&self, requests: u32, window: Duration) {
        self.lock().global = Window::new(requests, window);
    }

    // ---- webhook support -----------------------------------------------------------------

    /// The exact body Outline posts for a `users.signin` of this user (docs/src/upstream/outline.md §2.2, §2.3, §9.1): compact
    /// JSON, a new delivery id, `actorId` = the user, the keys of `payload.model` in the
    /// presenter's order, no email, `timezone` null. Also records the sign-in as activity
    /// (`lastActiveAt`).
    ///
    /// # Panics
    /// If the user does not exist.
    pub fn signin_delivery(&self, user_id: &str) -> String {
        let mut st = self.lock();
        let id = user_id.to_ascii_lowercase();
        let now = SystemTime::now();
        let Some(u) = st.users.get_mut(&id) else {
            panic!("FakeOutline::signin_delivery: no user {user_id}");
        };
        u.last_active_at = Some(now);
        let u = u.clone();
        let model = ordered_json(&[
            ("id", json!(u.id)),
            ("name", json!(u.name)),
            ("avatarUrl", Value::Null),
            ("color", json!(u.color)),
            ("role", json!(u.role)),
            ("isSuspended", json!(u.suspended_at.is_some())),
            ("createdAt", ts(u.created_at)),
            ("updatedAt", ts(u.updated_at)),
            ("deletedAt", opt_ts(u.deleted_at)),
            ("lastActiveAt", opt_ts(u.last_active_at)),
            ("timezone", Value::Null),
        ]);
        let payload = format!("{{\"id\":{},\"model\":{model}}}", json!(u.id));
        format!(
            "{{\"id\":{},\"actorId\":{},\"webhookSubscriptionId\":{},\"createdAt\":{},\"event\":\"users.signin\",\"payload\":{payload}}}",
            json!(new_uuid()),
            json!(u.id),
            json!(st.subscription_id),
            ts(now),
        )
    }

    /// Posts a `users.signin` delivery to `url` as Outline's webhook task does (docs/src/upstream/outline.md §2.6): lowercase
    /// header names, `user-agent: Outline-`, and `outline-signature` when `secret` is set (docs/src/upstream/outline.md §2.1).
    /// Returns the receiver's status.
    pub async fn deliver_signin(
        &self,
        url: &str,
        secret: Option<&str>,
        user_id: &str,
    ) -> io::Result<u16> {
        let body = self.signin_delivery(user_id);
        let mut headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("user-agent".to_string(), "Outline-".to_string()),
        ];
        if let Some(secret) = secret {
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_millis() as u64;
            headers.push((
                "outline-signature".to_string(),
                outline_signature(secret, t, body.as_bytes()),
            ));
        }
        let (status, _) = http_post(url, &headers, body.as_bytes(), Duration::from_secs(5)).await?;
        Ok(status)
    }
}

/// `Outline-Signature` for a body: `t=<ms>,s=<hex HMAC-SHA256(secret, "<t>.<body>")>`
/// (docs/src/upstream/outline.md §2.1). The one signer in the workspace: the fake's own deliveries, the
/// tests, the benchmarks and the demo all sign with it; the bridge only verifies.
pub fn outline_signature(secret: &str, t_ms: u64, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        // HMAC takes keys of any length; this branch cannot happen.
        Err(_) => return format!("t={t_ms},s="),
    };
    mac.update(t_ms.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t_ms},s={}", hex::encode(mac.finalize().into_bytes()))
}

/// Compact JSON with the keys in the given order (serde_json's map would sort them).
fn ordered_json(pairs: &[(&str, Value)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}:{}", json!(k), v))
        .collect();
    format!("{{{}}}", inner.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_contract_test_vector() {
        // docs/src/upstream/outline.md §2.1.
        assert_eq!(
            outline_signature(
                "ol_whs_testsecret",
                1_724_340_000_000,
                br#"{"id":"d1","event":"users.signin"}"#
            ),
            "t=1724340000000,s=c8b8b84d55906fd23ba7453b835377b98095ed9d2ac270144a2d6108d89514c4"
        );
    }

    #[test]
    fn ilike_has_live_wildcards() {
        assert!(ilike("docs", "Docs"));
        assert!(ilike("eng_team", "eng-team"));
        assert!(ilike("%ng%", "Engineering"));
        assert!(!ilike("eng\\_team", "eng-team"));
        assert!(!ilike("doc", "docs"));
    }

    #[test]
    fn retry_after_is_js_number_formatting() {
        assert_eq!(retry_after(37_512), "37.512");
        assert_eq!(retry_after(500), "0.5");
        assert_eq!(retry_after(60_000), "60");
        assert_eq!(retry_after(1_230), "1.23");
    }

    #[test]
    fn accept_negotiation() {
        assert!(!prefers_html(None));
        assert!(!prefers_html(Some("*/*")));
        assert!(!prefers_html(Some("application/json")));
        assert!(prefers_html(Some("text/html")));
        assert!(prefers_html(Some(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        )));
        assert!(!prefers_html(Some("application/json, text/html")));
        assert!(!prefers_html(Some("text/html;q=0.5, application/json")));
    }

    #[test]
    fn urls_in_names_are_rejected() {
        assert!(contains_url("see https://example.com"));
        assert!(contains_url("www.example.com"));
        assert!(!contains_url("http: x"));
        assert!(!contains_url("Engineering"));
    }
}
