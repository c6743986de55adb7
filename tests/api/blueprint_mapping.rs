//! The blueprint's own mappings, run with python3 as Authentik runs them, posted to the running bridge.

use std::process::Command;
use std::time::Duration;

use crate::helpers::*;

fn run_mapping(args: &[&str]) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/run_mapping.py");
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .env("AUTHENTIK_WEBHOOK_TOKEN", AUTHENTIK_WEBHOOK_TOKEN)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "run_mapping.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the mapping prints JSON")
}

async fn post_as_authentik(
    app: &TestApp,
    headers: &serde_json::Value,
    body: &serde_json::Value,
) -> reqwest::Response {
    let authorization = headers["Authorization"]
        .as_str()
        .expect("the header mapping sets Authorization");
    app.http
        .post(format!("{}/webhooks/authentik", app.url))
        .header("Authorization", authorization)
        .header("Content-Type", "application/json")
        // Authentik's HTTP client sends Python's json.dumps text; the bridge reads any valid JSON.
        .body(body.to_string())
        .send()
        .await
        .expect("request reaches the bridge")
}

#[tokio::test]
async fn the_blueprints_mappings_drive_the_bridge() {
    let app = spawn_app().await;
    let pk = app.authentik.add_user("jane", "Jane", "jane@example.com");
    let g = app.authentik.add_group("wiki-editors");
    let jane = app.outline.add_user("Jane", "jane@example.com");
    let og = app.outline.add_group("Wiki-Editors", None);
    app.settle().await;
    app.authentik.add_member(&g, pk);

    let headers = run_mapping(&["group-updated", "--mapping", "headers"]);
    let mut body = run_mapping(&["group-updated"]);
    // The fixture event names a group of its own; point it at the fake's group, keeping the mapping's shape
    // (32-hex pk, as sanitize_item leaves a group's pk).
    body["model"]["pk"] = serde_json::Value::String(g.replace('-', ""));
    let resp = post_as_authentik(&app, &headers, &body).await;
    assert_eq!(resp.status().as_u16(), 202);
    eventually(
        "jane added through the mapped event",
        Duration::from_secs(5),
        || app.outline.members(&og).contains_key(&jane),
    )
    .await;

    let test = run_mapping(&["test"]);
    let resp = post_as_authentik(&app, &headers, &test).await;
    assert_eq!(resp.status().as_u16(), 200, "the Test button's document");

    let deleted = run_mapping(&["user-deleted"]);
    let resp = post_as_authentik(&app, &headers, &deleted).await;
    assert_eq!(resp.status().as_u16(), 202);
    let with_diff = run_mapping(&["group-updated", "--with-diff"]);
    assert_eq!(
        post_as_authentik(&app, &headers, &with_diff)
            .await
            .status()
            .as_u16(),
        202
    );
    let no_event = run_mapping(&["no-event"]);
    assert!(
        post_as_authentik(&app, &headers, &no_event)
            .await
            .status()
            .is_success(),
        "no retries for an event-less notification"
    );
}
