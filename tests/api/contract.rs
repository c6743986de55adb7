//! Contract tests for the fakes in `upstream_fakes` (crates/upstream-fakes).
//!
//! Every endpoint the fakes serve is driven over HTTP and its answers are validated against the
//! vendors' OpenAPI specs (`tests/fixtures/upstream/outline-openapi.yml`,
//! `tests/fixtures/upstream/authentik-openapi-2026.8.yml`), in strict mode: no field outside the spec.
//! Where the contracts document that the real server differs from its published spec, the check
//! asserts the documented behaviour instead, through a [`Patch`] that cites the section.
//! The traps a client must survive (docs/src/upstream/outline.md §9.1, docs/src/upstream/authentik.md §7, §12) get their own
//! assertions.

use crate::openapi;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use openapi::Patch;
use serde_json::{json, Value};
use upstream_fakes::{
    event_document, outline_signature, python_json, test_button_document, FakeAuthentik,
    FakeAuthentikOptions, FakeOutline, FakeOutlineOptions,
};

// ---- plumbing ---------------------------------------------------------------------------------

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
    text: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

async fn read(resp: reqwest::Response) -> Answer {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("read body");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
        text,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

async fn outline_raw(
    fake: &FakeOutline,
    method: &str,
    body: Value,
    token: Option<&str>,
    accept: &str,
) -> Answer {
    let mut req = client()
        .post(format!("{}/api/{method}", fake.url()))
        .header("Accept", accept)
        .json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    read(req.send().await.expect("request to fake Outline")).await
}

/// An authenticated call, validated against the spec for its method and status.
async fn outline(fake: &FakeOutline, method: &str, body: Value) -> Answer {
    let a = outline_raw(fake, method, body, Some(&fake.token()), "application/json").await;
    check_outline(method, &a);
    a
}

async fn start_outline() -> FakeOutline {
    FakeOutline::start(FakeOutlineOptions::default())
        .await
        .expect("start fake Outline")
}

async fn start_authentik() -> FakeAuthentik {
    FakeAuthentik::start(FakeAuthentikOptions::default())
        .await
        .expect("start fake Authentik")
}

/// Where the real Outline differs from `outline-openapi.yml`, each documented in docs/src/upstream/outline.md.
fn outline_patches() -> Vec<Patch> {
    vec![
        // docs/src/upstream/outline.md §3.7: `groups.memberships`, `groups.add_user` and the `groups.list` preview return
        // `{id: "<userId>-<groupId>", userId, groupId, permission: member|admin, user}`, not the
        // spec's `GroupMembership` (documentId, collectionId, read|read_write).
        Patch::Replace(
            "GroupMembership",
            json!({
                "type": "object",
                "properties": {
                    "id": {"type": "string", "pattern": "^[0-9a-f-]{36}-[0-9a-f-]{36}$"},
                    "userId": {"type": "string", "format": "uuid"},
                    "groupId": {"type": "string", "format": "uuid"},
                    "permission": {"type": "string", "enum": ["member", "admin"]},
                    "user": {"$ref": "#/components/schemas/User"}
                },
                "required": ["id", "userId", "groupId", "permission", "user"]
            }),
        ),
        // docs/src/upstream/outline.md §3.3, §3.7: answers also carry `nextPath` and an exact `total`.
        Patch::AddProps(
            "Pagination",
            json!({"nextPath": {"type": "string", "pattern": "^/api/"}, "total": {"type": "number"}}),
        ),
        Patch::Require("Pagination", &["limit", "offset", "nextPath", "total"]),
        // server/models/User.ts: the `avatarUrl` getter is null until an avatar is uploaded.
        Patch::Nullable("User", "avatarUrl"),
        // docs/src/upstream/outline.md §3.4: an admin caller also gets `language`, `preferences` (null, docs/src/upstream/outline.md §9.1) and
        // `notificationSettings`.
        Patch::AddProps(
            "User",
            json!({
                "language": {"type": "string"},
                "preferences": {"type": "object", "nullable": true},
                "notificationSettings": {"type": "object"}
            }),
        ),
        // docs/src/upstream/outline.md §2.3: the presenter always sends these.
        Patch::Require(
            "User",
            &[
                "id",
                "name",
                "avatarUrl",
                "color",
                "role",
                "isSuspended",
                "createdAt",
                "updatedAt",
                "deletedAt",
                "lastActiveAt",
                "timezone",
            ],
        ),
        // docs/src/upstream/outline.md §3.4: `presentGroup`.
        Patch::Require(
            "Group",
            &[
                "id",
                "name",
                "description",
                "externalId",
                "memberCount",
                "disableMentions",
                "createdAt",
                "updatedAt",
            ],
        ),
        // docs/src/upstream/outline.md §3.6: the error envelope always has these four.
        Patch::Require("Error", &["ok", "error", "status", "message"]),
        Patch::Require("Policy", &["id", "abilities"]),
    ]
}

/// Validates an Outline answer against the spec's schema for that method and status.
fn check_outline(method: &str, a: &Answer) {
    let spec = openapi::outline();
    let path = format!("/{method}");
    let status = a.status.to_string();
    let mut schema = if spec.lists_status(&path, "post", &status) {
        spec.response(&path, "post", &status)
    } else {
        // Statuses the spec leaves out (400 on the list methods, 404 for unknown methods) carry
        // the same error envelope (docs/src/upstream/outline.md §3.6).
        json!({"$ref": "#/components/schemas/Error"})
    };
    if a.status == 200 {
        // docs/src/upstream/outline.md §3.1: the success envelope adds `status` and `ok` to every handler body.
        let props = schema["properties"]
            .as_object_mut()
            .expect("object response");
        props.insert("status".into(), json!({"type": "number", "enum": [200]}));
        props.insert("ok".into(), json!({"type": "boolean", "enum": [true]}));
        schema["required"] = json!(["status", "ok"]);
    }
    if a.status == 429 {
        // docs/src/upstream/outline.md §4.4, §3.7: the source also sends `message`.
        schema["properties"]["message"] = json!({"type": "string"});
        schema["required"] = json!(["ok", "error", "status", "message"]);
    }
    spec.assert_valid(
        &format!("{method} {status}"),
        &schema,
        &a.body,
        &outline_patches(),
        true,
    );
}

async fn authentik_get(fake: &FakeAuthentik, path_and_query: &str, token: Option<&str>) -> Answer {
    let mut req = client().get(format!("{}/api/v3{path_and_query}", fake.url()));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    read(req.send().await.expect("request to fake Authentik")).await
}

/// An authenticated GET, validated against the spec for `template` (the spec's path).
async fn authentik(fake: &FakeAuthentik, template: &str, path_and_query: &str) -> Answer {
    let a = authentik_get(fake, path_and_query, Some(&fake.token())).await;
    check_authentik(template, &a);
    a
}

fn check_authentik(template: &str, a: &Answer) {
    let spec = openapi::authentik();
    let status = a.status.to_string();
    let schema = if spec.lists_status(template, "get", &status) {
        spec.response(template, "get", &status)
    } else {
        // DRF answers a 404 (unknown object, "Invalid page.") with the same `{"detail": …}`
        // body as its other errors; the spec lists no 404 for these reads.
        assert_eq!(a.status, 404, "unexpected unlisted status for {template}");
        json!({"$ref": "#/components/schemas/GenericError"})
    };
    spec.assert_valid(
        &format!("GET {template} {status}"),
        &schema,
        &a.body,
        &[],
        true,
    );
}

/// Polls `cond` every 10 ms until it holds or `limit` passes.
async fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---- Outline: users ---------------------------------------------------------------------------

#[tokio::test]
async fn outline_users_info_returns_caller_or_user_with_email() {
    let fake = start_outline().await;
    let jane = fake.add_user("Jane Doe", "Jane.Doe@Corp.com");

    let me = outline(&fake, "users.info", json!({})).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["ok"], true);
    assert_eq!(me.body["data"]["id"], fake.admin_id());
    assert_eq!(me.body["data"]["role"], "admin");

    // docs/src/upstream/outline.md §3.1: unknown keys are stripped, so `{email}` returns the caller, not Jane.
    let by_email = outline(&fake, "users.info", json!({"email": "Jane.Doe@Corp.com"})).await;
    assert_eq!(by_email.body["data"]["id"], fake.admin_id());

    let a = outline(&fake, "users.info", json!({"id": jane})).await;
    assert_eq!(a.status, 200);
    let data = &a.body["data"];
    // docs/src/upstream/outline.md §3.4: the admin key sees the email, stored with the IdP's case (docs/src/upstream/outline.md §6.7).
    assert_eq!(data["email"], "Jane.Doe@Corp.com");
    // docs/src/upstream/outline.md §9.1: timezone and preferences null.
    assert_eq!(data["timezone"], Value::Null);
    assert_eq!(data["preferences"], Value::Null);
    assert_eq!(a.body["policies"][0]["id"], jane);
}

#[tokio::test]
async fn outline_users_info_unknown_or_deleted_id_is_403() {
    let fake = start_outline().await;
    // docs/src/upstream/outline.md §3.7, §9: 403 where the spec lists 404.
    let a = outline(
        &fake,
        "users.info",
        json!({"id": "0b5a4e4e-9c1f-4c0e-8a51-6f1d1b7c2a10"}),
    )
    .await;
    assert_eq!(a.status, 403);
    assert_eq!(a.body["error"], "authorization_error");
    assert_eq!(a.body["ok"], false);

    // docs/src/upstream/outline.md §6.6: a deleted user is gone from every read.
    let gone = fake.add_user("Gone", "gone@example.com");
    fake.delete_user(&gone);
    let a = outline(&fake, "users.info", json!({"id": gone})).await;
    assert_eq!(a.status, 403);

    let a = outline(&fake, "users.info", json!({"id": "not-a-uuid"})).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.body["error"], "validation_error");
    assert_eq!(a.body["message"], "id: Invalid UUID");
}

#[tokio::test]
async fn outline_authentication_failures_are_401() {
    let fake = start_outline().await;
    let none = outline_raw(&fake, "users.info", json!({}), None, "application/json").await;
    check_outline("users.info", &none);
    assert_eq!(none.status, 401);
    assert_eq!(none.body["error"], "authentication_required");
    assert_eq!(none.body["message"], "Authentication required");

    let wrong = format!("ol_api_{}", "x".repeat(38));
    let bad = outline_raw(
        &fake,
        "groups.list",
        json!({}),
        Some(&wrong),
        "application/json",
    )
    .await;
    check_outline("groups.list", &bad);
    assert_eq!(bad.status, 401);
    assert_eq!(bad.body["message"], "Invalid API key");

    // docs/src/upstream/outline.md §3.2: the key may also travel as a body `token`.
    let in_body = outline_raw(
        &fake,
        "users.info",
        json!({"token": fake.token()}),
        None,
        "application/json",
    )
    .await;
    assert_eq!(in_body.status, 200);
}

#[tokio::test]
async fn outline_users_list_paginates_and_filters() {
    let fake = start_outline().await;
    for i in 0..29 {
        fake.add_user(&format!("User {i:02}"), &format!("user{i:02}@example.com"));
    }
    let suspended = fake.add_user_with("Sus Pended", "sus@example.com", "member", true);
    let mixed = fake.add_user("Mixed Case", "Mixed.Case@Example.com");
    let invited = fake.invite_user("Invi Ted", "Invited@Example.com");
    // 1 admin + 29 + mixed + invited visible; the suspended one is hidden by default.

    let a = outline(&fake, "users.list", json!({})).await;
    assert_eq!(a.status, 200);
    let p = &a.body["pagination"];
    assert_eq!(p["limit"], 25);
    assert_eq!(p["offset"], 0);
    assert_eq!(p["total"], 32);
    assert_eq!(p["nextPath"], "/api/users.list?limit=25&offset=25");
    assert_eq!(a.body["data"].as_array().map(Vec::len), Some(25));

    let last = outline(&fake, "users.list", json!({"limit": 25, "offset": 25})).await;
    assert_eq!(last.body["data"].as_array().map(Vec::len), Some(7));
    // docs/src/upstream/outline.md §9: `nextPath` is there even on the last page.
    assert_eq!(
        last.body["pagination"]["nextPath"],
        "/api/users.list?limit=25&offset=50"
    );

    // docs/src/upstream/outline.md §3.3, §9: 100 is accepted, 101 rejected (not clamped).
    let ok = outline(&fake, "users.list", json!({"limit": 100})).await;
    assert_eq!(ok.status, 200);
    let too_big = outline(&fake, "users.list", json!({"limit": 101})).await;
    assert_eq!(too_big.status, 400);
    assert_eq!(too_big.body["error"], "invalid_request");
    assert_eq!(
        too_big.body["message"],
        "Pagination limit is too large (max 100)"
    );
    // docs/src/upstream/outline.md §9.1: `limit: 0` is the default 25.
    let zero = outline(&fake, "users.list", json!({"limit": 0})).await;
    assert_eq!(zero.body["pagination"]["limit"], 25);
    let negative = outline(&fake, "users.list", json!({"offset": -1})).await;
    assert_eq!(negative.status, 400);

    // docs/src/upstream/outline.md §9.1: a filter outside the enum is a validation error.
    let bogus = outline(&fake, "users.list", json!({"filter": "bogus"})).await;
    assert_eq!(bogus.status, 400);
    assert_eq!(bogus.body["error"], "validation_error");

    // docs/src/upstream/outline.md §3.4: suspended users only with `all` / `suspended`.
    let all = outline(&fake, "users.list", json!({"filter": "all", "limit": 100})).await;
    assert_eq!(all.body["pagination"]["total"], 33);
    let sus = outline(&fake, "users.list", json!({"filter": "suspended"})).await;
    assert_eq!(sus.body["data"][0]["id"], suspended);
    assert_eq!(sus.body["data"][0]["isSuspended"], true);
    // docs/src/upstream/outline.md §9.1: invited users have `lastActiveAt: null` and are what `invited` returns.
    let inv = outline(&fake, "users.list", json!({"filter": "invited"})).await;
    assert_eq!(inv.body["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(inv.body["data"][0]["id"], invited);
    assert_eq!(inv.body["data"][0]["lastActiveAt"], Value::Null);

    // docs/src/upstream/outline.md §6.7: `emails` are lowercased, then matched exactly, so a mixed-case stored email misses.
    let miss = outline(
        &fake,
        "users.list",
        json!({"emails": ["Mixed.Case@Example.com"]}),
    )
    .await;
    assert_eq!(miss.body["pagination"]["total"], 0);
    let hit = outline(
        &fake,
        "users.list",
        json!({"emails": ["USER07@example.com"]}),
    )
    .await;
    assert_eq!(hit.body["data"][0]["email"], "user07@example.com");
    // Invites are stored lowercased, so they do match.
    let inv_hit = outline(
        &fake,
        "users.list",
        json!({"emails": ["invited@example.com"]}),
    )
    .await;
    assert_eq!(inv_hit.body["data"][0]["id"], invited);
    // docs/src/upstream/outline.md §3.4: `emails: []` matches nothing in v1.9.2.
    let empty = outline(&fake, "users.list", json!({"emails": []})).await;
    assert_eq!(empty.body["pagination"]["total"], 0);
    let not_email = outline(&fake, "users.list", json!({"emails": ["nope"]})).await;
    assert_eq!(not_email.status, 400);

    // `query`: case-insensitive substring of email or name.
    let q = outline(&fake, "users.list", json!({"query": "mixed.CASE@"})).await;
    assert_eq!(q.body["data"][0]["id"], mixed);
    let q = outline(&fake, "users.list", json!({"query": "user 1"})).await;
    assert_eq!(q.body["pagination"]["total"], 10);

    let ids = outline(&fake, "users.list", json!({"ids": [mixed, invited]})).await;
    assert_eq!(ids.body["pagination"]["total"], 2);

    // Default order is createdAt DESC; ASC reverses it.
    let asc = outline(
        &fake,
        "users.list",
        json!({"sort": "createdAt", "direction": "ASC", "limit": 1}),
    )
    .await;
    assert_eq!(asc.body["data"][0]["id"], fake.admin_id());
    let bad_sort = outline(&fake, "users.list", json!({"sort": "bogus"})).await;
    assert_eq!(bad_sort.status, 400);
}

// ---- Outline: groups --------------------------------------------------------------------------

#[tokio::test]
async fn outline_groups_list_filters_sorts_and_previews() {
    let fake = start_outline().await;
    let eng = fake.add_group("Engineering", Some("ak-eng"));
    let docs = fake.add_group("Docs", None);
    for i in 0..27 {
        fake.add_group(&format!("Team {i:02}"), None);
    }
    let mut users = Vec::new();
    for i in 0..8 {
        let u = fake.add_user(&format!("Member {i}"), &format!("m{i}@example.com"));
        fake.add_member(&eng, &u, if i == 7 { "admin" } else { "member" });
        users.push(u);
    }
    fake.add_member(&docs, &users[0], "member");

    let a = outline(&fake, "groups.list", json!({})).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["pagination"]["total"], 29);
    assert_eq!(a.body["data"]["groups"].as_array().map(Vec::len), Some(25));
    assert_eq!(a.body["policies"].as_array().map(Vec::len), Some(25));
    // docs/src/upstream/outline.md §9.1: `limit: 0` is the default 25.
    let zero = outline(&fake, "groups.list", json!({"limit": 0})).await;
    assert_eq!(zero.body["pagination"]["limit"], 25);
    let too_big = outline(&fake, "groups.list", json!({"limit": 101})).await;
    assert_eq!(too_big.status, 400);
    assert_eq!(too_big.body["error"], "invalid_request");

    // docs/src/upstream/outline.md §9.1: a sort that is not a Group attribute.
    let bogus = outline(&fake, "groups.list", json!({"sort": "bogus"})).await;
    assert_eq!(bogus.status, 400);
    assert_eq!(bogus.body["error"], "validation_error");
    assert_eq!(bogus.body["message"], "sort: Invalid sort parameter");

    let asc = outline(
        &fake,
        "groups.list",
        json!({"sort": "createdAt", "direction": "ASC", "limit": 2}),
    )
    .await;
    assert_eq!(asc.body["data"]["groups"][0]["id"], eng);
    assert_eq!(asc.body["data"]["groups"][1]["id"], docs);
    assert_eq!(
        asc.body["pagination"]["nextPath"],
        "/api/groups.list?limit=2&offset=2"
    );

    // `externalId`: exact.
    let by_ext = outline(&fake, "groups.list", json!({"externalId": "ak-eng"})).await;
    assert_eq!(by_ext.body["pagination"]["total"], 1);
    assert_eq!(by_ext.body["data"]["groups"][0]["externalId"], "ak-eng");
    // docs/src/upstream/outline.md §6.1: `name` is exact and case-sensitive; `query` a case-insensitive substring.
    let exact = outline(&fake, "groups.list", json!({"name": "docs"})).await;
    assert_eq!(exact.body["pagination"]["total"], 0);
    let exact = outline(&fake, "groups.list", json!({"name": "Docs"})).await;
    assert_eq!(exact.body["data"]["groups"][0]["id"], docs);
    let q = outline(&fake, "groups.list", json!({"query": "GINEER"})).await;
    assert_eq!(q.body["data"]["groups"][0]["id"], eng);
    // `userId`: only the user's groups.
    let mine = outline(&fake, "groups.list", json!({"userId": users[0]})).await;
    assert_eq!(mine.body["pagination"]["total"], 2);

    // docs/src/upstream/outline.md §3.4: the deprecated preview holds at most six members per group, admins first.
    let one = outline(&fake, "groups.list", json!({"externalId": "ak-eng"})).await;
    let previews = one.body["data"]["groupMemberships"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(previews.len(), 6);
    assert_eq!(previews[0]["permission"], "admin");
    assert_eq!(one.body["data"]["groups"][0]["memberCount"], 8);
    // docs/src/upstream/outline.md §3.4: membership users carry no email.
    assert!(previews.iter().all(|m| m["user"].get("email").is_none()));
}

#[tokio::test]
async fn outline_groups_info_by_id_or_external_id_else_403() {
    let fake = start_outline().await;
    let g = fake.add_group("Wiki Editors", Some("3b9f1d6e0c8e4a0f9d7b5c3a1e2f4d6c"));
    let by_id = outline(&fake, "groups.info", json!({"id": g})).await;
    assert_eq!(by_id.status, 200);
    assert_eq!(by_id.body["data"]["name"], "Wiki Editors");
    assert_eq!(by_id.body["data"]["memberCount"], 0);
    assert_eq!(by_id.body["data"]["disableMentions"], false);
    let by_ext = outline(
        &fake,
        "groups.info",
        json!({"externalId": "3b9f1d6e0c8e4a0f9d7b5c3a1e2f4d6c"}),
    )
    .await;
    assert_eq!(by_ext.body["data"]["id"], g);

    // docs/src/upstream/outline.md §3.7, §9.1: neither key, or an unknown one, is 403 authorization_error.
    for body in [
        json!({}),
        json!({"id": "0b5a4e4e-9c1f-4c0e-8a51-6f1d1b7c2a10"}),
        json!({"externalId": "nope"}),
    ] {
        let a = outline(&fake, "groups.info", body).await;
        assert_eq!(a.status, 403);
        assert_eq!(a.body["error"], "authorization_error");
    }
}

#[tokio::test]
async fn outline_groups_create_and_update_enforce_case_insensitive_names() {
    let fake = start_outline().await;
    let a = outline(
        &fake,
        "groups.create",
        json!({"name": "Docs", "externalId": "ak-docs", "description": "ignored"}),
    )
    .await;
    assert_eq!(a.status, 200);
    let docs = a.body["data"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(a.body["data"]["externalId"], "ak-docs");
    // docs/src/upstream/outline.md §9: `description` is accepted and dropped by v1.9.2's handler.
    assert_eq!(a.body["data"]["description"], Value::Null);
    assert_eq!(fake.group_by_name("docs").map(|g| g.id), Some(docs.clone()));

    // docs/src/upstream/outline.md §6.1, §9: "docs" clashes with "Docs".
    let clash = outline(&fake, "groups.create", json!({"name": "docs"})).await;
    assert_eq!(clash.status, 400);
    assert_eq!(clash.body["error"], "validation_error");
    assert_eq!(
        clash.body["message"],
        "The name of this group is already in use (isUniqueNameInTeam)"
    );
    // docs/src/upstream/outline.md §6.1: the name is an unescaped ILIKE pattern, so `_` matches `-`.
    fake.add_group("eng-team", None);
    let wildcard = outline(&fake, "groups.create", json!({"name": "eng_team"})).await;
    assert_eq!(wildcard.status, 400);

    let long = outline(&fake, "groups.create", json!({"name": "x".repeat(256)})).await;
    assert_eq!(long.status, 400);
    let missing = outline(&fake, "groups.create", json!({})).await;
    assert_eq!(missing.status, 400);
    assert_eq!(
        missing.body["message"],
        "name: Invalid input: expected string, received undefined"
    );

    // `groups.update`: rename and link; renaming onto another group's name clashes too.
    let other = fake.add_group("Other", None);
    let renamed = outline(
        &fake,
        "groups.update",
        json!({"id": other, "name": "Renamed", "externalId": "ak-other"}),
    )
    .await;
    assert_eq!(renamed.status, 200);
    assert_eq!(renamed.body["data"]["name"], "Renamed");
    assert_eq!(renamed.body["data"]["externalId"], "ak-other");
    let clash = outline(&fake, "groups.update", json!({"id": other, "name": "DOCS"})).await;
    assert_eq!(clash.status, 400);
    // A group may keep its own name in another case.
    let own = outline(
        &fake,
        "groups.update",
        json!({"id": other, "name": "RENAMED"}),
    )
    .await;
    assert_eq!(own.status, 200);
    let unknown = outline(
        &fake,
        "groups.update",
        json!({"id": "0b5a4e4e-9c1f-4c0e-8a51-6f1d1b7c2a10", "name": "x"}),
    )
    .await;
    assert_eq!(unknown.status, 403);

    let deleted = outline(&fake, "groups.delete", json!({"id": other})).await;
    assert_eq!(deleted.body["success"], true);
    assert!(fake.group_by_name("renamed").is_none());
}

#[tokio::test]
async fn outline_groups_create_has_its_own_limit_of_ten_a_minute() {
    let fake = start_outline().await;
    for i in 0..10 {
        let a = outline(&fake, "groups.create", json!({"name": format!("G{i}")})).await;
        assert_eq!(a.status, 200);
    }
    // docs/src/upstream/outline.md §4.3, §9: the 11th answers 429 with a fractional Retry-After.
    let a = outline(&fake, "groups.create", json!({"name": "G10"})).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.body["error"], "rate_limit_exceeded");
    assert_eq!(a.body["message"], "Rate limit exceeded for this operation");
    let retry = a.header("retry-after").expect("Retry-After");
    assert_retry_after(&retry, 60.0);
    assert_eq!(a.header("ratelimit-limit").as_deref(), Some("10"));
    assert_eq!(fake.throttled_count(), 1);
    // Other methods are unaffected (docs/src/upstream/outline.md §4.3).
    let other = outline(&fake, "groups.list", json!({})).await;
    assert_eq!(other.status, 200);
}

/// docs/src/upstream/outline.md §4.4, §9.1: seconds with up to three decimals, parsed as a float.
fn assert_retry_after(value: &str, at_most: f64) {
    let (whole, frac) = value.split_once('.').unwrap_or((value, ""));
    assert!(
        !whole.is_empty() && whole.chars().all(|c| c.is_ascii_digit()),
        "Retry-After {value:?}"
    );
    assert!(
        frac.len() <= 3 && frac.chars().all(|c| c.is_ascii_digit()),
        "Retry-After {value:?}"
    );
    let secs: f64 = value.parse().expect("Retry-After parses as f64");
    assert!(secs > 0.0 && secs <= at_most, "Retry-After {secs}");
}

#[tokio::test]
async fn outline_default_limiter_answers_429_with_ietf_headers() {
    let fake = start_outline().await;
    fake.set_rate_limit(3, Duration::from_secs(30));
    for _ in 0..3 {
        assert_eq!(outline(&fake, "users.info", json!({})).await.status, 200);
    }
    let a = outline(&fake, "groups.list", json!({})).await;
    assert_eq!(a.status, 429);
    assert_retry_after(&a.header("retry-after").expect("Retry-After"), 30.0);
    assert_eq!(a.header("ratelimit-limit").as_deref(), Some("3"));
    assert_eq!(a.header("ratelimit-remaining").as_deref(), Some("0"));
    // docs/src/upstream/outline.md §4.4: v1.9.2 sends a JavaScript Date string, and no X-RateLimit-* headers.
    let reset = a.header("ratelimit-reset").expect("RateLimit-Reset");
    assert!(reset.contains("GMT"), "RateLimit-Reset {reset:?}");
    assert!(a
        .headers
        .keys()
        .all(|k| !k.as_str().starts_with("x-ratelimit")));
    assert_eq!(fake.throttled_count(), 1);
    // A fresh window admits requests again.
    fake.set_rate_limit(1000, Duration::from_secs(60));
    assert_eq!(outline(&fake, "users.info", json!({})).await.status, 200);
}

#[tokio::test]
async fn outline_memberships_have_the_source_shape() {
    let fake = start_outline().await;
    let g = fake.add_group("Eng", None);
    let first = fake.add_user("First", "first@example.com");
    let second = fake.add_user_with("Second", "second@example.com", "member", true);
    let third = fake.add_user("Third", "third@example.com");
    fake.add_member(&g, &first, "admin");
    fake.add_member(&g, &second, "member");
    fake.add_member(&g, &third, "member");

    let a = outline(&fake, "groups.memberships", json!({"id": g})).await;
    assert_eq!(a.status, 200);
    let items = a.body["data"]["groupMemberships"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // docs/src/upstream/outline.md §3.4: newest membership first; suspended members included.
    let order: Vec<&str> = items.iter().filter_map(|m| m["userId"].as_str()).collect();
    assert_eq!(order, vec![third.as_str(), second.as_str(), first.as_str()]);
    // docs/src/upstream/outline.md §3.7: `id` is "<userId>-<groupId>".
    assert_eq!(items[2]["id"], format!("{first}-{g}"));
    assert_eq!(items[2]["permission"], "admin");
    assert!(items.iter().all(|m| m["user"].get("email").is_none()));
    assert!(a.body["data"]["users"]
        .as_array()
        .is_some_and(|u| u.iter().all(|u| u.get("email").is_none())));
    assert_eq!(a.body["pagination"]["total"], 3);
    // docs/src/upstream/outline.md §3.4: memberCount leaves suspended members out.
    let info = outline(&fake, "groups.info", json!({"id": g})).await;
    assert_eq!(info.body["data"]["memberCount"], 2);
    fake.set_suspended(&first, true);
    let info = outline(&fake, "groups.info", json!({"id": g})).await;
    assert_eq!(info.body["data"]["memberCount"], 1);
    fake.set_suspended(&first, false);

    let admins = outline(
        &fake,
        "groups.memberships",
        json!({"id": g, "permission": "admin"}),
    )
    .await;
    assert_eq!(admins.body["pagination"]["total"], 1);
    let paged = outline(
        &fake,
        "groups.memberships",
        json!({"id": g, "limit": 1, "offset": 1}),
    )
    .await;
    assert_eq!(paged.body["data"]["groupMemberships"][0]["userId"], second);
    let unknown = outline(
        &fake,
        "groups.memberships",
        json!({"id": "0b5a4e4e-9c1f-4c0e-8a51-6f1d1b7c2a10"}),
    )
    .await;
    assert_eq!(unknown.status, 403);
}

#[tokio::test]
async fn outline_add_user_defaults_to_member_and_demotes_admins() {
    let fake = start_outline().await;
    let g = fake.add_group("Eng", None);
    let boss = fake.add_user("Boss", "boss@example.com");
    let dev = fake.add_user("Dev", "dev@example.com");
    fake.add_member(&g, &boss, "admin");

    // A new member: memberCount in the answer is the count from before (docs/src/upstream/outline.md §9.1), no policies.
    let a = outline(&fake, "groups.add_user", json!({"id": g, "userId": dev})).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["data"]["groups"][0]["memberCount"], 1);
    assert!(a.body.get("policies").is_none());
    assert_eq!(
        a.body["data"]["groupMemberships"][0]["permission"],
        "member"
    );
    assert_eq!(a.body["data"]["users"][0]["id"], dev);
    assert!(a.body["data"]["users"][0].get("email").is_none());
    assert_eq!(fake.members(&g).len(), 2);

    // docs/src/upstream/outline.md §6.3, §9: re-adding the group admin without `permission` demotes them.
    let again = outline(&fake, "groups.add_user", json!({"id": g, "userId": boss})).await;
    assert_eq!(again.status, 200);
    assert_eq!(
        fake.members(&g).get(&boss).map(String::as_str),
        Some("member")
    );
    // Passing the permission keeps (or restores) it.
    outline(
        &fake,
        "groups.add_user",
        json!({"id": g, "userId": boss, "permission": "admin"}),
    )
    .await;
    assert_eq!(
        fake.members(&g).get(&boss).map(String::as_str),
        Some("admin")
    );

    // docs/src/upstream/outline.md §3.7, §6.5: unknown group or user is 403, not 404.
    let unknown = "0b5a4e4e-9c1f-4c0e-8a51-6f1d1b7c2a10";
    for body in [
        json!({"id": unknown, "userId": dev}),
        json!({"id": g, "userId": unknown}),
    ] {
        let a = outline(&fake, "groups.add_user", body).await;
        assert_eq!(a.status, 403);
        assert_eq!(a.body["error"], "authorization_error");
    }
    // `groups.update_user` is not in the spec (docs/src/upstream/outline.md §3.7); it answers the shape of `groups.add_user`.
    let update = outline_raw(
        &fake,
        "groups.update_user",
        json!({"id": g, "userId": dev, "permission": "admin"}),
        Some(&fake.token()),
        "application/json",
    )
    .await;
    assert_eq!(update.status, 200);
    let spec = openapi::outline();
    let mut schema = spec.response("/groups.add_user", "post", "200");
    schema["properties"]["status"] = json!({"type": "number"});
    schema["properties"]["ok"] = json!({"type": "boolean"});
    spec.assert_valid(
        "groups.update_user 200",
        &schema,
        &update.body,
        &outline_patches(),
        true,
    );
    assert_eq!(
        fake.members(&g).get(&dev).map(String::as_str),
        Some("admin")
    );

    let bad = outline(
        &fake,
        "groups.add_user",
        json!({"id": g, "userId": dev, "permission": "owner"}),
    )
    .await;
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn outline_remove_user_reports_old_count_and_ignores_non_members() {
    let fake = start_outline().await;
    let g = fake.add_group("Eng", None);
    let dev = fake.add_user("Dev", "dev@example.com");
    let stranger = fake.add_user("Stranger", "stranger@example.com");
    fake.add_member(&g, &dev, "member");

    let a = outline(&fake, "groups.remove_user", json!({"id": g, "userId": dev})).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["data"]["groups"][0]["memberCount"], 1);
    assert!(fake.members(&g).is_empty());
    // docs/src/upstream/outline.md §6.4, §9: a non-member is a 200 no-op.
    let noop = outline(
        &fake,
        "groups.remove_user",
        json!({"id": g, "userId": stranger}),
    )
    .await;
    assert_eq!(noop.status, 200);
    assert_eq!(noop.body["data"]["groups"][0]["memberCount"], 0);
    let unknown = outline(
        &fake,
        "groups.remove_user",
        json!({"id": "0b5a4e4e-9c1f-4c0e-8a51-6f1d1b7c2a10", "userId": dev}),
    )
    .await;
    assert_eq!(unknown.status, 403);
}

#[tokio::test]
async fn outline_deleted_user_loses_memberships_silently() {
    let fake = start_outline().await;
    let g = fake.add_group("Eng", None);
    let dev = fake.add_user("Dev", "dev@example.com");
    fake.add_member(&g, &dev, "member");
    fake.delete_user(&dev);
    // docs/src/upstream/outline.md §6.6: memberships destroyed, user gone from lists and from add_user.
    assert!(fake.members(&g).is_empty());
    let list = outline(&fake, "users.list", json!({"filter": "all"})).await;
    assert!(list.body["data"]
        .as_array()
        .is_some_and(|d| d.iter().all(|u| u["id"] != dev)));
    let add = outline(&fake, "groups.add_user", json!({"id": g, "userId": dev})).await;
    assert_eq!(add.status, 403);
}

#[tokio::test]
async fn outline_unknown_method_is_404_and_html_is_negotiated() {
    let fake = start_outline().await;
    let a = outline(&fake, "groups.frobnicate", json!({})).await;
    assert_eq!(a.status, 404);
    assert_eq!(a.body["error"], "not_found");
    assert_eq!(a.body["message"], "Resource not found");

    // docs/src/upstream/outline.md §3.6, §9.1: a client that prefers HTML gets an HTML error page.
    let html = outline_raw(&fake, "users.info", json!({}), None, "text/html").await;
    assert_eq!(html.status, 401);
    assert!(html
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/html")));
    assert!(html.text.contains("<html"));
}

#[tokio::test]
async fn outline_faults_and_call_log() {
    let fake = start_outline().await;
    fake.fail_next(2, 500);
    for _ in 0..2 {
        let a = outline(&fake, "users.info", json!({})).await;
        assert_eq!(a.status, 500);
        assert_eq!(a.body["error"], "internal_error");
    }
    assert_eq!(outline(&fake, "users.info", json!({})).await.status, 200);

    fake.set_down(true);
    let down = outline_raw(
        &fake,
        "users.info",
        json!({}),
        Some(&fake.token()),
        "application/json",
    )
    .await;
    assert_eq!(down.status, 503);
    fake.set_down(false);

    fake.set_latency(Duration::from_millis(150));
    let started = Instant::now();
    outline(&fake, "users.info", json!({})).await;
    assert!(started.elapsed() >= Duration::from_millis(150));
    fake.set_latency(Duration::ZERO);

    let calls = fake.calls();
    assert_eq!(calls.len(), 5);
    assert_eq!(calls[0].method, "users.info");
    assert_eq!(calls[0].status, 500);
    assert_eq!(calls[3].status, 503);
    assert_eq!(fake.count_calls("users.info"), 5);
    fake.clear_calls();
    assert_eq!(fake.count_calls("users.info"), 0);
}

#[tokio::test]
async fn outline_signin_delivery_matches_the_webhook_body() {
    let fake = start_outline().await;
    let jane = fake.add_user("Jane Doe", "jane@example.com");
    let body = fake.signin_delivery(&jane);

    // docs/src/upstream/outline.md §9: compact JSON, and docs/src/upstream/outline.md §2.3: no email anywhere, for any user.
    assert!(
        !body.contains("\": ") && !body.contains(", \""),
        "not compact: {body}"
    );
    assert!(!body.contains("email"), "email leaked: {body}");
    let v: Value = serde_json::from_str(&body).expect("delivery is JSON");
    assert_eq!(v["event"], "users.signin");
    assert_eq!(v["actorId"], jane);
    assert_eq!(v["payload"]["id"], jane);
    // docs/src/upstream/outline.md §2.2: the real key name (the docs misspell it).
    assert_eq!(v["webhookSubscriptionId"], fake.webhook_subscription_id());
    assert_eq!(v["payload"]["model"]["timezone"], Value::Null);
    assert_eq!(v["payload"]["model"]["role"], "member");
    assert_eq!(v["payload"]["model"]["isSuspended"], false);
    // docs/src/upstream/outline.md §2.2: a new delivery id each time.
    let again: Value = serde_json::from_str(&fake.signin_delivery(&jane)).expect("JSON");
    assert_ne!(v["id"], again["id"]);

    // docs/src/upstream/outline.md §2.2, §2.3, §9.1: top-level and model keys in the presenter's order.
    assert_key_order(
        &body,
        &[
            "\"id\":",
            "\"actorId\":",
            "\"webhookSubscriptionId\":",
            "\"createdAt\":",
            "\"event\":",
            "\"payload\":",
        ],
    );
    let model_at = body.find("\"model\":").expect("model");
    assert_key_order(
        &body[model_at..],
        &[
            "\"id\":",
            "\"name\":",
            "\"avatarUrl\":",
            "\"color\":",
            "\"role\":",
            "\"isSuspended\":",
            "\"createdAt\":",
            "\"updatedAt\":",
            "\"deletedAt\":",
            "\"lastActiveAt\":",
            "\"timezone\":",
        ],
    );
    let model = v["payload"]["model"].as_object().expect("model object");
    assert_eq!(model.len(), 11);

    // docs/src/upstream/outline.md §2.1: the signature the bridge verifies.
    let sig = outline_signature(
        "ol_whs_testsecret",
        1_724_340_000_000,
        br#"{"id":"d1","event":"users.signin"}"#,
    );
    assert_eq!(
        sig,
        "t=1724340000000,s=c8b8b84d55906fd23ba7453b835377b98095ed9d2ac270144a2d6108d89514c4"
    );
}

fn assert_key_order(text: &str, keys: &[&str]) {
    let mut from = 0;
    for key in keys {
        let at = text[from..]
            .find(key)
            .unwrap_or_else(|| panic!("{key} missing or out of order in {text}"));
        from += at + key.len();
    }
}

// ---- Authentik: users -------------------------------------------------------------------------

#[tokio::test]
async fn authentik_users_list_pagination_is_drf_with_caps() {
    let fake = start_authentik().await;
    for i in 0..45 {
        fake.add_user(
            &format!("user{i:02}"),
            &format!("User {i:02}"),
            &format!("user{i:02}@example.com"),
        );
    }
    // 45 + akadmin = 46 users; default page size 20 (docs/src/upstream/authentik.md §7.2).
    let p1 = authentik(&fake, "/core/users/", "/core/users/").await;
    assert_eq!(p1.status, 200);
    let pg = &p1.body["pagination"];
    assert_eq!(pg["count"], 46);
    assert_eq!(pg["current"], 1);
    assert_eq!(pg["total_pages"], 3);
    assert_eq!(pg["next"], 2);
    // docs/src/upstream/authentik.md §7.2: `previous` is 0 (an integer), not null.
    assert_eq!(pg["previous"], 0);
    assert!(pg["previous"].is_u64());
    assert_eq!(pg["start_index"], 1);
    assert_eq!(pg["end_index"], 20);
    assert_eq!(p1.body["results"].as_array().map(Vec::len), Some(20));
    assert_eq!(p1.body["autocomplete"], json!({}));

    let p3 = authentik(&fake, "/core/users/", "/core/users/?page=3").await;
    assert_eq!(p3.body["pagination"]["next"], 0);
    assert_eq!(p3.body["pagination"]["previous"], 2);
    assert_eq!(p3.body["pagination"]["start_index"], 41);
    assert_eq!(p3.body["pagination"]["end_index"], 46);
    assert_eq!(p3.body["results"].as_array().map(Vec::len), Some(6));

    // DRF: past the end is 404 "Invalid page.", not an empty page.
    let p4 = authentik(&fake, "/core/users/", "/core/users/?page=4").await;
    assert_eq!(p4.status, 404);
    assert_eq!(p4.body, json!({"detail": "Invalid page."}));
    let p0 = authentik(&fake, "/core/users/", "/core/users/?page=0").await;
    assert_eq!(p0.status, 404);

    // docs/src/upstream/authentik.md §7.2: page_size above the cap is clamped to 100; invalid falls back to the default.
    let big = authentik(&fake, "/core/users/", "/core/users/?page_size=500").await;
    assert_eq!(big.body["results"].as_array().map(Vec::len), Some(46));
    assert_eq!(big.body["pagination"]["total_pages"], 1);
    for bad in ["abc", "0", "-5"] {
        let a = authentik(
            &fake,
            "/core/users/",
            &format!("/core/users/?page_size={bad}"),
        )
        .await;
        assert_eq!(
            a.body["results"].as_array().map(Vec::len),
            Some(20),
            "page_size={bad}"
        );
    }
    let small = authentik(&fake, "/core/users/", "/core/users/?page_size=7&page=7").await;
    assert_eq!(small.body["pagination"]["total_pages"], 7);
    assert_eq!(small.body["results"].as_array().map(Vec::len), Some(4));
}

#[tokio::test]
async fn authentik_page_size_cap_comes_from_the_options() {
    let fake = FakeAuthentik::start(FakeAuthentikOptions {
        max_page_size: 5,
        default_page_size: 3,
        ..FakeAuthentikOptions::default()
    })
    .await
    .expect("start");
    for i in 0..9 {
        fake.add_user(&format!("u{i}"), "U", &format!("u{i}@example.com"));
    }
    let a = authentik(&fake, "/core/users/", "/core/users/").await;
    assert_eq!(a.body["results"].as_array().map(Vec::len), Some(3));
    let a = authentik(&fake, "/core/users/", "/core/users/?page_size=100").await;
    assert_eq!(a.body["results"].as_array().map(Vec::len), Some(5));
    assert_eq!(a.body["pagination"]["total_pages"], 2);
}

#[tokio::test]
async fn authentik_users_filters_and_detail() {
    let fake = start_authentik().await;
    let jane = fake.add_user("jane", "Jane Doe", "Jane.Doe@Corp.com");
    let bob = fake.add_user("bob", "Bob", "bob@example.com");
    let eng = fake.add_group("engineering");
    fake.add_member(&eng, jane);
    fake.set_active(bob, false);

    // docs/src/upstream/authentik.md §7.4: `email` is exact and case-sensitive.
    let hit = authentik(
        &fake,
        "/core/users/",
        "/core/users/?email=Jane.Doe%40Corp.com",
    )
    .await;
    assert_eq!(hit.body["pagination"]["count"], 1);
    assert_eq!(hit.body["results"][0]["pk"], jane);
    let miss = authentik(
        &fake,
        "/core/users/",
        "/core/users/?email=jane.doe%40corp.com",
    )
    .await;
    assert_eq!(miss.body["pagination"]["count"], 0);
    let by_name = authentik(&fake, "/core/users/", "/core/users/?username=bob").await;
    assert_eq!(by_name.body["results"][0]["pk"], bob);
    let inactive = authentik(&fake, "/core/users/", "/core/users/?is_active=false").await;
    assert_eq!(inactive.body["pagination"]["count"], 1);
    assert_eq!(inactive.body["results"][0]["is_active"], false);

    let in_group = authentik(
        &fake,
        "/core/users/",
        &format!("/core/users/?groups_by_pk={eng}"),
    )
    .await;
    assert_eq!(in_group.body["pagination"]["count"], 1);
    let user = &in_group.body["results"][0];
    assert_eq!(user["groups"], json!([eng]));
    assert_eq!(user["groups_obj"][0]["name"], "engineering");
    assert_eq!(user["is_superuser"], false);
    // `include_groups=false` nulls `groups_obj` but keeps `groups`.
    let lean = authentik(
        &fake,
        "/core/users/",
        &format!("/core/users/?groups_by_pk={eng}&include_groups=false"),
    )
    .await;
    assert_eq!(lean.body["results"][0]["groups_obj"], Value::Null);
    assert_eq!(lean.body["results"][0]["groups"], json!([eng]));
    // An unknown group is a DRF validation error (400, spec's ValidationError).
    let unknown = authentik(
        &fake,
        "/core/users/",
        "/core/users/?groups_by_pk=0b5a4e4e-9c1f-4c0e-8a51-6f1d1b7c2a10",
    )
    .await;
    assert_eq!(unknown.status, 400);
    assert!(unknown.body["groups_by_pk"].is_array());

    let ordered = authentik(&fake, "/core/users/", "/core/users/?ordering=-pk").await;
    assert_eq!(ordered.body["results"][0]["pk"], bob);

    let detail = authentik(&fake, "/core/users/{id}/", &format!("/core/users/{jane}/")).await;
    assert_eq!(detail.status, 200);
    assert_eq!(detail.body["email"], "Jane.Doe@Corp.com");
    assert_eq!(detail.body["name"], "Jane Doe");
    let missing = authentik(&fake, "/core/users/{id}/", "/core/users/99999/").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body["detail"], "No User matches the given query.");

    let me = authentik(&fake, "/core/users/me/", "/core/users/me/").await;
    assert_eq!(me.body["user"]["username"], "akadmin");
    assert_eq!(me.body["user"]["is_superuser"], true);

    // Django's APPEND_SLASH.
    let no_slash = authentik_get(&fake, "/core/users", Some(&fake.token())).await;
    assert_eq!(no_slash.status, 301);
    assert_eq!(
        no_slash.header("location").as_deref(),
        Some("/api/v3/core/users/")
    );
}

// ---- Authentik: groups ------------------------------------------------------------------------

#[tokio::test]
async fn authentik_groups_list_and_detail() {
    let fake = start_authentik().await;
    let jane = fake.add_user("jane", "Jane Doe", "jane@example.com");
    let parent = fake.add_group("staff");
    let child = fake.add_group_with("wiki-editors", false, std::slice::from_ref(&parent));
    fake.add_member(&child, jane);

    // Seeded like a fresh install.
    let all = authentik(&fake, "/core/groups/", "/core/groups/").await;
    assert_eq!(all.status, 200);
    let names: Vec<&str> = all.body["results"]
        .as_array()
        .map(|r| r.iter().filter_map(|g| g["name"].as_str()).collect())
        .unwrap_or_default();
    // Ordered by name (GroupViewSet.ordering).
    assert_eq!(
        names,
        vec![
            "authentik Admins",
            "authentik Read-only",
            "staff",
            "wiki-editors"
        ]
    );
    let admins = &all.body["results"][0];
    assert_eq!(admins["is_superuser"], true);
    assert_eq!(admins["users_obj"][0]["username"], "akadmin");
    // docs/src/upstream/authentik.md §7.3: `include_users` defaults to true; children/parents objects only on request.
    assert_eq!(all.body["results"][3]["parents"], json!([parent]));
    assert_eq!(all.body["results"][3]["parents_obj"], Value::Null);
    assert_eq!(all.body["results"][2]["children"], json!([child]));

    let by_name = authentik(&fake, "/core/groups/", "/core/groups/?name=wiki-editors").await;
    assert_eq!(by_name.body["pagination"]["count"], 1);
    assert_eq!(by_name.body["results"][0]["users"], json!([jane]));
    assert_eq!(
        by_name.body["results"][0]["users_obj"][0]["email"],
        "jane@example.com"
    );
    let members = authentik(
        &fake,
        "/core/groups/",
        &format!("/core/groups/?members_by_pk={jane}"),
    )
    .await;
    assert_eq!(members.body["results"][0]["pk"], child);
    let su = authentik(&fake, "/core/groups/", "/core/groups/?is_superuser=true").await;
    assert_eq!(su.body["pagination"]["count"], 1);
    let lean = authentik(
        &fake,
        "/core/groups/",
        "/core/groups/?include_users=false&include_parents=true&include_children=true",
    )
    .await;
    let wiki = &lean.body["results"][3];
    assert_eq!(wiki["users_obj"], Value::Null);
    assert_eq!(wiki["users"], json!([jane]));
    assert_eq!(wiki["parents_obj"][0]["name"], "staff");
    assert_eq!(
        lean.body["results"][2]["children_obj"][0]["group_uuid"],
        child
    );

    // docs/src/upstream/authentik.md §7.3: `{group_uuid}` takes the dashed or the 32-hex form (as in an event's model.pk).
    let dashed = authentik(
        &fake,
        "/core/groups/{group_uuid}/",
        &format!("/core/groups/{child}/"),
    )
    .await;
    assert_eq!(dashed.body["name"], "wiki-editors");
    let hex = child.replace('-', "");
    let by_hex = authentik(
        &fake,
        "/core/groups/{group_uuid}/",
        &format!("/core/groups/{hex}/"),
    )
    .await;
    assert_eq!(by_hex.body["pk"], child);
    let missing = authentik(
        &fake,
        "/core/groups/{group_uuid}/",
        "/core/groups/0b5a4e4e-9c1f-4c0e-8a51-6f1d1b7c2a10/",
    )
    .await;
    assert_eq!(missing.status, 404);
    let garbage = authentik(
        &fake,
        "/core/groups/{group_uuid}/",
        "/core/groups/not-a-uuid/",
    )
    .await;
    assert_eq!(garbage.status, 404);

    // Direct membership only (docs/src/upstream/authentik.md §7.5): jane is not listed in "staff".
    assert!(fake.group_members(&parent).is_empty());
    assert_eq!(fake.group_members("wiki-editors"), vec![jane]);
}

#[tokio::test]
async fn authentik_auth_and_permission_failures_are_403() {
    let fake = start_authentik().await;
    // authentik's TokenAuthentication defines no authenticate_header, so DRF answers 403.
    let none = authentik_get(&fake, "/core/groups/", None).await;
    check_authentik("/core/groups/", &none);
    assert_eq!(none.status, 403);
    assert_eq!(
        none.body["detail"],
        "Authentication credentials were not provided."
    );
    let bad = authentik_get(&fake, "/core/groups/", Some("wrong")).await;
    check_authentik("/core/groups/", &bad);
    assert_eq!(bad.status, 403);
    assert_eq!(bad.body, json!({"detail": "Token invalid/expired"}));

    // docs/src/upstream/authentik.md §7.7: a token without view permissions gets 403, not an empty list.
    fake.set_forbidden(true);
    let a = authentik(&fake, "/core/users/", "/core/users/").await;
    assert_eq!(a.status, 403);
    let a = authentik(&fake, "/core/groups/", "/core/groups/").await;
    assert_eq!(a.status, 403);
    let me = authentik(&fake, "/core/users/me/", "/core/users/me/").await;
    assert_eq!(me.status, 200);
    fake.set_forbidden(false);

    fake.fail_next(1, 502);
    let failed = authentik_get(&fake, "/core/groups/", Some(&fake.token())).await;
    assert_eq!(failed.status, 502);
    fake.set_down(true);
    let down = authentik_get(&fake, "/core/groups/", Some(&fake.token())).await;
    assert_eq!(down.status, 503);
    fake.set_down(false);
    assert_eq!(fake.count_calls("/api/v3/core/groups/"), 5);
}

/// The transports list `check` reads: the spec's shape, filtered by `mode`, and 403 without
/// `view_notificationtransport` (docs/src/upstream/authentik.md §7.7).
#[tokio::test]
async fn authentik_transports_list_has_the_specs_shape() {
    let fake = start_authentik().await;
    fake.add_webhook_transport(
        "authentik-bridge",
        "http://bridge:8430/webhooks/authentik",
        true,
    );
    fake.add_webhook_transport("other", "http://elsewhere/hook?token=x", false);
    let a = authentik(
        &fake,
        "/events/transports/",
        "/events/transports/?mode=webhook&ordering=name",
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["pagination"]["count"], 2);
    assert_eq!(a.body["results"][0]["mode"], "webhook");
    assert!(a.body["results"][1]["webhook_mapping_headers"].is_null());
    let none = authentik(
        &fake,
        "/events/transports/",
        "/events/transports/?mode=email",
    )
    .await;
    assert_eq!(none.body["pagination"]["count"], 0);
    fake.set_transports_forbidden(true);
    let a = authentik(&fake, "/events/transports/", "/events/transports/").await;
    assert_eq!(a.status, 403);
}

#[tokio::test]
async fn authentik_partial_pages_keep_count() {
    let fake = start_authentik().await;
    for i in 0..25 {
        fake.add_user(&format!("u{i:02}"), "U", &format!("u{i:02}@example.com"));
    }
    fake.set_partial_pages(true);
    let p1 = authentik(&fake, "/core/users/", "/core/users/").await;
    assert_eq!(p1.body["pagination"]["count"], 26);
    assert_eq!(p1.body["results"].as_array().map(Vec::len), Some(19));
    let p2 = authentik(&fake, "/core/users/", "/core/users/?page=2").await;
    assert_eq!(p2.body["results"].as_array().map(Vec::len), Some(5));
    assert_eq!(p2.body["pagination"]["next"], 0);
}

// ---- Authentik: events and the webhook ----------------------------------------------------------

#[derive(Default)]
struct Receiver {
    requests: Vec<(Vec<(String, String)>, String)>,
    fail_first: usize,
}

async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Arc<Mutex<Receiver>>>,
) -> HttpResponse {
    let mut st = state.lock().expect("receiver lock");
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    st.requests
        .push((headers, String::from_utf8_lossy(&body).into_owned()));
    if st.fail_first > 0 {
        st.fail_first -= 1;
        HttpResponse::InternalServerError().finish()
    } else {
        HttpResponse::Ok().body("ok")
    }
}

async fn start_receiver(
    fail_first: usize,
) -> (String, Arc<Mutex<Receiver>>, actix_web::dev::ServerHandle) {
    let state = Arc::new(Mutex::new(Receiver {
        requests: Vec::new(),
        fail_first,
    }));
    let data = web::Data::new(state.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(receive))
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .expect("bind receiver");
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    (
        format!("http://{addr}/webhooks/authentik?x=1"),
        state,
        handle,
    )
}

fn received(state: &Arc<Mutex<Receiver>>) -> Vec<(Vec<(String, String)>, String)> {
    state.lock().expect("receiver lock").requests.clone()
}

#[tokio::test]
async fn authentik_changes_record_the_events_of_section_12() {
    let fake = start_authentik().await;
    let jane = fake.add_user("jane", "Jane Doe", "jane@example.com");
    let g = fake.add_group("wiki-editors");
    fake.add_member(&g, jane);
    fake.remove_member(&g, jane);
    fake.set_active(jane, false);
    fake.rename_group(&g, "wiki-writers");
    fake.delete_group(&g);
    fake.delete_user(jane);

    let events = fake.events();
    let summary: Vec<(String, String, Value, String)> = events
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default().to_string(),
                e["model"]["model_name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                e["model"]["pk"].clone(),
                e["model"]["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let hex = g.replace('-', "");
    // Creating the group sends nothing (model_created is not matched); user creation sends one
    // user model_updated; memberships are group model_updated with the hex pk; deletes are
    // model_deleted, the user's with the display name.
    assert_eq!(
        summary,
        vec![
            (
                "model_updated".into(),
                "user".into(),
                json!(jane),
                "Jane Doe".into()
            ),
            (
                "model_updated".into(),
                "group".into(),
                json!(hex),
                "wiki-editors".into()
            ),
            (
                "model_updated".into(),
                "group".into(),
                json!(hex),
                "wiki-editors".into()
            ),
            (
                "model_updated".into(),
                "user".into(),
                json!(jane),
                "Jane Doe".into()
            ),
            (
                "model_updated".into(),
                "group".into(),
                json!(hex),
                "wiki-writers".into()
            ),
            (
                "model_deleted".into(),
                "group".into(),
                json!(hex),
                "wiki-writers".into()
            ),
            (
                "model_deleted".into(),
                "user".into(),
                json!(jane),
                "Jane Doe".into()
            ),
        ]
    );
    for e in &events {
        assert_eq!(e["schema"], "authentik-bridge/v1");
        assert_eq!(e["app"], "authentik.events.middleware");
        assert_eq!(e["model"]["app"], "authentik_core");
        // docs/src/upstream/authentik.md §4.3: no diff without a licence.
        assert!(e.get("diff").is_none());
        let pk = e["event_pk"].as_str().unwrap_or_default();
        assert_eq!(pk.len(), 36, "event_pk is dashed: {pk}");
        let created = e["created"].as_str().unwrap_or_default();
        assert!(
            created.ends_with('Z') && created.contains('T'),
            "created {created}"
        );
    }

    // With a licence the membership diff appears (docs/src/upstream/authentik.md §4.3).
    fake.set_licensed(true);
    let bob = fake.add_user("bob", "Bob", "bob@example.com");
    let g2 = fake.add_group("ops");
    fake.add_member(&g2, bob);
    let last = fake.events().pop().expect("event");
    assert_eq!(last["diff"], json!({"users": {"add": [bob]}}));

    let test = test_button_document();
    assert_eq!(test["action"], "custom_notification_test");
    assert_eq!(test["model"], Value::Null);
    let custom = event_document("model_updated", fake.group_model("ops"), None);
    assert_eq!(custom["model"]["pk"], json!(g2.replace('-', "")));
    assert_eq!(
        fake.user_model(bob).map(|m| m["pk"].clone()),
        Some(json!(bob))
    );
}

#[tokio::test]
async fn authentik_webhook_posts_documents_and_retries() {
    let fake = start_authentik().await;
    let (url, rx, _handle) = start_receiver(2).await;
    fake.set_webhook(Some(url.clone()), Some("s3cret".into()));

    let jane = fake.add_user("jane", "Jane Doé", "jane@example.com");
    // The receiver fails twice; the third attempt lands (docs/src/upstream/authentik.md §2.5: up to five retries).
    // The fake logs an attempt once the answer is back, after the receiver has logged it.
    wait_for("three attempts", Duration::from_secs(10), || {
        fake.deliveries().len() >= 3
    })
    .await;
    let deliveries = fake.deliveries();
    let statuses: Vec<Option<u16>> = deliveries.iter().map(|d| d.status).collect();
    assert_eq!(statuses, vec![Some(500), Some(500), Some(200)]);
    assert_eq!(
        deliveries.iter().map(|d| d.attempt).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );

    let requests = received(&rx);
    let (headers, body) = &requests[2];
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("authorization").as_deref(), Some("Bearer s3cret"));
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
    assert!(header("user-agent").is_some_and(|u| u.starts_with("authentik@")));
    // docs/src/upstream/authentik.md §12: Python json.dumps defaults: ", " and ": " separators, ASCII escapes.
    assert!(body.contains("\"action\": \"model_updated\""), "{body}");
    assert!(body.contains("Jane Do\\u00e9"), "{body}");
    let doc: Value = serde_json::from_str(body).expect("JSON body");
    assert_eq!(doc["model"]["pk"], jane);
    assert_eq!(doc, fake.events()[0]);
    assert_eq!(python_json(&doc), *body);

    // The same document posted by hand, e.g. to test duplicates.
    let status = fake
        .post_document(&test_button_document())
        .await
        .expect("post");
    assert_eq!(status, 200);

    // Through the API: add_user answers 204 and records a group model_updated.
    let g = fake.add_group("ops");
    let resp = client()
        .post(format!("{}/api/v3/core/groups/{g}/add_user/", fake.url()))
        .bearer_auth(fake.token())
        .json(&json!({"pk": jane}))
        .send()
        .await
        .expect("add_user");
    assert_eq!(resp.status().as_u16(), 204);
    assert_eq!(fake.group_members(&g), vec![jane]);
    wait_for("the add_user event", Duration::from_secs(10), || {
        received(&rx).len() >= 5
    })
    .await;
    let last: Value = serde_json::from_str(&received(&rx)[4].1).expect("JSON");
    assert_eq!(last["model"]["pk"], json!(g.replace('-', "")));
    // remove_user by hex pk: 204, and an unknown user is a 404 `{"detail": …}` (docs/src/upstream/authentik.md §7.6).
    let hex = g.replace('-', "");
    let resp = client()
        .post(format!(
            "{}/api/v3/core/groups/{hex}/remove_user/",
            fake.url()
        ))
        .bearer_auth(fake.token())
        .json(&json!({"pk": jane}))
        .send()
        .await
        .expect("remove_user");
    assert_eq!(resp.status().as_u16(), 204);
    assert!(fake.group_members(&g).is_empty());
    let missing = read(
        client()
            .post(format!("{}/api/v3/core/groups/{g}/add_user/", fake.url()))
            .bearer_auth(fake.token())
            .json(&json!({"pk": 99_999}))
            .send()
            .await
            .expect("add_user"),
    )
    .await;
    assert_eq!(missing.status, 404);
    let spec = openapi::authentik();
    let generic = json!({"$ref": "#/components/schemas/GenericError"});
    spec.assert_valid("add_user 404", &generic, &missing.body, &[], true);
    wait_for("the remove_user event", Duration::from_secs(10), || {
        received(&rx).len() >= 6
    })
    .await;

    // A receiver that never answers 2xx gets the first try plus five retries, then nothing.
    let (dead, dead_rx, _dead_handle) = start_receiver(usize::MAX).await;
    fake.set_webhook(Some(dead), None);
    fake.set_active(jane, false);
    let event_pk = fake
        .events()
        .last()
        .map(|e| e["event_pk"].clone())
        .expect("event");
    let attempts = || -> Vec<u32> {
        fake.deliveries()
            .iter()
            .filter(|d| json!(d.event_pk) == event_pk)
            .map(|d| d.attempt)
            .collect()
    };
    wait_for("six attempts", Duration::from_secs(10), || {
        attempts().len() >= 6
    })
    .await;
    assert_eq!(attempts(), vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(received(&dead_rx).len(), 6);
    // No header mapping token configured, so no Authorization header.
    assert!(received(&dead_rx).iter().all(|(h, _)| h
        .iter()
        .all(|(k, _)| !k.eq_ignore_ascii_case("authorization"))));
}

// ---- the checker itself -----------------------------------------------------------------------

/// Guards against a vacuous checker: wrong shapes must fail.
#[test]
fn spec_checks_reject_wrong_shapes() {
    let outline_spec = openapi::outline();
    let group = json!({
        "id": "0b5a4e4e-9c1f-4c0e-8a51-6f1d1b7c2a10", "name": "Eng", "description": null,
        "externalId": null, "memberCount": 1, "disableMentions": false,
        "createdAt": "2026-08-22T15:23:51.123Z", "updatedAt": "2026-08-22T15:23:51.123Z"
    });
    let schema = json!({"$ref": "#/components/schemas/Group"});
    assert!(outline_spec
        .errors(&schema, &group, &outline_patches(), true)
        .is_empty());
    let mut misspelt = group.clone();
    misspelt["externalID"] = json!("x");
    assert!(!outline_spec
        .errors(&schema, &misspelt, &outline_patches(), true)
        .is_empty());
    let mut wrong_type = group.clone();
    wrong_type["memberCount"] = json!("1");
    assert!(!outline_spec
        .errors(&schema, &wrong_type, &[], false)
        .is_empty());
    let mut missing = group;
    missing.as_object_mut().map(|m| m.remove("externalId"));
    assert!(!outline_spec
        .errors(&schema, &missing, &outline_patches(), true)
        .is_empty());
    // The spec's own membership shape is what docs/src/upstream/outline.md §3.7 says the server does not send.
    let item = json!({"id": "a-b", "userId": "0b5a4e4e-9c1f-4c0e-8a51-6f1d1b7c2a10",
        "groupId": "0b5a4e4e-9c1f-4c0e-8a51-6f1d1b7c2a10", "permission": "member", "user": {}});
    let membership = json!({"$ref": "#/components/schemas/GroupMembership"});
    assert!(!outline_spec
        .errors(&membership, &item, &[], false)
        .is_empty());

    let ak = openapi::authentik();
    let page = ak.response("/core/groups/", "get", "200");
    let empty = json!({"pagination": {"next": 0, "previous": 0, "count": 0, "current": 1,
        "total_pages": 1, "start_index": 0, "end_index": 0}, "results": [], "autocomplete": {}});
    assert!(ak.errors(&page, &empty, &[], true).is_empty());
    let mut no_next = empty.clone();
    no_next["pagination"]
        .as_object_mut()
        .map(|m| m.remove("next"));
    assert!(!ak.errors(&page, &no_next, &[], true).is_empty());
    let bad_group = json!({"pagination": empty["pagination"], "autocomplete": {},
        "results": [{"pk": "not-a-uuid", "num_pk": 1, "name": "x", "children": [], "children_obj": null,
        "inherited_roles_obj": null, "parents_obj": null, "roles_obj": [], "users_obj": null}]});
    assert!(!ak.errors(&page, &bad_group, &[], true).is_empty());
}

// ---- Outline: user lifecycle ------------------------------------------------------------------

/// The patches of [`outline_patches`] plus those the lifecycle methods need. `events.list` answers
/// `pagination: ctx.state.pagination`, which has no `total` (server/routes/api/events/events.ts,
/// docs/src/upstream/outline.md §3.3), so the `total` requirement is left out for it.
fn lifecycle_patches(events: bool) -> Vec<Patch> {
    let mut patches: Vec<Patch> = outline_patches()
        .into_iter()
        .filter(|p| !(events && matches!(p, Patch::Require("Pagination", _))))
        .collect();
    if events {
        patches.push(Patch::Require(
            "Pagination",
            &["limit", "offset", "nextPath"],
        ));
    }
    // server/presenters/event.ts: `data` is the column as stored (null for the user events), and
    // `collectionId` / `documentId` are null for events about users.
    patches.push(Patch::Nullable("Event", "data"));
    patches.push(Patch::Nullable("Event", "collectionId"));
    patches.push(Patch::Nullable("Event", "documentId"));
    patches
}

/// An authenticated call to a lifecycle method, validated like [`outline`] with [`lifecycle_patches`].
/// The deprecated `users.promote` / `users.demote` are not in the spec; they forward to `updateRole`
/// (server/routes/api/users/users.ts) and are checked against `users.update_role`.
async fn lifecycle(fake: &FakeOutline, method: &str, body: Value) -> Answer {
    let a = outline_raw(fake, method, body, Some(&fake.token()), "application/json").await;
    let spec_method = match method {
        "users.promote" | "users.demote" => "users.update_role",
        other => other,
    };
    let spec = openapi::outline();
    let path = format!("/{spec_method}");
    let status = a.status.to_string();
    let mut schema = if spec.lists_status(&path, "post", &status) {
        spec.response(&path, "post", &status)
    } else {
        // docs/src/upstream/outline.md §3.6: unlisted statuses (400 here) carry the error envelope.
        json!({"$ref": "#/components/schemas/Error"})
    };
    if a.status == 200 {
        let props = schema["properties"]
            .as_object_mut()
            .expect("object response");
        props.insert("status".into(), json!({"type": "number", "enum": [200]}));
        props.insert("ok".into(), json!({"type": "boolean", "enum": [true]}));
        schema["required"] = json!(["status", "ok"]);
        if spec_method == "users.invite" {
            // server/commands/userInviter.ts: the answer also lists the invites skipped because the email
            // already has an account; the spec has only `sent` and `users`.
            schema["properties"]["data"]["properties"]["unsent"] =
                json!({"type": "array", "items": {"$ref": "#/components/schemas/Invite"}});
            schema["properties"]["data"]["required"] = json!(["sent", "unsent", "users"]);
        }
    }
    if a.status == 429 {
        // docs/src/upstream/outline.md §4.4, §3.7: the source also sends `message`.
        schema["properties"]["message"] = json!({"type": "string"});
        schema["required"] = json!(["ok", "error", "status", "message"]);
    }
    spec.assert_valid(
        &format!("{method} {status}"),
        &schema,
        &a.body,
        &lifecycle_patches(spec_method == "events.list"),
        true,
    );
    a
}

const UNKNOWN_USER: &str = "0b5a4e4e-9c1f-4c0e-8a51-6f1d1b7c2a10";

#[tokio::test]
async fn outline_update_role_promotes_demotes_and_refuses_no_ops() {
    let fake = start_outline().await;
    let dev = fake.add_user("Dev", "dev@example.com");

    let a = lifecycle(
        &fake,
        "users.update_role",
        json!({"id": dev, "role": "admin"}),
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["data"]["id"], dev);
    assert_eq!(a.body["data"]["role"], "admin");
    // `includeDetails` for an admin caller, as `users.info`.
    assert_eq!(a.body["data"]["email"], "dev@example.com");
    assert_eq!(a.body["policies"][0]["id"], dev);
    assert_eq!(fake.role_of(&dev).as_deref(), Some("admin"));

    // server/routes/api/users/users.ts `updateRole`: an unchanged role is a 400 validation error.
    let same = lifecycle(
        &fake,
        "users.update_role",
        json!({"id": dev, "role": "admin"}),
    )
    .await;
    assert_eq!(same.status, 400);
    assert_eq!(same.body["error"], "validation_error");
    assert_eq!(same.body["message"], "User is already in that role");

    // The caller's own role: refused, but "already in that role" is checked first.
    let me = fake.admin_id();
    let own = lifecycle(
        &fake,
        "users.update_role",
        json!({"id": me, "role": "member"}),
    )
    .await;
    assert_eq!(own.status, 400);
    assert_eq!(own.body["error"], "validation_error");
    assert_eq!(own.body["message"], "You cannot change your own role");
    let own_same = lifecycle(
        &fake,
        "users.update_role",
        json!({"id": me, "role": "admin"}),
    )
    .await;
    assert_eq!(own_same.body["message"], "User is already in that role");
    assert_eq!(fake.role_of(&me).as_deref(), Some("admin"));

    // `rejectOnEmpty`: an unknown or deleted id is 404 `not_found` here, unlike the 403 of `users.info`
    // (docs/src/upstream/outline.md §3.6). The spec lists a 404 for this method.
    let unknown = lifecycle(
        &fake,
        "users.update_role",
        json!({"id": UNKNOWN_USER, "role": "member"}),
    )
    .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body["error"], "not_found");
    assert_eq!(unknown.body["message"], "Resource not found");
    let gone = fake.add_user("Gone", "gone@example.com");
    fake.delete_user(&gone);
    let a = lifecycle(
        &fake,
        "users.update_role",
        json!({"id": gone, "role": "admin"}),
    )
    .await;
    assert_eq!(a.status, 404);

    let bad = lifecycle(
        &fake,
        "users.update_role",
        json!({"id": dev, "role": "owner"}),
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.body["message"],
        "role: Invalid option: expected one of \"admin\"|\"member\"|\"viewer\"|\"guest\""
    );

    // server/policies/user.ts: `promote` and `demote` both need an unsuspended target.
    let idle = fake.add_user_with("Idle", "idle@example.com", "member", true);
    let a = lifecycle(
        &fake,
        "users.update_role",
        json!({"id": idle, "role": "viewer"}),
    )
    .await;
    assert_eq!(a.status, 403);
    assert_eq!(a.body["error"], "authorization_error");
    assert_eq!(fake.role_of(&idle).as_deref(), Some("member"));

    // The deprecated forms: `users.demote {id}` demotes to member by default, `users.promote` to admin.
    let a = lifecycle(&fake, "users.demote", json!({"id": dev})).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["data"]["role"], "member");
    let a = lifecycle(&fake, "users.demote", json!({"id": dev, "to": "guest"})).await;
    assert_eq!(a.body["data"]["role"], "guest");
    let a = lifecycle(&fake, "users.promote", json!({"id": dev})).await;
    assert_eq!(a.body["data"]["role"], "admin");

    // The event names come from `canPromote` / `canDemote`, whichever method was called.
    assert_eq!(
        fake.event_names(),
        vec![
            "users.promote",
            "users.demote",
            "users.demote",
            "users.promote"
        ]
    );
    // Seeding writes no event; the key owner stays admin unless a test seeds otherwise.
    fake.set_role(&dev, "viewer");
    assert_eq!(fake.role_of(&dev).as_deref(), Some("viewer"));
    assert_eq!(fake.event_names().len(), 4);
    assert_eq!(fake.count_calls("users.update_role"), 8);
}

#[tokio::test]
async fn outline_update_role_needs_an_admin_key_owner() {
    let fake = start_outline().await;
    let dev = fake.add_user("Dev", "dev@example.com");
    // `auth({role: UserRole.Admin})` runs before validation (server/middlewares/authentication.ts).
    fake.set_role(&fake.admin_id(), "member");
    let a = lifecycle(
        &fake,
        "users.update_role",
        json!({"id": dev, "role": "bogus"}),
    )
    .await;
    assert_eq!(a.status, 403);
    assert_eq!(a.body["error"], "authorization_error");
    assert_eq!(a.body["message"], "Admin role required");
    let a = lifecycle(&fake, "users.suspend", json!({"id": dev})).await;
    assert_eq!(a.status, 403);
    assert_eq!(a.body["message"], "Authorization error");
}

#[tokio::test]
async fn outline_suspend_and_activate_never_touch_the_caller() {
    let fake = start_outline().await;
    let g = fake.add_group("Eng", None);
    let dev = fake.add_user("Dev", "dev@example.com");
    fake.add_member(&g, &dev, "member");

    let a = lifecycle(&fake, "users.suspend", json!({"id": dev})).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["data"]["id"], dev);
    assert_eq!(a.body["data"]["isSuspended"], true);
    assert_eq!(a.body["policies"][0]["id"], dev);
    assert!(fake.is_suspended(&dev));
    assert_eq!(fake.suspended_by(&dev), Some(fake.admin_id()));
    // docs/src/upstream/outline.md §6.6: memberships are kept; the default `users.list` leaves the user out.
    assert!(fake.members(&g).contains_key(&dev));
    let list = outline(&fake, "users.list", json!({})).await;
    assert!(list.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .all(|u| u["id"] != dev.as_str()));

    let a = lifecycle(&fake, "users.activate", json!({"id": dev})).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["data"]["isSuspended"], false);
    assert!(!fake.is_suspended(&dev));
    assert_eq!(fake.suspended_by(&dev), None);

    // server/policies/user.ts: `isTeamAdmin(actor, user) && user.id !== actor.id`.
    for method in ["users.suspend", "users.activate"] {
        let a = lifecycle(&fake, method, json!({"id": fake.admin_id()})).await;
        assert_eq!(a.status, 403, "{method}");
        assert_eq!(a.body["error"], "authorization_error");
        assert_eq!(a.body["message"], "Authorization error");
        // `rejectOnEmpty`: 404 for an unknown id (docs/src/upstream/outline.md §3.6).
        let a = lifecycle(&fake, method, json!({"id": UNKNOWN_USER})).await;
        assert_eq!(a.status, 404, "{method}");
        assert_eq!(a.body["error"], "not_found");
        let a = lifecycle(&fake, method, json!({})).await;
        assert_eq!(a.status, 400, "{method}");
        assert_eq!(
            a.body["message"],
            "id: Invalid input: expected string, received undefined"
        );
    }
    assert!(!fake.is_suspended(&fake.admin_id()));
    assert_eq!(fake.event_names(), vec!["users.suspend", "users.activate"]);
    // Activating an active user is a 200 that changes nothing and writes no event.
    let a = lifecycle(&fake, "users.activate", json!({"id": dev})).await;
    assert_eq!(a.status, 200);
    assert_eq!(fake.event_names().len(), 2);
}

#[tokio::test]
async fn outline_invite_creates_placeholders_and_skips_existing_emails() {
    let fake = start_outline().await;
    let taken = fake.add_user("Taken", "taken@example.com");
    // Stored with the IdP's case (docs/src/upstream/outline.md §6.7).
    let mixed = fake.add_user("Mixed", "Mixed.Case@Example.com");

    let a = lifecycle(
        &fake,
        "users.invite",
        json!({"invites": [
            {"email": "New.Person@Example.com", "name": "New Person", "role": "guest"},
            {"email": "new.person@example.com", "name": "Duplicate", "role": "admin"},
            {"email": "TAKEN@example.com", "name": "Taken Again", "role": "member"},
            {"email": "viewer@example.com", "name": "Viewer", "role": "viewer"},
            {"email": "mixed.case@example.com", "name": "Mixed Again", "role": "member"}
        ], "suppressEmail": true}),
    )
    .await;
    assert_eq!(a.status, 200);
    let data = &a.body["data"];
    // server/commands/userInviter.ts: lowercased, deduplicated by email (first kept), and matched exactly
    // against stored emails, so the mixed-case account is not found and gets a second one.
    let emails = |v: &Value| -> Vec<String> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|i| i["email"].as_str().expect("email").to_string())
            .collect()
    };
    assert_eq!(
        emails(&data["sent"]),
        vec![
            "new.person@example.com",
            "viewer@example.com",
            "mixed.case@example.com"
        ]
    );
    assert_eq!(emails(&data["unsent"]), vec!["taken@example.com"]);
    // `sent` echoes the requested role; the account gets member for a guest invite.
    assert_eq!(data["sent"][0]["role"], "guest");
    assert_eq!(data["sent"][0]["name"], "New Person");
    let users = data["users"].as_array().expect("users");
    assert_eq!(users.len(), 3);
    assert_eq!(users[0]["role"], "member");
    assert_eq!(users[1]["role"], "viewer");
    assert_eq!(users[0]["email"], "new.person@example.com");
    assert_eq!(users[0]["lastActiveAt"], Value::Null);
    // `includeEmail`, not `includeDetails`.
    assert!(users[0].get("language").is_none());
    assert_eq!(
        fake.invited_emails(),
        vec![
            "new.person@example.com",
            "viewer@example.com",
            "mixed.case@example.com"
        ]
    );
    assert_ne!(fake.user_by_email("mixed.case@example.com"), Some(mixed));
    assert_eq!(fake.user_by_email("taken@example.com"), Some(taken));

    // The invited users work with the other methods.
    let new_id = users[0]["id"].as_str().expect("id").to_string();
    let invited = outline(&fake, "users.list", json!({"filter": "invited"})).await;
    let ids: Vec<&str> = invited.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|u| u["id"].as_str())
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.contains(&new_id.as_str()));
    let info = outline(&fake, "users.info", json!({"id": new_id})).await;
    assert_eq!(info.body["data"]["email"], "new.person@example.com");
    let g = fake.add_group("Eng", None);
    let add = outline(&fake, "groups.add_user", json!({"id": g, "userId": new_id})).await;
    assert_eq!(add.status, 200);

    // At most 20 invites per request.
    let many: Vec<Value> = (0..21)
        .map(|i| json!({"email": format!("u{i}@example.com"), "name": format!("U{i}"), "role": "member"}))
        .collect();
    let a = lifecycle(&fake, "users.invite", json!({ "invites": many })).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.body["error"], "validation_error");
    assert_eq!(
        a.body["message"],
        "You can only invite up to 20 users at a time"
    );
    let bad = lifecycle(
        &fake,
        "users.invite",
        json!({"invites": [{"email": "nope", "name": "N", "role": "member"}]}),
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["message"], "email: Invalid email address");
    assert_eq!(fake.invited_emails().len(), 3);
    assert_eq!(fake.count_calls("users.invite"), 3);
    assert_eq!(
        fake.event_names()
            .iter()
            .filter(|n| *n == "users.invite")
            .count(),
        3
    );
}

#[tokio::test]
async fn outline_invite_limiter_counts_requests_per_hour() {
    let fake = start_outline().await;
    fake.set_invite_limit(2);
    let one = |i: usize| json!({"invites": [{"email": format!("p{i}@example.com"), "name": "P", "role": "member"}]});
    // server/middlewares/rateLimiter.ts: the route registers its limiter lazily, so on a fresh server the
    // first request is drawn from the default bucket (docs/src/upstream/outline.md §4.3); then every request
    // counts one point, whatever it carries or answers.
    assert_eq!(lifecycle(&fake, "users.invite", one(0)).await.status, 200);
    assert_eq!(lifecycle(&fake, "users.invite", one(1)).await.status, 200);
    let many: Vec<Value> = (0..21)
        .map(|i| json!({"email": format!("m{i}@example.com"), "name": "M", "role": "member"}))
        .collect();
    assert_eq!(
        lifecycle(&fake, "users.invite", json!({ "invites": many }))
            .await
            .status,
        400
    );
    let a = lifecycle(&fake, "users.invite", one(2)).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.body["error"], "rate_limit_exceeded");
    assert_eq!(a.body["message"], "Rate limit exceeded for this operation");
    assert_retry_after(&a.header("retry-after").expect("Retry-After"), 3600.0);
    assert_eq!(a.header("ratelimit-limit").as_deref(), Some("2"));
    assert_eq!(a.header("ratelimit-remaining").as_deref(), Some("0"));
    assert!(a
        .header("ratelimit-reset")
        .is_some_and(|r| r.contains("GMT")));
    assert_eq!(fake.throttled_count(), 1);
    assert_eq!(
        fake.invited_emails(),
        vec!["p0@example.com", "p1@example.com"]
    );
    // Other methods keep the default limiter.
    assert_eq!(outline(&fake, "users.info", json!({})).await.status, 200);
    assert_eq!(fake.count_calls("users.invite"), 4);
}

#[tokio::test]
async fn outline_events_list_records_lifecycle_events() {
    let fake = start_outline().await;
    let me = fake.admin_id();
    let other_admin = fake.add_user_with("Other Admin", "other@example.com", "admin", false);
    let dev = fake.add_user("Dev", "dev@example.com");
    let ops = fake.add_user("Ops", "ops@example.com");
    lifecycle(&fake, "users.suspend", json!({"id": dev})).await;
    lifecycle(&fake, "users.activate", json!({"id": dev})).await;
    lifecycle(
        &fake,
        "users.update_role",
        json!({"id": dev, "role": "admin"}),
    )
    .await;
    lifecycle(
        &fake,
        "users.update_role",
        json!({"id": dev, "role": "viewer"}),
    )
    .await;
    // Suspended by another admin by hand.
    fake.suspend_as(&ops, &other_admin);
    assert!(fake.is_suspended(&ops));
    assert_eq!(fake.suspended_by(&ops), Some(other_admin.clone()));

    // server/policies/team.ts: `audit` needs `isCloudHosted()` as well as an admin, so a self-hosted
    // server refuses `auditLog: true` even to the admin key.
    let a = lifecycle(&fake, "events.list", json!({"auditLog": true})).await;
    assert_eq!(a.status, 403);
    assert_eq!(a.body["error"], "authorization_error");

    // Without `auditLog` only `EventHelper.ACTIVITY_EVENTS` are listed: `users.demote` is one of them,
    // the other lifecycle events are not.
    let a = lifecycle(&fake, "events.list", json!({})).await;
    assert_eq!(a.status, 200);
    let names = |a: &Answer| -> Vec<String> {
        a.body["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|e| e["name"].as_str().expect("name").to_string())
            .collect()
    };
    assert_eq!(names(&a), vec!["users.demote"]);
    assert!(a.body["data"][0].get("changes").is_none());
    assert!(a.body["data"][0].get("actorIpAddress").is_none());
    assert!(a.body["pagination"].get("total").is_none());
    let a = lifecycle(&fake, "events.list", json!({"events": ["users.suspend"]})).await;
    assert_eq!(names(&a), Vec::<String>::new());

    fake.set_cloud_hosted(true);
    let a = lifecycle(&fake, "events.list", json!({"auditLog": true})).await;
    assert_eq!(a.status, 200);
    // Newest first by default (`createdAt DESC`).
    assert_eq!(
        names(&a),
        vec![
            "users.suspend",
            "users.demote",
            "users.promote",
            "users.activate",
            "users.suspend"
        ]
    );
    let newest = &a.body["data"][0];
    assert_eq!(newest["modelId"], ops);
    assert_eq!(newest["userId"], ops);
    assert_eq!(newest["actorId"], other_admin);
    assert_eq!(newest["actor"]["id"], other_admin);
    assert!(newest.get("actorIpAddress").is_none());
    let first = &a.body["data"][4];
    assert_eq!(first["modelId"], dev);
    assert_eq!(first["actorId"], me);
    assert_eq!(first["actorIpAddress"], "127.0.0.1");
    assert_eq!(first["changes"]["attributes"]["suspendedById"], me);
    assert_eq!(first["data"], Value::Null);

    // `events` intersected with the audit list, `actorId`, and `direction`.
    let a = lifecycle(
        &fake,
        "events.list",
        json!({"auditLog": true, "events": ["users.suspend", "users.activate"], "actorId": me,
               "sort": "createdAt", "direction": "ASC"}),
    )
    .await;
    assert_eq!(names(&a), vec!["users.suspend", "users.activate"]);
    assert!(a.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .all(|e| e["actorId"] == me.as_str() && e["modelId"] == dev.as_str()));
    let a = lifecycle(
        &fake,
        "events.list",
        json!({"auditLog": true, "events": ["users.suspend"], "actorId": other_admin}),
    )
    .await;
    assert_eq!(names(&a), vec!["users.suspend"]);
    assert_eq!(a.body["data"][0]["modelId"], ops);
    // The deprecated `name` narrows the list only when it is in it.
    let a = lifecycle(
        &fake,
        "events.list",
        json!({"auditLog": true, "name": "users.promote"}),
    )
    .await;
    assert_eq!(names(&a), vec!["users.promote"]);

    // Validation and the 403s of the source.
    let a = lifecycle(&fake, "events.list", json!({"sort": "modelId"})).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.body["message"], "sort: Invalid input");
    let a = lifecycle(&fake, "events.list", json!({"events": ["users.bogus"]})).await;
    assert_eq!(a.status, 400);
    let a = lifecycle(&fake, "events.list", json!({"actorId": UNKNOWN_USER})).await;
    assert_eq!(a.status, 403);
    let a = lifecycle(&fake, "events.list", json!({"limit": 101})).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.body["error"], "invalid_request");
    let a = lifecycle(&fake, "events.list", json!({"auditLog": true, "limit": 2})).await;
    assert_eq!(a.body["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        a.body["pagination"]["nextPath"],
        "/api/events.list?limit=2&offset=2"
    );
}
