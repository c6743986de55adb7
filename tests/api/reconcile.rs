//! The full pass: start-up, CLI (`reconcile --dry-run`, the guard, `--force`) and inherited membership.

use std::collections::BTreeSet;
use std::process::Command;

use crate::helpers::*;
use authentik_bridge::runtime::ReconcileOptions;
use authentik_bridge::sinks::run_reconcile;

/// Changes made while the bridge was down are repaired by the start-up reconcile, both ways.
#[tokio::test]
async fn startup_reconcile_repairs_drift_both_ways() {
    let (authentik, outline) = start_fakes().await;
    let a = authentik.add_user("a", "A", "a@example.com");
    let g = authentik.add_group("Team");
    authentik.add_member(&g, a);
    let oa = outline.add_user("A", "a@example.com");
    let ob = outline.add_user("B", "b@example.com");
    let og = outline.add_group("Team", None);
    outline.add_member(&og, &ob, "member");
    let app = spawn_app_with(authentik, outline, |_| {}).await;
    let members: BTreeSet<String> = app.outline.members(&og).into_keys().collect();
    assert_eq!(members, BTreeSet::from([oa]));
}

fn cli(app: &TestApp, args: &[&str], max_removals: usize) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_authentik-bridge"))
        .args(args)
        .env_clear()
        .env("AUTHENTIK_URL", app.authentik.url())
        .env("AUTHENTIK_TOKEN", app.authentik.token())
        .env("OUTLINE_URL", app.outline.url())
        .env("OUTLINE_TOKEN", app.outline.token())
        .env("OUTLINE_WEBHOOK_SECRET", OUTLINE_SECRET)
        .env("MAX_REMOVALS", max_removals.to_string())
        .output()
        .expect("the binary runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_writes_nothing_and_the_guard_holds_until_forced() {
    let (authentik, outline) = start_fakes().await;
    let app = spawn_app_with(authentik, outline, |_| {}).await;
    let g = app.authentik.add_group("Big");
    let og = app.outline.add_group("Big", None);
    let keep_pk = app.authentik.add_user("keep", "Keep", "keep@example.com");
    app.authentik.add_member(&g, keep_pk);
    let keep = app.outline.add_user("Keep", "keep@example.com");
    for i in 0..5 {
        let id = app.outline.add_user("Old", &format!("old{i}@example.com"));
        app.outline.add_member(&og, &id, "member");
    }
    app.outline.clear_calls();

    let app_ref = &app;
    let out =
        tokio::task::block_in_place(|| cli(app_ref, &["reconcile", "--dry-run", "--json"], 50));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["plan"]["removes"].as_array().map(Vec::len), Some(5));
    assert_eq!(report["plan"]["adds"].as_array().map(Vec::len), Some(1));
    let writes = app
        .outline
        .calls()
        .iter()
        .filter(|c| {
            matches!(
                c.method.as_str(),
                "groups.add_user" | "groups.remove_user" | "groups.create" | "groups.update"
            )
        })
        .count();
    assert_eq!(writes, 0, "dry run wrote nothing");

    let out = tokio::task::block_in_place(|| cli(app_ref, &["reconcile"], 2));
    assert_eq!(
        out.status.code(),
        Some(3),
        "guard exit code; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        app.outline.members(&og).len(),
        6,
        "nothing removed, keep added"
    );
    assert!(app.outline.members(&og).contains_key(&keep));
    // The report says what was done, and marks what the guard held back as not done.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let held: Vec<&str> = stdout.lines().filter(|l| l.contains("remove")).collect();
    assert_eq!(
        held.iter()
            .filter(|l| l.contains("would remove old"))
            .count(),
        5,
        "{stdout}"
    );
    assert!(held.iter().all(|l| !l.contains("did remove")), "{stdout}");
    assert!(
        stdout.contains("total (done): 1 add, 0 removes,"),
        "only what was done is counted: {stdout}"
    );
    assert_eq!(
        format!("{stdout}{stderr}")
            .matches("than MAX_REMOVALS")
            .count(),
        1,
        "the explanation is printed once: {stdout}{stderr}"
    );

    let out = tokio::task::block_in_place(|| cli(app_ref, &["reconcile", "--force"], 2));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let members: BTreeSet<String> = app.outline.members(&og).into_keys().collect();
    assert_eq!(members, BTreeSet::from([keep]));
}

#[tokio::test]
async fn a_failed_read_makes_no_removal() {
    let (authentik, outline) = start_fakes().await;
    let app = spawn_app_with(authentik, outline, |_| {}).await;
    let g = app.authentik.add_group("G");
    let og = app.outline.add_group("G", None);
    let stranger = app.outline.add_user("S", "s@example.com");
    app.outline.add_member(&og, &stranger, "member");
    let _ = g;
    app.authentik.set_partial_pages(true);
    let result = run_reconcile(&app.engine, ReconcileOptions::default()).await;
    assert!(result.is_err(), "a partial page fails the pass");
    assert!(app.outline.members(&og).contains_key(&stranger));
    assert_eq!(app.outline.count_calls("groups.remove_user"), 0);
}

#[tokio::test]
async fn inherited_membership_includes_child_groups() {
    let (authentik, outline) = start_fakes().await;
    let parent = authentik.add_group("Staff");
    let child = authentik.add_group_with("Staff-Berlin", false, std::slice::from_ref(&parent));
    let pk = authentik.add_user("jane", "Jane", "jane@example.com");
    authentik.add_member(&child, pk);
    let jane = outline.add_user("Jane", "jane@example.com");
    let op = outline.add_group("Staff", None);
    let oc = outline.add_group("Staff-Berlin", None);
    let app = spawn_app_with(authentik, outline, |s| {
        s.membership = authentik_bridge::configuration::MembershipMode::Inherited
    })
    .await;
    assert!(
        app.outline.members(&op).contains_key(&jane),
        "member of the parent through the child"
    );
    assert!(app.outline.members(&oc).contains_key(&jane));
}

/// One guard, one gauge behaviour, in both sinks: a push that would remove more than `MAX_REMOVALS`
/// raises `bridge_removal_guard_active`; a later push that removes nothing leaves it up (the held removals
/// are still pending); a pass let through (`--force`) brings it down.
#[tokio::test]
async fn the_removal_gauge_stays_up_until_a_pass_is_let_through_in_both_sinks() {
    let (authentik, outline) = start_fakes().await;
    let fga = start_openfga().await;
    let g = authentik.add_group("Team");
    outline.add_group("Team", None);
    let mut pks = Vec::new();
    for i in 0..3 {
        let email = format!("p{i}@example.com");
        let pk = authentik.add_user(&format!("p{i}"), "P", &email);
        authentik.add_member(&g, pk);
        outline.add_user("P", &email);
        pks.push(pk);
    }
    let app = spawn_app_with_sinks(authentik, outline, Some(fga), |s| {
        s.max_removals = 1;
        s.reconcile_interval = None;
    })
    .await;
    let gauge = |text: &str, sink: &str| {
        crate::faults::metric(text, "bridge_removal_guard_active", &[("sink", sink)])
    };
    // Two leave at once, and one event says so: over the bound in both sinks.
    app.authentik.remove_member(&g, pks[0]);
    app.authentik.remove_member(&g, pks[1]);
    let event = group_event("e-two-left", "model_updated", &g, "Team");
    assert_eq!(app.post_authentik(&event).await.status().as_u16(), 202);
    app.settle().await;
    app.wire_authentik_webhook();
    let text = app.metrics_text().await;
    assert_eq!(
        (gauge(&text, "outline"), gauge(&text, "openfga")),
        (1.0, 1.0)
    );
    // A push that removes nothing: still up.
    let newcomer = app.authentik.add_user("n", "N", "n@example.com");
    app.outline.add_user("N", "n@example.com");
    app.authentik.add_member(&g, newcomer);
    app.settle_deliveries().await;
    let text = app.metrics_text().await;
    assert_eq!(
        (gauge(&text, "outline"), gauge(&text, "openfga")),
        (1.0, 1.0)
    );
    run_reconcile(&app.engine, FORCE)
        .await
        .expect("forced pass");
    let text = app.metrics_text().await;
    assert_eq!(
        (gauge(&text, "outline"), gauge(&text, "openfga")),
        (0.0, 0.0)
    );
}
