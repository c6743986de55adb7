//! The OpenFGA sink: Authentik groups kept as `member` tuples, pushed and reconciled by the same engine as
//! Outline, against the stateful fake of `crates/upstream-fakes` (which follows docs/src/upstream/openfga.md).

use std::collections::BTreeSet;
use std::time::Duration;

use authentik_bridge::runtime::ReconcileOptions;
use authentik_bridge::sinks::run_reconcile;
use upstream_fakes::{FakeOpenFga, FakeOpenFgaOptions};

use crate::faults::metric;
use crate::helpers::*;

fn member(user: &str, object: &str) -> (String, String, String) {
    (user.to_string(), "member".to_string(), object.to_string())
}

/// The tuples on the fake whose relation is `member` and object a group.
fn group_tuples(fga: &FakeOpenFga) -> BTreeSet<(String, String, String)> {
    fga.tuples()
        .into_iter()
        .filter(|(_, r, o)| r == "member" && o.starts_with("group:"))
        .collect()
}

/// Tuples written plus deleted by every successful Write so far.
fn tuples_written(fga: &FakeOpenFga) -> usize {
    fga.writes()
        .iter()
        .map(|w| {
            let n = |side: &str| {
                w[side]["tuple_keys"]
                    .as_array()
                    .map_or(0, |keys| keys.len())
            };
            n("writes") + n("deletes")
        })
        .sum()
}

/// A bridge with the OpenFGA sink alone (no Outline settings), wired to the fake Authentik's transport.
async fn openfga_only(
    authentik: upstream_fakes::FakeAuthentik,
    fga: FakeOpenFga,
    tweak: impl FnOnce(&mut authentik_bridge::configuration::Settings),
) -> TestApp {
    let (_, outline) = start_fakes().await;
    let app = spawn_app_with_sinks(authentik, outline, Some(fga), |s| {
        s.outline = None;
        s.outline_webhook_secret = None;
        tweak(s);
    })
    .await;
    app.wire_authentik_webhook();
    app
}

fn fga(app: &TestApp) -> &FakeOpenFga {
    app.openfga.as_ref().expect("the OpenFGA sink is on")
}

#[tokio::test]
async fn with_only_openfga_a_push_add_or_remove_changes_exactly_one_tuple() {
    let (authentik, _) = start_fakes().await;
    let jane = authentik.add_user("jane", "Jane", "jane@example.com");
    let bob = authentik.add_user("bob", "Bob", "bob@example.com");
    let g = authentik.add_group("engineering");
    authentik.add_member(&g, jane);
    let app = openfga_only(authentik, start_openfga().await, |_| {}).await;
    let object = format!("group:{g}");
    assert_eq!(
        group_tuples(fga(&app)),
        BTreeSet::from([member("user:jane", &object)]),
        "the start-up reconcile wrote jane's tuple"
    );
    assert_eq!(app.outline.calls().len(), 0, "Outline is not configured");
    fga(&app).clear_calls();

    app.authentik.add_member(&g, bob);
    eventually("bob's tuple written", Duration::from_secs(5), || {
        group_tuples(fga(&app)).contains(&member("user:bob", &object))
    })
    .await;
    app.settle().await;
    assert_eq!(
        tuples_written(fga(&app)),
        1,
        "one tuple written, nothing else"
    );

    fga(&app).clear_calls();
    app.authentik.remove_member(&g, jane);
    eventually("jane's tuple deleted", Duration::from_secs(5), || {
        !group_tuples(fga(&app)).contains(&member("user:jane", &object))
    })
    .await;
    app.settle().await;
    assert_eq!(
        tuples_written(fga(&app)),
        1,
        "one tuple deleted, nothing else"
    );
    assert_eq!(
        group_tuples(fga(&app)),
        BTreeSet::from([member("user:bob", &object)])
    );
}

#[tokio::test]
async fn reconcile_removes_a_stray_tuple_on_a_managed_group_and_keeps_everything_else() {
    let (authentik, _) = start_fakes().await;
    let jane = authentik.add_user("jane", "Jane", "jane@example.com");
    let g = authentik.add_group("engineering");
    authentik.add_member(&g, jane);
    let hidden = authentik.add_group_with("authentik Admins", true, &[]);
    let fake = start_openfga().await;
    let object = format!("group:{g}");
    let foreign = [
        // Not a managed group: an object the bridge never wrote.
        member("user:mallory", "group:unmanaged"),
        member("user:mallory", &format!("group:{hidden}")),
        // Usersets and other relations on a managed group are the apps'.
        member("group:ops#member", &object),
        (
            "user:jane".into(),
            "viewer".into(),
            "document:roadmap".into(),
        ),
        (
            "group:".to_string() + &g + "#member",
            "viewer".into(),
            "document:roadmap".into(),
        ),
    ];
    for (u, r, o) in &foreign {
        fake.add_tuple(u, r, o);
    }
    let app = openfga_only(authentik, fake, |_| {}).await;
    fga(&app).add_tuple("user:mallory", "member", &object);

    let report = run_reconcile(&app.engine, ReconcileOptions::default())
        .await
        .expect("pass runs");
    let fga_report = report.openfga.expect("the pass covered OpenFGA");
    assert_eq!(fga_report.deletes.len(), 1, "only the stray tuple");
    let after = fga(&app).tuples();
    assert!(
        !after.contains(&member("user:mallory", &object)),
        "stray removed"
    );
    assert!(after.contains(&member("user:jane", &object)));
    for t in &foreign {
        assert!(after.contains(t), "{t:?} kept");
    }
}

#[tokio::test]
async fn duplicated_and_burst_events_cost_no_extra_writes() {
    let (authentik, _) = start_fakes().await;
    let g = authentik.add_group("engineering");
    let pks: Vec<i64> = (0..5)
        .map(|i| authentik.add_user(&format!("u{i}"), "U", &format!("u{i}@example.com")))
        .collect();
    let app = openfga_only(authentik, start_openfga().await, |_| {}).await;
    // The transport is not wired here: the test posts the events itself, each several times.
    app.authentik.set_webhook(None, None);
    for pk in &pks {
        app.authentik.add_member(&g, *pk);
    }
    fga(&app).clear_calls();
    let name = "engineering";
    for round in 0..3 {
        for i in 0..5 {
            let doc = group_event(
                &format!("0000000{i}-0000-4000-8000-00000000000{i}"),
                "model_updated",
                &g,
                name,
            );
            let resp = app.post_authentik(&doc).await;
            assert_eq!(resp.status().as_u16(), 202, "round {round}");
        }
    }
    app.settle().await;
    assert_eq!(group_tuples(fga(&app)).len(), 5);
    assert_eq!(
        tuples_written(fga(&app)),
        5,
        "five members, five tuples: duplicates were dropped and the burst coalesced"
    );
    assert!(
        fga(&app).count_calls("write") <= 2,
        "one write, plus at most one trailing run's"
    );
}

#[tokio::test]
async fn deactivation_and_deletion_remove_every_managed_tuple() {
    let (authentik, _) = start_fakes().await;
    let jane = authentik.add_user("jane", "Jane", "jane@example.com");
    let bob = authentik.add_user("bob", "Bob", "bob@example.com");
    let a = authentik.add_group("a");
    let b = authentik.add_group("b");
    for g in [&a, &b] {
        authentik.add_member(g, jane);
        authentik.add_member(g, bob);
    }
    let app = openfga_only(authentik, start_openfga().await, |_| {}).await;
    fga(&app).add_tuple("user:jane", "viewer", "document:kept");
    assert_eq!(group_tuples(fga(&app)).len(), 4);

    app.authentik.set_active(jane, false);
    eventually("jane's tuples gone", Duration::from_secs(5), || {
        !group_tuples(fga(&app))
            .iter()
            .any(|(u, _, _)| u == "user:jane")
    })
    .await;
    app.authentik.delete_user(bob);
    eventually("bob's tuples gone", Duration::from_secs(5), || {
        group_tuples(fga(&app)).is_empty()
    })
    .await;
    assert!(
        fga(&app)
            .tuples()
            .contains(&("user:jane".into(), "viewer".into(), "document:kept".into())),
        "a tuple the bridge does not manage stays"
    );
}

#[tokio::test]
async fn a_deleted_group_keeps_its_tuples() {
    let (authentik, _) = start_fakes().await;
    let jane = authentik.add_user("jane", "Jane", "jane@example.com");
    let g = authentik.add_group("engineering");
    authentik.add_member(&g, jane);
    let app = openfga_only(authentik, start_openfga().await, |_| {}).await;
    fga(&app).clear_calls();
    app.authentik.delete_group(&g);
    eventually("the deletion was delivered", Duration::from_secs(5), || {
        !app.authentik.deliveries().is_empty()
    })
    .await;
    app.settle().await;
    assert_eq!(fga(&app).count_calls("write"), 0);
    assert_eq!(group_tuples(fga(&app)).len(), 1);
}

#[tokio::test]
async fn with_group_ids_by_name_a_rename_moves_the_tuples() {
    let (authentik, _) = start_fakes().await;
    let jane = authentik.add_user("jane", "Jane", "jane@example.com");
    let g = authentik.add_group("team-red");
    authentik.add_member(&g, jane);
    let app = openfga_only(authentik, start_openfga().await, |s| {
        if let Some(f) = s.openfga.as_mut() {
            f.naming.group_id = authentik_bridge::sinks::openfga::tuples::GroupIdForm::Name;
        }
    })
    .await;
    fga(&app).add_tuple("group:team-red#member", "viewer", "document:plan");
    assert_eq!(
        group_tuples(fga(&app)),
        BTreeSet::from([member("user:jane", "group:team-red")])
    );
    app.authentik.rename_group(&g, "team-blue");
    eventually("the tuple moved", Duration::from_secs(5), || {
        group_tuples(fga(&app)) == BTreeSet::from([member("user:jane", "group:team-blue")])
    })
    .await;
    assert!(
        fga(&app).tuples().contains(&(
            "group:team-red#member".into(),
            "viewer".into(),
            "document:plan".into()
        )),
        "the app's grant on the old name is left for a person to move"
    );
}

#[tokio::test]
async fn ids_openfga_refuses_are_skipped_with_a_metric_and_nothing_else_stops() {
    let (authentik, _) = start_fakes().await;
    let jane = authentik.add_user("jane", "Jane", "jane@example.com");
    let odd = authentik.add_user("john doe", "John", "john@example.com");
    let ok = authentik.add_group("team-red");
    let spaced = authentik.add_group("Site Admins");
    for g in [&ok, &spaced] {
        authentik.add_member(g, jane);
        authentik.add_member(g, odd);
    }
    let app = openfga_only(authentik, start_openfga().await, |s| {
        if let Some(f) = s.openfga.as_mut() {
            f.naming.group_id = authentik_bridge::sinks::openfga::tuples::GroupIdForm::Name;
        }
    })
    .await;
    assert_eq!(
        group_tuples(fga(&app)),
        BTreeSet::from([member("user:jane", "group:team-red")]),
        "the valid person in the valid group, and nothing refused was sent"
    );
    let text = app.metrics_text().await;
    assert!(
        metric(
            &text,
            "bridge_ids_skipped_total",
            &[("sink", "openfga"), ("kind", "user")]
        ) >= 1.0
    );
    assert!(
        metric(
            &text,
            "bridge_ids_skipped_total",
            &[("sink", "openfga"), ("kind", "group")]
        ) >= 1.0
    );
}

#[tokio::test]
async fn both_sinks_converge_on_the_same_events_and_each_survives_the_other_down() {
    let (authentik, outline) = start_fakes().await;
    let jane = authentik.add_user("jane", "Jane", "jane@example.com");
    let bob = authentik.add_user("bob", "Bob", "bob@example.com");
    let g = authentik.add_group("engineering");
    let ojane = outline.add_user("Jane", "jane@example.com");
    let obob = outline.add_user("Bob", "bob@example.com");
    let og = outline.add_group("engineering", None);
    let app = spawn_app_with_sinks(authentik, outline, Some(start_openfga().await), |_| {}).await;
    app.wire_authentik_webhook();
    let object = format!("group:{g}");

    app.authentik.add_member(&g, jane);
    eventually("jane in both", Duration::from_secs(5), || {
        app.outline.members(&og).contains_key(&ojane)
            && group_tuples(fga(&app)).contains(&member("user:jane", &object))
    })
    .await;

    // Outline down: OpenFGA still follows at once.
    app.outline.set_down(true);
    app.authentik.add_member(&g, bob);
    eventually(
        "bob in OpenFGA while Outline is down",
        Duration::from_secs(5),
        || group_tuples(fga(&app)).contains(&member("user:bob", &object)),
    )
    .await;
    assert!(!app.outline.members(&og).contains_key(&obob));
    app.outline.set_down(false);
    eventually(
        "Outline catches up once back",
        Duration::from_secs(20),
        || app.outline.members(&og).contains_key(&obob),
    )
    .await;

    // OpenFGA down: Outline still follows, and OpenFGA catches up.
    fga(&app).set_down(true);
    app.authentik.remove_member(&g, jane);
    eventually(
        "jane out of Outline while OpenFGA is down",
        Duration::from_secs(5),
        || !app.outline.members(&og).contains_key(&ojane),
    )
    .await;
    eventually(
        "the OpenFGA job met the outage",
        Duration::from_secs(5),
        || fga(&app).calls().iter().any(|c| c.status >= 500),
    )
    .await;
    assert!(group_tuples(fga(&app)).contains(&member("user:jane", &object)));
    fga(&app).set_down(false);
    eventually(
        "OpenFGA catches up once back",
        Duration::from_secs(20),
        || !group_tuples(fga(&app)).contains(&member("user:jane", &object)),
    )
    .await;
}

#[tokio::test]
async fn a_large_group_is_written_in_batches_of_at_most_one_hundred() {
    let (authentik, _) = start_fakes().await;
    let g = authentik.add_group("everyone");
    for i in 0..250 {
        let pk = authentik.add_user(&format!("u{i}"), "U", &format!("u{i}@example.com"));
        authentik.add_member(&g, pk);
    }
    let app = openfga_only(authentik, start_openfga().await, |_| {}).await;
    assert_eq!(group_tuples(fga(&app)).len(), 250);
    let sizes: Vec<usize> = fga(&app)
        .writes()
        .iter()
        .map(|w| w["writes"]["tuple_keys"].as_array().map_or(0, |k| k.len()))
        .collect();
    assert_eq!(sizes, vec![100, 100, 50]);
}

#[tokio::test]
async fn a_server_before_1_10_gets_its_duplicates_re_read_not_a_failed_job() {
    let (authentik, _) = start_fakes().await;
    let jane = authentik.add_user("jane", "Jane", "jane@example.com");
    let g = authentik.add_group("engineering");
    authentik.add_member(&g, jane);
    let old = FakeOpenFga::start(FakeOpenFgaOptions {
        supports_on_duplicate: false,
        ..FakeOpenFgaOptions::default()
    })
    .await
    .expect("fake starts");
    let app = openfga_only(authentik, old, |_| {}).await;
    let object = format!("group:{g}");
    assert!(group_tuples(fga(&app)).contains(&member("user:jane", &object)));
    let text = app.metrics_text().await;
    assert_eq!(
        metric(
            &text,
            "bridge_jobs_total",
            &[("sink", "openfga"), ("result", "failed")]
        ),
        0.0
    );
}

#[tokio::test]
async fn the_dry_run_shows_the_openfga_plan_and_writes_nothing() {
    let (authentik, _) = start_fakes().await;
    let jane = authentik.add_user("jane", "Jane", "jane@example.com");
    let g = authentik.add_group("engineering");
    let app = openfga_only(authentik, start_openfga().await, |_| {}).await;
    app.authentik.set_webhook(None, None);
    app.authentik.add_member(&g, jane);
    fga(&app).clear_calls();
    let report = run_reconcile(&app.engine, DRY_RUN).await.expect("dry run");
    let json = serde_json::to_value(&report).expect("serializes");
    assert_eq!(json["sinks"], serde_json::json!(["openfga"]));
    assert_eq!(
        json["openfga"]["writes"],
        serde_json::json!([{"user": "user:jane", "object": format!("group:{g}")}])
    );
    assert_eq!(fga(&app).count_calls("write"), 0);
}

/// The tuples the bridge keeps, taken from the pass's JSON report, go through OpenFGA's own engine
/// (`fga model test`, docs/src/upstream/openfga.md §7): the model accepts them and access through a group grant
/// follows, for each form of user id. A tuple the engine refuses fails the same run.
#[tokio::test]
async fn the_exported_tuples_pass_openfgas_own_engine_for_every_user_id_form() {
    use crate::fga_engine::{check, fga_model_test, tuple, MEMBER_MODEL};
    use authentik_bridge::sinks::openfga::tuples::UserIdForm;
    for form in [UserIdForm::Username, UserIdForm::Email, UserIdForm::Pk] {
        let (authentik, _) = start_fakes().await;
        let jane = authentik.add_user("jane", "Jane", "Jane.Doe@example.com");
        let bob = authentik.add_user("bob", "Bob", "bob@example.com");
        let g = authentik.add_group("engineering");
        authentik.add_member(&g, jane);
        let app = openfga_only(authentik, start_openfga().await, |s| {
            if let Some(f) = s.openfga.as_mut() {
                f.naming.user_id = form;
            }
        })
        .await;
        let report = run_reconcile(&app.engine, DRY_RUN).await.expect("pass");
        let json = serde_json::to_value(&report).expect("json");
        let relation = json["openfga"]["relation"].as_str().expect("relation");
        let mut tuples: Vec<(String, String, String)> = json["openfga"]["desired"]
            .as_array()
            .expect("desired tuples")
            .iter()
            .map(|t| {
                tuple(
                    t["user"].as_str().expect("user"),
                    relation,
                    t["object"].as_str().expect("object"),
                )
            })
            .collect();
        let id = |pk: i64, username: &str, email: &str| match form {
            UserIdForm::Username => format!("user:{username}"),
            UserIdForm::Email => format!("user:{email}"),
            UserIdForm::Pk => format!("user:{pk}"),
        };
        let (jane_id, bob_id) = (
            id(jane, "jane", "Jane.Doe@example.com"),
            id(bob, "bob", "bob@example.com"),
        );
        assert_eq!(
            tuples,
            vec![tuple(&jane_id, "member", &format!("group:{g}"))],
            "{form:?}"
        );
        tuples.push(tuple(
            &format!("group:{g}#member"),
            "viewer",
            "document:roadmap",
        ));
        let checks = [
            check(&jane_id, "member", &format!("group:{g}"), true),
            check(&jane_id, "viewer", "document:roadmap", true),
            check(&bob_id, "viewer", "document:roadmap", false),
        ];
        let Some(outcome) = fga_model_test(MEMBER_MODEL, &tuples, &checks) else {
            return;
        };
        outcome.unwrap_or_else(|e| panic!("{form:?}: {e}"));

        tuples.push(tuple(&jane_id, "member", "group:Site Admins"));
        let refused = fga_model_test(MEMBER_MODEL, &tuples, &checks).expect("fga present");
        assert!(
            refused.is_err(),
            "{form:?}: a tuple OpenFGA refuses fails the run"
        );
    }
}

/// `check` with only OpenFGA configured: passes for the right store and model, and names the fix for a store
/// OpenFGA does not know (which Read alone cannot see) and for a model whose `group#member` refuses `user`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_finds_a_wrong_store_and_a_model_that_refuses_users() {
    let (authentik, _) = start_fakes().await;
    authentik.add_webhook_transport(
        "authentik-bridge",
        "http://127.0.0.1:8430/webhooks/authentik",
        true,
    );
    let fake = start_openfga().await;
    let run = |store: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_authentik-bridge"))
            .env_clear()
            .arg("check")
            .env("AUTHENTIK_URL", authentik.url())
            .env("AUTHENTIK_TOKEN", authentik.token())
            .env("AUTHENTIK_WEBHOOK_TOKEN", AUTHENTIK_WEBHOOK_TOKEN)
            .env("OPENFGA_URL", fake.url())
            .env("OPENFGA_STORE_ID", store)
            .env("OPENFGA_API_TOKEN", fake.token())
            .output()
            .expect("runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (ok, stdout) = tokio::task::block_in_place(|| run(&fake.store_id()));
    assert!(ok, "{stdout}");
    assert!(
        stdout
            .lines()
            .all(|l| l.starts_with("ok") || l.starts_with("warn state: STATE_DIR is not set")),
        "{stdout}"
    );
    assert!(
        !stdout.contains("outline"),
        "Outline is not configured: {stdout}"
    );

    let (ok, stdout) = tokio::task::block_in_place(|| run("01ARZ3NDEKTSV4RRFFQ69G5FAV"));
    assert!(!ok);
    assert!(
        stdout.lines().any(|l| l.starts_with("FAIL openfga")
            && l.contains("OPENFGA_STORE_ID")
            && l.contains("fix:")),
        "{stdout}"
    );

    fake.write_model(serde_json::json!({
        "schema_version": "1.1",
        "type_definitions": [
            {"type": "employee"},
            {"type": "group", "relations": {"member": {"this": {}}},
             "metadata": {"relations": {"member": {"directly_related_user_types": [{"type": "employee"}]}}}}
        ]
    }));
    let (ok, stdout) = tokio::task::block_in_place(|| run(&fake.store_id()));
    assert!(!ok);
    assert!(
        stdout.lines().any(|l| l.starts_with("FAIL openfga")
            && l.contains("group#member accepts [employee]")
            && l.contains("fix:")),
        "{stdout}"
    );

    // `user` only under a condition: every unconditioned write would be refused ("condition is missing").
    fake.write_model(serde_json::json!({
        "schema_version": "1.1",
        "type_definitions": [
            {"type": "user"},
            {"type": "group", "relations": {"member": {"this": {}}},
             "metadata": {"relations": {"member": {"directly_related_user_types": [{"type": "user", "condition": "office"}]}}}}
        ],
        "conditions": {"office": {"name": "office", "expression": "ip.in_cidr(\"10.0.0.0/8\")",
            "parameters": {"ip": {"type_name": "TYPE_NAME_IPADDRESS"}}}}
    }));
    let (ok, stdout) = tokio::task::block_in_place(|| run(&fake.store_id()));
    assert!(!ok, "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("FAIL openfga") && l.contains("accepts [user with office]")),
        "{stdout}"
    );
}

/// A deletion that arrives after the person was re-created under the same username must not take the new
/// account's tuples away: the live holder of the id is synced instead.
#[tokio::test]
async fn a_late_deletion_spares_the_live_user_with_the_same_username() {
    let (authentik, _) = start_fakes().await;
    let old = authentik.add_user("jane", "Jane", "jane@example.com");
    let g = authentik.add_group("engineering");
    authentik.add_member(&g, old);
    let app = openfga_only(authentik, start_openfga().await, |_| {}).await;
    app.authentik.set_webhook(None, None);
    let object = format!("group:{g}");
    assert!(group_tuples(fga(&app)).contains(&member("user:jane", &object)));

    app.authentik.delete_user(old);
    let new = app.authentik.add_user("jane", "Jane", "jane@example.com");
    app.authentik.add_member(&g, new);
    let resp = app
        .post_authentik(&user_event(
            "5f1e2d3c-0000-4000-8000-000000000001",
            "model_deleted",
            old,
            "Jane",
        ))
        .await;
    assert_eq!(resp.status().as_u16(), 202);
    app.settle().await;
    assert!(
        group_tuples(fga(&app)).contains(&member("user:jane", &object)),
        "the re-created jane keeps her tuple"
    );

    // Without a live holder the same deletion does remove the tuple.
    app.authentik.delete_user(new);
    let resp = app
        .post_authentik(&user_event(
            "5f1e2d3c-0000-4000-8000-000000000002",
            "model_deleted",
            new,
            "Jane",
        ))
        .await;
    assert_eq!(resp.status().as_u16(), 202);
    app.settle().await;
    assert!(group_tuples(fga(&app)).is_empty());
}

/// Outline down holds its jobs (they retry), so its share of the queue fills; OpenFGA keeps taking events,
/// the webhooks keep getting 202, and the full sink gets a reconcile instead of the jobs it could not hold.
#[tokio::test]
async fn a_full_sink_never_makes_the_other_sinks_webhooks_fail() {
    let (authentik, outline) = start_fakes().await;
    let mut groups = Vec::new();
    let jane = authentik.add_user("jane", "Jane", "jane@example.com");
    for i in 0..4 {
        groups.push(authentik.add_group(&format!("team-{i}")));
    }
    outline.add_user("Jane", "jane@example.com");
    let app = spawn_app_with_sinks(authentik, outline, Some(start_openfga().await), |s| {
        s.queue_capacity = 2;
        s.auto_create_groups = true;
    })
    .await;
    app.wire_authentik_webhook();
    app.outline.set_down(true);
    let has =
        |g: &String| group_tuples(fga(&app)).contains(&member("user:jane", &format!("group:{g}")));
    // The first two fill Outline's share (its jobs retry while it is down); OpenFGA's finish and leave.
    for g in &groups[..2] {
        app.authentik.add_member(g, jane);
    }
    eventually(
        "OpenFGA done, Outline holding two",
        Duration::from_secs(10),
        || groups[..2].iter().all(has) && app.queue.depth() == 2,
    )
    .await;
    for g in &groups[2..] {
        app.authentik.add_member(g, jane);
    }
    eventually("every tuple written", Duration::from_secs(10), || {
        groups
            .iter()
            .all(|g| group_tuples(fga(&app)).contains(&member("user:jane", &format!("group:{g}"))))
    })
    .await;
    let text = app.metrics_text().await;
    assert_eq!(
        metric(&text, "bridge_webhooks_total", &[("outcome", "queue_full")]),
        0.0,
        "{text}"
    );
    assert!(
        metric(
            &text,
            "bridge_jobs_total",
            &[("sink", "outline"), ("result", "deferred_to_reconcile")]
        ) >= 1.0,
        "{text}"
    );
    app.outline.set_down(false);
    eventually("Outline catches up", Duration::from_secs(60), || {
        (0..groups.len()).all(|i| {
            app.outline
                .group_by_name(&format!("team-{i}"))
                .is_some_and(|og| app.outline.members(&og.id).len() == 1)
        })
    })
    .await;
}

/// With groups named by name, two groups that swap names in one go keep their own tuples: a move never
/// takes the tuples of the group that now owns the old name.
#[tokio::test]
async fn a_rename_swap_keeps_each_groups_own_tuples() {
    let (authentik, _) = start_fakes().await;
    let jane = authentik.add_user("jane", "Jane", "jane@example.com");
    let bob = authentik.add_user("bob", "Bob", "bob@example.com");
    let red = authentik.add_group("team-red");
    let blue = authentik.add_group("team-blue");
    authentik.add_member(&red, jane);
    authentik.add_member(&blue, bob);
    let app = openfga_only(authentik, start_openfga().await, |s| {
        if let Some(f) = s.openfga.as_mut() {
            f.naming.group_id = authentik_bridge::sinks::openfga::tuples::GroupIdForm::Name;
        }
    })
    .await;
    app.authentik.rename_group(&red, "team-tmp");
    app.authentik.rename_group(&blue, "team-red");
    app.authentik.rename_group(&red, "team-blue");
    let want = BTreeSet::from([
        member("user:jane", "group:team-blue"),
        member("user:bob", "group:team-red"),
    ]);
    eventually(
        "each group's tuples follow its new name",
        Duration::from_secs(10),
        || group_tuples(fga(&app)) == want,
    )
    .await;
    app.settle().await;
    assert_eq!(group_tuples(fga(&app)), want);
}
