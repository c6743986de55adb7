//! `INVITE_MEMBERS`: members of managed groups without an Outline account are invited with their
//! `ROLE_MAP` role and put in their groups at once; Outline's 50 requests an hour are kept to, and people
//! still waiting are found again after a restart. Against the stateful fakes, through the real bridge.

use std::time::Duration;

use authentik_bridge::runtime::ReconcileOptions;
use authentik_bridge::sinks::outline::account_plan::RoleMap;
use authentik_bridge::sinks::run_reconcile;

use crate::faults::{metric, BridgeProcess};
use crate::helpers::*;

#[tokio::test]
async fn a_new_member_is_invited_with_their_role_and_is_in_their_group_at_once() {
    let (authentik, outline) = start_fakes().await;
    let docs = authentik.add_group("Docs");
    let readers = authentik.add_group("outline-readers");
    let odocs = outline.add_group("Docs", None);
    let dave = authentik.add_user("dave", "Dave Doe", "Dave@Example.com");
    authentik.add_member(&readers, dave);
    let app = spawn_app_with(authentik, outline, |s| {
        s.invite_members = true;
        // Only Docs is synced; outline-readers decides the role alone.
        s.group_filter = Some(regex::Regex::new("(?i)^Docs$").expect("regex"));
        s.role_map = Some(
            RoleMap::parse("outline-admins=admin,outline-readers=viewer", "member")
                .expect("parses"),
        );
    })
    .await;
    app.wire_authentik_webhook();
    assert!(
        app.outline.invited_emails().is_empty(),
        "not a member of a managed group yet"
    );

    app.authentik.add_member(&docs, dave);
    eventually("dave is in Docs", Duration::from_secs(5), || {
        app.outline
            .user_by_email("dave@example.com")
            .is_some_and(|id| app.outline.members(&odocs).contains_key(&id))
    })
    .await;
    app.settle().await;
    let id = app
        .outline
        .user_by_email("dave@example.com")
        .expect("invited");
    assert_eq!(app.outline.role_of(&id).as_deref(), Some("viewer"));
    let invites: Vec<_> = app
        .outline
        .calls()
        .into_iter()
        .filter(|c| c.method == "users.invite")
        .collect();
    assert_eq!(invites.len(), 1, "one invitation, however many events");
    assert_eq!(
        invites[0].body["suppressEmail"], true,
        "no email unless INVITE_EMAIL"
    );
    assert_eq!(invites[0].body["invites"][0]["name"], "Dave Doe");
    assert_eq!(invites[0].body["invites"][0]["role"], "viewer");
    let text = app.metrics_text().await;
    assert_eq!(
        metric(&text, "bridge_invites_total", &[("result", "sent")]),
        1.0
    );
    assert_eq!(metric(&text, "bridge_invites_pending", &[]), 0.0);
}

#[tokio::test]
async fn the_dry_run_lists_who_would_be_invited_and_sends_nothing() {
    let (authentik, outline) = start_fakes().await;
    let docs = authentik.add_group("Docs");
    outline.add_group("Docs", None);
    let erin = authentik.add_user("erin", "Erin", "erin@example.com");
    let app = spawn_app_with(authentik, outline, |s| {
        s.invite_members = true;
        s.reconcile_interval = None;
    })
    .await;
    app.authentik.add_member(&docs, erin);
    let report = run_reconcile(&app.engine, DRY_RUN).await.expect("dry run");
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["invites"]["pending"], 1, "{json}");
    assert_eq!(json["invites"]["emails"][0], "erin@example.com");
    assert_eq!(json["invites"]["requests_left_this_hour"], 50);
    assert_eq!(
        app.outline.count_calls("users.invite"),
        0,
        "a dry run invites nobody"
    );
}

/// 45 people wait; Outline's invite limit lets two requests through (40 people), then answers 429 with
/// the rest of its hour. The bridge keeps the 5 queued and sends nothing more. After a SIGKILL and a
/// restart, once Outline allows it again, the start-up pass finds the 5 and invites them.
#[tokio::test]
async fn invitations_wait_out_the_limit_and_survive_a_restart() {
    let (authentik, outline) = start_fakes().await;
    let docs = authentik.add_group("Docs");
    let odocs = outline.add_group("Docs", None);
    for i in 0..45 {
        let pk = authentik.add_user(&format!("p{i:02}"), "P", &format!("p{i:02}@example.com"));
        authentik.add_member(&docs, pk);
    }
    outline.set_invite_limit(1);
    // Only the invite limit is under test: the general one stays out of the way on both sides.
    outline.set_rate_limit(100_000, Duration::from_secs(60));
    let http = reqwest::Client::new();
    let env = [
        ("INVITE_MEMBERS", "true"),
        ("OUTLINE_RATE_LIMIT_REQUESTS", "100000"),
    ];

    let mut first = BridgeProcess::start(&authentik, &outline, "invites-1", &env);
    first.wait_reconciled(&http).await;
    eventually("40 invited and placed", Duration::from_secs(20), || {
        outline.members(&odocs).len() == 40
    })
    .await;
    let text = first.metrics(&http).await;
    assert_eq!(outline.invited_emails().len(), 40, "{}", first.log_tail());
    assert_eq!(metric(&text, "bridge_invites_pending", &[]), 5.0);
    assert_eq!(
        metric(&text, "bridge_invites_total", &[("result", "throttled")]),
        5.0
    );
    assert_eq!(
        outline.count_calls("users.invite"),
        3,
        "two sent, one answered 429"
    );
    assert_eq!(
        outline.members(&odocs).len(),
        40,
        "the invited are in their group at once"
    );
    first.kill_9();

    outline.set_invite_limit(50);
    let mut second = BridgeProcess::start(&authentik, &outline, "invites-2", &env);
    second.wait_reconciled(&http).await;
    eventually("all 45 invited and placed", Duration::from_secs(20), || {
        outline.members(&odocs).len() == 45
    })
    .await;
    assert_eq!(outline.invited_emails().len(), 45, "{}", second.log_tail());
    assert_eq!(
        metric(&second.metrics(&http).await, "bridge_invites_pending", &[]),
        0.0
    );
}

/// Outline refuses a whole request when one name carries a URL (the `User` model's `NotContainsUrl`). The
/// bridge splits the batch until that one is alone, sets it aside, and invites the others; nothing loops.
#[tokio::test]
async fn one_name_outline_refuses_costs_a_few_requests_not_the_hour() {
    let (authentik, outline) = start_fakes().await;
    let docs = authentik.add_group("Docs");
    let odocs = outline.add_group("Docs", None);
    for i in 0..5 {
        let name = if i == 2 {
            "Visit https://spam.example.com".to_string()
        } else {
            format!("Person {i}")
        };
        let pk = authentik.add_user(&format!("p{i}"), &name, &format!("p{i}@example.com"));
        authentik.add_member(&docs, pk);
    }
    let app = spawn_app_with(authentik, outline, |s| {
        s.invite_members = true;
        s.reconcile_interval = None;
    })
    .await;
    eventually(
        "the four others are in Docs",
        Duration::from_secs(10),
        || app.outline.members(&odocs).len() == 4,
    )
    .await;
    app.settle().await;
    let requests = app.outline.count_calls("users.invite");
    assert!(requests <= 7, "split, not retried: {requests} requests");
    let text = app.metrics_text().await;
    assert_eq!(
        metric(&text, "bridge_invites_total", &[("result", "refused")]),
        1.0
    );
    assert_eq!(metric(&text, "bridge_invites_pending", &[]), 0.0);
    // The next pass does not send it again.
    run_reconcile(&app.engine, ReconcileOptions::default())
        .await
        .expect("pass");
    app.settle().await;
    assert_eq!(app.outline.count_calls("users.invite"), requests);
    assert!(app.outline.user_by_email("p2@example.com").is_none());
}

/// A key that may not invite (no `users:write`) gets 403 on every request: the bridge backs off rather than
/// spend the hour's requests, and sets nobody aside.
#[tokio::test]
async fn a_key_that_may_not_invite_backs_off() {
    let (authentik, outline) = start_fakes().await;
    let docs = authentik.add_group("Docs");
    outline.add_group("Docs", None);
    let pk = authentik.add_user("p0", "P", "p0@example.com");
    authentik.add_member(&docs, pk);
    outline.set_key_scopes(Some(vec!["users:read".into(), "groups:write".into()]));
    let app = spawn_app_with(authentik, outline, |s| {
        s.invite_members = true;
        s.reconcile_interval = None;
    })
    .await;
    app.settle().await;
    let requests = app.outline.count_calls("users.invite");
    assert!((1..=2).contains(&requests), "{requests} requests");
    let text = app.metrics_text().await;
    assert_eq!(metric(&text, "bridge_invites_pending", &[]), 1.0);
    assert_eq!(
        metric(&text, "bridge_invites_total", &[("result", "refused")]),
        0.0
    );
}

/// Two addresses Outline refuses (`x@localhost`, no dot in the domain) wait alone in the queue. Each is set
/// aside on its own refusal; that is never taken for a refusal of everyone, so the next person to join is
/// invited at once, and neither bad address is sent again.
#[tokio::test]
async fn two_refused_addresses_alone_never_delay_the_next_person() {
    let (authentik, outline) = start_fakes().await;
    let docs = authentik.add_group("Docs");
    let odocs = outline.add_group("Docs", None);
    for who in ["ann", "bob"] {
        let pk = authentik.add_user(who, who, &format!("{who}@localhost"));
        authentik.add_member(&docs, pk);
    }
    let app = spawn_app_with(authentik, outline, |s| {
        s.invite_members = true;
        s.reconcile_interval = None;
    })
    .await;
    app.settle().await;
    let with_bad_address = |app: &TestApp| {
        app.outline
            .calls()
            .iter()
            .filter(|c| c.method == "users.invite" && c.body.to_string().contains("@localhost"))
            .count()
    };
    let bad_sent = with_bad_address(&app);
    assert!((1..=3).contains(&bad_sent), "{bad_sent} requests");
    app.wire_authentik_webhook();
    let carol = app
        .authentik
        .add_user("carol", "Carol", "carol@example.com");
    app.authentik.add_member(&docs, carol);
    eventually("carol invited and placed", Duration::from_secs(5), || {
        app.outline.members(&odocs).len() == 1
    })
    .await;
    run_reconcile(&app.engine, ReconcileOptions::default())
        .await
        .expect("pass");
    app.settle_deliveries().await;
    assert_eq!(with_bad_address(&app), bad_sent, "never sent again");
    let text = app.metrics_text().await;
    assert_eq!(
        metric(&text, "bridge_invites_total", &[("result", "refused")]),
        2.0
    );
    assert_eq!(metric(&text, "bridge_invites_pending", &[]), 0.0);
}

/// With `STATE_DIR`, the hour's invite requests are counted across a restart (here `kill -9`): 30 people
/// join one at a time, the bridge restarts, 25 more join, and exactly 50 requests go out; the last five
/// wait, and Outline never has to answer 429.
#[tokio::test]
async fn the_hours_invite_requests_are_counted_across_a_restart_with_state_dir() {
    let (authentik, outline) = start_fakes().await;
    let docs = authentik.add_group("Docs");
    outline.add_group("Docs", None);
    outline.set_rate_limit(100_000, Duration::from_secs(60));
    let state = scratch_state_dir("invites");
    let state_str = state.to_string_lossy().to_string();
    let env = [
        ("INVITE_MEMBERS", "true"),
        ("OUTLINE_RATE_LIMIT_REQUESTS", "100000"),
        ("STATE_DIR", state_str.as_str()),
    ];
    let http = reqwest::Client::new();
    let join = |i: usize| {
        let email = format!("p{i:02}@example.com");
        let pk = authentik.add_user(&format!("p{i:02}"), "P", &email);
        authentik.add_member(&docs, pk);
        email
    };
    let mut next = 0;
    for (tag, joining) in [("invites-state-1", 30), ("invites-state-2", 25)] {
        let mut bridge = BridgeProcess::start(&authentik, &outline, tag, &env);
        bridge.wait_reconciled(&http).await;
        authentik.set_webhook(
            Some(format!("{}/webhooks/authentik", bridge.url)),
            Some(AUTHENTIK_WEBHOOK_TOKEN.to_string()),
        );
        for _ in 0..joining {
            let email = join(next);
            next += 1;
            if next > 50 {
                continue;
            }
            eventually(&format!("{email} invited"), Duration::from_secs(10), || {
                outline.invited_emails().contains(&email)
            })
            .await;
        }
        if next > 50 {
            let started = std::time::Instant::now();
            while metric(&bridge.metrics(&http).await, "bridge_invites_pending", &[]) < 5.0 {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "the last five are not waiting\n{}",
                    bridge.log_tail()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        bridge.kill_9();
    }
    assert_eq!(outline.count_calls("users.invite"), 50);
    assert_eq!(outline.invited_emails().len(), 50);
    assert_eq!(outline.throttled_count(), 0, "Outline never answered 429");
    let _ = std::fs::remove_dir_all(&state);
}

/// Without `STATE_DIR` a new process (a restart) cannot know the last hour's invite requests, so it invites
/// nobody before its first pass has ended: a person whose group change is pushed while that pass runs is
/// invited after it, never during it.
#[tokio::test]
async fn without_state_dir_a_new_process_invites_nobody_before_its_first_pass_ends() {
    let (authentik, outline) = start_fakes().await;
    let docs = authentik.add_group("Docs");
    outline.add_group("Docs", None);
    // A pass that lasts: many managed groups, each with a member, and Outline at 100 ms an answer.
    for g in 0..12 {
        let name = format!("Team {g:02}");
        let group = authentik.add_group(&name);
        outline.add_group(&name, None);
        let email = format!("t{g:02}@example.com");
        let pk = authentik.add_user(&format!("t{g:02}"), "T", &email);
        outline.add_user("T", &email);
        authentik.add_member(&group, pk);
    }
    outline.set_rate_limit(100_000, Duration::from_secs(60));
    outline.set_latency(Duration::from_millis(100));
    let env = [
        ("INVITE_MEMBERS", "true"),
        ("OUTLINE_RATE_LIMIT_REQUESTS", "100000"),
        (
            "RUST_LOG",
            "info,authentik_bridge::runtime::converge=debug,authentik_bridge::sinks::outline::invites=debug",
        ),
    ];
    let http = reqwest::Client::new();
    let mut bridge = BridgeProcess::start(&authentik, &outline, "invites-no-state", &env);
    eventually_async("the bridge answers", Duration::from_secs(10), || async {
        http.get(format!("{}/healthz", bridge.url))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    authentik.set_webhook(
        Some(format!("{}/webhooks/authentik", bridge.url)),
        Some(AUTHENTIK_WEBHOOK_TOKEN.to_string()),
    );
    let late = authentik.add_user("late", "Late", "late@example.com");
    authentik.add_member(&docs, late);
    eventually("the late joiner invited", Duration::from_secs(30), || {
        outline
            .invited_emails()
            .contains(&"late@example.com".to_string())
    })
    .await;
    bridge.wait_reconciled(&http).await;
    // Outline records the invitation before its answer reaches the bridge, which logs it after.
    eventually("the invitation logged", Duration::from_secs(10), || {
        bridge.log().contains("invited to Outline")
    })
    .await;
    let log = bridge.log();
    let at = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("no {needle:?} in the log:\n{log}"))
    };
    let (noted, pass_done, invited) = (
        at("waiting for an invitation"),
        at("pass done"),
        at("invited to Outline"),
    );
    assert!(
        noted < pass_done,
        "the push must be noted during the pass for this test to prove anything:\n{log}"
    );
    assert!(
        pass_done < invited,
        "invited before the first pass ended:\n{log}"
    );
    assert_eq!(outline.count_calls("users.invite"), 1);
}
