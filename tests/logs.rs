//! No secret reaches a log line, at TRACE for every crate, in both log formats.
//!
//! A global subscriber writes everything, the bridge's events and those of actix, hyper, reqwest and the
//! rest (through `tracing-log`), into memory; one scenario then walks every path: sign-in, pushes (bearer and
//! `?token=`), bad signatures, wrong tokens, 429s, upstream errors and timeouts, and reconciles. Then none of
//! the secrets, nor any `Outline-Signature` or bearer token that was sent, may appear in what was captured.
//! This is its own test binary because the subscriber is process-wide.

use std::io::Write;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use authentik_bridge::app::startup::Application;
use authentik_bridge::runtime::{JobKey, JobQueue, ReconcileOptions};
use authentik_bridge::sinks::run_reconcile;
use upstream_fakes::outline_signature;
use upstream_fakes::{FakeAuthentik, FakeAuthentikOptions, FakeOutline, FakeOutlineOptions};

const OUTLINE_SECRET: &str = "ol_whs_LogLeakCanary_webhook_secret_9f2c";
const AUTHENTIK_WEBHOOK_TOKEN: &str = "akwh_LogLeakCanary_push_token_51d0";

/// Every byte any subscriber layer writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

struct CapturedWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CapturedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = CapturedWriter;
    fn make_writer(&'a self) -> Self::Writer {
        CapturedWriter(self.0.clone())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

/// TRACE for every target, text and JSON (with the span list, where request and job fields sit).
fn capture_everything() -> Captured {
    let captured = Captured::default();
    tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::TRACE)
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(captured.clone()),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(true)
                .with_span_list(true)
                .with_writer(captured.clone()),
        )
        .try_init()
        .expect("the only subscriber in this binary");
    captured
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn wait_idle(queue: &JobQueue) {
    tokio::time::timeout(Duration::from_secs(60), queue.wait_idle())
        .await
        .expect("the queue drains");
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Lines of `logs` that contain `needle`, for the failure message.
fn lines_with<'a>(logs: &'a str, needle: &str) -> Vec<&'a str> {
    logs.lines()
        .filter(|l| l.contains(needle))
        .take(5)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_logs_at_trace() {
    let captured = capture_everything();

    let authentik = FakeAuthentik::start(FakeAuthentikOptions::default())
        .await
        .expect("fake authentik");
    let outline = FakeOutline::start(FakeOutlineOptions::default())
        .await
        .expect("fake outline");
    let pk = authentik.add_user("jane", "Jane", "jane@example.com");
    let bob_pk = authentik.add_user("bob", "Bob", "bob@example.com");
    let eng = authentik.add_group("Engineering");
    let docs = authentik.add_group("Docs");
    authentik.add_member(&eng, pk);
    let jane = outline.add_user("Jane", "jane@example.com");
    let bob = outline.add_user("Bob", "bob@example.com");
    let og_eng = outline.add_group("Engineering", None);
    let og_docs = outline.add_group("Docs", None);
    outline.add_member(&og_docs, &jane, "member");

    let mut settings = authentik_bridge::app::demo::settings_for_fakes(
        &authentik,
        &outline,
        OUTLINE_SECRET,
        AUTHENTIK_WEBHOOK_TOKEN,
    );
    settings.upstream_timeout = Duration::from_secs(1);
    settings.debug = true;
    let listener = TcpListener::bind("127.0.0.1:0").expect("port 0");
    let app = Application::build_with_listener(settings, listener)
        .await
        .expect("app builds");
    let url = format!("http://127.0.0.1:{}", app.port());
    let queue = app.queue();
    let engine = app.engine();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    wait_idle(&queue).await;
    let http = reqwest::Client::new();
    let mut sent_secrets: Vec<String> = vec![
        outline.token(),
        authentik.token(),
        OUTLINE_SECRET.to_string(),
        AUTHENTIK_WEBHOOK_TOKEN.to_string(),
    ];

    // A genuine sign-in, and the same body under every kind of bad signature.
    let body = outline.signin_delivery(&jane);
    let good = outline_signature(OUTLINE_SECRET, now_ms(), body.as_bytes());
    let signatures = vec![
        Some(good.clone()),
        None,
        Some("t=123,s=nothex".to_string()),
        Some(outline_signature(
            "ol_whs_WrongSecretCanary_77",
            now_ms(),
            body.as_bytes(),
        )),
        Some(outline_signature(
            OUTLINE_SECRET,
            now_ms() - 600_000,
            body.as_bytes(),
        )),
        Some(outline_signature(
            OUTLINE_SECRET,
            now_ms(),
            b"{\"tampered\":true}",
        )),
    ];
    sent_secrets.push("ol_whs_WrongSecretCanary_77".to_string());
    for sig in &signatures {
        let mut req = http
            .post(format!("{url}/sync"))
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(s) = sig {
            req = req.header("outline-signature", s);
            sent_secrets.push(s.clone());
            if let Some((_, hex)) = s.split_once(",s=") {
                if hex.len() == 64 {
                    sent_secrets.push(hex.to_string());
                }
            }
        }
        req.send().await.expect("sent");
    }
    wait_idle(&queue).await;
    assert!(outline.members(&og_eng).contains_key(&jane));

    // Pushes: the blueprint's bearer header, then the pre-2025.4 `?token=` in the URL.
    authentik.set_webhook(
        Some(format!("{url}/webhooks/authentik")),
        Some(AUTHENTIK_WEBHOOK_TOKEN.to_string()),
    );
    authentik.add_member(&docs, bob_pk);
    eventually("bob added by a pushed event", || {
        outline.members(&og_docs).contains_key(&bob)
    })
    .await;
    authentik.set_webhook(
        Some(format!(
            "{url}/webhooks/authentik?token={AUTHENTIK_WEBHOOK_TOKEN}"
        )),
        None,
    );
    authentik.remove_member(&docs, bob_pk);
    eventually("bob removed by a ?token= push", || {
        !outline.members(&og_docs).contains_key(&bob)
    })
    .await;
    authentik.set_webhook(None, None);

    // Wrong tokens, in the header and in the query, and a Basic credential.
    let doc = serde_json::json!({
        "schema": "authentik-bridge/v1", "event_pk": "leak-1", "action": "model_updated",
        "app": "authentik.events.middleware", "created": "2026-11-30T12:00:00Z",
        "model": {"pk": pk, "app": "authentik_core", "name": "Jane", "model_name": "user"},
    });
    let wrong = [
        "WrongBearerCanary_1a2b3c",
        "WrongQueryCanary_4d5e6f",
        "dXNlcjpCYXNpY0NhbmFyeVBhc3M=",
    ];
    sent_secrets.extend(wrong.iter().map(|s| s.to_string()));
    http.post(format!("{url}/webhooks/authentik"))
        .bearer_auth(wrong[0])
        .json(&doc)
        .send()
        .await
        .expect("sent");
    http.post(format!("{url}/webhooks/authentik?token={}", wrong[1]))
        .json(&doc)
        .send()
        .await
        .expect("sent");
    http.post(format!("{url}/webhooks/authentik"))
        .header("authorization", format!("Basic {}", wrong[2]))
        .json(&doc)
        .send()
        .await
        .expect("sent");
    // A valid token with a body the bridge refuses.
    http.post(format!("{url}/webhooks/authentik"))
        .bearer_auth(AUTHENTIK_WEBHOOK_TOKEN)
        .body("{not json")
        .send()
        .await
        .expect("sent");

    // 429s from Outline, then Outline 500s, then an Authentik 500, 403, outage and timeout, each on a job.
    let resign = |user: &str| {
        let b = outline.signin_delivery(user);
        let s = outline_signature(OUTLINE_SECRET, now_ms(), b.as_bytes());
        (b, s)
    };
    let outline_status = |status: u16| {
        outline
            .calls()
            .iter()
            .filter(|c| c.status == status)
            .count()
    };
    let authentik_status = |status: u16| {
        authentik
            .calls()
            .iter()
            .filter(|c| c.status == status)
            .count()
    };
    // (what, switch, a count that grows once the job has met the fault, by how much)
    type Switch<'a> = Box<dyn Fn(bool) + 'a>;
    type Count<'a> = Box<dyn Fn() -> usize + 'a>;
    let faults: Vec<(&str, Switch, Count, usize)> = vec![
        (
            "outline 429",
            Box::new(|on| outline.fail_next(if on { 5 } else { 0 }, 429)),
            Box::new(|| outline_status(429)),
            5,
        ),
        (
            "outline 500",
            Box::new(|on| outline.fail_next(if on { 2 } else { 0 }, 500)),
            Box::new(|| outline_status(500)),
            2,
        ),
        (
            "authentik 500",
            Box::new(|on| authentik.fail_next(if on { 2 } else { 0 }, 500)),
            Box::new(|| authentik_status(500)),
            2,
        ),
        (
            "authentik 403",
            Box::new(|on| authentik.set_forbidden(on)),
            Box::new(|| authentik_status(403)),
            1,
        ),
        (
            "authentik down",
            Box::new(|on| authentik.set_down(on)),
            Box::new(|| authentik_status(503)),
            1,
        ),
        (
            // Answers slower than UPSTREAM_TIMEOUT (1 s); the fake records a call once it has answered.
            "authentik slow",
            Box::new(|on| {
                authentik.set_latency(if on {
                    Duration::from_millis(1200)
                } else {
                    Duration::ZERO
                })
            }),
            Box::new(|| authentik.calls().len()),
            1,
        ),
    ];
    for (what, set, count, by) in &faults {
        let before = count();
        set(true);
        let (b, s) = resign(&jane);
        sent_secrets.push(s.clone());
        let status = http
            .post(format!("{url}/webhooks/outline"))
            .header("outline-signature", s)
            .body(b)
            .send()
            .await
            .expect("sent")
            .status()
            .as_u16();
        assert_eq!(status, 202, "{what}");
        eventually(&format!("the job met: {what}"), || count() >= before + by).await;
        set(false);
        wait_idle(&queue).await;
    }
    outline.set_rate_limit(3, Duration::from_millis(300));
    queue.submit(JobKey::Reconcile).expect("queued");
    wait_idle(&queue).await;
    outline.set_rate_limit(100_000, Duration::from_secs(60));

    // Reconciles: a dry run, one with a failed read, and one that applies drift.
    outline.add_member(&og_docs, &bob, "member");

    run_reconcile(
        &engine,
        ReconcileOptions {
            dry_run: true,
            force: false,
        },
    )
    .await
    .expect("dry run");
    authentik.set_partial_pages(true);
    assert!(run_reconcile(&engine, ReconcileOptions::default())
        .await
        .is_err());
    authentik.set_partial_pages(false);
    run_reconcile(&engine, ReconcileOptions::default())
        .await
        .expect("reconcile");
    assert!(!outline.members(&og_docs).contains_key(&bob));
    for path in ["/healthz", "/readyz", "/metrics"] {
        http.get(format!("{url}{path}")).send().await.expect("sent");
    }
    wait_idle(&queue).await;

    let logs = captured.text();
    // The capture really ran at TRACE, through every layer, and saw the paths above.
    for expected in [
        "TRACE",
        "\"level\":\"TRACE\"",
        "webhook refused",
        "\"source\":\"outline\"",
        "\"source\":\"authentik\"",
        "sync done",
        "retrying",
        "/webhooks/authentik",
    ] {
        assert!(
            logs.contains(expected),
            "the captured logs lack {expected:?}"
        );
    }
    // People are named by email where the bridge knows it, not only by an id (emails are not secrets).
    assert!(
        logs.lines()
            .any(|l| l.contains("sync done") && l.contains("jane@example.com")),
        "a sign-in's job line names the person: {:?}",
        lines_with(&logs, "sync done")
    );
    let targets: std::collections::BTreeSet<&str> = logs
        .lines()
        .filter_map(|l| l.split_once("\"target\":\""))
        .filter_map(|(_, rest)| rest.split('"').next())
        .map(|t| t.split("::").next().unwrap_or(t))
        .collect();
    println!(
        "captured {} bytes, {} lines, from {targets:?}",
        logs.len(),
        logs.lines().count()
    );

    let mut leaks = Vec::new();
    for secret in &sent_secrets {
        if logs.contains(secret.as_str()) {
            leaks.push(format!(
                "{secret:?} in:\n  {}",
                lines_with(&logs, secret).join("\n  ")
            ));
        }
    }
    // "Bearer <token>" as a header would carry it; in any case, "bearer" followed by something token-long
    // (the bridge's own reasons, "wrong bearer token", are words, not tokens).
    let lower = logs.to_ascii_lowercase();
    for (i, _) in lower.match_indices("bearer ") {
        let word: String = logs[i + 7..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || "-_.~+/=".contains(*c))
            .collect();
        if (logs[i..].starts_with("Bearer ") && !word.is_empty()) || word.len() >= 12 {
            let line_start = logs[..i].rfind('\n').map_or(0, |p| p + 1);
            let line_end = logs[i..].find('\n').map_or(logs.len(), |p| i + p);
            leaks.push(format!(
                "a bearer token in:\n  {}",
                &logs[line_start..line_end]
            ));
        }
    }
    assert!(
        leaks.is_empty(),
        "secrets in the logs:\n{}",
        leaks.join("\n")
    );
}
