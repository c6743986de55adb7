//! Contract tests for the fake OpenFGA server (`upstream_fakes::FakeOpenFga`).
//!
//! Every call the OpenFGA sink makes is driven over HTTP and the answers, successes and error
//! envelopes alike, are validated against the vendored Swagger 2.0 spec
//! (`tests/fixtures/upstream/openfga-openapi.json`) in strict mode: no field outside the spec.
//! Where docs/src/upstream/openfga.md §8 says the real server differs from its spec, the check asserts
//! the server's behaviour through a [`Patch`] that cites the section. The behaviour rules the spec
//! cannot express (atomic writes, the 100-tuple limit, `on_duplicate` / `on_missing`, identifier
//! rules, Read filters and pagination, model resolution) get their own assertions.

use crate::openapi;

use std::collections::BTreeSet;

use openapi::Patch;
use serde_json::{json, Value};
use upstream_fakes::{FakeOpenFga, FakeOpenFgaOptions};

// ---- plumbing ---------------------------------------------------------------------------------

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or("")
    }

    /// Asserts an error envelope with this status and code.
    fn expect_error(&self, status: u16, code: &str) -> &Self {
        assert_eq!(
            (self.status, self.code()),
            (status, code),
            "body: {:#}",
            self.body
        );
        self
    }
}

/// A request with an optional bearer key; `body` `None` sends none.
async fn raw(
    fake: &FakeOpenFga,
    method: &str,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> Answer {
    let client = reqwest::Client::new();
    let url = format!("{}{path}", fake.url());
    let mut req = match method {
        "GET" => client.get(url),
        "POST" => client.post(url),
        other => client.request(other.parse().expect("method"), url),
    };
    if let Some(b) = body {
        req = req.json(&b);
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("request to fake OpenFGA");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("read body");
    Answer {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

/// An authenticated call, validated against the spec's schema for `template` and the status.
async fn fga(
    fake: &FakeOpenFga,
    method: &str,
    template: &str,
    path: &str,
    body: Option<Value>,
) -> Answer {
    let a = raw(fake, method, path, body, Some(&fake.token())).await;
    check_fga(method, template, &a);
    a
}

async fn write(fake: &FakeOpenFga, body: Value) -> Answer {
    let path = format!("/stores/{}/write", fake.store_id());
    fga(fake, "POST", "/stores/{store_id}/write", &path, Some(body)).await
}

async fn read_in(fake: &FakeOpenFga, store: &str, body: Value) -> Answer {
    let path = format!("/stores/{store}/read");
    fga(fake, "POST", "/stores/{store_id}/read", &path, Some(body)).await
}

async fn read(fake: &FakeOpenFga, body: Value) -> Answer {
    read_in(fake, &fake.store_id(), body).await
}

async fn check(fake: &FakeOpenFga, user: &str, relation: &str, object: &str) -> Answer {
    let path = format!("/stores/{}/check", fake.store_id());
    let body = json!({
        "tuple_key": {"user": user, "relation": relation, "object": object},
        "consistency": "HIGHER_CONSISTENCY"
    });
    fga(fake, "POST", "/stores/{store_id}/check", &path, Some(body)).await
}

async fn start() -> FakeOpenFga {
    start_with(FakeOpenFgaOptions::default()).await
}

async fn start_with(opts: FakeOpenFgaOptions) -> FakeOpenFga {
    FakeOpenFga::start(opts).await.expect("start fake OpenFGA")
}

/// `{"tuple_keys": [...]}` items from (user, relation, object).
fn keys(list: &[(&str, &str, &str)]) -> Value {
    json!(list
        .iter()
        .map(|(u, r, o)| json!({"user": u, "relation": r, "object": o}))
        .collect::<Vec<_>>())
}

fn set(list: &[(&str, &str, &str)]) -> BTreeSet<(String, String, String)> {
    list.iter()
        .map(|(u, r, o)| (u.to_string(), r.to_string(), o.to_string()))
        .collect()
}

/// A well-formed ULID that no store or model has.
const UNKNOWN_ULID: &str = "01ARZ3NDEKTSV4RRFFQ69G5FAV";

fn is_ulid(s: &str) -> bool {
    s.len() == 26
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b.is_ascii_uppercase() && !b"ILOU".contains(&b)))
}

/// `^$|^[A-Za-z0-9-_]+={0,2}$` (docs/src/upstream/openfga.md §2.3).
fn is_token(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    s.is_empty()
        || (!body.is_empty()
            && s.len() - body.len() <= 2
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

/// An error envelope with `code` from `enum_ref`, both fields always sent (docs/src/upstream/openfga.md
/// §3.1).
fn envelope(code: Value) -> Value {
    json!({
        "type": "object",
        "properties": {"code": code, "message": {"type": "string"}},
        "required": ["code", "message"]
    })
}

/// Where the real OpenFGA differs from `openfga-openapi.json` (docs/src/upstream/openfga.md §8), plus
/// what its marshaler always sends.
fn fga_patches() -> Vec<Patch> {
    vec![
        // docs/src/upstream/openfga.md §8.7, §2.1: unset message fields come out as `null`, not left
        // out.
        Patch::Nullable("TupleKey", "condition"),
        Patch::Nullable("Store", "deleted_at"),
        Patch::Nullable("GetStoreResponse", "deleted_at"),
        Patch::Nullable("TypeDefinition", "metadata"),
        Patch::Nullable("Metadata", "source_info"),
        Patch::Nullable("RelationMetadata", "source_info"),
        // docs/src/upstream/openfga.md §2.1: `EmitUnpopulated`, so every field is present in an answer.
        Patch::Require("TupleKey", &["user", "relation", "object", "condition"]),
        Patch::Require("Store", &["deleted_at"]),
        Patch::Require("GetStoreResponse", &["deleted_at"]),
        Patch::Require("CheckResponse", &["allowed", "resolution"]),
        Patch::Require("ReadAuthorizationModelsResponse", &["continuation_token"]),
        Patch::Require("ReadAuthorizationModelResponse", &["authorization_model"]),
        Patch::Require("AuthorizationModel", &["conditions"]),
        Patch::Require("TypeDefinition", &["relations", "metadata"]),
        // docs/src/upstream/openfga.md §3.1: every error carries both `code` and `message`.
        Patch::Replace(
            "ValidationErrorMessageResponse",
            envelope(json!({"$ref": "#/definitions/ErrorCode"})),
        ),
        Patch::Replace(
            "PathUnknownErrorMessageResponse",
            envelope(json!({"$ref": "#/definitions/NotFoundErrorCode"})),
        ),
        Patch::Replace(
            "InternalErrorMessageResponse",
            envelope(json!({"$ref": "#/definitions/InternalErrorCode"})),
        ),
        // docs/src/upstream/openfga.md §8.3: a 409 carries `"code": "Aborted"`, not the example's
        // `"10"`.
        Patch::Replace(
            "AbortedMessageResponse",
            envelope(json!({"type": "string", "enum": ["Aborted"]})),
        ),
        // docs/src/upstream/openfga.md §3.1, §3.2: a 401's code is an `AuthErrorCode` name
        // (`bearer_token_missing`, `unauthenticated`); the spec points
        // `UnauthenticatedResponse.code` at `ErrorCode`, which has neither, not even its own
        // example's `unauthenticated`.
        Patch::Replace(
            "UnauthenticatedResponse",
            envelope(json!({"$ref": "#/definitions/AuthErrorCode"})),
        ),
    ]
}

/// Validates an answer against the spec's schema for `template`, `method` and the status.
/// docs/src/upstream/openfga.md §8.2: the server never sends the listed 403; docs/src/upstream/openfga.md
/// §8.8: no 429 either. Both would fail here.
fn check_fga(method: &str, template: &str, a: &Answer) {
    let spec = openapi::openfga();
    let m = method.to_ascii_lowercase();
    let status = a.status.to_string();
    assert!(
        a.status != 403 && spec.lists_status(template, &m, &status),
        "{method} {template}: status {status} is not one the server sends for it: {:#}",
        a.body
    );
    let schema = spec.response(template, &m, &status);
    spec.assert_valid(
        &format!("{method} {template} {status}"),
        &schema,
        &a.body,
        &fga_patches(),
        true,
    );
    assert!(
        a.header("x-request-id").is_some(),
        "{method} {template}: no X-Request-Id (docs/src/upstream/openfga.md §2.1)"
    );
    assert!(
        a.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{method} {template}: not JSON"
    );
}

/// The model of docs/src/upstream/openfga.md §6 plus an app type granting `group#member`, a wildcard
/// and a conditional relation, for the validation and Check tests.
fn app_model() -> Value {
    json!({
        "schema_version": "1.1",
        "type_definitions": [
            {"type": "user"},
            {"type": "group",
             "relations": {"member": {"this": {}}},
             "metadata": {"relations": {"member": {"directly_related_user_types": [{"type": "user"}]}}}},
            {"type": "document",
             "relations": {
                 "viewer": {"this": {}},
                 "public": {"this": {}},
                 "timed": {"this": {}}
             },
             "metadata": {"relations": {
                 "viewer": {"directly_related_user_types": [{"type": "user"}, {"type": "group", "relation": "member"}]},
                 "public": {"directly_related_user_types": [{"type": "user", "wildcard": {}}]},
                 "timed": {"directly_related_user_types": [{"type": "user", "condition": "in_hours"}]}
             }}}
        ],
        "conditions": {
            "in_hours": {"name": "in_hours", "expression": "hour < 18", "parameters": {"hour": {"type_name": "TYPE_NAME_INT"}}}
        }
    })
}

// ---- the checker itself -----------------------------------------------------------------------

#[test]
fn openfga_spec_check_rejects_wrong_shapes() {
    let spec = openapi::openfga();
    let read = spec.response("/stores/{store_id}/read", "post", "200");
    let good = json!({
        "tuples": [{"key": {"user": "user:jane", "relation": "member", "object": "group:eng", "condition": null},
                    "timestamp": "2026-01-02T03:04:05.123Z"}],
        "continuation_token": ""
    });
    assert!(spec.errors(&read, &good, &fga_patches(), true).is_empty());
    for bad in [
        // No timestamp.
        json!({"tuples": [{"key": {"user": "u:a", "relation": "r", "object": "o:b", "condition": null}}], "continuation_token": ""}),
        // `condition` left out (docs/src/upstream/openfga.md §2.1: the server always sends it).
        json!({"tuples": [{"key": {"user": "u:a", "relation": "r", "object": "o:b"}, "timestamp": "2026-01-02T03:04:05Z"}], "continuation_token": ""}),
        // A misspelt field.
        json!({"tuples": [], "continuationToken": ""}),
        // Not a date-time.
        json!({"tuples": [{"key": {"user": "u:a", "relation": "r", "object": "o:b", "condition": null}, "timestamp": "yesterday"}], "continuation_token": ""}),
    ] {
        assert!(
            !spec.errors(&read, &bad, &fga_patches(), true).is_empty(),
            "accepted {bad}"
        );
    }
    let e400 = spec.response("/stores/{store_id}/write", "post", "400");
    let unknown_code = json!({"code": "not_a_code", "message": "x"});
    assert!(!spec
        .errors(&e400, &unknown_code, &fga_patches(), true)
        .is_empty());
    // Both fields are always sent (docs/src/upstream/openfga.md §3.1).
    assert!(!spec
        .errors(
            &e400,
            &json!({"code": "validation_error"}),
            &fga_patches(),
            true
        )
        .is_empty());
    let e401 = spec.response("/stores/{store_id}/write", "post", "401");
    // Without the patch the spec refuses the server's own 401 code (see `fga_patches`).
    let body = json!({"code": "bearer_token_missing", "message": "missing bearer token"});
    assert!(!spec.errors(&e401, &body, &[], true).is_empty());
    assert!(spec.errors(&e401, &body, &fga_patches(), true).is_empty());
}

// ---- stores and authentication ----------------------------------------------------------------

#[tokio::test]
async fn openfga_get_store_is_200_for_the_store_and_404_for_unknown() {
    let fake = start().await;
    let id = fake.store_id();
    assert!(is_ulid(&id), "{id}");

    let a = fga(
        &fake,
        "GET",
        "/stores/{store_id}",
        &format!("/stores/{id}"),
        None,
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["id"], json!(id));
    assert_eq!(a.body["name"], json!("bridge"));
    assert_eq!(a.body["deleted_at"], Value::Null);
    assert_eq!(a.header("openfga-store-id").as_deref(), Some(id.as_str()));

    let a = fga(
        &fake,
        "GET",
        "/stores/{store_id}",
        &format!("/stores/{UNKNOWN_ULID}"),
        None,
    )
    .await;
    a.expect_error(404, "store_id_not_found");
    assert_eq!(a.message(), "Store ID not found");

    // docs/src/upstream/openfga.md §2.1: a malformed store id is a 400, not a 404.
    fga(
        &fake,
        "GET",
        "/stores/{store_id}",
        "/stores/not-a-ulid",
        None,
    )
    .await
    .expect_error(400, "validation_error");

    let a = fga(&fake, "GET", "/stores", "/stores?name=bridge", None).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["stores"][0]["id"], json!(id));
    assert_eq!(a.body["continuation_token"], json!(""));
    let a = fga(&fake, "GET", "/stores", "/stores?name=other", None).await;
    assert_eq!(a.body["stores"], json!([]));
    assert_eq!(fake.count_calls("store"), 3);
    assert_eq!(fake.count_calls("stores"), 2);
}

#[tokio::test]
async fn openfga_authentication_failures_are_401() {
    let fake = start().await;
    let path = format!("/stores/{}", fake.store_id());
    assert_eq!(fake.token(), "fga-test-key");

    let a = raw(&fake, "GET", &path, None, None).await;
    check_fga("GET", "/stores/{store_id}", &a);
    a.expect_error(401, "bearer_token_missing");
    assert_eq!(a.message(), "missing bearer token");

    let a = raw(&fake, "GET", &path, None, Some("wrong-key")).await;
    check_fga("GET", "/stores/{store_id}", &a);
    a.expect_error(401, "unauthenticated");

    let body = json!({"writes": {"tuple_keys": keys(&[("user:jane", "member", "group:eng")])}});
    let a = raw(
        &fake,
        "POST",
        &format!("{path}/write"),
        Some(body.clone()),
        Some("wrong-key"),
    )
    .await;
    check_fga("POST", "/stores/{store_id}/write", &a);
    a.expect_error(401, "unauthenticated");
    assert!(fake.tuples().is_empty(), "a refused call wrote");

    // Another scheme is no bearer token at all.
    let a = reqwest::Client::new()
        .get(format!("{}{path}", fake.url()))
        .basic_auth("x", Some("fga-test-key"))
        .send()
        .await
        .expect("request");
    assert_eq!(a.status().as_u16(), 401);
    let v: Value = a.json().await.expect("json");
    assert_eq!(v["code"], json!("bearer_token_missing"));

    // `/healthz` needs no credential.
    let a = raw(&fake, "GET", "/healthz", None, None).await;
    assert_eq!(a.status, 200);

    // `authn.method: none` (docs/src/upstream/openfga.md §2.7): no header needed.
    let open = start_with(FakeOpenFgaOptions {
        preshared_key: None,
        ..FakeOpenFgaOptions::default()
    })
    .await;
    assert_eq!(open.token(), "");
    let a = raw(
        &open,
        "GET",
        &format!("/stores/{}", open.store_id()),
        None,
        None,
    )
    .await;
    check_fga("GET", "/stores/{store_id}", &a);
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn openfga_unknown_path_is_404_undefined_endpoint() {
    let fake = start().await;
    let a = raw(
        &fake,
        "POST",
        &format!("/stores/{}/writes", fake.store_id()),
        Some(json!({})),
        Some(&fake.token()),
    )
    .await;
    a.expect_error(404, "undefined_endpoint");
    let schema = openapi::openfga().response("/stores/{store_id}/write", "post", "404");
    openapi::openfga().assert_valid("unknown path 404", &schema, &a.body, &fga_patches(), true);
    assert_eq!(fake.count_calls("other"), 1);
}

// ---- models -----------------------------------------------------------------------------------

#[tokio::test]
async fn openfga_models_list_newest_first_get_and_write() {
    let fake = start().await;
    let store = fake.store_id();
    let first = fake.model_id();
    assert!(is_ulid(&first), "{first}");
    let list = format!("/stores/{store}/authorization-models");
    let t_list = "/stores/{store_id}/authorization-models";
    let t_one = "/stores/{store_id}/authorization-models/{id}";

    let a = fga(&fake, "GET", t_list, &list, None).await;
    assert_eq!(a.status, 200);
    let models = a.body["authorization_models"].as_array().expect("models");
    assert_eq!(models.len(), 1);
    // docs/src/upstream/openfga.md §6: the seeded model lets `group#member` hold `user`.
    let group = models[0]["type_definitions"]
        .as_array()
        .expect("types")
        .iter()
        .find(|t| t["type"] == json!("group"))
        .expect("group type");
    assert_eq!(
        group["metadata"]["relations"]["member"]["directly_related_user_types"][0]["type"],
        json!("user")
    );

    // POST writes a new model: 201, and it becomes the latest.
    let a = fga(&fake, "POST", t_list, &list, Some(app_model())).await;
    assert_eq!(a.status, 201);
    let second = a.body["authorization_model_id"]
        .as_str()
        .expect("id")
        .to_string();
    assert!(is_ulid(&second) && second != first);
    assert_eq!(fake.model_id(), second);
    let third = fake.write_model(app_model());

    // Newest first, one per page, until the token is empty.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let a = fga(
            &fake,
            "GET",
            t_list,
            &format!("{list}?page_size=1&continuation_token={token}"),
            None,
        )
        .await;
        assert_eq!(a.status, 200);
        seen.extend(
            a.body["authorization_models"]
                .as_array()
                .expect("models")
                .iter()
                .map(|m| m["id"].as_str().expect("id").to_string()),
        );
        token = a.body["continuation_token"].as_str().expect("token").into();
        assert!(is_token(&token), "{token}");
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(seen, vec![third.clone(), second.clone(), first.clone()]);

    let a = fga(&fake, "GET", t_one, &format!("{list}/{second}"), None).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["authorization_model"]["id"], json!(second));
    assert_eq!(
        a.body["authorization_model"]["schema_version"],
        json!("1.1")
    );

    fga(&fake, "GET", t_one, &format!("{list}/{UNKNOWN_ULID}"), None)
        .await
        .expect_error(400, "authorization_model_not_found");
    fga(&fake, "GET", t_one, &format!("{list}/nope"), None)
        .await
        .expect_error(400, "validation_error");
    fga(&fake, "GET", t_list, &format!("{list}?page_size=0"), None)
        .await
        .expect_error(400, "page_size_invalid");
    fga(&fake, "GET", t_list, &format!("{list}?page_size=101"), None)
        .await
        .expect_error(400, "page_size_invalid");
    fga(
        &fake,
        "GET",
        t_list,
        &format!("{list}?continuation_token=abc"),
        None,
    )
    .await
    .expect_error(400, "invalid_continuation_token");
    fga(
        &fake,
        "POST",
        t_list,
        &list,
        Some(json!({"schema_version": "1.1", "type_definitions": []})),
    )
    .await
    .expect_error(400, "validation_error");

    // docs/src/upstream/openfga.md §2.4: an unknown store has no models (*inferred*), not a 404.
    let a = fga(
        &fake,
        "GET",
        t_list,
        &format!("/stores/{UNKNOWN_ULID}/authorization-models"),
        None,
    )
    .await;
    assert_eq!(
        (a.status, a.body["authorization_models"].clone()),
        (200, json!([]))
    );
    assert_eq!(fake.count_calls("model"), 3);
    assert_eq!(fake.count_calls("write_model"), 2);
}

// ---- write ------------------------------------------------------------------------------------

#[tokio::test]
async fn openfga_write_answers_empty_object_with_model_header() {
    let fake = start().await;
    let body = json!({
        "writes": {"tuple_keys": keys(&[("user:jane", "member", "group:eng"), ("user:bob", "member", "group:eng")])},
        "consistency": "whatever: unknown fields are ignored",
        "some_future_field": {"x": 1}
    });
    let a = write(&fake, body.clone()).await;
    assert_eq!((a.status, a.body.clone()), (200, json!({})));
    assert_eq!(
        a.header("openfga-authorization-model-id"),
        Some(fake.model_id())
    );
    assert_eq!(a.header("openfga-store-id"), Some(fake.store_id()));
    assert_eq!(
        fake.tuples(),
        set(&[
            ("user:bob", "member", "group:eng"),
            ("user:jane", "member", "group:eng")
        ])
    );
    assert_eq!(fake.writes(), vec![body]);
    assert_eq!(
        fake.users_of("group:eng", "member"),
        ["user:bob".to_string(), "user:jane".to_string()].into()
    );

    // Deletes are applied before writes; one request may do both.
    let a = write(
        &fake,
        json!({
            "deletes": {"tuple_keys": keys(&[("user:bob", "member", "group:eng")])},
            "writes": {"tuple_keys": keys(&[("user:bob", "member", "group:ops")])},
            "authorization_model_id": fake.model_id()
        }),
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(
        fake.tuples(),
        set(&[
            ("user:bob", "member", "group:ops"),
            ("user:jane", "member", "group:eng")
        ])
    );
    assert_eq!(fake.count_calls("write"), 2);
}

#[tokio::test]
async fn openfga_write_is_atomic() {
    let fake = start().await;
    fake.add_tuple("user:jane", "member", "group:eng");
    fake.add_tuple("user:old", "member", "group:eng");
    let before = fake.tuples();

    // One existing tuple among new ones: nothing is written.
    let a = write(
        &fake,
        json!({
            "deletes": {"tuple_keys": keys(&[("user:old", "member", "group:eng")])},
            "writes": {"tuple_keys": keys(&[("user:amy", "member", "group:eng"), ("user:jane", "member", "group:eng")])}
        }),
    )
    .await;
    a.expect_error(400, "write_failed_due_to_invalid_input");
    assert!(
        a.message()
            .starts_with("cannot write a tuple which already exists: user: 'user:jane', relation: 'member', object: 'group:eng'"),
        "{}",
        a.message()
    );
    assert_eq!(fake.tuples(), before);

    // One missing tuple among deletes: nothing is deleted.
    let a = write(
        &fake,
        json!({"deletes": {"tuple_keys": keys(&[("user:old", "member", "group:eng"), ("user:ghost", "member", "group:eng")])}}),
    )
    .await;
    a.expect_error(400, "write_failed_due_to_invalid_input");
    assert!(a
        .message()
        .starts_with("cannot delete a tuple which does not exist"));
    assert_eq!(fake.tuples(), before);

    // One invalid tuple among valid ones: nothing is written either.
    write(
        &fake,
        json!({"writes": {"tuple_keys": keys(&[("user:amy", "member", "group:eng"), ("user:bo", "member", "team:x")])}}),
    )
    .await
    .expect_error(400, "validation_error");
    assert_eq!(fake.tuples(), before);
    assert!(
        fake.writes().is_empty(),
        "failed writes are not logged as writes"
    );
}

#[tokio::test]
async fn openfga_write_limit_counts_writes_plus_deletes() {
    let fake = start().await;
    let users: Vec<String> = (0..101).map(|i| format!("user:u{i:03}")).collect();
    let tk = |range: std::ops::Range<usize>| {
        json!(users[range]
            .iter()
            .map(|u| json!({"user": u, "relation": "member", "object": "group:big"}))
            .collect::<Vec<_>>())
    };
    for u in &users[60..101] {
        fake.add_tuple(u, "member", "group:big");
    }
    let before = fake.tuples();
    // 60 writes + 41 deletes = 101.
    let a = write(
        &fake,
        json!({"writes": {"tuple_keys": tk(0..60)}, "deletes": {"tuple_keys": tk(60..101)}}),
    )
    .await;
    a.expect_error(400, "exceeded_entity_limit");
    assert_eq!(
        a.message(),
        "The number of write operations exceeds the allowed limit of 100"
    );
    assert_eq!(fake.tuples(), before);
    // 60 + 40 = 100 is allowed.
    let a = write(
        &fake,
        json!({"writes": {"tuple_keys": tk(0..60)}, "deletes": {"tuple_keys": tk(60..100)}}),
    )
    .await;
    assert_eq!(a.status, 200, "{:#}", a.body);
    assert_eq!(fake.users_of("group:big", "member").len(), 61);

    // The operator's `--max-tuples-per-write`.
    let small = start_with(FakeOpenFgaOptions {
        max_tuples_per_write: 2,
        ..FakeOpenFgaOptions::default()
    })
    .await;
    let a = write(
        &small,
        json!({"writes": {"tuple_keys": keys(&[("user:a", "member", "group:g"), ("user:b", "member", "group:g"), ("user:c", "member", "group:g")])}}),
    )
    .await;
    a.expect_error(400, "exceeded_entity_limit");
    assert!(a.message().ends_with("limit of 2"));
}

#[tokio::test]
async fn openfga_write_input_rules() {
    let fake = start().await;
    let jane = ("user:jane", "member", "group:eng");

    write(&fake, json!({}))
        .await
        .expect_error(400, "invalid_write_input");
    write(&fake, json!({"writes": null, "deletes": null}))
        .await
        .expect_error(400, "invalid_write_input");
    // A present block needs at least one key (proto `min_items: 1`).
    write(&fake, json!({"writes": {"tuple_keys": []}}))
        .await
        .expect_error(400, "validation_error");
    write(
        &fake,
        json!({"deletes": {"tuple_keys": []}, "writes": {"tuple_keys": keys(&[jane])}}),
    )
    .await
    .expect_error(400, "validation_error");
    // The same key twice, or in both blocks.
    let a = write(
        &fake,
        json!({"writes": {"tuple_keys": keys(&[jane, jane])}}),
    )
    .await;
    a.expect_error(400, "cannot_allow_duplicate_tuples_in_one_request");
    assert_eq!(
        a.message(),
        "duplicate tuple in write: user: 'user:jane', relation: 'member', object: 'group:eng'"
    );
    write(
        &fake,
        json!({"writes": {"tuple_keys": keys(&[jane])}, "deletes": {"tuple_keys": keys(&[jane])}}),
    )
    .await
    .expect_error(400, "cannot_allow_duplicate_tuples_in_one_request");
    let a = write(
        &fake,
        json!({"writes": {"tuple_keys": keys(&[jane]), "on_duplicate": "sometimes"}}),
    )
    .await;
    a.expect_error(400, "validation_error");
    assert_eq!(a.message(), "invalid on_duplicate option: sometimes");
    let a = write(
        &fake,
        json!({"deletes": {"tuple_keys": keys(&[jane]), "on_missing": "skip"}}),
    )
    .await;
    a.expect_error(400, "validation_error");
    assert_eq!(a.message(), "invalid on_missing option: skip");
    assert!(fake.tuples().is_empty());

    // `""` and `"error"` are the default.
    let a = write(
        &fake,
        json!({"writes": {"tuple_keys": keys(&[jane]), "on_duplicate": ""}}),
    )
    .await;
    assert_eq!(a.status, 200);
    write(
        &fake,
        json!({"writes": {"tuple_keys": keys(&[jane]), "on_duplicate": "error"}}),
    )
    .await
    .expect_error(400, "write_failed_due_to_invalid_input");
}

#[tokio::test]
async fn openfga_on_duplicate_and_on_missing_ignore() {
    let fake = start().await;
    fake.add_tuple("user:jane", "member", "group:eng");
    let a = write(
        &fake,
        json!({
            "writes": {"tuple_keys": keys(&[("user:jane", "member", "group:eng"), ("user:amy", "member", "group:eng")]), "on_duplicate": "ignore"},
            "deletes": {"tuple_keys": keys(&[("user:ghost", "member", "group:eng")]), "on_missing": "ignore"}
        }),
    )
    .await;
    assert_eq!(a.status, 200, "{:#}", a.body);
    assert_eq!(
        fake.tuples(),
        set(&[
            ("user:amy", "member", "group:eng"),
            ("user:jane", "member", "group:eng")
        ])
    );

    // docs/src/upstream/openfga.md §4: with `ignore` on one side and `error` on the other, `error`
    // still aborts the request.
    let before = fake.tuples();
    write(
        &fake,
        json!({
            "writes": {"tuple_keys": keys(&[("user:jane", "member", "group:eng"), ("user:zed", "member", "group:eng")]), "on_duplicate": "ignore"},
            "deletes": {"tuple_keys": keys(&[("user:ghost", "member", "group:eng")])}
        }),
    )
    .await
    .expect_error(400, "write_failed_due_to_invalid_input");
    assert_eq!(fake.tuples(), before);

    // docs/src/upstream/openfga.md §3.2: `ignore` skips only an identical tuple; the same key with
    // another condition is a 409.
    fake.write_model(app_model());
    let timed = json!({"user": "user:jane", "relation": "timed", "object": "document:r",
                       "condition": {"name": "in_hours", "context": {"hour": 9}}});
    let a = write(&fake, json!({"writes": {"tuple_keys": [timed]}})).await;
    assert_eq!(a.status, 200, "{:#}", a.body);
    let plain = json!({"user": "user:jane", "relation": "timed", "object": "document:r",
                       "condition": {"name": "in_hours"}});
    let a = write(
        &fake,
        json!({"writes": {"tuple_keys": [plain], "on_duplicate": "ignore"}}),
    )
    .await;
    a.expect_error(409, "Aborted");
    assert!(a
        .message()
        .starts_with("transactional write failed due to conflict"));
    let a = write(
        &fake,
        json!({"writes": {"tuple_keys": [timed], "on_duplicate": "ignore"}}),
    )
    .await;
    assert_eq!(a.status, 200, "an identical tuple is skipped: {:#}", a.body);
}

#[tokio::test]
async fn openfga_server_before_1_10_drops_the_ignore_options() {
    let fake = start_with(FakeOpenFgaOptions {
        supports_on_duplicate: false,
        ..FakeOpenFgaOptions::default()
    })
    .await;
    fake.add_tuple("user:jane", "member", "group:eng");
    write(
        &fake,
        json!({"writes": {"tuple_keys": keys(&[("user:jane", "member", "group:eng")]), "on_duplicate": "ignore"}}),
    )
    .await
    .expect_error(400, "write_failed_due_to_invalid_input");
    write(
        &fake,
        json!({"deletes": {"tuple_keys": keys(&[("user:ghost", "member", "group:eng")]), "on_missing": "ignore"}}),
    )
    .await
    .expect_error(400, "write_failed_due_to_invalid_input");
    // An unknown field's value is not validated either.
    let a = write(
        &fake,
        json!({"writes": {"tuple_keys": keys(&[("user:amy", "member", "group:eng")]), "on_duplicate": "sometimes"}}),
    )
    .await;
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn openfga_write_resolves_the_model_even_for_deletes() {
    let fake = start().await;
    let delete_only =
        json!({"deletes": {"tuple_keys": keys(&[("user:jane", "member", "group:eng")])}});
    let t_write = "/stores/{store_id}/write";

    // An unknown store: every Write, delete-only included, is a 400.
    let a = fga(
        &fake,
        "POST",
        t_write,
        &format!("/stores/{UNKNOWN_ULID}/write"),
        Some(delete_only.clone()),
    )
    .await;
    a.expect_error(400, "latest_authorization_model_not_found");
    assert_eq!(
        a.message(),
        format!("No authorization models found for store '{UNKNOWN_ULID}'")
    );

    // A store without a model answers the same.
    let a = fga(
        &fake,
        "POST",
        "/stores",
        "/stores",
        Some(json!({"name": "empty"})),
    )
    .await;
    assert_eq!(a.status, 201);
    let empty = a.body["id"].as_str().expect("id").to_string();
    fga(
        &fake,
        "POST",
        t_write,
        &format!("/stores/{empty}/write"),
        Some(json!({})),
    )
    .await
    .expect_error(400, "latest_authorization_model_not_found");

    // A named model that does not exist.
    let mut body = delete_only.clone();
    body["authorization_model_id"] = json!(UNKNOWN_ULID);
    let a = write(&fake, body).await;
    a.expect_error(400, "authorization_model_not_found");
    assert_eq!(
        a.message(),
        format!("Authorization Model '{UNKNOWN_ULID}' not found")
    );

    // Written tuples are checked against the named model, not the latest.
    let minimal = fake.model_id();
    let app = fake.write_model(app_model());
    let grant = json!({"writes": {"tuple_keys": keys(&[("user:jane", "viewer", "document:r")])}, "authorization_model_id": minimal});
    write(&fake, grant)
        .await
        .expect_error(400, "validation_error");
    let a = write(
        &fake,
        json!({"writes": {"tuple_keys": keys(&[("user:jane", "viewer", "document:r")])}}),
    )
    .await;
    assert_eq!(a.header("openfga-authorization-model-id"), Some(app));
}

#[tokio::test]
async fn openfga_written_tuples_are_checked_against_the_model() {
    let fake = start().await;
    fake.write_model(app_model());
    let cases: &[((&str, &str, &str), &str)] = &[
        (
            ("user:jane", "member", "team:x"),
            "Invalid tuple 'team:x#member@user:jane'. Reason: type 'team' not found",
        ),
        (
            ("user:maria", "unknown", "document:1"),
            "Invalid tuple 'document:1#unknown@user:maria'. Reason: relation 'document#unknown' not found",
        ),
        (
            ("org:acme", "viewer", "document:1"),
            "Invalid tuple 'document:1#viewer@org:acme'. Reason: type 'org' is not an allowed type restriction for 'document#viewer'",
        ),
        (
            ("group:eng#member", "member", "group:ops"),
            "Invalid tuple 'group:ops#member@group:eng#member'. Reason: type 'group#member' is not an allowed type restriction for 'group#member'",
        ),
        (
            ("user:*", "member", "group:eng"),
            "Invalid tuple 'group:eng#member@user:*'. Reason: the typed wildcard 'user:*' is not an allowed type restriction for 'group#member'",
        ),
        (
            ("user:jane#x", "member", "group:eng"),
            "Invalid tuple 'group:eng#member@user:jane#x'. Reason: relation 'user#x' not found",
        ),
        (
            ("user:jane", "timed", "document:1"),
            "Invalid tuple 'document:1#timed@user:jane'. Reason: type 'user' is not an allowed type restriction for 'document#timed'",
        ),
    ];
    for ((u, r, o), message) in cases {
        let a = write(&fake, json!({"writes": {"tuple_keys": keys(&[(u, r, o)])}})).await;
        a.expect_error(400, "validation_error");
        assert_eq!(a.message(), *message);
    }
    assert!(fake.tuples().is_empty());

    // Allowed: a user, the userset `group#member`, the wildcard where it is listed.
    let ok = [
        ("user:jane", "viewer", "document:1"),
        ("group:eng#member", "viewer", "document:1"),
        ("user:*", "public", "document:1"),
    ];
    let a = write(&fake, json!({"writes": {"tuple_keys": keys(&ok)}})).await;
    assert_eq!(a.status, 200, "{:#}", a.body);

    // docs/src/upstream/openfga.md §2.2: deletes are only syntax-checked; a tuple whose type left the
    // model can still go.
    fake.add_tuple("user:jane", "member", "team:x");
    let a = write(
        &fake,
        json!({"deletes": {"tuple_keys": keys(&[("user:jane", "member", "team:x")])}}),
    )
    .await;
    assert_eq!(a.status, 200, "{:#}", a.body);
    write(
        &fake,
        json!({"deletes": {"tuple_keys": keys(&[("user:ak:jane", "member", "team:x")])}}),
    )
    .await
    .expect_error(400, "validation_error");
    assert_eq!(fake.tuples(), set(&ok));
}

#[tokio::test]
async fn openfga_identifier_rules() {
    let fake = start().await;
    let long_user = format!("user:{}", "a".repeat(508));
    let long_object = format!("group:{}", "a".repeat(251));
    let refused: Vec<(String, String, &str)> = vec![
        (
            "user:jane".into(),
            "group:Site Admins".into(),
            "invalid TupleKey.Object: value does not match regex pattern",
        ),
        (
            "user:jane".into(),
            "group:eng\tops".into(),
            "invalid TupleKey.Object: value does not match regex pattern",
        ),
        (
            "user:jane".into(),
            long_object.clone(),
            "invalid TupleKey.Object: value does not match regex pattern",
        ),
        (
            "user:jane".into(),
            "group:eng#ops".into(),
            "Reason: invalid 'object' field format",
        ),
        (
            "user:jane".into(),
            "group:eng:ops".into(),
            "Reason: invalid 'object' field format",
        ),
        (
            "user:ak:jane".into(),
            "group:eng".into(),
            "Reason: the 'user' field is malformed",
        ),
        (
            long_user.clone(),
            "group:eng".into(),
            "invalid TupleKey.User: value length must be at most 512 bytes",
        ),
    ];
    assert_eq!(long_user.len(), 513);
    assert_eq!(long_object.chars().count(), 257);
    for (user, object, message) in &refused {
        let a = write(
            &fake,
            json!({"writes": {"tuple_keys": [{"user": user, "relation": "member", "object": object}]}}),
        )
        .await;
        a.expect_error(400, "validation_error");
        assert!(
            a.message().contains(message),
            "{user} {object}: {}",
            a.message()
        );
    }
    write(
        &fake,
        json!({"writes": {"tuple_keys": keys(&[("user:jane", "mem ber", "group:eng")])}}),
    )
    .await
    .expect_error(400, "validation_error");
    assert!(fake.tuples().is_empty());

    // docs/src/upstream/openfga.md §5 "Accepted": all of these are plain characters to OpenFGA.
    let wide = format!("group:{}", "é".repeat(250));
    assert_eq!((wide.chars().count(), wide.len()), (256, 506));
    let accepted = [
        ("user:jane@example.com", "group:Ingeniería/Ops+QA(€)"),
        (
            "user:8c6e4a4e-1d5f-4f7e-9c55-0b0f6f3f1a2b",
            "group:a/b?c=d&e%20f",
        ),
        ("user:a|b", "group:no\u{a0}break"),
        ("user:jane", wide.as_str()),
        ("user:Jane", "group:Engineering"),
        ("user:jane", "group:engineering"),
    ];
    for (user, object) in accepted {
        let a = write(
            &fake,
            json!({"writes": {"tuple_keys": [{"user": user, "relation": "member", "object": object}]}}),
        )
        .await;
        assert_eq!(a.status, 200, "{user} {object}: {:#}", a.body);
    }
    // Case-sensitive: four distinct tuples above differ only in case.
    assert_eq!(fake.tuples().len(), accepted.len());
}

// ---- read -------------------------------------------------------------------------------------

#[tokio::test]
async fn openfga_read_filters() {
    let fake = start().await;
    for (u, r, o) in [
        ("user:jane", "member", "group:eng"),
        ("user:bob", "member", "group:eng"),
        ("user:jane", "owner", "group:eng"),
        ("user:jane", "member", "group:ops"),
        ("user:bob", "viewer", "document:x"),
        ("user:jane", "viewer", "document:x"),
    ] {
        fake.add_tuple(u, r, o);
    }
    let triples = |a: &Answer| -> BTreeSet<(String, String, String)> {
        a.body["tuples"]
            .as_array()
            .expect("tuples")
            .iter()
            .map(|t| {
                let k = &t["key"];
                (
                    k["user"].as_str().unwrap().to_string(),
                    k["relation"].as_str().unwrap().to_string(),
                    k["object"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };

    let a = read(&fake, json!({})).await;
    assert_eq!(a.status, 200);
    assert_eq!(triples(&a).len(), 6);
    assert_eq!(a.body["tuples"][0]["key"]["condition"], Value::Null);
    assert_eq!(a.header("openfga-store-id"), Some(fake.store_id()));

    let a = read(&fake, json!({"tuple_key": {"object": "group:eng"}})).await;
    assert_eq!(
        triples(&a),
        set(&[
            ("user:bob", "member", "group:eng"),
            ("user:jane", "member", "group:eng"),
            ("user:jane", "owner", "group:eng")
        ])
    );
    let a = read(
        &fake,
        json!({"tuple_key": {"object": "group:eng", "relation": "member"}, "consistency": "HIGHER_CONSISTENCY"}),
    )
    .await;
    assert_eq!(
        triples(&a),
        set(&[
            ("user:bob", "member", "group:eng"),
            ("user:jane", "member", "group:eng")
        ])
    );
    let a = read(
        &fake,
        json!({"tuple_key": {"object": "group:eng", "relation": "member", "user": "user:jane"}}),
    )
    .await;
    assert_eq!(triples(&a), set(&[("user:jane", "member", "group:eng")]));
    let a = read(
        &fake,
        json!({"tuple_key": {"object": "group:eng", "relation": "member", "user": "user:amy"}}),
    )
    .await;
    assert_eq!((a.status, triples(&a).len()), (200, 0));
    let a = read(
        &fake,
        json!({"tuple_key": {"object": "group:", "user": "user:jane"}}),
    )
    .await;
    assert_eq!(
        triples(&a),
        set(&[
            ("user:jane", "member", "group:eng"),
            ("user:jane", "member", "group:ops"),
            ("user:jane", "owner", "group:eng")
        ])
    );
    let a = read(
        &fake,
        json!({"tuple_key": {"object": "group:", "relation": "member", "user": "user:jane"}}),
    )
    .await;
    assert_eq!(triples(&a).len(), 2);

    const NEEDS_TYPE: &str = "the 'tuple_key' field was provided but the object type field is required and both the object id and user cannot be empty";
    for bad in [
        json!({"object": "group:"}),
        json!({"user": "user:jane"}),
        json!({"user": "user:jane", "relation": "member"}),
        json!({}),
    ] {
        let a = read(&fake, json!({"tuple_key": bad})).await;
        a.expect_error(400, "validation_error");
        assert_eq!(a.message(), NEEDS_TYPE, "{bad}");
    }
    read(&fake, json!({"consistency": "SOMETIMES"}))
        .await
        .expect_error(400, "validation_error");

    // docs/src/upstream/openfga.md §2.3: Read looks up no store, so an unknown store is an empty one;
    // GetStore tells them apart.
    let a = read_in(
        &fake,
        UNKNOWN_ULID,
        json!({"tuple_key": {"object": "group:eng"}}),
    )
    .await;
    assert_eq!(
        (a.status, a.body.clone()),
        (200, json!({"tuples": [], "continuation_token": ""}))
    );
    fga(
        &fake,
        "GET",
        "/stores/{store_id}",
        &format!("/stores/{UNKNOWN_ULID}"),
        None,
    )
    .await
    .expect_error(404, "store_id_not_found");
    read_in(&fake, "bridge", json!({}))
        .await
        .expect_error(400, "validation_error");
    assert_eq!(fake.count_calls("read"), 14);
}

#[tokio::test]
async fn openfga_read_paginates_50_by_default_at_most_100() {
    let fake = start().await;
    let mut expected = BTreeSet::new();
    for i in 0..230 {
        let user = format!("user:u{i:03}");
        let group = format!("group:g{}", i % 3);
        fake.add_tuple(&user, "member", &group);
        expected.insert((user, "member".to_string(), group));
    }

    let a = read(&fake, json!({})).await;
    assert_eq!(a.body["tuples"].as_array().map(Vec::len), Some(50));
    let token = a.body["continuation_token"].as_str().unwrap();
    assert!(!token.is_empty() && is_token(token), "{token}");

    // The sink's loop: page_size 100 until the token is empty.
    let mut seen = BTreeSet::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let a = read(
            &fake,
            json!({"page_size": 100, "continuation_token": token}),
        )
        .await;
        assert_eq!(a.status, 200);
        let tuples = a.body["tuples"].as_array().expect("tuples");
        assert!(tuples.len() <= 100);
        for t in tuples {
            let k = &t["key"];
            let triple = (
                k["user"].as_str().unwrap().to_string(),
                k["relation"].as_str().unwrap().to_string(),
                k["object"].as_str().unwrap().to_string(),
            );
            assert!(seen.insert(triple), "a tuple came twice");
        }
        pages += 1;
        token = a.body["continuation_token"].as_str().expect("token").into();
        assert!(is_token(&token), "{token}");
        if token.is_empty() {
            break;
        }
        assert!(pages < 10, "the token never ran out");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, expected);

    // One group's members, paged with the filter kept.
    let mut members = 0;
    let mut token = String::new();
    loop {
        let a = read(
            &fake,
            json!({"tuple_key": {"object": "group:g1", "relation": "member"}, "page_size": 30, "continuation_token": token}),
        )
        .await;
        members += a.body["tuples"].as_array().unwrap().len();
        token = a.body["continuation_token"].as_str().unwrap().into();
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(members, 77);

    for size in [json!(0), json!(101), json!(-1)] {
        read(&fake, json!({"page_size": size}))
            .await
            .expect_error(400, "page_size_invalid");
    }
    for token in ["garbage", "00ff", "not a token!"] {
        read(&fake, json!({"continuation_token": token}))
            .await
            .expect_error(400, "invalid_continuation_token");
    }
}

// ---- check ------------------------------------------------------------------------------------

#[tokio::test]
async fn openfga_check_follows_tuples_and_usersets() {
    let fake = start().await;
    fake.add_tuple("user:jane", "member", "group:eng");
    let a = check(&fake, "user:jane", "member", "group:eng").await;
    assert_eq!(a.body, json!({"allowed": true, "resolution": ""}));
    assert_eq!(
        a.header("openfga-authorization-model-id"),
        Some(fake.model_id())
    );
    let a = check(&fake, "user:bob", "member", "group:eng").await;
    assert_eq!(a.body["allowed"], json!(false));
    // docs/src/upstream/openfga.md §2.5: undefined type or relation.
    check(&fake, "user:jane", "viewer", "document:roadmap")
        .await
        .expect_error(400, "validation_error");
    check(&fake, "user:jane", "owner", "group:eng")
        .await
        .expect_error(400, "validation_error");

    // docs/src/upstream/openfga.md §6: an app grants a group through the userset `group:eng#member`.
    fake.write_model(app_model());
    fake.add_tuple("group:eng#member", "viewer", "document:roadmap");
    fake.add_tuple("user:*", "public", "document:roadmap");
    assert_eq!(
        check(&fake, "user:jane", "viewer", "document:roadmap")
            .await
            .body["allowed"],
        json!(true)
    );
    assert_eq!(
        check(&fake, "user:bob", "viewer", "document:roadmap")
            .await
            .body["allowed"],
        json!(false)
    );
    assert_eq!(
        check(&fake, "user:bob", "public", "document:roadmap")
            .await
            .body["allowed"],
        json!(true)
    );
    fake.add_tuple("user:bob", "member", "group:eng");
    assert_eq!(
        check(&fake, "user:bob", "viewer", "document:roadmap")
            .await
            .body["allowed"],
        json!(true)
    );

    let a = fga(
        &fake,
        "POST",
        "/stores/{store_id}/check",
        &format!("/stores/{UNKNOWN_ULID}/check"),
        Some(json!({"tuple_key": {"user": "user:jane", "relation": "member", "object": "group:eng"}})),
    )
    .await;
    a.expect_error(400, "latest_authorization_model_not_found");
    assert_eq!(fake.count_calls("check"), 9);
}

// ---- faults and the call log ------------------------------------------------------------------

#[tokio::test]
async fn openfga_faults_and_call_log() {
    let fake = start().await;
    let body = json!({"writes": {"tuple_keys": keys(&[("user:jane", "member", "group:eng")])}});

    fake.fail_next(2, 500);
    write(&fake, body.clone())
        .await
        .expect_error(500, "internal_error");
    read(&fake, json!({}))
        .await
        .expect_error(500, "internal_error");
    assert!(fake.tuples().is_empty());

    fake.fail_next(1, 409);
    write(&fake, body.clone())
        .await
        .expect_error(409, "Aborted");
    fake.fail_next(1, 422);
    let a = raw(
        &fake,
        "POST",
        &format!("/stores/{}/write", fake.store_id()),
        Some(body.clone()),
        Some(&fake.token()),
    )
    .await;
    // docs/src/upstream/openfga.md §3.1: throttling is 422 `throttled_timeout_error`; the spec's 422
    // schema is validated as is.
    check_fga("POST", "/stores/{store_id}/write", &a);
    assert_eq!((a.status, a.code()), (422, "throttled_timeout_error"));

    fake.set_down(true);
    write(&fake, body.clone())
        .await
        .expect_error(500, "internal_error");
    assert_eq!(raw(&fake, "GET", "/healthz", None, None).await.status, 500);
    fake.set_down(false);
    fake.set_latency(std::time::Duration::ZERO);

    let a = write(&fake, body.clone()).await;
    assert_eq!(a.status, 200);
    assert_eq!(fake.tuples(), set(&[("user:jane", "member", "group:eng")]));
    assert_eq!(fake.writes(), vec![body.clone()]);

    let calls = fake.calls();
    let statuses: Vec<u16> = calls.iter().map(|c| c.status).collect();
    assert_eq!(statuses, vec![500, 500, 409, 422, 500, 500, 200]);
    assert_eq!(calls[0].method, "POST");
    assert_eq!(calls[0].path, format!("/stores/{}/write", fake.store_id()));
    assert_eq!(calls[0].body, body);
    assert_eq!(fake.count_calls("write"), 5);
    assert_eq!(fake.count_calls("read"), 1);
    assert_eq!(fake.count_calls("healthz"), 1);

    let a = fga(
        &fake,
        "GET",
        "/stores/{store_id}/authorization-models",
        &format!(
            "/stores/{}/authorization-models?page_size=1",
            fake.store_id()
        ),
        None,
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(
        fake.calls().last().map(|c| c.body.clone()),
        Some(json!({"page_size": "1"}))
    );

    fake.clear_calls();
    assert!(fake.calls().is_empty() && fake.writes().is_empty());
    // Clones share one server.
    let twin = fake.clone();
    twin.add_tuple("user:bob", "member", "group:eng");
    assert_eq!(fake.users_of("group:eng", "member").len(), 2);
}
