//! `authentik-bridge demo`: the whole story in a minute, with nothing to set up.
//!
//! It starts the simulated Authentik and Outline servers (the `upstream-fakes` crate, the same stateful fakes
//! the tests use) on loopback, starts the real bridge against them, and plays nine steps (the last with a second bridge in SCIM mode), printing each as it
//! happens. The module and the fakes exist only with the `demo` cargo feature (on by default); production
//! builds (`--no-default-features`: the Docker image and the systemd steps) carry neither.

use std::net::TcpListener;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use upstream_fakes::{
    outline_signature, FakeAuthentik, FakeAuthentikOptions, FakeOpenFga, FakeOpenFgaOptions,
    FakeOutline, FakeOutlineOptions,
};

use crate::app::report::count;
use crate::app::startup::Application;
use crate::configuration::{OpenFgaSettings, RateLimit, Secret, Settings, UpstreamSettings};
use crate::runtime::ReconcileOptions;
use crate::sinks::outline::account_plan::RoleMap;
use crate::sinks::run_reconcile;

const SECRET: &str = "ol_whs_demo_secret";
const TOKEN: &str = "demo-webhook-token";
/// The demo's Outline allows 100 requests a second, and the bridge is told so, as an admin would copy
/// `RATE_LIMITER_REQUESTS` across.
const RATE: RateLimit = RateLimit {
    requests: 100,
    window: Duration::from_secs(1),
};
const BULK: usize = 200;

struct Step {
    name: &'static str,
    changed: String,
    took: Duration,
    ok: bool,
}

/// Polls until `cond` holds, for at most `limit`; returns how long it took, or `None` on time-out.
async fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn say(text: &str) {
    println!("{text}");
}

pub async fn run() -> ExitCode {
    match play().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn play() -> Result<bool, Box<dyn std::error::Error>> {
    say("authentik-bridge demo: simulated Authentik, Outline and OpenFGA on loopback, the real bridge between them.\n");
    let authentik = FakeAuthentik::start(FakeAuthentikOptions {
        latency: Duration::from_millis(2),
        ..FakeAuthentikOptions::default()
    })
    .await?;
    let outline = FakeOutline::start(FakeOutlineOptions {
        latency: Duration::from_millis(2),
        rate_limit_requests: RATE.requests,
        rate_limit_window: RATE.window,
        ..FakeOutlineOptions::default()
    })
    .await?;
    let openfga = FakeOpenFga::start(FakeOpenFgaOptions {
        latency: Duration::from_millis(2),
        ..FakeOpenFgaOptions::default()
    })
    .await?;

    // The directory before the bridge starts.
    let eng = authentik.add_group("Engineering");
    let docs = authentik.add_group("Docs");
    let admins = authentik.add_group("outline-admins");
    let jane_pk = authentik.add_user("jane", "Jane Doe", "jane@example.com");
    let bob_pk = authentik.add_user("bob", "Bob Stone", "Bob.Stone@example.com");
    let carol_pk = authentik.add_user("carol", "Carol Park", "carol@example.com");
    let dana_pk = authentik.add_user("dana", "Dana Lee", "dana@example.com");
    for (g, u) in [
        (&eng, jane_pk),
        (&eng, carol_pk),
        (&docs, carol_pk),
        (&eng, dana_pk),
        (&docs, dana_pk),
    ] {
        authentik.add_member(g, u);
    }
    let jane = outline.add_user("Jane Doe", "jane@example.com");
    let bob = outline.add_user("Bob Stone", "bob.stone@example.com");
    let carol = outline.add_user("Carol Park", "carol@example.com");
    let og_eng = outline.add_group("engineering", None);

    let mut settings = settings_for_fakes(&authentik, &outline, SECRET, TOKEN);
    settings.auto_create_groups = true;
    settings.outline_rate_limit = RATE;
    settings.max_removals = 500;
    settings.openfga = Some(openfga_settings_for_fake(&openfga));
    settings.role_map = RoleMap::parse("outline-admins=admin", "member").ok();
    settings.suspend_deactivated = true;
    // People are named by username in OpenFGA (the default), groups by their Authentik uuid.
    let member = |user: &str, group: &str| {
        (
            format!("user:{user}"),
            "member".to_string(),
            format!("group:{group}"),
        )
    };
    let has = |user: &str, group: &str| openfga.tuples().contains(&member(user, group));
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let app = Application::build_with_listener(settings, listener).await?;
    let bridge = format!("http://127.0.0.1:{}", app.port());
    let queue = app.queue();
    let engine = app.engine();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    authentik.set_webhook(
        Some(format!("{bridge}/webhooks/authentik")),
        Some(TOKEN.to_string()),
    );
    say(&format!(
        "simulated Authentik  {}\nsimulated Outline    {}\nsimulated OpenFGA    {}\nbridge               {bridge}\n",
        authentik.url(),
        outline.url(),
        openfga.url()
    ));
    let start = Instant::now();
    queue.wait_idle().await;
    say(&format!(
        "start-up reconcile: {} Outline groups linked or created, {} OpenFGA member tuples written, {:.0} ms\n",
        outline.groups().len(),
        openfga.tuples().len(),
        start.elapsed().as_secs_f64() * 1000.0
    ));

    let http = reqwest::Client::new();
    let mut steps = Vec::new();
    let limit = Duration::from_secs(10);

    // 1. Sign-in.
    say("1. Dana signs in to Outline for the first time; Outline posts a signed users.signin to /sync.");
    let dana = outline.add_user("Dana Lee", "dana@example.com");
    let body = outline.signin_delivery(&dana);
    let t = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let sent = Instant::now();
    let resp = http
        .post(format!("{bridge}/sync"))
        .header(
            "outline-signature",
            outline_signature(SECRET, t, body.as_bytes()),
        )
        .body(body)
        .send()
        .await?;
    let answered = sent.elapsed();
    let og_docs = || outline.group_by_name("Docs").map(|g| g.id);
    let took = wait_for(limit, || {
        outline.members(&og_eng).contains_key(&dana)
            && og_docs().is_some_and(|d| outline.members(&d).contains_key(&dana))
    })
    .await;
    say(&format!(
        "   the bridge answered {} in {:.1} ms (the HTTP answer only; the table below times the change until Outline matches); Dana is in Engineering and Docs (Docs was created).",
        resp.status(),
        answered.as_secs_f64() * 1000.0
    ));
    steps.push(Step {
        name: "sign-in",
        changed: "Dana +Engineering, +Docs (created)".into(),
        took: took.unwrap_or(limit),
        ok: took.is_some(),
    });

    // 2. Push: add.
    say("2. An admin adds Bob to Docs in Authentik; the blueprint's transport posts the event.");
    let t0 = Instant::now();
    authentik.add_member(&docs, bob_pk);
    let took = wait_for(limit, || {
        og_docs().is_some_and(|d| outline.members(&d).contains_key(&bob)) && has("bob", &docs)
    })
    .await
    .map(|_| t0.elapsed());
    say(&format!(
        "   Bob is in Outline's Docs, and user:bob member group:<Docs> is in OpenFGA, {:.0} ms after the change.",
        took.unwrap_or(limit).as_secs_f64() * 1000.0
    ));
    steps.push(Step {
        name: "push add",
        changed: "Bob +Docs / +1 tuple".into(),
        took: took.unwrap_or(limit),
        ok: took.is_some(),
    });

    // 3. Push: remove.
    say("3. An admin removes Jane from Engineering.");
    let t0 = Instant::now();
    authentik.remove_member(&eng, jane_pk);
    let took = wait_for(limit, || {
        !outline.members(&og_eng).contains_key(&jane) && !has("jane", &eng)
    })
    .await
    .map(|_| t0.elapsed());
    say(&format!(
        "   Jane left Outline's Engineering, and her tuple left OpenFGA, {:.0} ms after the change.",
        took.unwrap_or(limit).as_secs_f64() * 1000.0
    ));
    steps.push(Step {
        name: "push remove",
        changed: "Jane -Engineering / -1 tuple".into(),
        took: took.unwrap_or(limit),
        ok: took.is_some(),
    });

    // 4. Deletion.
    say("4. Carol's Authentik account is deleted (the event carries no email; the bridge remembers it).");
    let t0 = Instant::now();
    authentik.delete_user(carol_pk);
    let took = wait_for(limit, || {
        !outline.members(&og_eng).contains_key(&carol)
            && og_docs().is_some_and(|d| !outline.members(&d).contains_key(&carol))
            && !has("carol", &eng)
            && !has("carol", &docs)
    })
    .await
    .map(|_| t0.elapsed());
    say(&format!(
        "   Carol left every managed group, in Outline and in OpenFGA, {:.0} ms after the deletion.",
        took.unwrap_or(limit).as_secs_f64() * 1000.0
    ));
    steps.push(Step {
        name: "user deleted",
        changed: "Carol -Engineering, -Docs / -2 tuples".into(),
        took: took.unwrap_or(limit),
        ok: took.is_some(),
    });

    // 5. Promotion through a group (ROLE_MAP).
    say("5. An admin adds Bob to outline-admins in Authentik; ROLE_MAP makes that group's members Outline admins.");
    let t0 = Instant::now();
    authentik.add_member(&admins, bob_pk);
    let took = wait_for(limit, || outline.role_of(&bob).as_deref() == Some("admin"))
        .await
        .map(|_| t0.elapsed());
    say(&format!(
        "   Bob is an admin in Outline {:.0} ms after the change.",
        took.unwrap_or(limit).as_secs_f64() * 1000.0
    ));
    steps.push(Step {
        name: "promotion",
        changed: "Bob member -> admin".into(),
        took: took.unwrap_or(limit),
        ok: took.is_some(),
    });

    // 6. Suspension through deactivation (SUSPEND_DEACTIVATED).
    say("6. Dana is deactivated in Authentik; SUSPEND_DEACTIVATED suspends her Outline account.");
    let t0 = Instant::now();
    authentik.set_active(dana_pk, false);
    let took = wait_for(limit, || {
        outline.is_suspended(&dana) && !has("dana", &eng) && !has("dana", &docs)
    })
    .await
    .map(|_| t0.elapsed());
    say(&format!(
        "   Dana is suspended in Outline, and her tuples left OpenFGA, {:.0} ms after the change.",
        took.unwrap_or(limit).as_secs_f64() * 1000.0
    ));
    steps.push(Step {
        name: "suspension",
        changed: "Dana suspended / -2 tuples".into(),
        took: took.unwrap_or(limit),
        ok: took.is_some(),
    });

    // 7. Bulk.
    say(&format!("7. {BULK} people are added to a new group \"All-hands\" at once: {BULK} events, {BULK} Outline writes."));
    let all_hands = authentik.add_group("All-hands");
    let mut people = Vec::with_capacity(BULK);
    for i in 0..BULK {
        let email = format!("person{i:03}@example.com");
        people.push(authentik.add_user(&format!("person{i:03}"), &format!("Person {i}"), &email));
        outline.add_user(&format!("Person {i}"), &email);
    }
    queue.wait_idle().await;
    let throttled_before = outline.throttled_count();
    let t0 = Instant::now();
    for pk in people {
        authentik.add_member(&all_hands, pk);
    }
    let og_all = || outline.group_by_name("All-hands").map(|g| g.id);
    let took = wait_for(Duration::from_secs(60), || {
        og_all().is_some_and(|g| outline.members(&g).len() >= BULK)
    })
    .await
    .map(|_| t0.elapsed());
    let throttled = outline.throttled_count() - throttled_before;
    // The bound is the configured limit itself: N writes cannot go faster than Outline allows.
    let limit_per_second = f64::from(RATE.requests) / RATE.window.as_secs_f64();
    let bound = BULK as f64 / limit_per_second;
    let secs = took.unwrap_or(limit).as_secs_f64();
    say(&format!(
        "   {BULK} adds in {secs:.2} s; at this simulated Outline's limit of {limit_per_second:.0} requests/s they need {bound:.2} s: ratio {:.2}; Outline answered 429 {throttled} times.",
        secs / bound
    ));
    say(&format!(
        "   A real Outline allows 1000 requests per 60 s per client by default (RATE_LIMITER_REQUESTS, RATE_LIMITER_DURATION_WINDOW): the same {BULK} adds take about {:.0} s there, and the bridge paces itself to that (OUTLINE_RATE_LIMIT_REQUESTS, OUTLINE_RATE_LIMIT_WINDOW).",
        BULK as f64 * 60.0 / 1000.0
    ));
    steps.push(Step {
        name: "bulk add",
        changed: format!("{BULK} people +All-hands, {throttled} x 429"),
        took: took.unwrap_or(limit),
        ok: took.is_some() && throttled == 0,
    });

    // 8. Drift and reconcile.
    say("8. Someone edits by hand: adds Jane back to Engineering and removes Bob from Docs, in Outline and in OpenFGA. Reconcile repairs both.");
    queue.wait_idle().await;
    outline.add_member(&og_eng, &jane, "member");
    if let Some(d) = og_docs() {
        outline.remove_member(&d, &bob);
    }
    let (u, r, o) = member("jane", &eng);
    openfga.add_tuple(&u, &r, &o);
    let (u, r, o) = member("bob", &docs);
    openfga.remove_tuple(&u, &r, &o);
    let t0 = Instant::now();
    let report = run_reconcile(&engine, ReconcileOptions::default()).await?;
    let took = t0.elapsed();
    let repaired = !outline.members(&og_eng).contains_key(&jane)
        && og_docs().is_some_and(|d| outline.members(&d).contains_key(&bob))
        && !has("jane", &eng)
        && has("bob", &docs);
    let (tuples_written, tuples_deleted) = report
        .openfga
        .as_ref()
        .map_or((0, 0), |f| (f.writes.len(), f.deletes.len()));
    say(&format!(
        "   reconcile: {}, {} across {}; {} written, {tuples_deleted} deleted in OpenFGA.",
        count(report.summary.adds, "add", "adds"),
        count(report.summary.removes, "remove", "removes"),
        count(
            report.managed_groups,
            "managed Outline group",
            "managed Outline groups"
        ),
        count(tuples_written, "tuple", "tuples"),
    ));
    steps.push(Step {
        name: "reconcile",
        changed: format!(
            "{}, {} / {} written, {tuples_deleted} deleted",
            count(report.summary.adds, "add", "adds"),
            count(report.summary.removes, "remove", "removes"),
            count(tuples_written, "tuple", "tuples"),
        ),
        took,
        ok: repaired,
    });

    // 9. SCIM: a second bridge, in SCIM mode, driven by a simulated identity provider.
    steps.extend(scim_steps(&outline, &openfga, &http, limit).await?);

    say("\n| step | what changed in Outline / in OpenFGA | from the change until both match | result |\n|---|---|---|---|");
    for s in &steps {
        say(&format!(
            "| {} | {} | {:.0} ms | {} |",
            s.name,
            s.changed,
            s.took.as_secs_f64() * 1000.0,
            if s.ok { "ok" } else { "FAILED" }
        ));
    }
    let all_ok = steps.iter().all(|s| s.ok);
    say(if all_ok {
        "\nEvery step converged."
    } else {
        "\nSome steps did not converge."
    });
    Ok(all_ok)
}

const SCIM_TOKEN: &str = "demo-scim-token";
/// What an identity provider sends as the group's externalId (Authentik sends its group UUID).
const SUPPORT_UUID: &str = "0f6e2a8c-5b1d-4c3e-9a7f-2d4b6c8e0a1f";

/// Step 9: a second bridge with `SOURCE=scim`, its store in a scratch `STATE_DIR`, and a simulated identity
/// provider sending what Authentik's SCIM provider sends (docs/src/upstream/scim.md §6): a user, a group, a
/// member PATCH, then a deactivation. Outline and OpenFGA follow the store.
async fn scim_steps(
    outline: &FakeOutline,
    openfga: &FakeOpenFga,
    http: &reqwest::Client,
    limit: Duration,
) -> Result<Vec<Step>, Box<dyn std::error::Error>> {
    say("9. A second bridge runs with SOURCE=scim: a simulated identity provider (Authentik's SCIM provider, Okta or Entra ID) pushes SCIM to /scim/v2.");
    let state = std::env::temp_dir().join(format!("authentik-bridge-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    std::fs::create_dir_all(&state)?;
    let erin = outline.add_user("Erin Moss", "erin@example.com");
    let mut settings = Settings::for_upstreams(
        UpstreamSettings {
            url: "http://127.0.0.1:9".into(),
            token: Secret::new("unused"),
        },
        UpstreamSettings {
            url: outline.url(),
            token: Secret::new(outline.token()),
        },
    );
    settings.authentik = None;
    settings.source = crate::configuration::SourceKind::Scim;
    settings.scim_token = Some(Secret::new(SCIM_TOKEN));
    settings.state_dir = Some(state.clone());
    settings.outline_webhook_secret = Some(Secret::new(SECRET));
    settings.reconcile_interval = None;
    settings.auto_create_groups = true;
    settings.outline_rate_limit = RATE;
    settings.suspend_deactivated = true;
    settings.openfga = Some(openfga_settings_for_fake(openfga));
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let app = Application::build_with_listener(settings, listener).await?;
    let base = format!("http://127.0.0.1:{}/scim/v2", app.port());
    let queue = app.queue();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    queue.wait_idle().await;
    say(&format!(
        "   SCIM base URL {base}, store {}",
        state.join(crate::store::FILE_NAME).display()
    ));
    let send = |method: reqwest::Method, path: String, body: serde_json::Value| {
        http.request(method, format!("{base}{path}"))
            .bearer_auth(SCIM_TOKEN)
            .header("content-type", "application/scim+json")
            .body(body.to_string())
            .send()
    };
    let user = serde_json::json!({"userName": "erin", "displayName": "Erin Moss", "active": true,
        "name": {"formatted": "Erin Moss", "givenName": "Erin", "familyName": "Moss"},
        "emails": [{"value": "erin@example.com", "type": "other", "primary": true}],
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "externalId": "erin-external-id"});
    let created: serde_json::Value = send(reqwest::Method::POST, "/Users".into(), user.clone())
        .await?
        .json()
        .await?;
    let erin_id = created["id"].as_str().unwrap_or_default().to_string();
    let group: serde_json::Value = send(
        reqwest::Method::POST,
        "/Groups".into(),
        serde_json::json!({"displayName": "Support",
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "externalId": SUPPORT_UUID}),
    )
    .await?
    .json()
    .await?;
    let group_id = group["id"].as_str().unwrap_or_default().to_string();
    let tuple = (
        "user:erin".to_string(),
        "member".to_string(),
        format!("group:{SUPPORT_UUID}"),
    );
    let in_support = || {
        outline
            .group_by_name("Support")
            .is_some_and(|g| outline.members(&g.id).contains_key(&erin))
    };
    let t0 = Instant::now();
    let patch = serde_json::json!({"Operations": [{"op": "add", "path": "members", "value": [{"value": erin_id}]}],
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"]});
    let answer = send(reqwest::Method::PATCH, format!("/Groups/{group_id}"), patch).await?;
    let answered = t0.elapsed();
    let took = wait_for(limit, || in_support() && openfga.tuples().contains(&tuple))
        .await
        .map(|_| t0.elapsed());
    say(&format!(
        "   PATCH /Groups/{{id}} add Erin: answered {} in {:.1} ms; Erin is in Outline's Support (created) and in OpenFGA {:.0} ms after the PATCH.",
        answer.status(),
        answered.as_secs_f64() * 1000.0,
        took.unwrap_or(limit).as_secs_f64() * 1000.0
    ));
    let mut steps = vec![Step {
        name: "SCIM add",
        changed: "Erin +Support (created) / +1 tuple".into(),
        took: took.unwrap_or(limit),
        ok: took.is_some(),
    }];
    let mut off = user;
    off["active"] = serde_json::json!(false);
    off["id"] = serde_json::json!(erin_id);
    let t0 = Instant::now();
    send(reqwest::Method::PUT, format!("/Users/{erin_id}"), off).await?;
    let took = wait_for(limit, || {
        !in_support() && !openfga.tuples().contains(&tuple) && outline.is_suspended(&erin)
    })
    .await
    .map(|_| t0.elapsed());
    say(&format!(
        "   PUT /Users/{{id}} with active false: Erin left Support, her tuple left OpenFGA, and she is suspended, {:.0} ms after the PUT.",
        took.unwrap_or(limit).as_secs_f64() * 1000.0
    ));
    steps.push(Step {
        name: "SCIM deactivate",
        changed: "Erin -Support, suspended / -1 tuple".into(),
        took: took.unwrap_or(limit),
        ok: took.is_some(),
    });
    let _ = std::fs::remove_dir_all(&state);
    Ok(steps)
}

/// Bridge settings that point at the fakes, with the given webhook secrets, no scheduled reconcile, and
/// everything else at its default: what the demo, the tests and the benchmarks start the bridge with.
pub fn settings_for_fakes(
    authentik: &FakeAuthentik,
    outline: &FakeOutline,
    outline_webhook_secret: &str,
    authentik_webhook_token: &str,
) -> Settings {
    let mut settings = Settings::for_upstreams(
        UpstreamSettings {
            url: authentik.url(),
            token: Secret::new(authentik.token()),
        },
        UpstreamSettings {
            url: outline.url(),
            token: Secret::new(outline.token()),
        },
    );
    settings.outline_webhook_secret = Some(Secret::new(outline_webhook_secret));
    settings.authentik_webhook_token = Some(Secret::new(authentik_webhook_token));
    settings.reconcile_interval = None;
    settings
}

/// The OpenFGA sink's settings for a fake OpenFGA, with every naming setting at the table's default.
pub fn openfga_settings_for_fake(fake: &FakeOpenFga) -> OpenFgaSettings {
    let values: std::collections::BTreeMap<String, String> = [
        ("OPENFGA_URL", fake.url()),
        ("OPENFGA_STORE_ID", fake.store_id()),
        ("OPENFGA_API_TOKEN", fake.token()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Settings::load(None, &values)
        .ok()
        .and_then(|s| s.openfga)
        .unwrap_or_else(|| unreachable!("the fake's settings parse"))
}
