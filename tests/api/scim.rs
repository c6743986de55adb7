//! The SCIM source against the real bridge and the fake Outline: the captured Authentik 2026.2 sequence
//! replayed in order (docs/src/upstream/scim.md §6), Okta's and Entra ID's shapes (§13), and every refusal
//! storing nothing.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{
    eventually, scratch_state_dir, settings_for, spawn_app_with, spawn_app_with_sinks, start_fakes,
    start_openfga, TestApp,
};
use authentik_bridge::app::startup::Application;
use authentik_bridge::configuration::{Secret, SourceKind};

pub const SCIM_TOKEN: &str = "scim-token-for-tests";
const SCIM_JSON: &str = "application/scim+json";

/// What Authentik sends as a group's externalId: its UUID.
const TEAM_UUID: &str = "5a1b7c3e-9d2f-4e6a-8b0c-1d2e3f4a5b6c";

pub fn scim_settings(s: &mut authentik_bridge::configuration::Settings, state: &std::path::Path) {
    s.source = SourceKind::Scim;
    s.scim_token = Some(Secret::new(SCIM_TOKEN));
    s.state_dir = Some(state.to_path_buf());
    s.authentik = None;
    s.authentik_webhook_token = None;
    s.auto_create_groups = true;
}

/// A SCIM request as Authentik sends it: bearer token, `application/scim+json` on every method.
pub async fn scim(app: &TestApp, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    scim_as(app, method, path, body, SCIM_TOKEN).await
}

pub async fn scim_as(
    app: &TestApp,
    method: &str,
    path: &str,
    body: Option<Value>,
    token: &str,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = app
        .http
        .request(method, format!("{}/scim/v2{path}", app.url))
        .bearer_auth(token)
        .header("content-type", SCIM_JSON)
        .header("accept", SCIM_JSON);
    if let Some(body) = body {
        req = req.body(body.to_string());
    }
    let resp = req.send().await.expect("request reaches the bridge");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{status} answer is not JSON: {text}"))
    };
    (status, value)
}

fn user_body(user_name: &str, display: &str, email: &str, external: &str) -> Value {
    let (given, family) = display.split_once(' ').unwrap_or((display, " "));
    json!({"userName": user_name,
        "name": {"formatted": format!("{display} "), "familyName": family, "givenName": given},
        "displayName": display, "active": true,
        "emails": [{"value": email, "type": "other", "primary": true}],
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "externalId": external})
}

fn member_op(op: &str, id: &str) -> Value {
    json!({"Operations": [{"op": op, "path": "members", "value": [{"value": id}]}],
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"]})
}

async fn scim_app() -> (TestApp, std::path::PathBuf) {
    let (authentik, outline) = start_fakes().await;
    let state = scratch_state_dir(&format!("scim-{}", rand_tag()));
    let dir = state.clone();
    let app = spawn_app_with(authentik, outline, move |s| {
        scim_settings(s, &dir);
        s.suspend_deactivated = true;
    })
    .await;
    (app, state)
}

fn rand_tag() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::SeqCst)
}

fn member_emails(app: &TestApp, group: &str) -> Vec<String> {
    let Some(g) = app.outline.group_by_name(group) else {
        return Vec::new();
    };
    let mut emails: Vec<String> = app
        .outline
        .members(&g.id)
        .keys()
        .filter_map(|id| app.outline.user_email(id))
        .collect();
    emails.sort();
    emails
}

/// Authentik 2026.2's captured sequence, request by request, with the Outline state checked after each
/// step once the queue has drained.
#[tokio::test]
async fn the_captured_authentik_sequence_drives_outline() {
    let (app, _state) = scim_app().await;
    let ready = app
        .http
        .get(format!("{}/readyz", app.url))
        .send()
        .await
        .expect("readyz");
    assert_eq!(
        ready.status().as_u16(),
        200,
        "Authentik is not called in SCIM mode, so not awaited"
    );
    let oalice = app.outline.add_user("Alice Example", "alice@example.com");
    app.outline.add_user("Bob", "bob@example.com");

    // §4: the config Authentik parses strictly.
    let (status, spc) = scim(&app, "GET", "/ServiceProviderConfig", None).await;
    assert_eq!(status, 200);
    for field in ["patch", "bulk", "filter", "changePassword", "sort", "etag"] {
        assert!(spc[field]["supported"].is_boolean(), "{field}: {spc}");
    }
    assert!(spc["bulk"]["maxOperations"].is_u64());
    assert!(spc["authenticationSchemes"][0]["name"].is_string());
    assert!(spc["authenticationSchemes"][0]["description"].is_string());

    // §6.1: create alice; the same body again gets 409 and the filter finds the first.
    let alice_body = user_body(
        "alice",
        "Alice Example",
        "alice@example.com",
        "a".repeat(64).as_str(),
    );
    let (status, alice) = scim(&app, "POST", "/Users", Some(alice_body.clone())).await;
    assert_eq!(status, 201, "{alice}");
    let alice_id = alice["id"].as_str().expect("id").to_string();
    for (key, value) in alice_body.as_object().expect("object") {
        assert_eq!(&alice[key], value, "echoed as sent: {key}");
    }
    assert_eq!(alice["meta"]["resourceType"], "User");
    let (status, dup) = scim(&app, "POST", "/Users", Some(alice_body.clone())).await;
    assert_eq!(
        (status, dup["scimType"].as_str()),
        (409, Some("uniqueness")),
        "{dup}"
    );
    let (status, found) = scim(&app, "GET", "/Users?filter=userName+eq+%22ALICE%22", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        found["Resources"][0]["id"],
        alice_id.as_str(),
        "case-insensitive, + is a space"
    );

    // §6.2, §6.3: bob, then the group, with Authentik's group UUID as externalId and no members.
    let (status, bob) = scim(
        &app,
        "POST",
        "/Users",
        Some(user_body("bob", "Bob", "bob@example.com", &"b".repeat(64))),
    )
    .await;
    assert_eq!(status, 201);
    let bob_id = bob["id"].as_str().expect("id").to_string();
    let (status, team) = scim(
        &app,
        "POST",
        "/Groups",
        Some(json!({"displayName": "team",
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "externalId": TEAM_UUID})),
    )
    .await;
    assert_eq!(status, 201, "{team}");
    assert_eq!(team["members"], json!([]), "members present even empty");
    let team_id = team["id"].as_str().expect("id").to_string();
    app.settle().await;
    assert!(
        app.outline.group_by_name("team").is_none(),
        "an empty group is created with its first member"
    );

    // §6.4: two member PATCHes.
    for id in [&alice_id, &bob_id] {
        let (status, _) = scim(
            &app,
            "PATCH",
            &format!("/Groups/{team_id}"),
            Some(member_op("add", id)),
        )
        .await;
        assert_eq!(status, 204, "a group PATCH answers without a body");
    }
    app.settle().await;
    assert_eq!(
        member_emails(&app, "team"),
        ["alice@example.com", "bob@example.com"]
    );
    let og = app
        .outline
        .group_by_name("team")
        .expect("created in Outline");
    assert_eq!(
        og.external_id.as_deref(),
        Some(TEAM_UUID),
        "linked by Authentik's UUID, as in webhook mode"
    );

    // §6.5: removing bob removes only bob.
    let (status, answer) = scim(
        &app,
        "PATCH",
        &format!("/Groups/{team_id}"),
        Some(member_op("remove", &bob_id)),
    )
    .await;
    assert_eq!((status, answer), (204, Value::Null));
    let (_, got) = scim(&app, "GET", &format!("/Groups/{team_id}"), None).await;
    assert_eq!(got["members"].as_array().map(Vec::len), Some(1));
    app.settle().await;
    assert_eq!(member_emails(&app, "team"), ["alice@example.com"]);

    // §6.6: the rename, a no-path replace with the group's own id and no top-level schemas; then the GET.
    let rename = json!({"Operations": [{"op": "replace", "value": {"id": team_id, "displayName": "team-renamed",
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "externalId": TEAM_UUID}}]});
    let (status, _) = scim(
        &app,
        "PATCH",
        &format!("/Groups/{team_id}"),
        Some(rename.clone()),
    )
    .await;
    assert_eq!(status, 204);
    let (status, got) = scim(&app, "GET", &format!("/Groups/{team_id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(got["displayName"], "team-renamed");
    assert_eq!(got["members"][0]["value"], alice_id.as_str());
    app.settle().await;
    assert!(
        app.outline.group_by_name("team-renamed").is_some(),
        "renamed in Outline"
    );
    assert_eq!(member_emails(&app, "team-renamed"), ["alice@example.com"]);

    // §6.7: deactivation is a PUT with active false; alice leaves the group and is suspended.
    let mut off = alice_body.clone();
    off["active"] = json!(false);
    let mut with_id = off.clone();
    with_id["id"] = json!(alice_id);
    let (status, put) = scim(&app, "PUT", &format!("/Users/{alice_id}"), Some(with_id)).await;
    assert_eq!(status, 200);
    assert_eq!(put["active"], false);
    assert_eq!(
        put["name"]["formatted"], "Alice Example ",
        "echoed, trailing space and all"
    );
    app.settle().await;
    assert!(
        member_emails(&app, "team-renamed").is_empty(),
        "a deactivated person leaves"
    );
    assert!(
        app.outline.is_suspended(&oalice),
        "and is suspended (SUSPEND_DEACTIVATED)"
    );

    // §6.8: re-activation brings both back.
    let (status, _) = scim(
        &app,
        "PUT",
        &format!("/Users/{alice_id}"),
        Some(alice_body.clone()),
    )
    .await;
    assert_eq!(status, 200);
    app.settle().await;
    assert_eq!(member_emails(&app, "team-renamed"), ["alice@example.com"]);
    assert!(
        !app.outline.is_suspended(&oalice),
        "the bridge's suspension undone"
    );

    // §6.9: the full sync sends the same rename again; it changes nothing and writes nothing to Outline.
    app.outline.clear_calls();
    let (status, _) = scim(&app, "PATCH", &format!("/Groups/{team_id}"), Some(rename)).await;
    assert_eq!(status, 204);
    app.settle().await;
    let writes = app
        .outline
        .calls()
        .iter()
        .filter(|c| {
            !c.method.ends_with(".list")
                && !c.method.ends_with(".info")
                && !c.method.ends_with(".memberships")
        })
        .count();
    assert_eq!(
        writes,
        0,
        "an unchanged group is no job: {:?}",
        app.outline.calls()
    );

    // §6.10: deleting bob answers 204, then 404; §6.11: the group deleted keeps its Outline group.
    let (status, _) = scim(&app, "DELETE", &format!("/Users/{bob_id}"), None).await;
    assert_eq!(status, 204);
    let (status, gone) = scim(&app, "GET", &format!("/Users/{bob_id}"), None).await;
    assert_eq!(status, 404, "{gone}");
    let (status, _) = scim(&app, "DELETE", &format!("/Groups/{team_id}"), None).await;
    assert_eq!(status, 204);
    app.settle().await;
    assert_eq!(
        member_emails(&app, "team-renamed"),
        ["alice@example.com"],
        "kept, as a deleted Authentik group"
    );
}

/// Okta: looks up before creating with startIndex and count, removes a member by a filter path, and
/// deactivates with a no-path replace.
#[tokio::test]
async fn oktas_shapes() {
    let (app, _state) = scim_app().await;
    app.outline.add_user("Olive", "olive@example.com");
    let (status, empty) = scim(
        &app,
        "GET",
        "/Users?filter=userName%20eq%20%22olive%40example.com%22&startIndex=1&count=100",
        None,
    )
    .await;
    assert_eq!((status, empty["totalResults"].as_i64()), (200, Some(0)));
    let (status, olive) = scim(&app, "POST", "/Users", Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "olive@example.com", "name": {"givenName": "Olive", "familyName": "Oyl"},
        "emails": [{"primary": true, "value": "olive@example.com", "type": "work"}], "active": true}))).await;
    assert_eq!(status, 201);
    let olive_id = olive["id"].as_str().expect("id").to_string();
    let (_, list) = scim(&app, "GET", "/Users?startIndex=1&count=2", None).await;
    assert_eq!(list["itemsPerPage"], 1);
    let (status, eng) = scim(
        &app,
        "POST",
        "/Groups",
        Some(
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "eng", "members": [{"value": olive_id, "display": "olive@example.com"}]}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{eng}");
    let eng_id = eng["id"].as_str().expect("id").to_string();
    app.settle().await;
    assert_eq!(member_emails(&app, "eng"), ["olive@example.com"]);
    let og = app.outline.group_by_name("eng").expect("eng");
    assert_eq!(
        og.external_id.as_deref(),
        Some(eng_id.as_str()),
        "no externalId sent: the SCIM id links"
    );

    let remove = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "remove", "path": format!("members[value eq \"{olive_id}\"]")}]});
    let (status, _) = scim(&app, "PATCH", &format!("/Groups/{eng_id}"), Some(remove)).await;
    assert_eq!(status, 204);
    app.settle().await;
    assert!(member_emails(&app, "eng").is_empty());

    let (status, _) = scim(
        &app,
        "PATCH",
        &format!("/Groups/{eng_id}"),
        Some(member_op("add", &olive_id)),
    )
    .await;
    assert_eq!(status, 204);
    let off = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "value": {"active": false}}]});
    let (status, patched) = scim(&app, "PATCH", &format!("/Users/{olive_id}"), Some(off)).await;
    assert_eq!((status, &patched["active"]), (200, &json!(false)));
    app.settle().await;
    assert!(
        member_emails(&app, "eng").is_empty(),
        "deactivated by PATCH"
    );
}

/// Entra ID: capitalised ops, "False" as a string, groups read without members, unknown query parameters.
#[tokio::test]
async fn entra_ids_shapes() {
    let (app, _state) = scim_app().await;
    app.outline.add_user("Eve", "eve@example.com");
    let (status, eve) = scim(&app, "POST", "/Users?aadOptscim062020", Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "externalId": "eve", "userName": "eve@example.com", "active": true,
        "emails": [{"primary": true, "type": "work", "value": "eve@example.com"}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"}}))).await;
    assert_eq!(status, 201, "{eve}");
    let eve_id = eve["id"].as_str().expect("id").to_string();
    let (status, ops) = scim(
        &app,
        "POST",
        "/Groups",
        Some(json!({"displayName": "ops", "externalId": "8c5d3f1e-0000-4000-8000-00000000e17a"})),
    )
    .await;
    assert_eq!(status, 201);
    let ops_id = ops["id"].as_str().expect("id").to_string();
    let add = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Add", "path": "members", "value": [{"value": eve_id}]}]});
    assert_eq!(
        scim(&app, "PATCH", &format!("/Groups/{ops_id}"), Some(add))
            .await
            .0,
        204
    );
    let (status, bare) = scim(
        &app,
        "GET",
        &format!("/Groups/{ops_id}?excludedAttributes=members"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(bare.get("members").is_none(), "{bare}");
    let (_, matched) = scim(
        &app,
        "GET",
        "/Groups?excludedAttributes=members&filter=displayName+eq+%22OPS%22",
        None,
    )
    .await;
    assert_eq!(matched["Resources"][0]["id"], ops_id.as_str());
    assert!(matched["Resources"][0].get("members").is_none());
    app.settle().await;
    assert_eq!(member_emails(&app, "ops"), ["eve@example.com"]);

    let off = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Replace", "path": "active", "value": "False"}]});
    let (status, patched) = scim(&app, "PATCH", &format!("/Users/{eve_id}"), Some(off)).await;
    assert_eq!(
        (status, &patched["active"]),
        (200, &json!(false)),
        "the string read as a boolean"
    );
    app.settle().await;
    assert!(member_emails(&app, "ops").is_empty());
    let (_, by_mail) = scim(
        &app,
        "GET",
        "/Users?filter=emails%5Btype+eq+%22work%22%5D.value+eq+%22EVE%40example.com%22",
        None,
    )
    .await;
    assert_eq!(by_mail["totalResults"], 1);
}

/// Every bad request gets a SCIM error with a clear detail, and stores nothing.
#[tokio::test]
async fn bad_requests_are_refused_whole_and_store_nothing() {
    let (app, _state) = scim_app().await;
    let (_, u) = scim(
        &app,
        "POST",
        "/Users",
        Some(user_body("u", "U", "u@example.com", "x")),
    )
    .await;
    let uid = u["id"].as_str().expect("id").to_string();
    let (_, g) = scim(
        &app,
        "POST",
        "/Groups",
        Some(json!({"displayName": "g", "members": [{"value": uid}]})),
    )
    .await;
    let gid = g["id"].as_str().expect("id").to_string();
    let before = (
        scim(&app, "GET", "/Users", None).await.1,
        scim(&app, "GET", "/Groups", None).await.1,
    );

    let (status, e) = scim_as(&app, "GET", "/Users", None, "wrong").await;
    assert_eq!(status, 401, "{e}");
    assert_eq!(
        e["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
    let raw = app
        .http
        .post(format!("{}/scim/v2/Users", app.url))
        .bearer_auth(SCIM_TOKEN)
        .header("content-type", SCIM_JSON)
        .body("{not json")
        .send()
        .await
        .expect("sent");
    assert_eq!(raw.status().as_u16(), 400);
    let e: Value = raw.json().await.expect("a SCIM error");
    assert_eq!(e["scimType"], "invalidSyntax");
    assert_eq!(e["status"], "400");

    let cases = [
        ("POST", "/Users".to_string(), json!({"userName": 7})),
        (
            "POST",
            "/Users".to_string(),
            json!({"userName": "v", "active": "perhaps"}),
        ),
        (
            "POST",
            "/Groups".to_string(),
            json!({"displayName": "h", "members": [{"value": uid}, {"value": "nobody"}]}),
        ),
        (
            "PATCH",
            format!("/Groups/{gid}"),
            json!({"Operations": [{"op": "add", "path": "members", "value": [{"value": "ghost"}]}, {"op": "replace", "path": "displayName", "value": "renamed"}]}),
        ),
        (
            "PATCH",
            format!("/Groups/{gid}"),
            json!({"Operations": [{"op": "replace", "path": "displayName", "value": "renamed"}, {"op": "replace", "path": "owner", "value": "x"}]}),
        ),
        (
            "PATCH",
            format!("/Users/{uid}"),
            json!({"Operations": [{"op": "replace", "path": "active", "value": "sometimes"}]}),
        ),
        (
            "PUT",
            format!("/Users/{uid}"),
            json!({"userName": "u", "id": "another"}),
        ),
    ];
    for (method, path, body) in cases {
        let (status, e) = scim(&app, method, &path, Some(body.clone())).await;
        assert_eq!(status, 400, "{method} {path} {body}: {e}");
        assert!(e["detail"].as_str().is_some_and(|d| !d.is_empty()), "{e}");
    }
    let (status, e) = scim(&app, "GET", "/Users?filter=userName+co+%22u%22", None).await;
    assert_eq!(
        (status, e["scimType"].as_str()),
        (400, Some("invalidFilter"))
    );
    let huge = json!({"userName": "big", "title": "x".repeat(1024 * 1024)});
    let (status, e) = scim(&app, "POST", "/Users", Some(huge)).await;
    assert_eq!(status, 413, "{e}");

    let after = (
        scim(&app, "GET", "/Users", None).await.1,
        scim(&app, "GET", "/Groups", None).await.1,
    );
    assert_eq!(before, after, "nothing stored by any refused request");
}

/// The store survives a restart: a second bridge on the same STATE_DIR answers what the first stored, and
/// its start-up pass converges Outline from it.
#[tokio::test]
async fn the_store_survives_a_restart() {
    let (authentik, outline) = start_fakes().await;
    let state = scratch_state_dir("scim-restart");
    let dir = state.clone();
    let first = spawn_app_with(authentik, outline, move |s| scim_settings(s, &dir)).await;
    first.outline.add_user("Rita", "rita@example.com");
    let (_, rita) = scim(
        &first,
        "POST",
        "/Users",
        Some(user_body("rita", "Rita", "rita@example.com", "r")),
    )
    .await;
    let rid = rita["id"].as_str().expect("id").to_string();
    let (_, g) = scim(
        &first,
        "POST",
        "/Groups",
        Some(json!({"displayName": "kept", "members": [{"value": rid}]})),
    )
    .await;
    first.settle().await;
    assert_eq!(member_emails(&first, "kept"), ["rita@example.com"]);
    // Drift in Outline while the second bridge starts: its start-up pass puts it right from the store.
    let og = first.outline.group_by_name("kept").expect("kept");
    let orita = first
        .outline
        .user_by_email("rita@example.com")
        .expect("rita");
    first.outline.remove_member(&og.id, &orita);
    // The second bridge: same STATE_DIR, same Outline.
    let (authentik2, _) = start_fakes().await;
    let mut settings = settings_for(&authentik2, &first.outline);
    scim_settings(&mut settings, &state);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let second = Application::build_with_listener(settings, listener)
        .await
        .expect("a second bridge opens the same store");
    let url = format!("http://127.0.0.1:{}", second.port());
    let queue = second.queue();
    tokio::spawn(second.run_until_stopped(std::future::pending()));
    let got: Value = first
        .http
        .get(format!(
            "{url}/scim/v2/Groups/{}",
            g["id"].as_str().expect("id")
        ))
        .bearer_auth(SCIM_TOKEN)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(got["members"][0]["value"], rid.as_str());
    tokio::time::timeout(Duration::from_secs(30), queue.wait_idle())
        .await
        .expect("the start-up pass ends");
    eventually(
        "the start-up pass restored rita",
        Duration::from_secs(10),
        || member_emails(&first, "kept") == ["rita@example.com"],
    )
    .await;
}

/// The same SCIM pushes drive the OpenFGA sink, with Outline off.
#[tokio::test]
async fn scim_drives_openfga_too() {
    let (authentik, outline) = start_fakes().await;
    let fga = start_openfga().await;
    let state = scratch_state_dir("scim-fga");
    let dir = state.clone();
    let app = spawn_app_with_sinks(authentik, outline, Some(fga), move |s| {
        scim_settings(s, &dir);
        s.outline = None;
    })
    .await;
    let (_, u) = scim(
        &app,
        "POST",
        "/Users",
        Some(user_body("frank", "Frank", "frank@example.com", "f")),
    )
    .await;
    let uid = u["id"].as_str().expect("id").to_string();
    let (status, _) = scim(&app, "POST", "/Groups", Some(json!({"displayName": "fga-team", "externalId": TEAM_UUID, "members": [{"value": uid}]}))).await;
    assert_eq!(status, 201);
    app.settle().await;
    let fga = app.openfga.as_ref().expect("fga");
    let tuples = fga.tuples();
    assert!(
        tuples.iter().any(
            |(user, _, object)| user == "user:frank" && *object == format!("group:{TEAM_UUID}")
        ),
        "{tuples:?}"
    );
}
