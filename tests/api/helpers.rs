//! Starts the real bridge in-process on port 0, against fresh stateful fakes of both upstreams.

use std::net::TcpListener;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use authentik_bridge::app::startup::Application;
use authentik_bridge::configuration::Settings;
use authentik_bridge::runtime::{JobQueue, ReconcileOptions};
use authentik_bridge::sinks::SyncEngine;
use upstream_fakes::outline_signature;
use upstream_fakes::{FakeAuthentik, FakeAuthentikOptions};
use upstream_fakes::{FakeOpenFga, FakeOpenFgaOptions};
use upstream_fakes::{FakeOutline, FakeOutlineOptions};

pub const OUTLINE_SECRET: &str = "ol_whs_integration_secret";
pub const AUTHENTIK_WEBHOOK_TOKEN: &str = "ak-webhook-token-for-tests";

pub struct TestApp {
    pub url: String,
    pub queue: JobQueue,
    /// What the jobs share, for tests that run a pass beside the queue.
    pub engine: std::sync::Arc<SyncEngine>,
    pub outline: FakeOutline,
    pub authentik: FakeAuthentik,
    /// Present when the test configured the OpenFGA sink.
    pub openfga: Option<FakeOpenFga>,
    pub http: reqwest::Client,
    /// How many events the fake Authentik had emitted when its webhook was wired to this bridge.
    wired_at: std::sync::atomic::AtomicUsize,
}

/// Logs go to the test's captured output; `RUST_LOG=debug cargo test` shows them for a failing test.
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

pub async fn start_fakes() -> (FakeAuthentik, FakeOutline) {
    init_logs();
    let authentik = FakeAuthentik::start(FakeAuthentikOptions::default())
        .await
        .expect("fake authentik starts");
    let outline = FakeOutline::start(FakeOutlineOptions::default())
        .await
        .expect("fake outline starts");
    (authentik, outline)
}

pub fn settings_for(authentik: &FakeAuthentik, outline: &FakeOutline) -> Settings {
    let mut s = authentik_bridge::app::demo::settings_for_fakes(
        authentik,
        outline,
        OUTLINE_SECRET,
        AUTHENTIK_WEBHOOK_TOKEN,
    );
    s.upstream_timeout = Duration::from_secs(5);
    s
}

pub async fn spawn_app() -> TestApp {
    let (authentik, outline) = start_fakes().await;
    spawn_app_with(authentik, outline, |_| {}).await
}

/// Starts the bridge; the start-up reconcile has finished when this returns.
pub async fn spawn_app_with(
    authentik: FakeAuthentik,
    outline: FakeOutline,
    tweak: impl FnOnce(&mut Settings),
) -> TestApp {
    spawn_app_with_sinks(authentik, outline, None, tweak).await
}

pub async fn start_openfga() -> FakeOpenFga {
    FakeOpenFga::start(FakeOpenFgaOptions::default())
        .await
        .expect("fake openfga starts")
}

/// Like [`spawn_app_with`], with the OpenFGA sink pointed at `openfga` when given. `tweak` may switch Outline
/// off (`s.outline = None`).
pub async fn spawn_app_with_sinks(
    authentik: FakeAuthentik,
    outline: FakeOutline,
    openfga: Option<FakeOpenFga>,
    tweak: impl FnOnce(&mut Settings),
) -> TestApp {
    let mut settings = settings_for(&authentik, &outline);
    settings.openfga = openfga
        .as_ref()
        .map(authentik_bridge::app::demo::openfga_settings_for_fake);
    tweak(&mut settings);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    let app = Application::build_with_listener(settings, listener)
        .await
        .expect("app builds");
    let url = format!("http://127.0.0.1:{}", app.port());
    let queue = app.queue();
    let engine = app.engine();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let test_app = TestApp {
        url,
        queue,
        engine,
        outline,
        authentik,
        openfga,
        http: reqwest::Client::new(),
        wired_at: std::sync::atomic::AtomicUsize::new(usize::MAX),
    };
    test_app.settle().await;
    test_app
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

impl TestApp {
    /// Points the fake Authentik's transport at this bridge, with the token, as the blueprint does.
    pub fn wire_authentik_webhook(&self) {
        self.wired_at.store(
            self.authentik.events().len(),
            std::sync::atomic::Ordering::SeqCst,
        );
        self.authentik.set_webhook(
            Some(format!("{}/webhooks/authentik", self.url)),
            Some(AUTHENTIK_WEBHOOK_TOKEN.to_string()),
        );
    }

    /// Waits until the bridge has answered every event the fake Authentik emitted since the webhook was
    /// wired, then until the queue drains. The fake delivers on its own task, so a plain `settle` right
    /// after a change may run before the change's event has even arrived.
    pub async fn settle_deliveries(&self) {
        let from = self.wired_at.load(std::sync::atomic::Ordering::SeqCst);
        assert!(from != usize::MAX, "wire_authentik_webhook first");
        eventually(
            "every Authentik event answered",
            Duration::from_secs(20),
            || {
                let answered: std::collections::BTreeSet<String> = self
                    .authentik
                    .deliveries()
                    .into_iter()
                    .filter(|d| d.status.is_some())
                    .map(|d| d.event_pk)
                    .collect();
                self.authentik
                    .events()
                    .iter()
                    .skip(from)
                    .filter_map(|e| e["event_pk"].as_str())
                    .all(|pk| answered.contains(pk))
            },
        )
        .await;
        self.settle().await;
    }

    /// Waits until the queue is empty: every job and trailing run has finished.
    pub async fn settle(&self) {
        tokio::time::timeout(Duration::from_secs(30), self.queue.wait_idle())
            .await
            .expect("the queue drains within 30 s");
    }

    pub async fn post_outline(
        &self,
        path: &str,
        body: &str,
        signature: Option<String>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(sig) = signature {
            req = req.header("outline-signature", sig);
        }
        req.send().await.expect("request reaches the bridge")
    }

    /// Posts a correctly signed `users.signin` for `user_id`, as Outline would.
    pub async fn signin(&self, user_id: &str) -> reqwest::Response {
        let body = self.outline.signin_delivery(user_id);
        let sig = outline_signature(OUTLINE_SECRET, now_ms(), body.as_bytes());
        self.post_outline("/sync", &body, Some(sig)).await
    }

    pub async fn post_authentik(&self, doc: &serde_json::Value) -> reqwest::Response {
        self.post_authentik_as(doc, AUTHENTIK_WEBHOOK_TOKEN).await
    }

    /// An Authentik delivery with the given bearer token, right or wrong.
    pub async fn post_authentik_as(
        &self,
        doc: &serde_json::Value,
        token: &str,
    ) -> reqwest::Response {
        self.http
            .post(format!("{}/webhooks/authentik", self.url))
            .bearer_auth(token)
            .json(doc)
            .send()
            .await
            .expect("request reaches the bridge")
    }

    pub async fn metrics_text(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }
}

/// Polls `cond` until it holds or the deadline passes; never sleeps a fixed time to wait for an outcome.
pub async fn eventually(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// [`eventually`] for a condition that must await (a read of the store, a call to the bridge).
pub async fn eventually_async<F: std::future::Future<Output = bool>>(
    what: &str,
    deadline: Duration,
    mut cond: impl FnMut() -> F,
) {
    let start = Instant::now();
    while !cond().await {
        assert!(start.elapsed() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The v1 body-mapping document the blueprint sends, for a group or user model event.
pub fn group_event(
    event_pk: &str,
    action: &str,
    group_uuid: &str,
    name: &str,
) -> serde_json::Value {
    let hex: String = group_uuid.chars().filter(|c| *c != '-').collect();
    serde_json::json!({
        "schema": "authentik-bridge/v1",
        "event_pk": event_pk,
        "action": action,
        "app": "authentik.events.middleware",
        "created": "2026-11-30T12:00:00.000000Z",
        "model": {"pk": hex, "app": "authentik_core", "name": name, "model_name": "group"},
    })
}

pub fn user_event(event_pk: &str, action: &str, pk: i64, name: &str) -> serde_json::Value {
    serde_json::json!({
        "schema": "authentik-bridge/v1",
        "event_pk": event_pk,
        "action": action,
        "app": "authentik.events.middleware",
        "created": "2026-11-30T12:00:00.000000Z",
        "model": {"pk": pk, "app": "authentik_core", "name": name, "model_name": "user"},
    })
}

/// An empty `STATE_DIR` of the test's own under the target's scratch folder.
pub fn scratch_state_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("state-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("state dir");
    dir
}

/// A document the bridge keeps in the store in `state` (the suspension record, …), as JSON; `Null` when it has
/// none yet. Opened as a second process would, beside a running bridge.
pub async fn stored_document(state: &std::path::Path, name: &str) -> serde_json::Value {
    let store = authentik_bridge::store::Store::open(state)
        .await
        .expect("the store in STATE_DIR opens");
    match store
        .remembered_one("document", name)
        .await
        .expect("the store reads")
    {
        Some(text) => serde_json::from_str(&text).expect("JSON"),
        None => serde_json::Value::Null,
    }
}

/// `n` people who are both Authentik users and Outline members, as `(pk, Outline id)`.
/// How many of these people (Authentik pk, Outline id) Outline has suspended.
pub fn suspended_count(app: &TestApp, people: &[(i64, String)]) -> usize {
    people
        .iter()
        .filter(|(_, o)| app.outline.is_suspended(o))
        .count()
}

pub fn people_on_both_sides(
    authentik: &upstream_fakes::FakeAuthentik,
    outline: &upstream_fakes::FakeOutline,
    n: usize,
) -> Vec<(i64, String)> {
    (0..n)
        .map(|i| {
            let email = format!("u{i}@example.com");
            let pk = authentik.add_user(&format!("u{i}"), "U", &email);
            (pk, outline.add_user("U", &email))
        })
        .collect()
}

/// A pass with `--force`: the guards' holds are made.
pub const FORCE: ReconcileOptions = ReconcileOptions {
    dry_run: false,
    force: true,
};

/// A dry run, without `--force`: what a pass would do, guards included.
pub const DRY_RUN: ReconcileOptions = ReconcileOptions {
    dry_run: true,
    force: false,
};
