//! Races, refusals, re-created groups and deletion storms: the ways a change could be lost or a sync stall,
//! each driven through the real bridge against the fakes.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use authentik_bridge::runtime::JobKey;

use crate::faults::metric;
use crate::helpers::*;

/// Polls the metrics until a job of `kind` has been retried at least once.
async fn wait_for_job_retry(app: &TestApp, kind: &str) {
    let start = Instant::now();
    loop {
        let text = app.metrics_text().await;
        if metric(
            &text,
            "bridge_jobs_total",
            &[("kind", kind), ("result", "retry")],
        ) >= 1.0
        {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no {kind} job was retried: {text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// 120 managed groups and an Outline that answers in 60 ms, so a pass spends seconds reading Outline. While it
/// reads, 40 people are added and 40 removed in Authentik (each pushed). Every one of those changes stands
/// when the pass and its follow-ups are done: the pass never writes a group from a read older than the
/// group's last event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_never_undoes_changes_pushed_while_it_runs() {
    let (authentik, outline) = start_fakes().await;
    let mut groups = Vec::new();
    for i in 0..120 {
        let name = format!("team-{i:03}");
        groups.push((authentik.add_group(&name), outline.add_group(&name, None)));
    }
    // Groups 0..40 gain a person; groups 40..80 lose one.
    let mut joiners = Vec::new();
    let mut leavers = Vec::new();
    for (i, (group, _)) in groups.iter().enumerate().take(80) {
        let email = format!("p{i:02}@example.com");
        let pk = authentik.add_user(&format!("p{i:02}"), "P", &email);
        let id = outline.add_user("P", &email);
        if i < 40 {
            joiners.push((i, pk, id));
        } else {
            authentik.add_member(group, pk);
            leavers.push((i, pk, id));
        }
    }
    outline.set_rate_limit(1_000_000, Duration::from_secs(60));
    let app = spawn_app_with(authentik, outline, |s| {
        s.outline_rate_limit.requests = 1_000_000;
    })
    .await;
    for (i, _, id) in &leavers {
        assert!(
            app.outline.members(&groups[*i].1).contains_key(id),
            "start-up pass added leaver {i}"
        );
    }
    app.wire_authentik_webhook();
    app.outline.set_latency(Duration::from_millis(60));
    app.outline.clear_calls();
    app.queue.submit(JobKey::Reconcile).expect("queued");
    eventually(
        "the pass is reading Outline",
        Duration::from_secs(20),
        || app.outline.count_calls("groups.memberships") >= 5,
    )
    .await;
    for ((ji, jpk, _), (li, lpk, _)) in joiners.iter().zip(&leavers) {
        app.authentik.add_member(&groups[*ji].0, *jpk);
        app.authentik.remove_member(&groups[*li].0, *lpk);
    }
    let reads_at_push = app.outline.count_calls("groups.memberships");
    app.settle().await;
    assert!(
        reads_at_push < 120,
        "the changes were pushed while the pass was still reading ({reads_at_push} of 120 groups read)"
    );
    let mut undone = Vec::new();
    for (i, _, id) in &joiners {
        if !app.outline.members(&groups[*i].1).contains_key(id) {
            undone.push(format!("add to team-{i:03}"));
        }
    }
    for (i, _, id) in &leavers {
        if app.outline.members(&groups[*i].1).contains_key(id) {
            undone.push(format!("removal from team-{i:03}"));
        }
    }
    assert!(undone.is_empty(), "changes undone by the pass: {undone:?}");
}

/// A rename Outline refuses (a URL in the name) and a provider-managed group stall nothing else: membership
/// changes still reach every other group, the refused group is counted, and no job retries the 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_refused_group_stalls_nothing_else() {
    let (authentik, outline) = start_fakes().await;
    let a = authentik.add_group("Partners");
    let b = authentik.add_group("Staff");
    let c = authentik.add_group("Managed Elsewhere");
    let oa = outline.add_group("Partners", None);
    let ob = outline.add_group("Staff", None);
    let oc = outline.add_group("Managed Elsewhere", None);
    let x = authentik.add_user("x", "X", "x@example.com");
    let y = authentik.add_user("y", "Y", "y@example.com");
    authentik.add_member(&b, x);
    let ox = outline.add_user("X", "x@example.com");
    let oy = outline.add_user("Y", "y@example.com");
    let app = spawn_app_with(authentik, outline, |_| {}).await;
    assert!(app.outline.members(&ob).contains_key(&ox));
    app.outline.set_provider_managed(&oc, true);
    app.wire_authentik_webhook();

    app.authentik.rename_group(&a, "Partners www.acme.io");
    app.authentik.add_member(&c, y);
    app.authentik.set_active(x, false);
    app.authentik.add_member(&a, y);
    eventually(
        "the deactivated user leaves Staff and Y joins Partners despite the refusals",
        Duration::from_secs(10),
        || {
            !app.outline.members(&ob).contains_key(&ox)
                && app.outline.members(&oa).contains_key(&oy)
        },
    )
    .await;
    app.settle().await;
    let text = app.metrics_text().await;
    assert!(
        metric(
            &text,
            "bridge_group_refusals_total",
            &[("call", "groups.update")]
        ) >= 1.0,
        "{text}"
    );
    assert!(
        metric(
            &text,
            "bridge_group_refusals_total",
            &[("call", "groups.add_user")]
        ) >= 1.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "bridge_jobs_total", &[("result", "retry")]),
        0.0,
        "a 400 is never retried"
    );
    assert_eq!(
        app.outline
            .groups()
            .iter()
            .find(|g| g.id == oa)
            .map(|g| g.name.clone())
            .as_deref(),
        Some("Partners"),
        "the refused name was not forced through"
    );
    assert!(app.outline.members(&oc).is_empty());
    let rename_attempts = app
        .outline
        .calls()
        .iter()
        .filter(|c| {
            c.method == "groups.update"
                && c.body.get("name").and_then(|v| v.as_str()) == Some("Partners www.acme.io")
        })
        .count();
    assert_eq!(
        rename_attempts, 1,
        "a refused rename is not sent again by every job"
    );
    assert_eq!(
        metric(
            &text,
            "bridge_upstream_errors_total",
            &[("upstream", "outline")]
        ),
        0.0,
        "a refusal is not an upstream error: {text}"
    );
}

/// A group deleted and re-created under the same name (a Terraform replace) takes over its Outline group on
/// the push of its first change, within a second; and a managed group that cannot be linked is counted while
/// serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_created_group_takes_over_its_outline_group_on_push() {
    let (authentik, outline) = start_fakes().await;
    let old = authentik.add_group("Docs");
    let og = outline.add_group("Docs", None);
    let ann = authentik.add_user("ann", "Ann", "ann@example.com");
    let ben = authentik.add_user("ben", "Ben", "ben@example.com");
    authentik.add_member(&old, ann);
    let oann = outline.add_user("Ann", "ann@example.com");
    let oben = outline.add_user("Ben", "ben@example.com");
    authentik.add_group("No Outline Twin");
    let app = spawn_app_with(authentik, outline, |_| {}).await;
    let external_id = |app: &TestApp| {
        app.outline
            .groups()
            .into_iter()
            .find(|g| g.id == og)
            .and_then(|g| g.external_id)
            .unwrap_or_default()
            .replace('-', "")
    };
    assert_eq!(
        external_id(&app),
        old.replace('-', ""),
        "linked to the first Docs"
    );
    let text = app.metrics_text().await;
    assert!(
        metric(
            &text,
            "bridge_groups_skipped_total",
            &[("reason", "no_outline_group")]
        ) >= 1.0,
        "a managed group with no Outline group is counted while serving: {text}"
    );
    app.wire_authentik_webhook();

    app.authentik.delete_group(&old);
    let new = app.authentik.add_group("Docs");
    let started = Instant::now();
    app.authentik.add_member(&new, ben);
    eventually(
        "Ben reaches Outline's Docs through the new group",
        Duration::from_secs(5),
        || app.outline.members(&og).contains_key(&oben),
    )
    .await;
    let took = started.elapsed();
    app.settle().await;
    assert!(took < Duration::from_secs(1), "took over in {took:?}");
    assert!(
        !app.outline.members(&og).contains_key(&oann),
        "Ann was only in the deleted group"
    );
    assert_eq!(
        external_id(&app),
        new.replace('-', ""),
        "externalId now names the new group"
    );
}

/// Thirty deletions of users the bridge never saw cost at most two passes, none of them inside a user job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_storm_costs_at_most_two_passes() {
    let app = spawn_app().await;
    let passes = |text: &str| metric(text, "bridge_reconcile_total", &[("result", "ok")]);
    let before = passes(&app.metrics_text().await);
    for i in 0..30 {
        let resp = app
            .post_authentik(&user_event(
                &format!("storm-{i}"),
                "model_deleted",
                900_000 + i,
                "Ghost",
            ))
            .await;
        assert_eq!(resp.status().as_u16(), 202);
    }
    app.settle().await;
    let ran = passes(&app.metrics_text().await) - before;
    assert!((1.0..=2.0).contains(&ran), "{ran} passes for 30 deletions");
}

/// A late or retried deletion never removes the live user who holds the email now (deleted and re-created).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_deletion_spares_the_live_user_with_the_same_email() {
    let (authentik, outline) = start_fakes().await;
    let g = authentik.add_group("G");
    let first = authentik.add_user("sam", "Sam", "sam@example.com");
    authentik.add_member(&g, first);
    let og = outline.add_group("G", None);
    let osam = outline.add_user("Sam", "sam@example.com");
    let app = spawn_app_with(authentik, outline, |_| {}).await;
    assert!(
        app.outline.members(&og).contains_key(&osam),
        "the pass saw Sam's email"
    );
    app.authentik.delete_user(first);
    let again = app.authentik.add_user("sam2", "Sam", "sam@example.com");
    app.authentik.add_member(&g, again);
    let resp = app
        .post_authentik(&user_event("late-del", "model_deleted", first, "Sam"))
        .await;
    assert_eq!(resp.status().as_u16(), 202);
    app.settle().await;
    assert!(
        app.outline.members(&og).contains_key(&osam),
        "the live Sam keeps the group"
    );
}

/// A member who leaves and another who joins between two page reads of a 150-member group: the walk is read
/// again, so the group admin who joined is never "added" (which would demote them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_list_that_changes_between_pages_is_read_again() {
    let (authentik, outline) = start_fakes().await;
    let g = authentik.add_group("Big");
    let og = outline.add_group("Big", None);
    let mut ids = Vec::new();
    for i in 0..151 {
        let email = format!("m{i:03}@example.com");
        let pk = authentik.add_user(&format!("m{i:03}"), "M", &email);
        let id = outline.add_user("M", &email);
        if i < 150 {
            authentik.add_member(&g, pk);
            outline.add_member(&og, &id, "member");
        }
        ids.push((pk, id));
    }
    let app = spawn_app_with(authentik, outline, |_| {}).await;
    // The 151st person joins Authentik's group; in Outline an admin adds them by hand, as group admin, while
    // the oldest member leaves, right after the bridge reads the first page. The row count still matches,
    // and the newcomer sits on the page already read.
    let (joiner_pk, joiner) = ids[150].clone();
    let (_, leaver) = ids[0].clone();
    app.authentik.add_member(&g, joiner_pk);
    app.outline
        .swap_member_after_reads(&og, 1, &leaver, &joiner, "admin");
    app.outline.clear_calls();
    app.post_authentik(&group_event("page-race", "model_updated", &g, "Big"))
        .await;
    app.settle().await;
    let re_added = app.outline.calls().iter().any(|c| {
        c.method == "groups.add_user"
            && c.body.get("userId").and_then(|v| v.as_str()) == Some(joiner.as_str())
    });
    assert!(
        !re_added,
        "groups.add_user was called for an existing member"
    );
    assert_eq!(
        app.outline.members(&og).get(&joiner).map(String::as_str),
        Some("admin"),
        "the admin who joined mid-read is still admin"
    );
    assert!(
        app.outline.members(&og).contains_key(&leaver),
        "the leaver is back: Authentik has them"
    );
}

/// An email changed in Authentik: Outline keeps the old address until the next sign-in, and meanwhile the
/// person keeps their groups and their group admin role through group events and passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_email_keeps_groups_and_admin_role_until_the_next_sign_in() {
    let (authentik, outline) = start_fakes().await;
    let g = authentik.add_group("Wiki");
    let kim = authentik.add_user("kim", "Kim", "kim@old.example");
    authentik.add_member(&g, kim);
    let og = outline.add_group("Wiki", None);
    let okim = outline.add_user("Kim", "kim@old.example");
    outline.add_member(&og, &okim, "admin");
    let lee = authentik.add_user("lee", "Lee", "lee@example.com");
    let _olee = outline.add_user("Lee", "lee@example.com");
    let app = spawn_app_with(authentik, outline, |_| {}).await;
    app.wire_authentik_webhook();
    app.authentik.set_email(kim, "kim@new.example");
    app.settle().await;
    app.authentik.add_member(&g, lee);
    app.settle().await;
    app.queue.submit(JobKey::Reconcile).expect("queued");
    app.settle().await;
    assert_eq!(
        app.outline.members(&og).get(&okim).map(String::as_str),
        Some("admin"),
        "Kim kept the group and the admin role"
    );
}

/// A 403 from `users.info` because the key's owner is suspended is an upstream error: the sign-in job
/// retries (it is not dropped as "user deleted"), and `/readyz` fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_outline_key_is_an_error_not_a_deleted_user() {
    let app = spawn_app().await;
    let u = app.outline.add_user("U", "u@example.com");
    app.outline.set_suspended(&app.outline.admin_id(), true);
    let resp = app.signin(&u).await;
    assert_eq!(resp.status().as_u16(), 202);
    let ready = || async {
        app.http
            .get(format!("{}/readyz", app.url))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    wait_for_job_retry(&app, "signin").await;
    assert_eq!(ready().await, 503, "readyz reports the failing key");
    let text = app.metrics_text().await;
    assert_eq!(
        metric(
            &text,
            "bridge_jobs_total",
            &[("kind", "signin"), ("result", "ok")]
        ),
        0.0
    );
}

/// A group read that asked for members and got no member list is an error: nobody is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_answer_without_its_member_list_removes_nobody() {
    let (authentik, outline) = start_fakes().await;
    let g = authentik.add_group("G");
    let pk = authentik.add_user("a", "A", "a@example.com");
    authentik.add_member(&g, pk);
    let og = outline.add_group("G", None);
    let oa = outline.add_user("A", "a@example.com");
    let app = spawn_app_with(authentik, outline, |_| {}).await;
    assert!(app.outline.members(&og).contains_key(&oa));
    app.authentik.set_omit_member_lists(true);
    app.outline.clear_calls();
    app.post_authentik(&group_event("no-users-obj", "model_updated", &g, "G"))
        .await;
    wait_for_job_retry(&app, "group").await;
    assert!(app.outline.members(&og).contains_key(&oa));
    assert_eq!(app.outline.count_calls("groups.remove_user"), 0);
}

/// The Authentik webhook refuses a body over 64 KiB before checking the token or parsing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentik_bodies_over_64_kib_get_413() {
    let app = spawn_app().await;
    let pad = "x".repeat(70 * 1024);
    let doc = serde_json::json!({"schema": "authentik-bridge/v1", "event_pk": "big", "action": "login", "pad": pad});
    let resp = app.post_authentik(&doc).await;
    assert_eq!(resp.status().as_u16(), 413);
    let small = serde_json::json!({"schema": "authentik-bridge/v1", "event_pk": "small", "action": "login", "model": null});
    assert_eq!(app.post_authentik(&small).await.status().as_u16(), 202);
}

/// A pass's early group list is not cached after an event made it stale: a rename pushed while the pass read
/// Authentik is not undone by the next sign-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_pushed_during_a_pass_is_not_undone_by_a_sign_in() {
    let (authentik, outline) = start_fakes().await;
    let g = authentik.add_group("Old Name");
    let pk = authentik.add_user("r", "R", "r@example.com");
    authentik.add_member(&g, pk);
    let og = outline.add_group("Old Name", None);
    let or = outline.add_user("R", "r@example.com");
    let app = spawn_app_with(authentik, outline, |_| {}).await;
    app.wire_authentik_webhook();
    app.authentik.set_answer_delay(Duration::from_millis(400));
    app.authentik.clear_calls();
    app.queue.submit(JobKey::Reconcile).expect("queued");
    // The pass has read the directory, and its answer, with the old name, is on its way.
    eventually(
        "the pass read the directory",
        Duration::from_secs(5),
        || app.authentik.count_calls("/api/v3/core/groups/") >= 1,
    )
    .await;
    app.authentik.rename_group(&g, "New Name");
    app.settle().await;
    app.authentik.set_answer_delay(Duration::ZERO);
    assert_eq!(
        app.outline
            .groups()
            .iter()
            .find(|x| x.id == og)
            .map(|x| x.name.clone())
            .as_deref(),
        Some("New Name")
    );
    app.signin(&or).await;
    app.settle().await;
    let names: BTreeSet<String> = app.outline.groups().into_iter().map(|x| x.name).collect();
    assert!(
        names.contains("New Name"),
        "the sign-in renamed the group back: {names:?}"
    );
}
