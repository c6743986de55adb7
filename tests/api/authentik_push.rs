//! Authentik notification webhooks → Outline follows within the second.

use std::time::Duration;

use crate::faults::metric;
use crate::helpers::*;

/// A bridge and fake Authentik wired like the blueprint: every change posts the v1 document with the token.
async fn wired() -> TestApp {
    let app = spawn_app().await;
    app.wire_authentik_webhook();
    app
}

#[tokio::test]
async fn pushed_adds_and_removes_reach_outline() {
    let app = wired().await;
    let pk = app.authentik.add_user("jane", "Jane", "jane@example.com");
    let g = app.authentik.add_group("Wiki Editors");
    let jane = app.outline.add_user("Jane", "jane@example.com");
    let og = app.outline.add_group("Wiki Editors", None);
    app.settle().await;

    app.authentik.add_member(&g, pk);
    eventually("jane added in Outline", Duration::from_secs(5), || {
        app.outline.members(&og).contains_key(&jane)
    })
    .await;
    app.authentik.remove_member(&g, pk);
    eventually("jane removed in Outline", Duration::from_secs(5), || {
        !app.outline.members(&og).contains_key(&jane)
    })
    .await;
}

#[tokio::test]
async fn a_deleted_user_leaves_every_managed_group() {
    let (authentik, outline) = start_fakes().await;
    let pk = authentik.add_user("jane", "Jane", "jane@example.com");
    let a = authentik.add_group("A");
    let b = authentik.add_group("B");
    authentik.add_member(&a, pk);
    authentik.add_member(&b, pk);
    let jane = outline.add_user("Jane", "jane@example.com");
    let oa = outline.add_group("A", None);
    let ob = outline.add_group("B", None);
    let private = outline.add_group("Private", None);
    outline.add_member(&private, &jane, "member");
    let app = spawn_app_with(authentik, outline, |_| {}).await;
    assert!(
        app.outline.members(&oa).contains_key(&jane),
        "start-up reconcile added her"
    );
    app.wire_authentik_webhook();

    app.authentik.delete_user(pk);
    eventually("removed from A and B", Duration::from_secs(5), || {
        !app.outline.members(&oa).contains_key(&jane)
            && !app.outline.members(&ob).contains_key(&jane)
    })
    .await;
    app.settle().await;
    assert!(
        app.outline.members(&private).contains_key(&jane),
        "unmanaged group untouched"
    );
}

#[tokio::test]
async fn a_deactivated_user_is_removed() {
    let (authentik, outline) = start_fakes().await;
    let pk = authentik.add_user("jane", "Jane", "jane@example.com");
    let a = authentik.add_group("A");
    authentik.add_member(&a, pk);
    let jane = outline.add_user("Jane", "jane@example.com");
    let oa = outline.add_group("A", None);
    let app = spawn_app_with(authentik, outline, |_| {}).await;
    assert!(app.outline.members(&oa).contains_key(&jane));
    app.wire_authentik_webhook();
    app.authentik.set_active(pk, false);
    eventually("removed", Duration::from_secs(5), || {
        !app.outline.members(&oa).contains_key(&jane)
    })
    .await;
}

#[tokio::test]
async fn a_renamed_group_is_followed_and_a_deleted_one_kept() {
    let (authentik, outline) = start_fakes().await;
    let pk = authentik.add_user("jane", "Jane", "jane@example.com");
    let g = authentik.add_group("Old name");
    authentik.add_member(&g, pk);
    let jane = outline.add_user("Jane", "jane@example.com");
    let og = outline.add_group("Old name", None);
    let app = spawn_app_with(authentik, outline, |_| {}).await;
    app.wire_authentik_webhook();

    app.authentik.rename_group(&g, "New name");
    eventually("renamed in Outline", Duration::from_secs(5), || {
        app.outline
            .groups()
            .iter()
            .any(|x| x.id == og && x.name == "New name")
    })
    .await;

    app.authentik.delete_group(&g);
    app.settle().await;
    assert!(
        app.outline.groups().iter().any(|x| x.id == og),
        "Outline group kept"
    );
    assert!(app.outline.members(&og).contains_key(&jane), "members kept");
    assert_eq!(app.outline.count_calls("groups.delete"), 0);
}

#[tokio::test]
async fn the_test_button_gets_200_and_nothing_else() {
    let app = spawn_app().await;
    app.outline.clear_calls();
    let doc = serde_json::json!({"schema": "authentik-bridge/v1", "event_pk": "t1", "action": "custom_notification_test", "app": "authentik.events.api.notification_transports", "created": "2026-11-30T12:00:00Z", "model": null});
    let resp = app.post_authentik(&doc).await;
    assert_eq!(resp.status().as_u16(), 200);
    app.settle().await;
    assert!(app.outline.calls().is_empty());
}

#[tokio::test]
async fn three_deliveries_of_one_event_give_one_write() {
    let app = spawn_app().await;
    let pk = app.authentik.add_user("jane", "Jane", "jane@example.com");
    let g = app.authentik.add_group("G");
    let _jane = app.outline.add_user("Jane", "jane@example.com");
    let _og = app.outline.add_group("G", None);
    app.settle().await;
    app.authentik.add_member(&g, pk);
    app.outline.clear_calls();
    let doc = group_event(
        "0e9e0c2b-5a1f-4c3e-9a77-2f0d9c1e4b21",
        "model_updated",
        &g,
        "G",
    );
    for _ in 0..3 {
        assert_eq!(app.post_authentik(&doc).await.status().as_u16(), 202);
    }
    app.settle().await;
    assert_eq!(app.outline.count_calls("groups.add_user"), 1);
    assert!(app
        .metrics_text()
        .await
        .contains(r#"bridge_webhooks_total{outcome="duplicate",source="authentik"} 2"#));
}

#[tokio::test]
async fn a_burst_of_a_hundred_events_costs_a_few_jobs() {
    let app = spawn_app().await;
    let g = app.authentik.add_group("Busy");
    app.outline.add_group("Busy", None);
    let mut pks = Vec::new();
    for i in 0..100 {
        let email = format!("u{i}@example.com");
        pks.push(app.authentik.add_user(&format!("u{i}"), "U", &email));
        app.outline.add_user("U", &email);
    }
    app.settle().await;
    app.authentik.clear_calls();
    // Two halves: each adds 50 members, then their 50 events arrive at once, as a bulk change in the
    // Authentik UI sends them.
    for (half, chunk) in pks.chunks(50).enumerate() {
        for pk in chunk {
            app.authentik.add_member(&g, *pk);
        }
        let docs: Vec<serde_json::Value> = (0..chunk.len())
            .map(|i| group_event(&format!("burst-{half}-{i}"), "model_updated", &g, "Busy"))
            .collect();
        let answers = futures::future::join_all(docs.iter().map(|d| app.post_authentik(d))).await;
        assert!(answers.iter().all(|r| r.status().as_u16() == 202));
    }
    app.settle().await;
    let reads = app
        .authentik
        .count_calls(&format!("/api/v3/core/groups/{g}"));
    assert!(
        (1..=4).contains(&reads),
        "{reads} group reads for a burst of 100 events"
    );
    let og = app.outline.group_by_name("Busy").expect("group");
    assert_eq!(
        app.outline.members(&og.id).len(),
        100,
        "the last state is applied"
    );
}

#[tokio::test]
async fn authentik_down_during_a_push_removes_nothing() {
    let (authentik, outline) = start_fakes().await;
    let pk = authentik.add_user("jane", "Jane", "jane@example.com");
    let g = authentik.add_group("G");
    authentik.add_member(&g, pk);
    let jane = outline.add_user("Jane", "jane@example.com");
    let og = outline.add_group("G", None);
    let app = spawn_app_with(authentik, outline, |_| {}).await;
    assert!(app.outline.members(&og).contains_key(&jane));
    app.authentik.set_down(true);
    let resp = app
        .post_authentik(&group_event("down-1", "model_updated", &g, "G"))
        .await;
    assert_eq!(resp.status().as_u16(), 202);
    eventually("the job met the outage", Duration::from_secs(10), || {
        app.authentik.calls().iter().any(|c| c.status >= 500)
    })
    .await;
    assert!(app.outline.members(&og).contains_key(&jane));
    assert_eq!(app.outline.count_calls("groups.remove_user"), 0);
    app.authentik.set_down(false);
    app.settle().await;
    assert!(
        app.outline.members(&og).contains_key(&jane),
        "still a member: she never left the group"
    );
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after() {
    let (authentik, outline) = start_fakes().await;
    let groups: Vec<String> = (0..4)
        .map(|i| authentik.add_group(&format!("g{i}")))
        .collect();
    let app = spawn_app_with(authentik, outline, |s| {
        s.queue_capacity = 2;
        s.worker_concurrency = 1;
    })
    .await;
    app.authentik.set_latency(Duration::from_millis(300));
    let mut statuses = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        let resp = app
            .post_authentik(&group_event(
                &format!("q-{i}"),
                "model_updated",
                g,
                &format!("g{i}"),
            ))
            .await;
        statuses.push((
            resp.status().as_u16(),
            resp.headers().get("retry-after").is_some(),
        ));
    }
    assert_eq!(statuses[0].0, 202);
    assert!(
        statuses.iter().any(|(s, ra)| *s == 503 && *ra),
        "{statuses:?}"
    );
    // The refused event was forgotten by the dedupe, so Authentik's retry is accepted.
    app.settle().await;
    let resp = app
        .post_authentik(&group_event("q-3", "model_updated", &groups[3], "g3"))
        .await;
    assert_eq!(resp.status().as_u16(), 202);
}

#[tokio::test]
async fn authentik_requests_are_authenticated_and_parsed() {
    let app = spawn_app().await;
    let url = format!("{}/webhooks/authentik", app.url);
    let doc = group_event(
        "auth-1",
        "model_updated",
        "3b9f1d6e0c8e4a0f9d7b5c3a1e2f4d6c",
        "x",
    );
    let none = app.http.post(&url).json(&doc).send().await.expect("sent");
    assert_eq!(none.status().as_u16(), 401);
    let wrong = app
        .http
        .post(&url)
        .bearer_auth("nope")
        .json(&doc)
        .send()
        .await
        .expect("sent");
    assert_eq!(wrong.status().as_u16(), 401);
    let query = app
        .http
        .post(format!("{url}?token={AUTHENTIK_WEBHOOK_TOKEN}"))
        .json(&doc)
        .send()
        .await
        .expect("sent");
    assert_eq!(
        query.status().as_u16(),
        202,
        "?token= for Authentik before 2025.4"
    );
    let bad_json = app
        .http
        .post(&url)
        .bearer_auth(AUTHENTIK_WEBHOOK_TOKEN)
        .body("{nope")
        .send()
        .await
        .expect("sent");
    assert_eq!(bad_json.status().as_u16(), 400);
    let v9 = serde_json::json!({"schema": "authentik-bridge/v9", "action": "model_updated"});
    let unknown = app.post_authentik(&v9).await;
    assert_eq!(unknown.status().as_u16(), 400);
    assert!(unknown
        .text()
        .await
        .expect("text")
        .contains("unknown schema"));
    let big = "x".repeat(1024 * 1024 + 10);
    let too_big = app
        .http
        .post(&url)
        .bearer_auth(AUTHENTIK_WEBHOOK_TOKEN)
        .body(big)
        .send()
        .await
        .expect("sent");
    assert_eq!(too_big.status().as_u16(), 413);
}

#[tokio::test]
async fn without_a_token_configured_the_endpoint_answers_503() {
    let (authentik, outline) = start_fakes().await;
    let app = spawn_app_with(authentik, outline, |s| s.authentik_webhook_token = None).await;
    let resp = app
        .post_authentik(&group_event(
            "e",
            "model_updated",
            "3b9f1d6e0c8e4a0f9d7b5c3a1e2f4d6c",
            "x",
        ))
        .await;
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp
        .text()
        .await
        .expect("text")
        .contains("AUTHENTIK_WEBHOOK_TOKEN"));
}

#[tokio::test]
async fn the_default_body_schedules_a_reconcile() {
    let app = spawn_app().await;
    let pk = app.authentik.add_user("jane", "Jane", "jane@example.com");
    let g = app.authentik.add_group("G");
    app.authentik.add_member(&g, pk);
    let jane = app.outline.add_user("Jane", "jane@example.com");
    let og = app.outline.add_group("G", None);
    let default = serde_json::json!({"body": "model_updated: {'model': ...}", "severity": "notice", "user_email": "a@b.c", "user_username": "akadmin"});
    assert_eq!(app.post_authentik(&default).await.status().as_u16(), 202);
    app.settle().await;
    assert!(app.outline.members(&og).contains_key(&jane));
}

/// A deletion whose email the bridge never saw (no earlier read): every managed group is converged instead.
#[tokio::test]
async fn a_deletion_with_no_remembered_email_converges_every_group() {
    let app = spawn_app().await;
    let g = app.authentik.add_group("G");
    let og = app.outline.add_group("G", None);
    let ghost = app.outline.add_user("Ghost", "ghost@example.com");
    app.outline.add_member(&og, &ghost, "member");
    let resp = app
        .post_authentik(&user_event("del-1", "model_deleted", 987_654, "Ghost"))
        .await;
    assert_eq!(resp.status().as_u16(), 202);
    app.settle().await;
    assert!(
        !app.outline.members(&og).contains_key(&ghost),
        "not in the Authentik group, so removed"
    );
    let _ = g;
}

#[tokio::test]
async fn events_outside_the_managed_set_are_counted_and_ignored() {
    let (authentik, outline) = start_fakes().await;
    let app = spawn_app_with(authentik, outline, |s| {
        s.group_filter =
            Some(authentik_bridge::configuration::compile_group_filter("wiki-").expect("regex"));
    })
    .await;
    app.outline.clear_calls();
    let g = app.authentik.add_group("payroll");
    let resp = app
        .post_authentik(&group_event("ign-1", "model_updated", &g, "payroll"))
        .await;
    assert_eq!(resp.status().as_u16(), 202);
    let token = serde_json::json!({"schema": "authentik-bridge/v1", "event_pk": "ign-2", "action": "model_updated", "app": "authentik.events.middleware", "created": "2026-11-30T12:00:00Z", "model": {"app": "authentik_core", "model_name": "token", "pk": "abc", "name": "t"}});
    assert_eq!(app.post_authentik(&token).await.status().as_u16(), 202);
    let login = serde_json::json!({"schema": "authentik-bridge/v1", "event_pk": "ign-3", "action": "login", "app": "authentik.events.signals", "created": "2026-11-30T12:00:00Z", "model": null});
    assert_eq!(app.post_authentik(&login).await.status().as_u16(), 202);
    app.settle().await;
    assert!(app.outline.calls().is_empty());
    assert!(app
        .metrics_text()
        .await
        .contains(r#"bridge_webhooks_total{outcome="ignored",source="authentik"} 3"#));
}

/// A wrong `AUTHENTIK_WEBHOOK_TOKEN` refuses every push. From the third refusal in a row `/readyz` names the
/// cause (and stays 200: the Outline sign-ins signed right must still arrive), and the gauge behind the
/// alert counts them; one accepted push clears both.
#[tokio::test]
async fn pushes_refused_in_a_row_show_in_readyz_until_one_is_accepted() {
    // Not wired: only this test's posts reach the bridge.
    let app = spawn_app().await;
    let readyz = || async {
        let resp = app
            .http
            .get(format!("{}/readyz", app.url))
            .send()
            .await
            .expect("readyz");
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp.json().await.expect("JSON");
        (status, body)
    };
    let g = app.authentik.add_group("Team");
    let event = group_event("e-1", "model_updated", &g, "Team");
    for n in 1..=3 {
        let resp = app.post_authentik_as(&event, "an-old-token").await;
        assert_eq!(resp.status().as_u16(), 401);
        let text = app.metrics_text().await;
        assert_eq!(
            metric(
                &text,
                "bridge_webhooks_refused_in_a_row",
                &[("source", "authentik")]
            ),
            f64::from(n)
        );
        let (status, body) = readyz().await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["warnings"].is_array(), n >= 3, "after {n}: {body}");
    }
    let (_, body) = readyz().await;
    let warning = body["warnings"][0].as_str().unwrap_or_default();
    assert!(
        warning.contains("the last 3 authentik webhooks were refused")
            && warning.contains("AUTHENTIK_WEBHOOK_TOKEN"),
        "{warning}"
    );
    assert_eq!(app.post_authentik(&event).await.status().as_u16(), 202);
    let (_, body) = readyz().await;
    assert!(body.get("warnings").is_none(), "{body}");
    let text = app.metrics_text().await;
    assert_eq!(
        metric(
            &text,
            "bridge_webhooks_refused_in_a_row",
            &[("source", "authentik")]
        ),
        0.0
    );
}
