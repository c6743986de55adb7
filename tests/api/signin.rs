//! Outline `users.signin` → the user's Outline groups follow Authentik.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::helpers::*;
use upstream_fakes::outline_signature;

/// Every reject path answers its 4xx with a one-line reason and calls no upstream.
#[tokio::test]
async fn bad_requests_are_refused_without_upstream_calls() {
    let app = spawn_app().await;
    let jane = app.outline.add_user("Jane", "jane@example.com");
    app.settle().await;
    app.outline.clear_calls();
    app.authentik.clear_calls();
    let body = app.outline.signin_delivery(&jane);

    let cases: Vec<(&str, Option<String>, String, u16)> = vec![
        ("missing signature", None, body.clone(), 401),
        (
            "malformed signature",
            Some("t=abc,s=zz".into()),
            body.clone(),
            401,
        ),
        (
            "wrong secret",
            Some(outline_signature("ol_whs_other", now_ms(), body.as_bytes())),
            body.clone(),
            401,
        ),
        (
            "signature over other bytes",
            Some(outline_signature(OUTLINE_SECRET, now_ms(), b"{}")),
            body.clone(),
            401,
        ),
        (
            "stale signature",
            Some(outline_signature(
                OUTLINE_SECRET,
                now_ms() - 6 * 60 * 1000,
                body.as_bytes(),
            )),
            body.clone(),
            401,
        ),
        (
            "future signature",
            Some(outline_signature(
                OUTLINE_SECRET,
                now_ms() + 6 * 60 * 1000,
                body.as_bytes(),
            )),
            body.clone(),
            401,
        ),
        (
            "malformed JSON",
            Some(outline_signature(OUTLINE_SECRET, now_ms(), b"{not json")),
            "{not json".into(),
            400,
        ),
    ];
    for (what, sig, body, status) in cases {
        let resp = app.post_outline("/sync", &body, sig).await;
        assert_eq!(resp.status().as_u16(), status, "{what}");
        let text = resp.text().await.expect("body");
        assert!(
            text.contains("error") && !text.contains('\n'),
            "{what}: one-line reason, got {text}"
        );
    }
    let big = "x".repeat(1024 * 1024 + 1);
    let resp = app
        .post_outline(
            "/sync",
            &big,
            Some(outline_signature(OUTLINE_SECRET, now_ms(), big.as_bytes())),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 413);

    let other = r#"{"id":"d","event":"documents.create","payload":{"id":"x"}}"#;
    let resp = app
        .post_outline(
            "/webhooks/outline",
            other,
            Some(outline_signature(
                OUTLINE_SECRET,
                now_ms(),
                other.as_bytes(),
            )),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 202);
    app.settle().await;
    assert!(
        app.outline.calls().is_empty(),
        "no Outline call for refused requests: {:?}",
        app.outline.calls()
    );
    assert!(
        app.authentik.calls().is_empty(),
        "no Authentik call for refused requests"
    );
}

/// The core path: adds, removes, links by name without case, never touches unlinked groups, and keeps a
/// group admin's permission.
#[tokio::test]
async fn signin_converges_the_users_groups() {
    let (authentik, outline) = start_fakes().await;
    let ak_jane = authentik.add_user("jane", "Jane Doe", "jane@example.com");
    let eng = authentik.add_group("Engineering");
    let docs = authentik.add_group("Docs");
    let _ops = authentik.add_group("Ops");
    authentik.add_member(&eng, ak_jane);
    authentik.add_member(&docs, ak_jane);

    let app = spawn_app_with(authentik, outline, |s| s.auto_create_groups = false).await;
    let jane = app.outline.add_user("Jane Doe", "jane@example.com");
    let og_eng = app.outline.add_group("engineering", None); // linked by name, case-insensitively
    let og_docs = app.outline.add_group("Docs", None);
    let og_ops = app.outline.add_group("Ops", None);
    let og_private = app.outline.add_group("Book club", None); // links to no Authentik group
    app.outline.add_member(&og_docs, &jane, "admin");
    app.outline.add_member(&og_ops, &jane, "member");
    app.outline.add_member(&og_private, &jane, "member");

    let resp = app.signin(&jane).await;
    assert_eq!(resp.status().as_u16(), 202);
    app.settle().await;

    assert_eq!(
        app.outline.members(&og_eng).get(&jane).map(String::as_str),
        Some("member")
    );
    assert_eq!(
        app.outline.members(&og_docs).get(&jane).map(String::as_str),
        Some("admin"),
        "group admin kept"
    );
    assert!(
        !app.outline.members(&og_ops).contains_key(&jane),
        "removed from Ops"
    );
    assert!(
        app.outline.members(&og_private).contains_key(&jane),
        "unlinked group untouched"
    );
    let eng_group = app
        .outline
        .groups()
        .into_iter()
        .find(|g| g.id == og_eng)
        .expect("group");
    assert_eq!(
        eng_group.external_id.as_deref(),
        Some(eng.as_str()),
        "externalId written on link by name"
    );
    let adds_to_docs = app
        .outline
        .calls()
        .iter()
        .filter(|c| c.method == "groups.add_user" && c.body["id"] == og_docs.as_str())
        .count();
    assert_eq!(adds_to_docs, 0, "never re-adds an existing member");
}

#[tokio::test]
async fn mixed_case_emails_match() {
    let (authentik, outline) = start_fakes().await;
    let ak = authentik.add_user("bob", "Bob", "bob.mixed@example.com");
    let g = authentik.add_group("Editors");
    authentik.add_member(&g, ak);
    let app = spawn_app_with(authentik, outline, |s| s.auto_create_groups = true).await;
    let bob = app.outline.add_user("Bob", "Bob.Mixed@Example.com");
    let resp = app.signin(&bob).await;
    assert_eq!(resp.status().as_u16(), 202);
    app.settle().await;
    let editors = app
        .outline
        .group_by_name("editors")
        .expect("Editors created");
    assert!(app.outline.members(&editors.id).contains_key(&bob));
}

#[tokio::test]
async fn an_unknown_authentik_user_keeps_their_groups() {
    let app = spawn_app().await;
    let local = app.outline.add_user("Local", "local@example.com");
    let og = app.outline.add_group("Local only", None);
    app.outline.add_member(&og, &local, "member");
    app.signin(&local).await;
    app.settle().await;
    assert!(app.outline.members(&og).contains_key(&local));
    assert_eq!(app.outline.count_calls("groups.remove_user"), 0);
}

/// Auto-create, where the bridge's cached group index has not seen a group that was created by hand with a
/// case-different name: the create fails with 400 and the existing group is linked instead.
#[tokio::test]
async fn auto_create_links_on_a_case_different_name_clash() {
    let (authentik, outline) = start_fakes().await;
    let ak = authentik.add_user("jane", "Jane", "jane@example.com");
    let g = authentik.add_group("Design");
    authentik.add_member(&g, ak);
    let app = spawn_app_with(authentik, outline, |s| s.auto_create_groups = true).await;
    // The start-up reconcile found no Outline user for jane, so it created nothing; now her account exists
    // and someone creates "DESIGN" by hand after the bridge cached the group list.
    let jane = app.outline.add_user("Jane", "jane@example.com");
    let by_hand = app.outline.add_group("DESIGN", None);
    app.signin(&jane).await;
    app.settle().await;
    assert!(app.outline.members(&by_hand).contains_key(&jane));
    assert_eq!(
        app.outline
            .groups()
            .iter()
            .filter(|g| g.name.eq_ignore_ascii_case("design"))
            .count(),
        1,
        "no duplicate group"
    );
    let linked = app
        .outline
        .groups()
        .into_iter()
        .find(|g| g.id == by_hand)
        .expect("group");
    assert_eq!(linked.external_id.as_deref(), Some(g.as_str()));
}

/// Authentik down during a sign-in: nothing is removed; the job retries and converges once it is back.
#[tokio::test]
async fn authentik_outage_removes_nothing_then_converges() {
    let (authentik, outline) = start_fakes().await;
    let ak = authentik.add_user("jane", "Jane", "jane@example.com");
    let keep = authentik.add_group("Keep");
    let _drop = authentik.add_group("Drop");
    authentik.add_member(&keep, ak);
    let app = spawn_app_with(authentik, outline, |_| {}).await;
    let jane = app.outline.add_user("Jane", "jane@example.com");
    let og_keep = app.outline.add_group("Keep", None);
    let og_drop = app.outline.add_group("Drop", None);
    app.outline.add_member(&og_drop, &jane, "member");

    app.authentik.set_down(true);
    assert_eq!(app.signin(&jane).await.status().as_u16(), 202);
    eventually(
        "the job has tried Authentik",
        Duration::from_secs(10),
        || app.authentik.calls().iter().any(|c| c.status >= 500),
    )
    .await;
    assert_eq!(
        app.outline.count_calls("groups.remove_user"),
        0,
        "no removal while Authentik is down"
    );
    assert!(app.outline.members(&og_drop).contains_key(&jane));

    app.authentik.set_down(false);
    app.settle().await;
    assert!(app.outline.members(&og_keep).contains_key(&jane));
    assert!(!app.outline.members(&og_drop).contains_key(&jane));
}

/// Outline throttles hard (a window far below the bridge's setting): Retry-After is honoured and nothing
/// is lost.
#[tokio::test]
async fn a_429_storm_loses_nothing() {
    let (authentik, outline) = start_fakes().await;
    let g = authentik.add_group("Storm");
    let mut emails = Vec::new();
    for i in 0..12 {
        let email = format!("user{i}@example.com");
        let pk = authentik.add_user(&format!("user{i}"), "User", &email);
        authentik.add_member(&g, pk);
        emails.push(email);
    }
    let app = spawn_app_with(authentik, outline, |_| {}).await;
    let og = app.outline.add_group("Storm", None);
    let ids: Vec<String> = emails
        .iter()
        .map(|e| app.outline.add_user("User", e))
        .collect();
    app.outline.set_rate_limit(5, Duration::from_millis(300));
    for id in &ids {
        assert_eq!(app.signin(id).await.status().as_u16(), 202);
    }
    app.settle().await;
    let members: BTreeSet<String> = app.outline.members(&og).into_keys().collect();
    assert_eq!(members, ids.iter().cloned().collect::<BTreeSet<_>>());
    assert!(app.outline.throttled_count() > 0, "the storm did throttle");
}

/// 300 users in 40 groups, with drift on both sides made after start-up, all converge through sign-ins.
#[tokio::test]
async fn three_hundred_users_in_forty_groups_converge() {
    let (authentik, outline) = start_fakes().await;
    let groups: Vec<String> = (0..40)
        .map(|i| authentik.add_group(&format!("team-{i:02}")))
        .collect();
    let mut people = Vec::new();
    for u in 0..300usize {
        let email = format!("person{u}@example.com");
        let pk = authentik.add_user(&format!("person{u}"), &format!("Person {u}"), &email);
        people.push((pk, email));
    }
    // Generous limits: this test is about convergence, not about pacing (that is measured in benches/).
    outline.set_rate_limit(100_000, Duration::from_secs(60));
    let app = spawn_app_with(authentik, outline, |s| {
        s.auto_create_groups = false;
        s.outline_rate_limit = authentik_bridge::configuration::RateLimit {
            requests: 100_000,
            window: Duration::from_secs(60),
        };
    })
    .await;
    let ogs: Vec<String> = (0..40)
        .map(|i| app.outline.add_group(&format!("Team-{i:02}"), None))
        .collect();
    let mut expected = vec![BTreeSet::new(); 40];
    let mut outline_ids = Vec::new();
    for (u, (pk, email)) in people.iter().enumerate() {
        let id = app.outline.add_user(&format!("Person {u}"), email);
        for g in 0..40 {
            // Deterministic spread: each person in about 3 groups, with Outline-side drift on others.
            if (u * 7 + g * 13) % 13 == 0 {
                app.authentik.add_member(&groups[g], *pk);
                expected[g].insert(id.clone());
            }
            if (u * 5 + g * 3) % 17 == 0 {
                app.outline.add_member(&ogs[g], &id, "member");
            }
        }
        outline_ids.push(id);
    }
    for id in &outline_ids {
        assert_eq!(app.signin(id).await.status().as_u16(), 202);
    }
    app.settle().await;
    for g in 0..40 {
        let members: BTreeSet<String> = app.outline.members(&ogs[g]).into_keys().collect();
        assert_eq!(members, expected[g], "team-{g:02}");
    }
}

/// A group webhook that never arrived must not hide a new group from a sign-in: the user's fresh group
/// list names it, so the cached catalog is read again (found on the real servers).
#[tokio::test]
async fn a_lost_group_event_does_not_hide_a_new_group() {
    let (authentik, outline) = start_fakes().await;
    let pk = authentik.add_user("jane", "Jane", "jane@example.com");
    let app = spawn_app_with(authentik, outline, |s| s.auto_create_groups = true).await;
    let jane = app.outline.add_user("Jane", "jane@example.com");
    // Created after start-up, with no webhook wired: the bridge's catalog does not know it.
    let late = app.authentik.add_group("Late team");
    app.authentik.add_member(&late, pk);
    app.signin(&jane).await;
    app.settle().await;
    let og = app
        .outline
        .group_by_name("Late team")
        .expect("created at sign-in");
    assert!(app.outline.members(&og.id).contains_key(&jane));
}
