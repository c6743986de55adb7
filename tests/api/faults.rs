//! Faults: a crash in the middle of a bulk change, each upstream down, slow, failing or answering
//! partial pages, 429 storms, a full queue, and duplicate, out-of-order and replayed deliveries.
//!
//! The promise under test is the README's "Safety" paragraph: a failed or partial read means no removal, the
//! job retries until the upstream is back, and then everything converges; nothing accepted is lost.
//! docs/src/reliability.md has the table these tests back.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use authentik_bridge::configuration::{compile_group_filter, MembershipMode};
use authentik_bridge::runtime::JobKey;
use upstream_fakes::outline_signature;
use upstream_fakes::{FakeAuthentik, FakeOutline, OutlineCall};

use crate::helpers::*;

// ----- shared by faults.rs and hostile.rs ---------------------------------------------------------------

/// The sum of the samples of `name` whose labels include all of `labels`, in Prometheus text; 0 when none.
pub(crate) fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (n, rest) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let wanted = n == name
                && labels.iter().all(|(k, v)| {
                    let pair = format!("{k}=\"{v}\"");
                    rest.split(',').any(|p| p == pair)
                });
            if wanted {
                value.parse::<f64>().ok()
            } else {
                None
            }
        })
        .sum()
}

/// Polls an async condition until it holds or the deadline passes (the async twin of `eventually`).
pub(crate) async fn until<F, Fut>(what: &str, deadline: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(start.elapsed() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the bridge's `/metrics` shows `name{labels}` at `min` or more.
pub(crate) async fn until_metric(
    app: &TestApp,
    name: &str,
    labels: &[(&str, &str)],
    min: f64,
    deadline: Duration,
) {
    let what = format!("{name}{labels:?} >= {min}");
    until(&what, deadline, || async {
        metric(&app.metrics_text().await, name, labels) >= min
    })
    .await;
}

/// Successful `groups.add_user` calls per (group, user): more than one for a pair means an existing member
/// was added again, which resets a group admin to member (docs/src/upstream/outline.md §6.3).
fn successful_adds(calls: &[OutlineCall]) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    for c in calls
        .iter()
        .filter(|c| c.method == "groups.add_user" && c.status == 200)
    {
        let key = (
            c.body["id"].as_str().unwrap_or_default().to_string(),
            c.body["userId"].as_str().unwrap_or_default().to_string(),
        );
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

/// (group, user) of every successful `groups.remove_user`.
fn removals(calls: &[OutlineCall]) -> Vec<(String, String)> {
    calls
        .iter()
        .filter(|c| c.method == "groups.remove_user" && c.status == 200)
        .map(|c| {
            (
                c.body["id"].as_str().unwrap_or_default().to_string(),
                c.body["userId"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

// ----- kill -9 in the middle of a bulk change -----------------------------------------------------------

/// The real binary as a child process; SIGKILLed when dropped, so a failing test leaves nothing behind.
pub struct BridgeProcess {
    child: Child,
    pub url: String,
    log: PathBuf,
}

impl BridgeProcess {
    pub fn start(
        authentik: &FakeAuthentik,
        outline: &FakeOutline,
        tag: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("faults-{tag}-{}.log", std::process::id()));
        let out = File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_authentik-bridge"))
            .arg("serve")
            .env_clear()
            .env("AUTHENTIK_URL", authentik.url())
            .env("AUTHENTIK_TOKEN", authentik.token())
            .env("OUTLINE_URL", outline.url())
            .env("OUTLINE_TOKEN", outline.token())
            .env("OUTLINE_WEBHOOK_SECRET", OUTLINE_SECRET)
            .env("AUTHENTIK_WEBHOOK_TOKEN", AUTHENTIK_WEBHOOK_TOKEN)
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("RECONCILE_INTERVAL", "0")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("the binary starts");
        BridgeProcess {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    pub async fn metrics(&self, http: &reqwest::Client) -> String {
        match http.get(format!("{}/metrics", self.url)).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Waits until the process answers and its start-up reconcile has succeeded.
    pub async fn wait_reconciled(&mut self, http: &reqwest::Client) {
        self.wait_pass(http, "ok").await
    }

    /// Waits until the process answers and its start-up reconcile has ended with `result` (`ok`, `guarded`).
    pub async fn wait_pass(&mut self, http: &reqwest::Client, result: &str) {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the bridge exited with {status}:\n{}", self.log_tail());
            }
            let text = self.metrics(http).await;
            if metric(&text, "bridge_reconcile_total", &[("result", result)]) >= 1.0 {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no successful start-up reconcile within 30 s:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: no shutdown hook, no drain, whatever was in flight is cut.
    pub fn kill_9(&mut self) {
        self.child.kill().expect("SIGKILL");
        let status = self.child.wait().expect("reaped");
        assert!(!status.success(), "killed, not exited: {status}");
    }
}

impl BridgeProcess {
    /// SIGTERM, as Docker, Kubernetes and systemd stop a service; returns the exit status and how long the
    /// process took to exit after the signal.
    fn terminate(&mut self) -> (std::process::ExitStatus, Duration) {
        let sent = Instant::now();
        let kill = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(kill.success(), "SIGTERM sent");
        let status = self.child.wait().expect("reaped");
        (status, sent.elapsed())
    }
}

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SIGTERM in the middle of a bulk change: the process stops taking requests, gives the running job
/// `SHUTDOWN_GRACE`, and exits 0 within it; it does not wait for the whole bulk change, which the next
/// start-up reconcile finishes (as the kill -9 test below shows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_bulk_change_exits_0_within_the_grace_period() {
    const GRACE: Duration = Duration::from_secs(2);
    let (authentik, outline) = start_fakes().await;
    let g = authentik.add_group("Bulk");
    outline.add_group("Bulk", None);
    let mut new = Vec::new();
    for i in 0..300 {
        let email = format!("term{i:03}@example.com");
        new.push(authentik.add_user(&format!("term{i:03}"), "New", &email));
        outline.add_user("New", &email);
    }
    outline.set_rate_limit(100_000, Duration::from_secs(60));
    let http = reqwest::Client::new();
    let mut bridge = BridgeProcess::start(
        &authentik,
        &outline,
        "sigterm",
        &[
            ("OUTLINE_RATE_LIMIT_REQUESTS", "40"),
            ("OUTLINE_RATE_LIMIT_WINDOW", "1"),
            ("SHUTDOWN_GRACE", "2"),
        ],
    );
    bridge.wait_reconciled(&http).await;
    outline.clear_calls();
    authentik.set_webhook(
        Some(format!("{}/webhooks/authentik", bridge.url)),
        Some(AUTHENTIK_WEBHOOK_TOKEN.to_string()),
    );
    for pk in &new {
        authentik.add_member(&g, *pk);
    }
    eventually(
        "the bulk change is part-way through",
        Duration::from_secs(30),
        || outline.count_calls("groups.add_user") >= 20,
    )
    .await;
    authentik.set_webhook(None, None);
    let at_signal = outline.count_calls("groups.add_user");
    let (status, took) = bridge.terminate();
    let added = outline.count_calls("groups.add_user");
    println!("SIGTERM: exit {status} after {took:?}, with {added} of 300 adds made");
    assert_eq!(status.code(), Some(0), "{}", bridge.log_tail());
    assert!(
        took < GRACE + Duration::from_millis(1500),
        "exited {took:?} after SIGTERM, grace {GRACE:?}\n{}",
        bridge.log_tail()
    );
    assert!(added < 300, "the bulk change was still running at SIGTERM");
    assert!(
        added > at_signal,
        "the running job went on writing during the grace period ({at_signal} adds at the signal, {added} at exit)"
    );
    // Either the running job finished inside the grace period, or the period ran out; the log says which.
    let log = bridge.log_tail();
    assert!(
        log.contains("every running job finished") || log.contains("end of the grace period"),
        "the log says how the shutdown ended:\n{log}"
    );
}

/// 300 people are added to one Authentik group (one pushed event each) and 3 removed, while Outline is slow
/// and the bridge's limiter paces the writes; the process is SIGKILLed part-way through the adds. A new
/// process's start-up reconcile finishes the change: every member is added once, only the 3 who left are
/// removed, and a group admin stays admin. The bridge keeps no state on disk, so this is the whole recovery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_bulk_change_then_restart_converges_without_wrongful_removal() {
    let (authentik, outline) = start_fakes().await;
    let g = authentik.add_group("Bulk");
    let og = outline.add_group("Bulk", None);
    let mut old = Vec::new();
    for i in 0..10 {
        let email = format!("old{i}@example.com");
        let pk = authentik.add_user(&format!("old{i}"), "Old", &email);
        authentik.add_member(&g, pk);
        let id = outline.add_user("Old", &email);
        outline.add_member(&og, &id, if i == 0 { "admin" } else { "member" });
        old.push((pk, id));
    }
    let mut new = Vec::new();
    for i in 0..300 {
        let email = format!("new{i:03}@example.com");
        let pk = authentik.add_user(&format!("new{i:03}"), "New", &email);
        let id = outline.add_user("New", &email);
        new.push((pk, id));
    }
    // The fake's own limiter stays out of the way: the pacing here is the bridge's.
    outline.set_rate_limit(100_000, Duration::from_secs(60));
    let http = reqwest::Client::new();

    // First process: Outline answers in 15 ms, and the limiter allows about 36 writes a second.
    let mut first = BridgeProcess::start(
        &authentik,
        &outline,
        "kill9-first",
        &[
            ("OUTLINE_RATE_LIMIT_REQUESTS", "40"),
            ("OUTLINE_RATE_LIMIT_WINDOW", "1"),
        ],
    );
    first.wait_reconciled(&http).await;
    outline.clear_calls();
    outline.set_latency(Duration::from_millis(15));
    authentik.set_webhook(
        Some(format!("{}/webhooks/authentik", first.url)),
        Some(AUTHENTIK_WEBHOOK_TOKEN.to_string()),
    );
    for (i, (pk, _)) in new.iter().enumerate() {
        authentik.add_member(&g, *pk);
        if i == 150 {
            for (pk, _) in &old[7..] {
                authentik.remove_member(&g, *pk);
            }
        }
    }
    eventually(
        "the bulk change is part-way through",
        Duration::from_secs(30),
        || outline.count_calls("groups.add_user") >= 40,
    )
    .await;
    first.kill_9();
    let added_before_kill = outline.count_calls("groups.add_user");
    println!("kill -9 after {added_before_kill} of 300 adds");
    assert!(
        added_before_kill < 300,
        "killed mid-way: {added_before_kill} of 300 adds were made"
    );
    // Deliveries to the dead process fail; the restart must not depend on any of them.
    authentik.set_webhook(None, None);
    outline.set_latency(Duration::ZERO);

    let mut second = BridgeProcess::start(
        &authentik,
        &outline,
        "kill9-second",
        &[("OUTLINE_RATE_LIMIT_REQUESTS", "100000")],
    );
    second.wait_reconciled(&http).await;

    let still_in: BTreeSet<String> = old[..7]
        .iter()
        .chain(new.iter())
        .map(|(_, id)| id.clone())
        .collect();
    let left: BTreeSet<String> = old[7..].iter().map(|(_, id)| id.clone()).collect();
    let members = outline.members(&og);
    let member_ids: BTreeSet<String> = members.keys().cloned().collect();
    assert_eq!(
        member_ids.len(),
        still_in.len(),
        "converged after the restart ({added_before_kill} adds before the kill)\n{}",
        second.log_tail()
    );
    assert_eq!(member_ids, still_in);
    assert_eq!(
        members.get(&old[0].1).map(String::as_str),
        Some("admin"),
        "the group admin is still admin"
    );
    let calls = outline.calls();
    for (group, user) in removals(&calls) {
        assert!(
            group == og && left.contains(&user),
            "wrongful removal of {user} from {group}"
        );
    }
    for ((group, user), n) in successful_adds(&calls) {
        assert_eq!(n, 1, "{user} added {n} times to {group}");
    }
    assert_eq!(
        outline.count_calls("groups.add_user"),
        300,
        "each of the 300 adds made once, across both processes"
    );
}

// ----- Authentik down, slow, failing, partial: during push, sign-in and reconcile -------------------------

#[derive(Clone, Copy, Debug)]
enum AuthentikFault {
    Down,
    /// Every answer takes longer than UPSTREAM_TIMEOUT (1 s in these tests).
    Slow,
    Error500,
    PartialPages,
}

#[derive(Clone, Copy, Debug)]
enum Trigger {
    Push,
    Signin,
    Reconcile,
}

const ALL_AUTHENTIK_FAULTS: [AuthentikFault; 4] = [
    AuthentikFault::Down,
    AuthentikFault::Slow,
    AuthentikFault::Error500,
    AuthentikFault::PartialPages,
];

fn set_authentik_fault(authentik: &FakeAuthentik, fault: AuthentikFault, on: bool) {
    match fault {
        AuthentikFault::Down => authentik.set_down(on),
        AuthentikFault::Slow => authentik.set_latency(if on {
            Duration::from_millis(1500)
        } else {
            Duration::ZERO
        }),
        AuthentikFault::Error500 => authentik.fail_next(if on { 1_000_000 } else { 0 }, 500),
        AuthentikFault::PartialPages => authentik.set_partial_pages(on),
    }
}

/// Jane is in "Stay" (an Outline group admin there) and "Leave"; while the bridge is not looking she leaves
/// "Leave" and joins "Join" in Authentik. With the fault on, the triggered job must fail before any write and
/// retry; once the fault clears she converges: removed from "Leave" only, added to "Join", admin of "Stay".
///
/// In inherited mode she is in "Stay" only through its child group "zz Stay child", which sorts last, so a
/// partial page (the fake drops each page's last row) hides exactly the group that makes her a member: a
/// bridge that trusted that listing would remove her from "Stay".
async fn authentik_fault_case(fault: AuthentikFault, trigger: Trigger, mode: MembershipMode) {
    let case = format!("{fault:?} during {trigger:?} ({mode:?})");
    let (authentik, outline) = start_fakes().await;
    let pk = authentik.add_user("jane", "Jane", "jane@example.com");
    let stay = authentik.add_group("Stay");
    let leave = authentik.add_group("Leave");
    let join = authentik.add_group("Join");
    match mode {
        MembershipMode::Direct => authentik.add_member(&stay, pk),
        MembershipMode::Inherited => {
            let child =
                authentik.add_group_with("zz Stay child", false, std::slice::from_ref(&stay));
            authentik.add_member(&child, pk);
        }
    }
    authentik.add_member(&leave, pk);
    let jane = outline.add_user("Jane", "jane@example.com");
    let og_stay = outline.add_group("Stay", None);
    let og_leave = outline.add_group("Leave", None);
    let og_join = outline.add_group("Join", None);
    outline.add_member(&og_stay, &jane, "admin");
    outline.add_member(&og_leave, &jane, "member");
    let app = spawn_app_with(authentik, outline, |s| {
        s.upstream_timeout = Duration::from_secs(1);
        s.membership = mode;
        // The child group only carries membership; it has no Outline group of its own.
        s.group_filter = compile_group_filter("(Stay|Leave|Join)$").ok();
    })
    .await;
    assert!(
        app.outline.members(&og_stay).contains_key(&jane),
        "{case}: in sync before the fault"
    );
    app.authentik.remove_member(&leave, pk);
    app.authentik.add_member(&join, pk);
    app.outline.clear_calls();

    set_authentik_fault(&app.authentik, fault, true);
    let kind = match trigger {
        Trigger::Push => {
            // The group event makes the catalog stale, so the user job must list groups again.
            let resp = app
                .post_authentik(&group_event(
                    &format!("{case}-g"),
                    "model_updated",
                    &stay,
                    "Stay",
                ))
                .await;
            assert_eq!(resp.status().as_u16(), 202, "{case}");
            let resp = app
                .post_authentik(&user_event(
                    &format!("{case}-u"),
                    "model_updated",
                    pk,
                    "Jane",
                ))
                .await;
            assert_eq!(resp.status().as_u16(), 202, "{case}");
            "user"
        }
        Trigger::Signin => {
            assert_eq!(app.signin(&jane).await.status().as_u16(), 202, "{case}");
            "signin"
        }
        Trigger::Reconcile => {
            app.queue.submit(JobKey::Reconcile).expect("queued");
            "reconcile"
        }
    };
    let retried = [("kind", kind), ("result", "retry")];
    until(
        &format!("{case}: the job met the fault and is retrying"),
        Duration::from_secs(15),
        || async {
            !removals(&app.outline.calls()).is_empty()
                || metric(&app.metrics_text().await, "bridge_jobs_total", &retried) >= 1.0
        },
    )
    .await;
    assert_eq!(
        removals(&app.outline.calls()),
        vec![],
        "{case}: no removal while Authentik cannot be read in full"
    );
    if matches!(fault, AuthentikFault::Slow) {
        let text = app.metrics_text().await;
        assert!(
            metric(
                &text,
                "bridge_upstream_requests_total",
                &[("upstream", "authentik"), ("status", "timeout")]
            ) >= 1.0,
            "{case}: the calls timed out"
        );
    }
    assert!(app.outline.members(&og_leave).contains_key(&jane), "{case}");

    set_authentik_fault(&app.authentik, fault, false);
    eventually(
        &format!("{case}: converged"),
        Duration::from_secs(20),
        || {
            app.outline.members(&og_join).contains_key(&jane)
                && !app.outline.members(&og_leave).contains_key(&jane)
        },
    )
    .await;
    app.settle().await;
    let calls = app.outline.calls();
    assert_eq!(
        removals(&calls),
        vec![(og_leave.clone(), jane.clone())],
        "{case}: the one removal Authentik asked for, and no other"
    );
    assert_eq!(
        app.outline.members(&og_stay).get(&jane).map(String::as_str),
        Some("admin"),
        "{case}: still an admin of Stay"
    );
}

/// Runs the four faults in both membership modes for one trigger, all at once: each case has its own fakes
/// and bridge, and all of them spend their time waiting on timeouts and backoff.
async fn authentik_faults_during(trigger: Trigger) {
    let cases = ALL_AUTHENTIK_FAULTS.iter().flat_map(|f| {
        [MembershipMode::Direct, MembershipMode::Inherited]
            .map(|mode| authentik_fault_case(*f, trigger, mode))
    });
    futures::future::join_all(cases).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentik_down_slow_500_or_partial_during_a_push_removes_nothing_then_converges() {
    authentik_faults_during(Trigger::Push).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentik_down_slow_500_or_partial_during_a_signin_removes_nothing_then_converges() {
    authentik_faults_during(Trigger::Signin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentik_down_slow_500_or_partial_during_a_reconcile_removes_nothing_then_converges() {
    authentik_faults_during(Trigger::Reconcile).await;
}

// ----- Outline: 429 storms, 5xx, slow; the queue bound --------------------------------------------------

/// Twenty 429s in a row exhaust one call's patience; thirty make the job retry as a whole. Each 429 carries
/// `Retry-After: 0.05`, and the next request always comes at least that much later. Nothing is lost.
#[tokio::test]
async fn a_429_storm_honours_retry_after_and_loses_nothing() {
    let (authentik, outline) = start_fakes().await;
    let pk = authentik.add_user("jane", "Jane", "jane@example.com");
    let g = authentik.add_group("Storm");
    authentik.add_member(&g, pk);
    let app = spawn_app_with(authentik, outline, |_| {}).await;
    let jane = app.outline.add_user("Jane", "jane@example.com");
    let og = app.outline.add_group("Storm", None);
    app.outline.clear_calls();
    app.outline.fail_next(30, 429);
    assert_eq!(app.signin(&jane).await.status().as_u16(), 202);
    app.settle().await;
    assert!(app.outline.members(&og).contains_key(&jane), "nothing lost");
    let calls = app.outline.calls();
    assert_eq!(app.outline.throttled_count(), 30);
    for pair in calls.windows(2) {
        if pair[0].status == 429 {
            let gap = pair[1].at.duration_since(pair[0].at);
            assert!(
                gap >= Duration::from_millis(50),
                "Retry-After 0.05 s not honoured: the next call came {gap:?} later"
            );
        }
    }
    let text = app.metrics_text().await;
    assert_eq!(metric(&text, "bridge_outline_throttled_total", &[]), 30.0);
    assert!(
        metric(
            &text,
            "bridge_jobs_total",
            &[("kind", "signin"), ("result", "retry")]
        ) >= 1.0,
        "the 21st 429 failed the call and the job retried"
    );
}

/// Outline's own limiter is far stricter than the bridge believes (8 requests per 400 ms). A 429's
/// `Retry-After` holds back every call, not only the one throttled: no request sent after a 429 was received
/// lands in the window that 429 closed (only those already on their way may). All 30 adds arrive.
#[tokio::test]
async fn a_rate_limit_far_below_the_setting_is_followed_by_retry_after() {
    let (authentik, outline) = start_fakes().await;
    let g = authentik.add_group("Paced");
    let og = outline.add_group("Paced", None);
    let mut pks = Vec::new();
    for i in 0..30 {
        let email = format!("p{i}@example.com");
        pks.push(authentik.add_user(&format!("p{i}"), "P", &email));
        outline.add_user("P", &email);
    }
    let app = spawn_app_with(authentik, outline, |_| {}).await;
    for pk in &pks {
        app.authentik.add_member(&g, *pk);
    }
    let window = Duration::from_millis(400);
    app.outline.set_rate_limit(8, window);
    app.outline.clear_calls();
    let resp = app
        .post_authentik(&group_event("paced-1", "model_updated", &g, "Paced"))
        .await;
    assert_eq!(resp.status().as_u16(), 202);
    app.settle().await;
    assert_eq!(app.outline.members(&og).len(), 30, "all 30 added");

    // Replays the fake's fixed window over the call log to know when each 429's window closed.
    let calls = app.outline.calls();
    let mut opened: Option<Instant> = None;
    let mut closes_at = Vec::with_capacity(calls.len());
    for c in &calls {
        if !matches!(opened, Some(t) if c.at < t + window) {
            opened = Some(c.at);
        }
        closes_at.push(opened.map(|t| t + window));
    }
    // Writes go out a few at a time, so a request already on its way when the 429 came may still land in
    // the closed window; anything arriving well after the 429 was sent after it was known.
    let in_flight = Duration::from_millis(100);
    let mut throttled = 0;
    for (i, c) in calls.iter().enumerate() {
        if c.status != 429 {
            continue;
        }
        throttled += 1;
        let closes = closes_at[i].expect("a window");
        for later in &calls[i + 1..] {
            if later.at > c.at + in_flight && later.at < closes {
                panic!(
                    "a request came {:?} after a 429 and {:?} before its window closed",
                    later.at.duration_since(c.at),
                    closes.duration_since(later.at)
                );
            }
        }
    }
    assert!(throttled > 0, "the limiter did throttle");
}

/// Outline answers 500 now and then (retried inside the call), then is down (503) for a while (the job
/// retries as a whole); once it is back all 20 adds arrive, each once.
#[tokio::test]
async fn outline_5xx_and_an_outage_lose_nothing() {
    let (authentik, outline) = start_fakes().await;
    let g = authentik.add_group("Flaky");
    let og = outline.add_group("Flaky", None);
    let mut pks = Vec::new();
    for i in 0..20 {
        let email = format!("f{i}@example.com");
        pks.push(authentik.add_user(&format!("f{i}"), "F", &email));
        outline.add_user("F", &email);
    }
    let app = spawn_app_with(authentik, outline, |_| {}).await;
    for pk in &pks[..10] {
        app.authentik.add_member(&g, *pk);
    }
    app.outline.clear_calls();
    app.outline.fail_next(2, 500);
    app.post_authentik(&group_event("flaky-1", "model_updated", &g, "Flaky"))
        .await;
    app.settle().await;
    assert_eq!(app.outline.members(&og).len(), 10, "two 500s cost nothing");

    for pk in &pks[10..] {
        app.authentik.add_member(&g, *pk);
    }
    app.outline.set_down(true);
    app.post_authentik(&group_event("flaky-2", "model_updated", &g, "Flaky"))
        .await;
    until_metric(
        &app,
        "bridge_jobs_total",
        &[("kind", "group"), ("result", "retry")],
        1.0,
        Duration::from_secs(10),
    )
    .await;
    app.outline.set_down(false);
    app.settle().await;
    assert_eq!(app.outline.members(&og).len(), 20, "nothing lost");
    for ((_, user), n) in successful_adds(&app.outline.calls()) {
        assert_eq!(n, 1, "{user} added {n} times");
    }
}

/// Outline slower than UPSTREAM_TIMEOUT: the sign-in job times out before any write and retries; when
/// Outline is fast again it converges, and the group admin stays admin.
#[tokio::test]
async fn outline_slower_than_the_timeout_then_recovers() {
    let (authentik, outline) = start_fakes().await;
    let pk = authentik.add_user("jane", "Jane", "jane@example.com");
    let stay = authentik.add_group("Stay");
    let join = authentik.add_group("Join");
    let _leave = authentik.add_group("Leave");
    authentik.add_member(&stay, pk);
    authentik.add_member(&join, pk);
    let app = spawn_app_with(authentik, outline, |s| {
        s.upstream_timeout = Duration::from_secs(1);
    })
    .await;
    let jane = app.outline.add_user("Jane", "jane@example.com");
    let og_stay = app.outline.add_group("Stay", None);
    let og_join = app.outline.add_group("Join", None);
    let og_leave = app.outline.add_group("Leave", None);
    app.outline.add_member(&og_stay, &jane, "admin");
    app.outline.add_member(&og_leave, &jane, "member");
    app.outline.set_latency(Duration::from_millis(1500));
    assert_eq!(app.signin(&jane).await.status().as_u16(), 202);
    until_metric(
        &app,
        "bridge_jobs_total",
        &[("kind", "signin"), ("result", "retry")],
        1.0,
        Duration::from_secs(15),
    )
    .await;
    assert!(
        metric(
            &app.metrics_text().await,
            "bridge_upstream_requests_total",
            &[("upstream", "outline"), ("status", "timeout")]
        ) >= 1.0
    );
    app.outline.set_latency(Duration::ZERO);
    app.settle().await;
    assert!(app.outline.members(&og_join).contains_key(&jane));
    assert!(!app.outline.members(&og_leave).contains_key(&jane));
    assert_eq!(
        app.outline.members(&og_stay).get(&jane).map(String::as_str),
        Some("admin")
    );
}

/// Forty sign-ins at once against a queue of 8 while Outline is slow (100 ms an answer): the queue never
/// holds more than 8 targets, the rest get 503 with `Retry-After`, and every accepted sign-in is applied.
/// Outline never re-sends a refused delivery (docs/src/upstream/outline.md §2.6), so the next reconcile repairs the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_stays_bounded_and_answers_503_when_full() {
    let (authentik, outline) = start_fakes().await;
    let g = authentik.add_group("Crowd");
    let og = outline.add_group("Crowd", None);
    let mut ids = Vec::new();
    for i in 0..40 {
        let email = format!("c{i}@example.com");
        let pk = authentik.add_user(&format!("c{i}"), "C", &email);
        authentik.add_member(&g, pk);
        ids.push(email);
    }
    let app = spawn_app_with(authentik, outline, |s| {
        s.queue_capacity = 8;
        s.worker_concurrency = 2;
    })
    .await;
    let ids: Vec<String> = ids.iter().map(|e| app.outline.add_user("C", e)).collect();
    app.outline.set_latency(Duration::from_millis(100));

    let sampler_queue = app.queue.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_flag = stop.clone();
    let sampler = tokio::spawn(async move {
        let mut max = 0;
        while !stop_flag.load(std::sync::atomic::Ordering::SeqCst) {
            max = max.max(sampler_queue.depth());
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        max
    });
    let answers = futures::future::join_all(ids.iter().map(|id| async {
        let resp = app.signin(id).await;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp.text().await.unwrap_or_default();
        (id.clone(), status, retry_after, body)
    }))
    .await;
    app.settle().await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let max_depth = sampler.await.expect("sampler");
    assert!(max_depth <= 8, "queue depth reached {max_depth}");

    let accepted: Vec<&String> = answers
        .iter()
        .filter(|a| a.1 == 202)
        .map(|a| &a.0)
        .collect();
    let refused: Vec<_> = answers.iter().filter(|a| a.1 == 503).collect();
    assert_eq!(accepted.len() + refused.len(), 40, "{answers:?}");
    assert!(!refused.is_empty(), "the queue did fill");
    for (_, _, retry_after, body) in &refused {
        assert_eq!(retry_after.as_deref(), Some("5"));
        assert!(
            body.contains("queue is full") && !body.contains('\n'),
            "{body}"
        );
    }
    let members = app.outline.members(&og);
    for id in &accepted {
        assert!(
            members.contains_key(*id),
            "accepted sign-in of {id} applied"
        );
    }
    let text = app.metrics_text().await;
    assert_eq!(
        metric(
            &text,
            "bridge_webhooks_total",
            &[("source", "outline"), ("outcome", "queue_full")]
        ),
        refused.len() as f64
    );
    assert_eq!(metric(&text, "bridge_queue_capacity", &[]), 8.0);

    app.outline.set_latency(Duration::ZERO);
    app.queue.submit(JobKey::Reconcile).expect("queued");
    app.settle().await;
    assert_eq!(
        app.outline.members(&og).len(),
        40,
        "the reconcile repaired the rest"
    );
}

// ----- duplicates, out-of-order and replays -------------------------------------------------------------

/// Three Authentik changes (a joins, b joins, c leaves), delivered shuffled and repeated; an Outline sign-in
/// delivered five times, as a replay within the window would be; the same delivery signed six minutes ago.
/// Each change is written exactly once, and the stale replay is refused with no upstream call.
#[tokio::test]
async fn duplicate_out_of_order_and_replayed_deliveries_apply_each_change_once() {
    let (authentik, outline) = start_fakes().await;
    let g = authentik.add_group("G");
    let signin_group = authentik.add_group("Signin");
    let og = outline.add_group("G", None);
    let og_signin = outline.add_group("Signin", None);
    let mut people = Vec::new();
    for name in ["a", "b", "c", "d"] {
        let email = format!("{name}@example.com");
        let pk = authentik.add_user(name, name, &email);
        let id = outline.add_user(name, &email);
        people.push((pk, id));
    }
    authentik.add_member(&g, people[2].0);
    outline.add_member(&og, &people[2].1, "member");
    let app = spawn_app_with(authentik, outline, |_| {}).await;

    app.authentik.clear_events();
    app.authentik.add_member(&g, people[0].0);
    app.authentik.add_member(&g, people[1].0);
    app.authentik.remove_member(&g, people[2].0);
    let events = app.authentik.events();
    assert_eq!(events.len(), 3, "one event per change");
    app.outline.clear_calls();
    for i in [2, 0, 2, 1, 0, 1, 2] {
        let resp = app.post_authentik(&events[i]).await;
        assert_eq!(resp.status().as_u16(), 202);
    }
    app.settle().await;
    let members: BTreeSet<String> = app.outline.members(&og).into_keys().collect();
    assert_eq!(
        members,
        BTreeSet::from([people[0].1.clone(), people[1].1.clone()])
    );
    assert_eq!(app.outline.count_calls("groups.add_user"), 2);
    assert_eq!(app.outline.count_calls("groups.remove_user"), 1);
    assert_eq!(
        metric(
            &app.metrics_text().await,
            "bridge_webhooks_total",
            &[("source", "authentik"), ("outcome", "duplicate")]
        ),
        4.0
    );

    // An Outline delivery replayed five times inside the window: one write.
    app.authentik.add_member(&signin_group, people[3].0);
    let d = &people[3].1;
    let body = app.outline.signin_delivery(d);
    let sig = outline_signature(OUTLINE_SECRET, now_ms(), body.as_bytes());
    app.outline.clear_calls();
    for _ in 0..5 {
        let resp = app.post_outline("/sync", &body, Some(sig.clone())).await;
        assert_eq!(resp.status().as_u16(), 202);
        app.settle().await;
    }
    assert!(app.outline.members(&og_signin).contains_key(d));
    assert_eq!(
        app.outline.count_calls("groups.add_user"),
        1,
        "one write for five deliveries"
    );

    // Outside the ±5 minute window: refused before anything is read.
    app.outline.clear_calls();
    app.authentik.clear_calls();
    for skew in [-6 * 60 * 1000i64, 6 * 60 * 1000] {
        let t = (now_ms() as i64 + skew) as u64;
        let stale = outline_signature(OUTLINE_SECRET, t, body.as_bytes());
        let resp = app.post_outline("/sync", &body, Some(stale)).await;
        assert_eq!(resp.status().as_u16(), 401, "skew {skew} ms");
        let text = resp.text().await.unwrap_or_default();
        assert!(text.contains("5 minute window"), "{text}");
    }
    // A delivery four minutes old (a slow queue at Outline's end) is still inside the window.
    let late = outline_signature(OUTLINE_SECRET, now_ms() - 4 * 60 * 1000, body.as_bytes());
    assert_eq!(
        app.post_outline("/sync", &body, Some(late))
            .await
            .status()
            .as_u16(),
        202
    );
    app.settle().await;
    assert_eq!(app.outline.count_calls("groups.add_user"), 0);
    assert_eq!(app.outline.count_calls("groups.remove_user"), 0);
}
