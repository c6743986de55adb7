//! Roles and offboarding: Authentik decides who is an Outline admin or viewer (`ROLE_MAP`) and who is
//! suspended (`SUSPEND_DEACTIVATED`), with the API key's owner and the last admin never demoted or
//! suspended. Against the stateful fakes, through the real bridge.

use std::collections::BTreeSet;
use std::time::Duration;

use authentik_bridge::app::report::render_reconcile;
use authentik_bridge::configuration::Settings;
use authentik_bridge::domain::held::HoldReason;
use authentik_bridge::runtime::ReconcileOptions;
use authentik_bridge::sinks::outline::account_plan::RoleMap;
use authentik_bridge::sinks::run_reconcile;
use authentik_bridge::sinks::ReconcileReport;

use crate::faults::{metric, BridgeProcess};
use crate::helpers::*;

/// The admin group alone; tests that also create `outline-readers` map it with [`roles_and_readers`]. A
/// mapped group that does not exist lowers nobody's role.
fn roles(s: &mut Settings) {
    s.role_map = Some(RoleMap::parse("outline-admins=admin", "member").expect("parses"));
}

fn roles_and_readers(s: &mut Settings) {
    s.role_map = Some(
        RoleMap::parse("outline-admins=admin,outline-readers=viewer", "member").expect("parses"),
    );
}

fn offboarding(s: &mut Settings) {
    s.suspend_deactivated = true;
}

#[tokio::test]
async fn joining_the_admin_group_makes_an_admin_and_leaving_it_a_member_again() {
    let (authentik, outline) = start_fakes().await;
    let jane = authentik.add_user("jane", "Jane", "jane@example.com");
    let admins = authentik.add_group("outline-admins");
    let readers = authentik.add_group("outline-readers");
    let ojane = outline.add_user("Jane", "jane@example.com");
    let app = spawn_app_with(authentik, outline, roles_and_readers).await;
    app.wire_authentik_webhook();
    assert_eq!(app.outline.role_of(&ojane).as_deref(), Some("member"));

    app.authentik.add_member(&admins, jane);
    eventually("jane is an admin", Duration::from_secs(5), || {
        app.outline.role_of(&ojane).as_deref() == Some("admin")
    })
    .await;
    app.authentik.remove_member(&admins, jane);
    eventually("jane is a member again", Duration::from_secs(5), || {
        app.outline.role_of(&ojane).as_deref() == Some("member")
    })
    .await;
    app.authentik.add_member(&readers, jane);
    eventually("jane is a viewer", Duration::from_secs(5), || {
        app.outline.role_of(&ojane).as_deref() == Some("viewer")
    })
    .await;
    app.settle_deliveries().await;
    // Only changes are sent: one call per role change.
    assert_eq!(app.outline.count_calls("users.update_role"), 3);
}

#[tokio::test]
async fn the_pass_sets_roles_shows_them_in_the_dry_run_and_keeps_the_key_owner_an_admin() {
    let (authentik, outline) = start_fakes().await;
    let admins = authentik.add_group("outline-admins");
    let bob = authentik.add_user("bob", "Bob", "bob@example.com");
    authentik.add_member(&admins, bob);
    let _carol = authentik.add_user("carol", "Carol", "carol@example.com");
    let obob = outline.add_user("Bob", "bob@example.com");
    let ocarol = outline.add_user_with("Carol", "carol@example.com", "admin", false);
    // The key's owner is an Authentik user in none of the mapped groups: the default would demote them.
    // (The fakes seed both admins with one address, as a fresh install of each does.)
    let owner = outline.admin_id();
    let owner_email = outline.user_email(&owner).expect("the owner has an email");
    assert_eq!(owner_email, "admin@example.com", "akadmin's address");
    let app = spawn_app_with(authentik, outline, |s| {
        s.reconcile_interval = None;
        roles(s);
    })
    .await;
    // The start-up pass is the first with this ROLE_MAP: it made bob an admin, refused to demote the owner,
    // and held carol's demotion for `--force`, with the guard's gauge up.
    assert_eq!(app.outline.role_of(&obob).as_deref(), Some("admin"));
    assert_eq!(app.outline.role_of(&ocarol).as_deref(), Some("admin"));
    assert_eq!(app.outline.role_of(&owner).as_deref(), Some("admin"));
    let text = app.metrics_text().await;
    assert!(
        metric(
            &text,
            "bridge_account_refusals_total",
            &[("change", "demote"), ("reason", "key_owner")]
        ) >= 1.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "bridge_removal_guard_active", &[("sink", "outline")]),
        1.0
    );
    let again = run_reconcile(&app.engine, ReconcileOptions::default())
        .await
        .expect("pass");
    assert!(again.guarded, "still held without --force");
    assert_eq!(app.outline.role_of(&ocarol).as_deref(), Some("admin"));
    run_reconcile(&app.engine, FORCE)
        .await
        .expect("forced pass");
    assert_eq!(app.outline.role_of(&ocarol).as_deref(), Some("member"));
    // Applied: from now on a demotion needs no --force.
    app.outline.set_role(&ocarol, "admin");
    let applied = run_reconcile(&app.engine, ReconcileOptions::default())
        .await
        .expect("pass");
    assert!(!applied.guarded);
    assert_eq!(app.outline.role_of(&ocarol).as_deref(), Some("member"));

    app.outline.set_role(&ocarol, "admin");
    let report = run_reconcile(&app.engine, DRY_RUN).await.expect("dry run");
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(
        json["accounts"]["roles"],
        serde_json::json!([{"user": ocarol, "email": "carol@example.com", "from": "admin", "to": "member"}]),
        "{json}"
    );
    assert_eq!(json["accounts"]["refused"][0]["reason"], "key_owner");
    assert_eq!(
        app.outline.role_of(&ocarol).as_deref(),
        Some("admin"),
        "dry run"
    );
}

#[tokio::test]
async fn a_demotion_from_admin_counts_toward_max_removals() {
    let (authentik, outline) = start_fakes().await;
    authentik.add_group("outline-admins");
    authentik.add_user("carol", "Carol", "carol@example.com");
    let ocarol = outline.add_user_with("Carol", "carol@example.com", "admin", false);
    let app = spawn_app_with(authentik, outline, |s| {
        roles(s);
        s.max_removals = 0;
    })
    .await;
    let force = FORCE;
    // The map is applied once; after that only MAX_REMOVALS holds a demotion.
    run_reconcile(&app.engine, force)
        .await
        .expect("forced pass");
    app.outline.set_role(&ocarol, "admin");
    let held = run_reconcile(&app.engine, ReconcileOptions::default())
        .await
        .expect("pass");
    assert!(held.guarded);
    assert_eq!(
        held.hold_reasons(),
        BTreeSet::from([HoldReason::MaxRemovals])
    );
    assert_eq!(
        app.outline.role_of(&ocarol).as_deref(),
        Some("admin"),
        "held back by the guard"
    );
    let report = run_reconcile(&app.engine, FORCE)
        .await
        .expect("forced pass");
    assert!(!report.guarded);
    assert_eq!(app.outline.role_of(&ocarol).as_deref(), Some("member"));
}

#[tokio::test]
async fn deactivation_suspends_and_reactivation_undoes_only_what_the_bridge_did() {
    let (authentik, outline) = start_fakes().await;
    let jane = authentik.add_user("jane", "Jane", "jane@example.com");
    let bob = authentik.add_user("bob", "Bob", "bob@example.com");
    let ojane = outline.add_user("Jane", "jane@example.com");
    let obob = outline.add_user("Bob", "bob@example.com");
    let other_admin = outline.add_user_with("Ada", "ada@example.com", "admin", false);
    let app = spawn_app_with(authentik, outline, offboarding).await;
    app.wire_authentik_webhook();

    app.authentik.set_active(jane, false);
    eventually("jane suspended", Duration::from_secs(5), || {
        app.outline.is_suspended(&ojane)
    })
    .await;
    app.authentik.set_active(jane, true);
    eventually("jane active again", Duration::from_secs(5), || {
        !app.outline.is_suspended(&ojane)
    })
    .await;

    // Bob was suspended by hand by another admin: re-activating him in Authentik leaves that alone.
    app.outline.suspend_as(&obob, &other_admin);
    app.authentik.set_active(bob, false);
    app.authentik.set_active(bob, true);
    app.settle_deliveries().await;
    assert!(
        app.outline.is_suspended(&obob),
        "a suspension made by hand stays"
    );
    assert_eq!(app.outline.count_calls("users.activate"), 1, "jane's only");
}

#[tokio::test]
async fn a_deleted_user_is_suspended_and_the_key_owner_never_is() {
    let (authentik, outline) = start_fakes().await;
    let jane = authentik.add_user("jane", "Jane", "jane@example.com");
    let ojane = outline.add_user("Jane", "jane@example.com");
    let owner = outline.admin_id();
    let owner_email = outline.user_email(&owner).expect("the owner has an email");
    // akadmin keeps the API token; the key owner's Authentik twin is a user of their own.
    let akadmin = authentik.user_by_username("akadmin").expect("akadmin");
    authentik.set_email(akadmin, "akadmin@example.org");
    let bridge = authentik.add_user("bridge", "Bridge", &owner_email);
    let app = spawn_app_with(authentik, outline, offboarding).await;
    app.wire_authentik_webhook();

    app.authentik.delete_user(jane);
    eventually("jane suspended", Duration::from_secs(5), || {
        app.outline.is_suspended(&ojane)
    })
    .await;
    app.authentik.set_active(bridge, false);
    app.settle_deliveries().await;
    assert!(
        !app.outline.is_suspended(&owner),
        "the key's owner is never suspended"
    );
    let text = app.metrics_text().await;
    assert!(
        metric(
            &text,
            "bridge_account_refusals_total",
            &[("change", "suspend"), ("reason", "key_owner")]
        ) >= 1.0
    );
}

/// The record follows its rules for people Authentik no longer has (a deletion leaves no email to match).
/// Deleted people the guard held stay held through a pass, and `--force` suspends them; someone the bridge
/// suspended and an admin activated by hand leaves the record at the next pass, so a later suspension by hand
/// is the admin's.
#[tokio::test]
async fn deleted_people_follow_the_records_rules_at_a_pass() {
    let (authentik, outline) = start_fakes().await;
    let people = people_on_both_sides(&authentik, &outline, 3);
    let state = scratch_state_dir("deleted-record");
    let dir = state.clone();
    let app = spawn_app_with(authentik, outline, move |s| {
        s.reconcile_interval = None;
        offboarding(s);
        s.max_suspensions = 2;
        s.state_dir = Some(dir);
    })
    .await;
    app.wire_authentik_webhook();
    for (pk, _) in &people {
        app.authentik.delete_user(*pk);
    }
    app.settle_deliveries().await;
    assert_eq!(suspended_count(&app, &people), 2, "the hour's allowance");
    let listed = |record: &serde_json::Value, field: &str, id: &str| {
        record[field]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == id))
    };
    let held = people
        .iter()
        .find(|(_, o)| !app.outline.is_suspended(o))
        .map(|(_, o)| o.clone())
        .expect("one held");
    let by_bridge = people
        .iter()
        .find(|(_, o)| app.outline.is_suspended(o))
        .map(|(_, o)| o.clone())
        .expect("one suspended");
    let record = stored_document(&state, "suspended-by-bridge").await;
    assert!(listed(&record, "held_by_guard", &held), "{record}");

    // An admin activates one the bridge suspended; a pass takes them off the record, and keeps the held one.
    app.outline.set_suspended(&by_bridge, false);
    let report = run_reconcile(&app.engine, ReconcileOptions::default())
        .await
        .expect("pass");
    let record = stored_document(&state, "suspended-by-bridge").await;
    assert!(
        !listed(&record, "suspended_by_bridge", &by_bridge),
        "{record}"
    );
    assert!(
        !app.outline.is_suspended(&by_bridge),
        "the admin's choice stands"
    );
    assert!(
        report.guarded && listed(&record, "held_by_guard", &held),
        "{record}"
    );
    assert!(!app.outline.is_suspended(&held), "held until --force");

    // --force suspends the held one, and the gauge drops.
    run_reconcile(&app.engine, FORCE)
        .await
        .expect("forced pass");
    assert!(app.outline.is_suspended(&held));
    let record = stored_document(&state, "suspended-by-bridge").await;
    assert!(!listed(&record, "held_by_guard", &held), "{record}");
    let text = app.metrics_text().await;
    assert_eq!(metric(&text, "bridge_suspension_guard_active", &[]), 0.0);
    let _ = std::fs::remove_dir_all(&state);
}

/// One rule for pushes and passes: at most `MAX_SUSPENSIONS` suspensions in any hour without `--force`.
/// A pass that finds three people deactivated with a limit of two suspends two and holds the third; a second
/// pass holds them still (only `--force` suspends what the guard held), and the gauge stays up until then.
#[tokio::test]
async fn max_suspensions_holds_a_mass_suspension_until_forced() {
    let (authentik, outline) = start_fakes().await;
    let pairs = people_on_both_sides(&authentik, &outline, 3);
    let app = spawn_app_with(authentik, outline, |s| {
        offboarding(s);
        s.max_suspensions = 2;
    })
    .await;
    for (pk, _) in &pairs {
        app.authentik.set_active(*pk, false);
    }
    let dry = run_reconcile(&app.engine, DRY_RUN).await.expect("dry run");
    assert!(dry.guarded, "the dry run says the guard would hold some");
    let held_lines = |report: &ReconcileReport| {
        let text = render_reconcile(report);
        let held = text
            .lines()
            .filter(|l| l.contains("would suspend") && l.ends_with("(held back)"))
            .count();
        (held, text)
    };
    assert_eq!(held_lines(&dry).0, 1, "{}", held_lines(&dry).1);
    for round in 0..2 {
        let report = run_reconcile(&app.engine, ReconcileOptions::default())
            .await
            .expect("pass");
        assert!(report.guarded, "three suspensions, MAX_SUSPENSIONS=2");
        let (held, text) = held_lines(&report);
        assert_eq!(held, 1, "the held one is not reported as done: {text}");
        let done = text.lines().filter(|l| l.contains("did suspend")).count();
        assert_eq!(done, [2, 0][round], "{text}");
        assert_eq!(
            suspended_count(&app, &pairs),
            2,
            "the hour's allowance, and no more"
        );
        let text = app.metrics_text().await;
        assert_eq!(metric(&text, "bridge_suspension_guard_active", &[]), 1.0);
    }
    let report = run_reconcile(&app.engine, FORCE)
        .await
        .expect("forced pass");
    assert!(!report.guarded);
    assert_eq!(suspended_count(&app, &pairs), 3);
    let text = app.metrics_text().await;
    assert_eq!(metric(&text, "bridge_suspension_guard_active", &[]), 0.0);
}

#[tokio::test]
async fn nothing_changes_for_someone_who_sets_neither() {
    let (authentik, outline) = start_fakes().await;
    let jane = authentik.add_user("jane", "Jane", "jane@example.com");
    let admins = authentik.add_group("outline-admins");
    let ojane = outline.add_user_with("Jane", "jane@example.com", "viewer", false);
    let app = spawn_app_with(authentik, outline, |_| {}).await;
    app.wire_authentik_webhook();
    app.authentik.add_member(&admins, jane);
    app.authentik.set_active(jane, false);
    app.settle_deliveries().await;
    assert_eq!(app.outline.role_of(&ojane).as_deref(), Some("viewer"));
    assert!(!app.outline.is_suspended(&ojane));
    for call in ["users.update_role", "users.suspend", "events.list"] {
        assert_eq!(app.outline.count_calls(call), 0, "{call}");
    }
}

/// With `STATE_DIR`, whom the bridge suspended survives a restart (here a SIGKILL): the new process still
/// activates the person when Authentik re-activates them. Without it, the new process leaves them suspended,
/// as the README says.
#[tokio::test]
async fn the_record_of_bridge_suspensions_survives_a_restart_only_with_state_file() {
    let (authentik, outline) = start_fakes().await;
    let jane = authentik.add_user("jane", "Jane", "jane@example.com");
    let bob = authentik.add_user("bob", "Bob", "bob@example.com");
    let ojane = outline.add_user("Jane", "jane@example.com");
    let obob = outline.add_user("Bob", "bob@example.com");
    let state = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    std::fs::create_dir_all(&state).expect("state dir");
    let state_str = state.to_string_lossy().to_string();
    let http = reqwest::Client::new();
    let wire = |p: &BridgeProcess| {
        authentik.set_webhook(
            Some(format!("{}/webhooks/authentik", p.url)),
            Some(AUTHENTIK_WEBHOOK_TOKEN.to_string()),
        )
    };

    let with_file = [
        ("SUSPEND_DEACTIVATED", "true"),
        ("STATE_DIR", state_str.as_str()),
    ];
    let mut first = BridgeProcess::start(&authentik, &outline, "record-1", &with_file);
    first.wait_reconciled(&http).await;
    wire(&first);
    authentik.set_active(jane, false);
    // The record is written right after Outline confirms the suspension; a crash between the two leaves
    // jane suspended for good, never activated wrongly.
    eventually_async(
        "jane suspended and recorded",
        Duration::from_secs(10),
        || async {
            outline.is_suspended(&ojane)
                && stored_document(&state, "suspended-by-bridge")
                    .await
                    .to_string()
                    .contains(ojane.as_str())
        },
    )
    .await;
    first.kill_9();

    let mut second = BridgeProcess::start(&authentik, &outline, "record-2", &with_file);
    second.wait_reconciled(&http).await;
    wire(&second);
    authentik.set_active(jane, true);
    eventually(
        "jane activated after the restart",
        Duration::from_secs(10),
        || !outline.is_suspended(&ojane),
    )
    .await;

    // Without STATE_DIR the record is the process's own: the next one does not know it.
    second.kill_9();
    let in_memory = [("SUSPEND_DEACTIVATED", "true")];
    let mut third = BridgeProcess::start(&authentik, &outline, "record-3", &in_memory);
    third.wait_reconciled(&http).await;
    wire(&third);
    authentik.set_active(bob, false);
    eventually("bob suspended", Duration::from_secs(10), || {
        outline.is_suspended(&obob)
    })
    .await;
    third.kill_9();
    let mut fourth = BridgeProcess::start(&authentik, &outline, "record-4", &in_memory);
    fourth.wait_reconciled(&http).await;
    wire(&fourth);
    let user_jobs = |text: &str| {
        metric(
            text,
            "bridge_jobs_total",
            &[("sink", "outline"), ("kind", "user"), ("result", "ok")],
        )
    };
    let before = user_jobs(&fourth.metrics(&http).await);
    authentik.set_active(bob, true);
    let started = std::time::Instant::now();
    let text = loop {
        let text = fourth.metrics(&http).await;
        if user_jobs(&text) > before {
            break text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the re-activation was not handled\n{}",
            fourth.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        outline.is_suspended(&obob),
        "without STATE_DIR a restart forgets: bob stays suspended\n{}",
        fourth.log_tail()
    );
    assert_eq!(
        metric(
            &text,
            "bridge_account_changes_total",
            &[("change", "activate")]
        ),
        0.0
    );
    let _ = std::fs::remove_dir_all(&state);
}

/// A sign-in converges the person's role too, without any group event: here the webhook from Authentik is
/// lost (not wired), and the signed `users.signin` alone makes jane an admin.
#[tokio::test]
async fn a_sign_in_sets_the_role_the_groups_give() {
    let (authentik, outline) = start_fakes().await;
    let jane = authentik.add_user("jane", "Jane", "jane@example.com");
    let admins = authentik.add_group("outline-admins");
    let ojane = outline.add_user("Jane", "jane@example.com");
    let app = spawn_app_with(authentik, outline, |s| {
        s.reconcile_interval = None;
        roles(s);
    })
    .await;
    app.authentik.add_member(&admins, jane);
    assert_eq!(app.outline.role_of(&ojane).as_deref(), Some("member"));
    let resp = app.signin(&ojane).await;
    assert_eq!(resp.status().as_u16(), 202);
    app.settle().await;
    assert_eq!(app.outline.role_of(&ojane).as_deref(), Some("admin"));
}

/// A change to the admin group reads the mapped groups and short Outline listings, not both directories:
/// with 300 other people on each side, the promotion and the demotion cost no listing of everyone.
#[tokio::test]
async fn a_role_change_reads_the_mapped_groups_not_the_whole_directory() {
    let (authentik, outline) = start_fakes().await;
    for i in 0..300 {
        let email = format!("p{i:03}@example.com");
        authentik.add_user(&format!("p{i:03}"), "P", &email);
        outline.add_user("P", &email);
    }
    let jane = authentik.add_user("jane", "Jane", "jane@example.com");
    let admins = authentik.add_group("outline-admins");
    let ojane = outline.add_user("Jane", "jane@example.com");
    let app = spawn_app_with(authentik, outline, |s| {
        s.reconcile_interval = None;
        roles(s);
    })
    .await;
    app.wire_authentik_webhook();
    app.outline.clear_calls();
    // A listing of Authentik's users is one without an exact filter (`email=`, `username=`) or a search.
    let directory_listings = |app: &TestApp| {
        app.authentik
            .calls()
            .iter()
            .filter(|c| {
                c.path == "/api/v3/core/users/"
                    && !c.query.contains("email=")
                    && !c.query.contains("search=")
                    && !c.query.contains("username=")
            })
            .count()
    };
    let listings_before = directory_listings(&app);

    app.authentik.add_member(&admins, jane);
    eventually("jane is an admin", Duration::from_secs(5), || {
        app.outline.role_of(&ojane).as_deref() == Some("admin")
    })
    .await;
    app.authentik.remove_member(&admins, jane);
    eventually("jane is a member again", Duration::from_secs(5), || {
        app.outline.role_of(&ojane).as_deref() == Some("member")
    })
    .await;
    app.settle_deliveries().await;
    let listed_everyone = app
        .outline
        .calls()
        .iter()
        .filter(|c| {
            c.method == "users.list"
                && c.body.get("ids").is_none()
                && c.body.get("role").is_none()
                && c.body.get("query").is_none()
                && c.body.get("limit").and_then(|l| l.as_u64()) != Some(1)
        })
        .count();
    assert_eq!(listed_everyone, 0, "no full listing of Outline's users");
    assert_eq!(
        directory_listings(&app),
        listings_before,
        "look-ups of the people concerned, no listing of Authentik's users"
    );
}

/// Pushes draw on an hourly allowance of `MAX_SUSPENSIONS`: four deactivations at once with a limit of two
/// suspend two, hold the rest with the guard's gauge up, and `reconcile --force` suspends the others.
#[tokio::test]
async fn pushed_suspensions_keep_to_max_suspensions_an_hour() {
    let (authentik, outline) = start_fakes().await;
    let people = people_on_both_sides(&authentik, &outline, 4);
    let app = spawn_app_with(authentik, outline, |s| {
        s.reconcile_interval = None;
        offboarding(s);
        s.max_suspensions = 2;
    })
    .await;
    app.wire_authentik_webhook();
    for (pk, _) in &people {
        app.authentik.set_active(*pk, false);
    }
    app.settle_deliveries().await;
    assert_eq!(
        suspended_count(&app, &people),
        2,
        "two of four within the hour's allowance"
    );
    let text = app.metrics_text().await;
    assert_eq!(metric(&text, "bridge_suspension_guard_active", &[]), 1.0);
    assert!(metric(&text, "bridge_suspension_guard_tripped_total", &[]) >= 1.0);

    run_reconcile(&app.engine, FORCE)
        .await
        .expect("forced pass");
    assert!(people.iter().all(|(_, o)| app.outline.is_suspended(o)));
}

/// Two Authentik users with one email, one active and one not, created in either order: neither the pass
/// nor a push of the namesake's deactivation suspends the active person or takes her groups away.
#[tokio::test]
async fn a_shared_email_never_suspends_the_active_person() {
    for inactive_first in [false, true] {
        let (authentik, outline) = start_fakes().await;
        let docs = authentik.add_group("Docs");
        let odocs = outline.add_group("Docs", None);
        let add = |username: &str| authentik.add_user(username, "Jane", "jane@example.com");
        let (jane, old) = if inactive_first {
            let old = add("jane-old");
            (add("jane"), old)
        } else {
            let jane = add("jane");
            (jane, add("jane-old"))
        };
        authentik.add_member(&docs, jane);
        let ojane = outline.add_user("Jane", "jane@example.com");
        outline.add_member(&odocs, &ojane, "member");
        let app = spawn_app_with(authentik, outline, |s| {
            s.reconcile_interval = None;
            offboarding(s);
        })
        .await;
        app.wire_authentik_webhook();
        app.authentik.set_active(old, false);
        app.settle_deliveries().await;
        run_reconcile(&app.engine, ReconcileOptions::default())
            .await
            .expect("pass");
        assert!(
            !app.outline.is_suspended(&ojane),
            "inactive first: {inactive_first}"
        );
        assert_eq!(app.outline.count_calls("users.suspend"), 0);
        assert!(
            app.outline.members(&odocs).contains_key(&ojane),
            "still in Docs"
        );
    }
}

/// Deleting the admin group in Authentik takes the role it gave away on push.
#[tokio::test]
async fn deleting_a_mapped_group_takes_its_role_away() {
    let (authentik, outline) = start_fakes().await;
    let jane = authentik.add_user("jane", "Jane", "jane@example.com");
    let admins = authentik.add_group("outline-admins");
    authentik.add_member(&admins, jane);
    let ojane = outline.add_user("Jane", "jane@example.com");
    outline.add_user_with("Ada", "ada@example.com", "admin", false);
    let app = spawn_app_with(authentik, outline, |s| {
        s.reconcile_interval = None;
        s.group_filter = Some(regex::Regex::new("(?i)^wiki-").expect("regex"));
        roles(s);
    })
    .await;
    assert_eq!(app.outline.role_of(&ojane).as_deref(), Some("admin"));
    app.wire_authentik_webhook();
    app.authentik.delete_group(&admins);
    eventually("jane is a member again", Duration::from_secs(5), || {
        app.outline.role_of(&ojane).as_deref() == Some("member")
    })
    .await;
}

/// With `MEMBERSHIP=inherited`, joining a group below `outline-admins` (itself not synced) makes an admin on
/// push, as the pass would.
#[tokio::test]
async fn inherited_a_group_below_the_admin_group_gives_its_role_on_push() {
    let (authentik, outline) = start_fakes().await;
    let jane = authentik.add_user("jane", "Jane", "jane@example.com");
    let admins = authentik.add_group("outline-admins");
    let eu = authentik.add_group_with("admins-eu", false, std::slice::from_ref(&admins));
    let ojane = outline.add_user("Jane", "jane@example.com");
    let app = spawn_app_with(authentik, outline, |s| {
        s.reconcile_interval = None;
        s.membership = authentik_bridge::configuration::MembershipMode::Inherited;
        s.group_filter = Some(regex::Regex::new("(?i)^wiki-").expect("regex"));
        roles(s);
    })
    .await;
    app.wire_authentik_webhook();
    app.authentik.add_member(&eu, jane);
    eventually("jane is an admin", Duration::from_secs(5), || {
        app.outline.role_of(&ojane).as_deref() == Some("admin")
    })
    .await;
    app.authentik.remove_member(&eu, jane);
    eventually("jane is a member again", Duration::from_secs(5), || {
        app.outline.role_of(&ojane).as_deref() == Some("member")
    })
    .await;
}

/// Deleting or renaming the admin group revokes admin rights on push whatever the catalog cache holds: here
/// it expires at once (`CACHE_TTL` of a millisecond), as it does for ten minutes in every fifteen with the
/// defaults, and no group filter is set, so the deleted group is also a synced one.
#[tokio::test]
async fn deleting_or_renaming_the_admin_group_revokes_the_role_whatever_the_cache_holds() {
    for rename in [false, true] {
        let (authentik, outline) = start_fakes().await;
        let jane = authentik.add_user("jane", "Jane", "jane@example.com");
        let admins = authentik.add_group("outline-admins");
        authentik.add_member(&admins, jane);
        let ojane = outline.add_user("Jane", "jane@example.com");
        outline.add_user_with("Ada", "ada@example.com", "admin", false);
        let app = spawn_app_with(authentik, outline, |s| {
            s.reconcile_interval = None;
            s.cache_ttl = Duration::from_millis(1);
            roles(s);
        })
        .await;
        assert_eq!(app.outline.role_of(&ojane).as_deref(), Some("admin"));
        app.wire_authentik_webhook();
        if rename {
            // Still a synced group under its new name: its group job runs, and the role must go too.
            app.authentik.rename_group(&admins, "former-admins");
        } else {
            app.authentik.delete_group(&admins);
        }
        eventually(
            &format!("jane is a member again (rename: {rename})"),
            Duration::from_secs(5),
            || app.outline.role_of(&ojane).as_deref() == Some("member"),
        )
        .await;
    }
}

/// The hour's allowance is shared by pushes and passes: six deactivations pushed with `MAX_SUSPENSIONS=3`
/// suspend three, and the next pass does not suspend the other three behind the guard's back. The gauge stays
/// up until `reconcile --force`.
#[tokio::test]
async fn a_pass_never_makes_the_suspensions_the_hours_guard_held_back() {
    let (authentik, outline) = start_fakes().await;
    let people = people_on_both_sides(&authentik, &outline, 6);
    let app = spawn_app_with(authentik, outline, |s| {
        s.reconcile_interval = None;
        offboarding(s);
        s.max_suspensions = 3;
    })
    .await;
    app.wire_authentik_webhook();
    for (pk, _) in &people {
        app.authentik.set_active(*pk, false);
    }
    app.settle_deliveries().await;
    assert_eq!(suspended_count(&app, &people), 3);
    let report = run_reconcile(&app.engine, ReconcileOptions::default())
        .await
        .expect("pass");
    assert!(report.guarded);
    assert_eq!(
        suspended_count(&app, &people),
        3,
        "the pass kept to the guard"
    );
    let text = app.metrics_text().await;
    assert_eq!(metric(&text, "bridge_suspension_guard_active", &[]), 1.0);

    // One of the held people is active again: they no longer wait.
    app.authentik.set_active(people[5].0, true);
    app.settle_deliveries().await;
    run_reconcile(&app.engine, FORCE)
        .await
        .expect("forced pass");
    assert_eq!(suspended_count(&app, &people), 5);
    assert!(!app.outline.is_suspended(&people[5].1));
    let text = app.metrics_text().await;
    assert_eq!(metric(&text, "bridge_suspension_guard_active", &[]), 0.0);
}

/// The race that the change clock closes for memberships, on accounts: a pass plans 30 promotions, a
/// demotion and a suspension from one read, with Outline answering in 60 ms. Right after its first role
/// change, pushes remove two of the 30 from the admin group, put the one it would demote back in, and
/// re-activate the one it would suspend. Every pushed change stands once the pass and its hand-overs are done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_never_undoes_role_or_suspension_changes_pushed_while_it_runs() {
    let (authentik, outline) = start_fakes().await;
    let admins = authentik.add_group("outline-admins");
    let mut people = Vec::new();
    for i in 0..30 {
        let email = format!("p{i:02}@example.com");
        let pk = authentik.add_user(&format!("p{i:02}"), "P", &email);
        people.push((pk, outline.add_user("P", &email)));
    }
    let xavier = authentik.add_user("xavier", "Xavier", "xavier@example.com");
    authentik.add_member(&admins, xavier);
    let oxavier = outline.add_user_with("Xavier", "xavier@example.com", "admin", false);
    let yara = authentik.add_user("yara", "Yara", "yara@example.com");
    let oyara = outline.add_user("Yara", "yara@example.com");
    let ada = authentik.add_user("ada", "Ada", "ada@example.com");
    authentik.add_member(&admins, ada);
    outline.add_user_with("Ada", "ada@example.com", "admin", false);
    outline.set_rate_limit(1_000_000, Duration::from_secs(60));
    let app = spawn_app_with(authentik, outline, |s| {
        s.reconcile_interval = None;
        s.outline_rate_limit.requests = 1_000_000;
        s.max_removals = 100;
        roles(s);
        offboarding(s);
    })
    .await;
    assert_eq!(app.outline.role_of(&oxavier).as_deref(), Some("admin"));
    // Unseen by the bridge (no webhook yet): what the next pass reads.
    app.authentik.remove_member(&admins, xavier);
    for (pk, _) in &people {
        app.authentik.add_member(&admins, *pk);
    }
    app.authentik.set_active(yara, false);
    app.wire_authentik_webhook();
    app.outline.set_latency(Duration::from_millis(60));
    app.outline.clear_calls();
    app.queue
        .submit(authentik_bridge::runtime::JobKey::Reconcile)
        .expect("queued");
    eventually(
        "the pass has made its first role change",
        Duration::from_secs(20),
        || app.outline.count_calls("users.update_role") >= 1,
    )
    .await;
    let (late, early) = (&people[28..], &people[..28]);
    for (pk, _) in late {
        app.authentik.remove_member(&admins, *pk);
    }
    app.authentik.add_member(&admins, xavier);
    app.authentik.set_active(yara, true);
    let changes_at_push = app.outline.count_calls("users.update_role");
    app.settle_deliveries().await;
    assert!(
        changes_at_push < 20,
        "pushed while the pass was still writing ({changes_at_push} role changes made)"
    );
    let mut undone = Vec::new();
    for (i, (_, o)) in late.iter().enumerate() {
        if app.outline.role_of(o).as_deref() != Some("member") {
            undone.push(format!("p{} promoted after leaving", 28 + i));
        }
    }
    if app.outline.role_of(&oxavier).as_deref() != Some("admin") {
        undone.push("xavier demoted after joining".into());
    }
    if app.outline.is_suspended(&oyara) {
        undone.push("yara suspended after her re-activation".into());
    }
    assert!(undone.is_empty(), "pushed changes undone: {undone:?}");
    assert!(
        early
            .iter()
            .all(|(_, o)| app.outline.role_of(o).as_deref() == Some("admin")),
        "the pass's other promotions were made"
    );
}

/// With `STATE_DIR` the hour's suspensions are counted across a restart (here `kill -9`): three pushed
/// suspensions with `MAX_SUSPENSIONS=3`, a restart, and a fourth deactivation is held, not made.
#[tokio::test]
async fn the_hours_suspensions_are_counted_across_a_restart_with_state_dir() {
    let (authentik, outline) = start_fakes().await;
    let people = people_on_both_sides(&authentik, &outline, 4);
    let state = scratch_state_dir("window");
    let state_str = state.to_string_lossy().to_string();
    let env = [
        ("SUSPEND_DEACTIVATED", "true"),
        ("MAX_SUSPENSIONS", "3"),
        ("STATE_DIR", state_str.as_str()),
    ];
    let http = reqwest::Client::new();
    let wire = |p: &BridgeProcess| {
        authentik.set_webhook(
            Some(format!("{}/webhooks/authentik", p.url)),
            Some(AUTHENTIK_WEBHOOK_TOKEN.to_string()),
        )
    };
    let mut first = BridgeProcess::start(&authentik, &outline, "window-1", &env);
    first.wait_reconciled(&http).await;
    wire(&first);
    for (pk, _) in &people[..3] {
        authentik.set_active(*pk, false);
    }
    eventually("three suspended", Duration::from_secs(10), || {
        people[..3].iter().all(|(_, o)| outline.is_suspended(o))
    })
    .await;
    first.kill_9();

    let mut second = BridgeProcess::start(&authentik, &outline, "window-2", &env);
    second.wait_reconciled(&http).await;
    wire(&second);
    authentik.set_active(people[3].0, false);
    let started = std::time::Instant::now();
    loop {
        let text = second.metrics(&http).await;
        if metric(&text, "bridge_suspension_guard_active", &[]) == 1.0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the fourth was not held\n{}",
            second.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!outline.is_suspended(&people[3].1), "held, not suspended");
    second.kill_9();
    let _ = std::fs::remove_dir_all(&state);
}

/// Settings that cannot demote the wrong people: a `ROLE_MAP` naming a group Authentik does not have (a typo)
/// lowers nobody, even forced; a map that is new, or changed since it was last applied, takes admin rights
/// from nobody without `--force`; and with `STATE_DIR` the applied map is remembered across a restart.
#[tokio::test]
async fn a_missing_mapped_group_or_a_changed_map_demotes_nobody_without_force() {
    let (authentik, outline) = start_fakes().await;
    let admins = authentik.add_group("outline-admins");
    let bob = authentik.add_user("bob", "Bob", "bob@example.com");
    authentik.add_member(&admins, bob);
    authentik.add_user("carol", "Carol", "carol@example.com");
    outline.add_user("Bob", "bob@example.com");
    let ocarol = outline.add_user_with("Carol", "carol@example.com", "admin", false);
    let state = scratch_state_dir("role-map");
    let engine_with = |map: &str| {
        let mut s = settings_for(&authentik, &outline);
        s.role_map = Some(RoleMap::parse(map, "member").expect("parses"));
        s.state_dir = Some(state.clone());
        async move {
            authentik_bridge::app::startup::build_engine(
                &s,
                std::sync::Arc::new(authentik_bridge::metrics::Metrics::new()),
            )
            .await
            .expect("engine")
        }
    };
    let pass = ReconcileOptions::default();
    let force = FORCE;
    let carol_role = || outline.role_of(&ocarol);

    // A typo: no group is called `outline-admin`. Nobody is lowered, not even by --force.
    let typo = engine_with("outline-admin=admin").await;
    run_reconcile(&typo, force).await.expect("pass");
    assert_eq!(
        carol_role().as_deref(),
        Some("admin"),
        "kept: missing group"
    );

    // The right map, first applied: held without --force, made with it.
    let right = engine_with("outline-admins=admin").await;
    let report = run_reconcile(&right, pass).await.expect("pass");
    assert!(report.guarded);
    assert_eq!(carol_role().as_deref(), Some("admin"), "held: a new map");
    assert_eq!(
        report.hold_reasons(),
        BTreeSet::from([HoldReason::RoleMapNotApplied]),
        "held by the new map, not by MAX_REMOVALS"
    );
    let text = render_reconcile(&report);
    assert!(
        text.contains("would set role admin -> member for carol@example.com")
            && text.contains("(held back)"),
        "{text}"
    );
    run_reconcile(&right, force).await.expect("forced pass");
    assert_eq!(carol_role().as_deref(), Some("member"));

    // A restart with the same map: remembered in STATE_DIR, so no --force is needed.
    outline.set_role(&ocarol, "admin");
    let restarted = engine_with("outline-admins=admin").await;
    let report = run_reconcile(&restarted, pass).await.expect("pass");
    assert!(!report.guarded);
    assert_eq!(carol_role().as_deref(), Some("member"));

    // The map changes: held again.
    authentik.add_group("outline-readers");
    outline.set_role(&ocarol, "admin");
    let changed = engine_with("outline-admins=admin,outline-readers=viewer").await;
    let report = run_reconcile(&changed, pass).await.expect("pass");
    assert!(report.guarded);
    assert_eq!(
        carol_role().as_deref(),
        Some("admin"),
        "held: a changed map"
    );
    let _ = std::fs::remove_dir_all(&state);
}
