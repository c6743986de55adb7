//! The load and scenario tool behind `docs/src/benchmarks.md`: every figure there is printed by one of its modes.
//!
//! `cargo bench --bench load -- <mode> [--flag value]...`; `cargo bench --bench load -- help` lists the modes.
//! Everything runs on 127.0.0.1 against the simulated upstreams of `upstream_fakes` (crates/upstream-fakes), with a set
//! latency; each mode is bounded in count and time and stops by itself. Modes that measure the bridge as a
//! process (`intake`, `rss`, `reconcile`, `growth`) host the fakes here and run the release binary
//! (`CARGO_BIN_EXE_authentik-bridge`) as a child process, so the fakes never share its address space.

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt::Write as _;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use authentik_bridge::app::startup::{build_engine, Application};
use authentik_bridge::configuration::{RateLimit, Secret, Settings, UpstreamSettings};
use authentik_bridge::metrics::Metrics;
use authentik_bridge::runtime::{JobQueue, ReconcileOptions};
use authentik_bridge::sinks::run_reconcile;
use upstream_fakes::outline_signature;
use upstream_fakes::{
    event_document, python_json, FakeAuthentik, FakeAuthentikOptions, FakeOpenFga,
    FakeOpenFgaOptions, FakeOutline, FakeOutlineOptions, OutlineCall,
};

type BoxResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

const SECRET: &str = "ol_whs_bench_secret_0123456789abcdef";
const TOKEN: &str = "bench-webhook-token-0123456789abcdef";
const BRIDGE_BIN: &str = env!("CARGO_BIN_EXE_authentik-bridge");

/// The binary under test: the one cargo built with this tool, or `LOAD_BRIDGE_BIN` (to compare a patched build).
fn bridge_bin() -> String {
    std::env::var("LOAD_BRIDGE_BIN").unwrap_or_else(|_| BRIDGE_BIN.to_string())
}
/// A limit so high that the bridge's limiter never waits: for figures about the bridge's own cost.
const UNLIMITED: &str = "1000000/60";
/// Authentik's and Outline's page size cap (docs/src/upstream/authentik.md §7.2, docs/src/upstream/outline.md §3.3).
const PAGE: usize = 100;

const HELP: &str = "\
usage: cargo bench --bench load -- <mode> [--flag value]...

modes (figure numbers as in docs/src/benchmarks.md):
  intake           1  wrk against `authentik-bridge serve`: /sync, /webhooks/authentik, bad signatures
                      --seconds 10 --connections 32 --threads 1 --users 300 --groups 40
  event-latency    2  Authentik event POST -> last Outline write   --events 200 --latency-ms 5
  signin-latency   3  Outline sign-in POST -> last Outline write   --signins 200 --latency-ms 5
  bulk             4  1,000 members added to one group at once     --members 1000 --rate 6000/60 --latency-ms 5
                      --events per-member|one
  signin-reads     5  upstream reads per sign-in, warm caches      --users 300 --groups 40 --signins 100
  reconcile-calls  6  upstream calls of one reconcile, no drift    --users 1000 --groups 100
  rss              7  idle RSS of `authentik-bridge serve`         --users 1000 --groups 100 --idle-seconds 5
  reconcile        8  `authentik-bridge reconcile` as a process    --users 10000 --groups 500 --drift-every 100
  growth           9  reconcile time and peak RSS by size          --sizes 1000,10000,100000
  stale-cache      4  a group event during a slow group read: is the later change lost?  --delay-ms 100
  openfga-push     11  Authentik event -> OpenFGA write, OpenFGA alone   --events 200 --latency-ms 5
  openfga-reconcile 12 `authentik-bridge reconcile` into OpenFGA alone  --users 10000 --groups 500 --drift-every 100 --strays 50
  scim-intake      13  SCIM POST /Users and member PATCH vs /healthz, with bridge CPU a request  --requests 2000 --concurrency 8 --groups 20
  scim-sync        14  SCIM initial full sync until Outline converges  --users 10000 --groups 500 --per-user 3 --rate 6000/60 --concurrency 4 --new-groups 0
  store-pass       15  a 10k-user pass with and without STATE_DIR: time and peak RSS  --users 10000 --groups 500 --per-user 3
  fakes               start both fakes, print their settings, wait  --users --groups --latency-ms --rate --max-seconds 600
  all                 figures 2-8 with their defaults, then a summary table

common flags: --latency-ms 5 (both fakes), --per-user 3 (groups per user), --rate REQUESTS/SECONDS";

fn main() -> ExitCode {
    // `cargo bench` appends `--bench`; it means nothing here.
    let raw: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let Some((mode, rest)) = raw.split_first() else {
        println!("{HELP}");
        return ExitCode::SUCCESS;
    };
    let args = match Args::parse(rest) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}\n\n{HELP}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", machine_line());
    let result = runtime.block_on(async {
        match mode.as_str() {
            "intake" => intake(&args).await.map(drop),
            "event-latency" => event_latency(&args).await.map(drop),
            "signin-latency" => signin_latency(&args).await.map(drop),
            "bulk" => bulk(&args).await.map(drop),
            "signin-reads" => signin_reads(&args).await.map(drop),
            "reconcile-calls" => reconcile_calls(&args).await.map(drop),
            "rss" => idle_rss(&args).await.map(drop),
            "reconcile" => reconcile_process(&args).await.map(drop),
            "growth" => growth(&args).await,
            "stale-cache" => stale_cache(&args).await.map(drop),
            "fakes" => fakes(&args).await,
            "openfga-push" => openfga_push(&args).await.map(drop),
            "openfga-reconcile" => openfga_reconcile(&args).await.map(drop),
            "scim-intake" => scim_intake(&args).await.map(drop),
            "scim-sync" => scim_sync(&args).await.map(drop),
            "store-pass" => store_pass(&args).await.map(drop),
            "all" => all(&args).await,
            "help" | "--help" | "-h" => {
                println!("{HELP}");
                Ok(())
            }
            other => Err(format!("unknown mode {other:?}").into()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load: {e}");
            ExitCode::FAILURE
        }
    }
}

// ----- arguments -------------------------------------------------------------------------------------------

struct Args(BTreeMap<String, String>);

impl Args {
    fn parse(rest: &[String]) -> BoxResult<Args> {
        let mut map = BTreeMap::new();
        let mut it = rest.iter();
        while let Some(flag) = it.next() {
            let key = flag
                .strip_prefix("--")
                .ok_or_else(|| format!("expected --flag, got {flag:?}"))?;
            let value = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
            map.insert(key.to_string(), value.clone());
        }
        Ok(Args(map))
    }
    fn usize(&self, key: &str, default: usize) -> BoxResult<usize> {
        match self.0.get(key) {
            Some(v) => v
                .replace('_', "")
                .parse()
                .map_err(|_| format!("--{key} {v:?} is not a whole number").into()),
            None => Ok(default),
        }
    }
    fn str<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.0.get(key).map(String::as_str).unwrap_or(default)
    }
    fn latency(&self) -> BoxResult<Duration> {
        Ok(Duration::from_millis(self.usize("latency-ms", 5)? as u64))
    }
    fn rate(&self, default: &str) -> BoxResult<RateLimit> {
        parse_rate(self.str("rate", default))
    }
}

fn parse_rate(s: &str) -> BoxResult<RateLimit> {
    let (n, w) = s
        .split_once('/')
        .ok_or_else(|| format!("--rate {s:?}: expected REQUESTS/SECONDS"))?;
    Ok(RateLimit {
        requests: n.parse().map_err(|_| format!("--rate {s:?}: bad count"))?,
        window: Duration::from_secs(w.parse().map_err(|_| format!("--rate {s:?}: bad window"))?),
    })
}

// ----- the machine -----------------------------------------------------------------------------------------

fn machine_line() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "# machine: {cores} cores, {cpu}; load average {load}; unix time {secs} ({})",
        utc_date(secs)
    )
}

/// `YYYY-MM-DD` in UTC, so the figures carry their date without a date crate.
fn utc_date(secs: u64) -> String {
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

// ----- the simulated world ---------------------------------------------------------------------------------

/// A directory: `users` people, each in `per_user` of `groups` groups, the same on both sides, every Outline
/// group linked by `externalId`; plus `extra_users` who exist on both sides in no group.
#[derive(Clone)]
struct WorldSpec {
    users: usize,
    groups: usize,
    per_user: usize,
    extra_users: usize,
    /// Every `drift_every`-th membership is missing in Outline (0: none), so a reconcile has writes to make.
    drift_every: usize,
    latency: Duration,
    rate: RateLimit,
}

struct World {
    authentik: FakeAuthentik,
    outline: FakeOutline,
    ak_groups: Vec<String>,
    ol_groups: Vec<String>,
    ak_users: Vec<i64>,
    ol_users: Vec<String>,
    extra_ak: Vec<i64>,
    extra_ol: Vec<String>,
    /// Memberships present in Outline, per group, before anything runs.
    present_in_outline: Vec<usize>,
    memberships: usize,
    withheld: usize,
}

/// The groups of user `i`: `per_user` groups spread evenly, so every group gets the same number of members.
fn groups_of(i: usize, groups: usize, per_user: usize) -> Vec<usize> {
    if groups == 0 {
        return Vec::new();
    }
    let stride = (groups / per_user.max(1)).max(1);
    let mut v: Vec<usize> = (0..per_user).map(|k| (i + k * stride) % groups).collect();
    v.sort_unstable();
    v.dedup();
    v
}

impl World {
    async fn seed(spec: &WorldSpec) -> BoxResult<World> {
        let authentik = FakeAuthentik::start(FakeAuthentikOptions {
            latency: spec.latency,
            ..FakeAuthentikOptions::default()
        })
        .await?;
        let outline = FakeOutline::start(FakeOutlineOptions {
            latency: spec.latency,
            rate_limit_requests: spec.rate.requests,
            rate_limit_window: spec.rate.window,
            ..FakeOutlineOptions::default()
        })
        .await?;
        let mut ak_groups = Vec::with_capacity(spec.groups);
        let mut ol_groups = Vec::with_capacity(spec.groups);
        for g in 0..spec.groups {
            let name = format!("team-{g:05}");
            let uuid = authentik.add_group(&name);
            ol_groups.push(outline.add_group(&name, Some(&uuid)));
            ak_groups.push(uuid);
        }
        let mut ak_users = Vec::with_capacity(spec.users);
        let mut ol_users = Vec::with_capacity(spec.users);
        let mut present_in_outline = vec![0usize; spec.groups];
        let (mut memberships, mut withheld) = (0usize, 0usize);
        for i in 0..spec.users {
            let email = format!("user{i:06}@example.com");
            let name = format!("User {i}");
            let pk = authentik.add_user(&format!("user{i:06}"), &name, &email);
            let ou = outline.add_user(&name, &email);
            for g in groups_of(i, spec.groups, spec.per_user) {
                authentik.add_member(&ak_groups[g], pk);
                memberships += 1;
                if spec.drift_every > 0 && memberships % spec.drift_every == 0 {
                    withheld += 1;
                } else {
                    outline.add_member(&ol_groups[g], &ou, "member");
                    present_in_outline[g] += 1;
                }
            }
            ak_users.push(pk);
            ol_users.push(ou);
        }
        let mut extra_ak = Vec::with_capacity(spec.extra_users);
        let mut extra_ol = Vec::with_capacity(spec.extra_users);
        for i in 0..spec.extra_users {
            let email = format!("extra{i:06}@example.com");
            let name = format!("Extra {i}");
            extra_ak.push(authentik.add_user(&format!("extra{i:06}"), &name, &email));
            extra_ol.push(outline.add_user(&name, &email));
        }
        authentik.clear_events();
        authentik.clear_calls();
        outline.clear_calls();
        Ok(World {
            authentik,
            outline,
            ak_groups,
            ol_groups,
            ak_users,
            ol_users,
            extra_ak,
            extra_ol,
            present_in_outline,
            memberships,
            withheld,
        })
    }

    fn settings(&self, rate: RateLimit) -> Settings {
        let mut s = Settings::for_upstreams(
            UpstreamSettings {
                url: self.authentik.url(),
                token: Secret::new(self.authentik.token()),
            },
            UpstreamSettings {
                url: self.outline.url(),
                token: Secret::new(self.outline.token()),
            },
        );
        s.outline_webhook_secret = Some(Secret::new(SECRET));
        s.authentik_webhook_token = Some(Secret::new(TOKEN));
        s.outline_rate_limit = rate;
        s.reconcile_interval = None;
        s.max_removals = 1_000_000;
        s
    }

    /// The environment of the release binary, and nothing else from this process's environment.
    fn env(&self, rate: RateLimit, listen: &str) -> Vec<(String, String)> {
        [
            ("AUTHENTIK_URL", self.authentik.url()),
            ("AUTHENTIK_TOKEN", self.authentik.token()),
            ("OUTLINE_URL", self.outline.url()),
            ("OUTLINE_TOKEN", self.outline.token()),
            ("OUTLINE_WEBHOOK_SECRET", SECRET.to_string()),
            ("AUTHENTIK_WEBHOOK_TOKEN", TOKEN.to_string()),
            ("LISTEN_ADDR", listen.to_string()),
            ("RECONCILE_INTERVAL", "0".to_string()),
            ("OUTLINE_RATE_LIMIT_REQUESTS", rate.requests.to_string()),
            (
                "OUTLINE_RATE_LIMIT_WINDOW",
                rate.window.as_secs().to_string(),
            ),
            ("MAX_REMOVALS", "1000000".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// What a reconcile of this world must read, page by page, before it writes anything.
    fn expected_reconcile_reads(&self) -> ReconcileReads {
        let ak_groups = self.ak_groups.len() + 2; // "authentik Admins" and "authentik Read-only"
        let ol_users = self.ak_users.len() + self.extra_ak.len() + 1; // + the key's owner
        ReconcileReads {
            // Authentik's walk stops when the rows reach `count`.
            authentik_group_pages: ak_groups.div_ceil(PAGE).max(1),
            // Outline's walk stops at a short page (`nextPath` is always sent, docs/src/upstream/outline.md §9).
            outline_user_pages: ol_users / PAGE + 1,
            outline_group_pages: self.ol_groups.len() / PAGE + 1,
            membership_pages: self.present_in_outline.iter().map(|m| m / PAGE + 1).sum(),
        }
    }
}

struct ReconcileReads {
    authentik_group_pages: usize,
    outline_user_pages: usize,
    outline_group_pages: usize,
    membership_pages: usize,
}

impl ReconcileReads {
    fn total(&self) -> usize {
        self.authentik_group_pages
            + self.outline_user_pages
            + self.outline_group_pages
            + self.membership_pages
    }
}

fn is_outline_write(method: &str) -> bool {
    matches!(
        method,
        "groups.add_user" | "groups.remove_user" | "groups.create" | "groups.update"
    )
}

/// Calls by kind: Authentik's by endpoint, Outline's by method.
#[derive(Default)]
struct CallCounts {
    authentik: BTreeMap<String, usize>,
    outline: BTreeMap<String, usize>,
    throttled: usize,
}

impl CallCounts {
    fn take(world: &World) -> CallCounts {
        let mut c = CallCounts::default();
        for call in world.authentik.calls() {
            let p = call.path.trim_start_matches("/api/v3/core/");
            let kind = match p {
                "groups/" => "GET groups/ (list)",
                "users/" => "GET users/ (list)",
                _ if p.ends_with("add_user/") || p.ends_with("remove_user/") => "POST (write)",
                _ if p.starts_with("groups/") => "GET groups/{id}/",
                _ if p.starts_with("users/") => "GET users/{pk}/",
                _ => "other",
            };
            *c.authentik.entry(kind.to_string()).or_default() += 1;
        }
        for call in world.outline.calls() {
            let kind = if call.method == "groups.list" && call.body.get("userId").is_some() {
                "groups.list {userId}".to_string()
            } else {
                call.method.clone()
            };
            *c.outline.entry(kind).or_default() += 1;
        }
        c.throttled = world.outline.throttled_count();
        c
    }
    fn authentik_reads(&self) -> usize {
        self.authentik
            .iter()
            .filter(|(k, _)| k.starts_with("GET"))
            .map(|(_, n)| n)
            .sum()
    }
    fn outline_reads(&self) -> usize {
        self.outline
            .iter()
            .filter(|(k, _)| !is_outline_write(k))
            .map(|(_, n)| n)
            .sum()
    }
    fn outline_writes(&self) -> usize {
        self.outline
            .iter()
            .filter(|(k, _)| is_outline_write(k))
            .map(|(_, n)| n)
            .sum()
    }
    fn render(&self) -> String {
        let mut s = String::new();
        for (k, n) in &self.authentik {
            let _ = writeln!(s, "    authentik {k:<28} {n:>7}");
        }
        for (k, n) in &self.outline {
            let _ = writeln!(s, "    outline   {k:<28} {n:>7}");
        }
        let _ = write!(
            s,
            "    outline   429 answers                  {:>7}",
            self.throttled
        );
        s
    }
}

// ----- the bridge, in-process or as the release binary ------------------------------------------------------

struct InProcess {
    url: String,
    queue: JobQueue,
    metrics: Arc<Metrics>,
}

/// Starts the bridge in this process (as the demo and the tests do) and waits for its start-up reconcile.
async fn start_in_process(world: &World, rate: RateLimit) -> BoxResult<InProcess> {
    start_with_settings(world.settings(rate)).await
}

async fn start_with_settings(settings: Settings) -> BoxResult<InProcess> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let app = Application::build_with_listener(settings, listener).await?;
    let url = format!("http://127.0.0.1:{}", app.port());
    let queue = app.queue();
    let metrics = app.metrics();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    queue.wait_idle().await;
    Ok(InProcess {
        url,
        queue,
        metrics,
    })
}

/// A child process that is killed when dropped, so no bridge outlives its scenario.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn scratch_dir() -> BoxResult<PathBuf> {
    let dir = std::env::temp_dir().join(format!("authentik-bridge-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn free_port() -> BoxResult<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `authentik-bridge serve` against this world, logs to a file; returns once its start-up reconcile is done.
async fn spawn_serve(
    world: &World,
    rate: RateLimit,
    log: &Path,
) -> BoxResult<(ChildGuard, String, Duration)> {
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let out = File::create(log)?;
    let err = out.try_clone()?;
    let started = Instant::now();
    let child = Command::new(bridge_bin())
        .arg("serve")
        .env_clear()
        .envs(world.env(rate, &listen))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bridge_bin()))?;
    let guard = ChildGuard(child);
    let url = format!("http://{listen}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Ok(r) = http.get(format!("{url}/metrics")).send().await {
            let text = r.text().await.unwrap_or_default();
            if metric(&text, "bridge_reconcile_total", &[("result", "ok")]) >= 1.0 {
                break;
            }
        }
        if Instant::now() > deadline {
            return Err("the bridge's start-up reconcile did not finish within 300 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((guard, url, started.elapsed()))
}

/// One sample of a Prometheus text exposition: the value of `name` whose labels include all of `labels`.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            series == &name
                || (series.starts_with(name)
                    && series[name.len()..].starts_with('{')
                    && labels
                        .iter()
                        .all(|(k, v)| series.contains(&format!("{k}=\"{v}\""))))
        })
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum()
}

async fn scrape(http: &reqwest::Client, url: &str) -> String {
    match http.get(format!("{url}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

fn proc_status_kb(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

// ----- small helpers ---------------------------------------------------------------------------------------

/// Polls `cond` until it holds, or fails after `limit`.
async fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> BoxResult<()> {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > limit {
            return Err(format!("timed out after {limit:?} waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile of a sample, in its unit.
fn percentile(sample: &[f64], p: f64) -> f64 {
    if sample.is_empty() {
        return f64::NAN;
    }
    let mut s = sample.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
    s[rank.min(s.len()) - 1]
}

fn summary(name: &str, sample_ms: &[f64]) -> String {
    format!(
        "{name}: n={} p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        sample_ms.len(),
        percentile(sample_ms, 50.0),
        percentile(sample_ms, 90.0),
        percentile(sample_ms, 99.0),
        percentile(sample_ms, 100.0)
    )
}

/// The last Outline write answered at or after `t0` that `matches`.
fn last_write_after(
    calls: &[OutlineCall],
    t0: Instant,
    matches: impl Fn(&Value) -> bool,
) -> Option<Instant> {
    calls
        .iter()
        .filter(|c| is_outline_write(&c.method) && c.at >= t0 && matches(&c.body))
        .map(|c| c.at)
        .max()
}

/// One line of the final table: figure, what, value, target, verdict.
struct Figure {
    id: &'static str,
    what: String,
    value: String,
    target: &'static str,
    met: Option<bool>,
}

impl Figure {
    fn row(&self) -> String {
        let verdict = match self.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "-",
        };
        format!(
            "| {} | {} | {} | {} | {} |",
            self.id, self.what, self.value, self.target, verdict
        )
    }
}

// ----- 1: webhook intake under wrk ------------------------------------------------------------------------

struct WrkResult {
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    requests: u64,
    non_2xx: u64,
    errors: String,
}

fn wrk_duration_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, factor) = if let Some(v) = s.strip_suffix("us") {
        (v, 0.001)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1000.0)
    } else if let Some(v) = s.strip_suffix('m') {
        (v, 60_000.0)
    } else {
        return None;
    };
    num.trim().parse::<f64>().ok().map(|v| v * factor)
}

fn parse_wrk(out: &str) -> BoxResult<WrkResult> {
    let mut r = WrkResult {
        requests_per_second: f64::NAN,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        requests: 0,
        non_2xx: 0,
        errors: String::new(),
    };
    for line in out.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            r.requests_per_second = v.trim().parse().unwrap_or(f64::NAN);
        } else if let Some(v) = t.strip_prefix("50%") {
            r.p50_ms = wrk_duration_ms(v).unwrap_or(f64::NAN);
        } else if let Some(v) = t.strip_prefix("99%") {
            r.p99_ms = wrk_duration_ms(v).unwrap_or(f64::NAN);
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            r.non_2xx = v.trim().parse().unwrap_or(0);
        } else if t.contains("requests in") {
            r.requests = t
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        } else if t.starts_with("Socket errors:") {
            r.errors = t.to_string();
        }
    }
    if r.requests_per_second.is_nan() {
        return Err(format!("could not read wrk's output:\n{out}").into());
    }
    Ok(r)
}

/// A Lua long string that cannot be closed by its content.
fn lua_string(s: &str) -> String {
    let mut level = 1;
    while s.contains(&format!("]{}]", "=".repeat(level))) {
        level += 1;
    }
    let eq = "=".repeat(level);
    format!("[{eq}[{s}]{eq}]")
}

fn wrk_fixed_script(body: &str, headers: &[(&str, &str)]) -> String {
    let mut s = format!("wrk.method = \"POST\"\nwrk.body = {}\n", lua_string(body));
    for (k, v) in headers {
        let _ = writeln!(s, "wrk.headers[\"{k}\"] = {}", lua_string(v));
    }
    s
}

/// Each request gets a new `event_pk`: the run's start second, the thread number and a counter fill the last
/// 12 digits, so the warm-up run and the measured run never share an id.
fn wrk_distinct_ids_script(prefix: &str, suffix: &str, headers: &[(&str, &str)]) -> String {
    let mut s = String::from("wrk.method = \"POST\"\n");
    for (k, v) in headers {
        let _ = writeln!(s, "wrk.headers[\"{k}\"] = {}", lua_string(v));
    }
    let _ = write!(
        s,
        "local threads = 0\nfunction setup(thread)\n  threads = threads + 1\n  thread:set(\"tid\", threads)\nend\n\
         local n = 0\nlocal start = os.time()\nlocal P = {}\nlocal S = {}\n\
         function request()\n  n = n + 1\n  return wrk.format(nil, nil, nil, P .. string.format(\"%04d%02d%06d\", start % 10000, tid or 0, n % 1000000) .. S)\nend\n",
        lua_string(prefix),
        lua_string(suffix)
    );
    s
}

async fn run_wrk(
    script: &Path,
    url: &str,
    threads: usize,
    connections: usize,
    seconds: usize,
) -> BoxResult<WrkResult> {
    let args = vec![
        "-t".to_string(),
        threads.to_string(),
        "-c".to_string(),
        connections.to_string(),
        "-d".to_string(),
        format!("{seconds}s"),
        "--timeout".to_string(),
        "5s".to_string(),
        "--latency".to_string(),
        "-s".to_string(),
        script.display().to_string(),
        url.to_string(),
    ];
    let output = tokio::task::spawn_blocking(move || Command::new("wrk").args(&args).output())
        .await?
        .map_err(|e| format!("cannot run wrk (apt-get install wrk): {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(format!(
            "wrk failed: {}\n{text}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    parse_wrk(&text)
}

async fn intake(args: &Args) -> BoxResult<Vec<Figure>> {
    let seconds = args.usize("seconds", 10)?;
    let connections = args.usize("connections", 32)?;
    let threads = args.usize("threads", 1)?;
    let spec = WorldSpec {
        users: args.usize("users", 300)?,
        groups: args.usize("groups", 40)?,
        per_user: args.usize("per-user", 3)?,
        extra_users: 0,
        drift_every: 0,
        latency: args.latency()?,
        rate: args.rate(UNLIMITED)?,
    };
    println!(
        "## 1. webhook intake: `authentik-bridge serve` (release) under wrk -t{threads} -c{connections} -d{seconds}s; fakes in this process, {} ms latency",
        spec.latency.as_millis()
    );
    let world = World::seed(&spec).await?;
    let dir = scratch_dir()?;
    let (bridge, url, _) = spawn_serve(&world, spec.rate, &dir.join("serve.log")).await?;
    let pid = bridge.0.id();
    let http = reqwest::Client::new();

    // A sign-in body signed now is valid for five minutes (the bridge's window): one fixed body serves the run.
    let signin = world.outline.signin_delivery(&world.ol_users[0]);
    let good_sig = outline_signature(SECRET, now_ms(), signin.as_bytes());
    let bad_sig = outline_signature("ol_whs_not_the_secret", now_ms(), signin.as_bytes());
    let model = world
        .authentik
        .group_model(&world.ak_groups[0])
        .ok_or("no group model")?;
    let doc = event_document("model_updated", Some(model), None);
    let fixed_event = python_json(&doc);
    let mut templ = doc.clone();
    templ["event_pk"] = json!("00000000-0000-4000-8000-@@ID@@");
    let templ = python_json(&templ);
    let (prefix, suffix) = templ.split_once("@@ID@@").ok_or("no placeholder")?;
    let bearer = format!("Bearer {TOKEN}");
    let json_ct = ("Content-Type", "application/json");

    struct Case {
        name: &'static str,
        path: &'static str,
        script: String,
        outcome_source: &'static str,
    }
    let cases = [
        Case {
            name: "POST /sync, valid signature (one signed body)",
            path: "/sync",
            script: wrk_fixed_script(&signin, &[json_ct, ("outline-signature", &good_sig)]),
            outcome_source: "outline",
        },
        Case {
            name: "POST /sync, valid, new connection per request",
            path: "/sync",
            script: wrk_fixed_script(
                &signin,
                &[
                    json_ct,
                    ("outline-signature", &good_sig),
                    ("Connection", "close"),
                ],
            ),
            outcome_source: "outline",
        },
        Case {
            name: "POST /webhooks/authentik, one event id (duplicates)",
            path: "/webhooks/authentik",
            script: wrk_fixed_script(&fixed_event, &[json_ct, ("Authorization", &bearer)]),
            outcome_source: "authentik",
        },
        Case {
            name: "POST /webhooks/authentik, distinct event ids",
            path: "/webhooks/authentik",
            script: wrk_distinct_ids_script(prefix, suffix, &[json_ct, ("Authorization", &bearer)]),
            outcome_source: "authentik",
        },
        Case {
            name: "POST /sync, bad signature (flood)",
            path: "/sync",
            script: wrk_fixed_script(&signin, &[json_ct, ("outline-signature", &bad_sig)]),
            outcome_source: "outline",
        },
        Case {
            name: "POST /webhooks/authentik, wrong token (flood)",
            path: "/webhooks/authentik",
            script: wrk_fixed_script(
                &fixed_event,
                &[json_ct, ("Authorization", "Bearer not-the-token")],
            ),
            outcome_source: "authentik",
        },
    ];
    println!("bridge: {} (pid {pid})", bridge_bin());
    println!("| case | req/s | p50 | p99 | requests | non-2xx | outcomes (bridge_webhooks_total) | handler p99 ≤ | bridge CPU | log bytes/request | bridge RSS after |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let log_path = dir.join("serve.log");
    let log_size = || std::fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
    let mut figures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let script = dir.join(format!("case{i}.lua"));
        std::fs::write(&script, &case.script)?;
        let target = format!("{url}{}", case.path);
        // One second of warm-up, not counted.
        run_wrk(&script, &target, threads, connections, 1).await?;
        let before = scrape(&http, &url).await;
        let cpu_before = proc_cpu_ticks(pid);
        let log_before = log_size();
        let r = run_wrk(&script, &target, threads, connections, seconds).await?;
        let cpu =
            proc_cpu_ticks(pid).saturating_sub(cpu_before) as f64 / clock_ticks() / seconds as f64;
        let after = scrape(&http, &url).await;
        let log_per_request = (log_size() - log_before) as f64 / r.requests.max(1) as f64;
        let handler_p99 =
            histogram_quantile_bound(&before, &after, "bridge_webhook_intake_seconds", 0.99);
        let mut outcomes = Vec::new();
        for outcome in [
            "accepted",
            "duplicate",
            "ignored",
            "rejected_auth",
            "rejected_body",
            "queue_full",
        ] {
            let labels = [("source", case.outcome_source), ("outcome", outcome)];
            let n = metric(&after, "bridge_webhooks_total", &labels)
                - metric(&before, "bridge_webhooks_total", &labels);
            if n > 0.0 {
                outcomes.push(format!("{outcome} {n:.0}"));
            }
        }
        let errors = if r.errors.is_empty() {
            String::new()
        } else {
            format!(" ({})", r.errors)
        };
        println!(
            "| {} | {:.0} | {:.2} ms | {:.2} ms | {} | {} | {}{errors} | {handler_p99} | {:.0} % | {log_per_request:.0} | {:.1} MB |",
            case.name,
            r.requests_per_second,
            r.p50_ms,
            r.p99_ms,
            r.requests,
            r.non_2xx,
            outcomes.join(", "),
            cpu * 100.0,
            proc_status_kb(pid, "VmRSS").unwrap_or(0) as f64 / 1024.0
        );
        figures.push(Figure {
            id: "1",
            what: case.name.to_string(),
            value: format!(
                "{:.0} req/s, p50 {:.2} ms, p99 {:.2} ms",
                r.requests_per_second, r.p50_ms, r.p99_ms
            ),
            target: "≥ 20,000 req/s, p99 < 5 ms",
            met: Some(r.requests_per_second >= 20_000.0 && r.p99_ms < 5.0),
        });
    }
    let log_bytes = std::fs::metadata(dir.join("serve.log"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "bridge log after the run: {:.1} MB ({}); load average now {}",
        log_bytes as f64 / 1e6,
        dir.join("serve.log").display(),
        load_average()
    );
    drop(bridge);
    Ok(figures)
}

/// The upper bound of the histogram bucket that holds quantile `q` of the observations made between two
/// scrapes (Prometheus buckets are cumulative), e.g. "1 ms".
fn histogram_quantile_bound(before: &str, after: &str, name: &str, q: f64) -> String {
    let buckets = |text: &str| -> Vec<(f64, f64)> {
        let prefix = format!("{name}_bucket{{le=\"");
        text.lines()
            .filter_map(|l| l.strip_prefix(prefix.as_str()))
            .filter_map(|rest| {
                let (le, value) = rest.split_once("\"} ")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, value.trim().parse().ok()?))
            })
            .collect()
    };
    let (b, a) = (buckets(before), buckets(after));
    let deltas: Vec<(f64, f64)> = a
        .iter()
        .map(|(le, n)| {
            let prev = b.iter().find(|(l, _)| l == le).map_or(0.0, |(_, v)| *v);
            (*le, n - prev)
        })
        .collect();
    let total = deltas.last().map_or(0.0, |(_, n)| *n);
    if total <= 0.0 {
        return "-".into();
    }
    match deltas.iter().find(|(_, n)| *n >= q * total) {
        Some((le, _)) if le.is_finite() => format!("{} ms", le * 1000.0),
        _ => "> 500 ms".into(),
    }
}

/// utime + stime of a process, in clock ticks.
fn proc_cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th fields overall.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

fn clock_ticks() -> f64 {
    // USER_HZ is 100 on every Linux the bridge targets.
    100.0
}

// ----- 2: Authentik event -> last Outline write -------------------------------------------------------------

async fn event_latency(args: &Args) -> BoxResult<Vec<Figure>> {
    let events = args.usize("events", 200)?;
    let spec = WorldSpec {
        users: events * 10,
        groups: events,
        per_user: 1,
        extra_users: events,
        drift_every: 0,
        latency: args.latency()?,
        rate: args.rate(UNLIMITED)?,
    };
    println!(
        "## 2. Authentik event -> last Outline write: {events} sequential group events (one new member each, distinct groups of 10), fakes at {} ms, bridge in-process",
        spec.latency.as_millis()
    );
    let world = World::seed(&spec).await?;
    let bridge = start_in_process(&world, spec.rate).await?;
    world.outline.clear_calls();
    world.authentik.clear_calls();
    let http = reqwest::Client::new();
    let mut sent = Vec::with_capacity(events);
    let mut answers = Vec::with_capacity(events);
    for i in 0..events {
        // The fake records the event Authentik would send (no webhook is set); it is posted here, so that
        // the clock starts exactly when the POST is sent.
        world
            .authentik
            .add_member(&world.ak_groups[i], world.extra_ak[i]);
        let doc = world.authentik.events().pop().ok_or("no event recorded")?;
        world.authentik.clear_events();
        let body = python_json(&doc);
        let t0 = Instant::now();
        let resp = http
            .post(format!("{}/webhooks/authentik", bridge.url))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        answers.push(ms(t0.elapsed()));
        if resp.status().as_u16() != 202 {
            return Err(format!("event {i}: the bridge answered {}", resp.status()).into());
        }
        let (og, ou) = (&world.ol_groups[i], &world.extra_ol[i]);
        wait_until(Duration::from_secs(10), "the Outline write", || {
            world.outline.members(og).contains_key(ou)
        })
        .await?;
        sent.push(t0);
    }
    bridge.queue.wait_idle().await;
    let calls = world.outline.calls();
    let mut lat = Vec::with_capacity(events);
    for (i, t0) in sent.iter().enumerate() {
        let og = world.ol_groups[i].as_str();
        let at = last_write_after(&calls, *t0, |b| {
            b.get("id").and_then(Value::as_str) == Some(og)
        })
        .ok_or("a write is missing from the fake's log")?;
        lat.push(ms(at.duration_since(*t0)));
    }
    let counts = CallCounts::take(&world);
    println!("{}", summary("event POST -> last Outline write", &lat));
    println!("{}", summary("event POST answered (202)", &answers));
    println!(
        "calls for {events} events ({:.2} Authentik reads, {:.2} Outline reads, {:.2} Outline writes per event):\n{}",
        counts.authentik_reads() as f64 / events as f64,
        counts.outline_reads() as f64 / events as f64,
        counts.outline_writes() as f64 / events as f64,
        counts.render()
    );
    let p99 = percentile(&lat, 99.0);
    Ok(vec![Figure {
        id: "2",
        what: format!(
            "Authentik event -> last Outline write, fakes at {} ms",
            spec.latency.as_millis()
        ),
        value: format!("p50 {:.1} ms, p99 {:.1} ms", percentile(&lat, 50.0), p99),
        target: "p99 < 100 ms",
        met: Some(p99 < 100.0),
    }])
}

// ----- 3: Outline sign-in -> last Outline write -------------------------------------------------------------

async fn signin_latency(args: &Args) -> BoxResult<Vec<Figure>> {
    let signins = args.usize("signins", 200)?;
    let groups = 20.min(signins.max(1));
    let spec = WorldSpec {
        users: 2000,
        groups,
        per_user: 1,
        extra_users: signins,
        drift_every: 0,
        latency: args.latency()?,
        rate: args.rate(UNLIMITED)?,
    };
    println!(
        "## 3. Outline sign-in -> last Outline write: {signins} sequential sign-ins of people added to an Authentik group while no push was set up, {groups} groups, fakes at {} ms, bridge in-process",
        spec.latency.as_millis()
    );
    let world = World::seed(&spec).await?;
    let bridge = start_in_process(&world, spec.rate).await?;
    // Authentik learns of the memberships, but no event reaches the bridge: only the sign-in can sync them.
    for i in 0..signins {
        world
            .authentik
            .add_member(&world.ak_groups[i % groups], world.extra_ak[i]);
    }
    world.authentik.clear_events();
    world.outline.clear_calls();
    world.authentik.clear_calls();
    let http = reqwest::Client::new();
    let mut sent = Vec::with_capacity(signins);
    let mut answers = Vec::with_capacity(signins);
    for i in 0..signins {
        let ou = &world.extra_ol[i];
        let body = world.outline.signin_delivery(ou);
        let sig = outline_signature(SECRET, now_ms(), body.as_bytes());
        let t0 = Instant::now();
        let resp = http
            .post(format!("{}/sync", bridge.url))
            .header("content-type", "application/json")
            .header("outline-signature", sig)
            .body(body)
            .send()
            .await?;
        answers.push(ms(t0.elapsed()));
        if resp.status().as_u16() != 202 {
            return Err(format!("sign-in {i}: the bridge answered {}", resp.status()).into());
        }
        let og = &world.ol_groups[i % groups];
        wait_until(Duration::from_secs(10), "the Outline write", || {
            world.outline.members(og).contains_key(ou)
        })
        .await?;
        sent.push(t0);
    }
    bridge.queue.wait_idle().await;
    let calls = world.outline.calls();
    let mut lat = Vec::with_capacity(signins);
    for (i, t0) in sent.iter().enumerate() {
        let ou = world.extra_ol[i].as_str();
        let at = last_write_after(&calls, *t0, |b| {
            b.get("userId").and_then(Value::as_str) == Some(ou)
        })
        .ok_or("a write is missing from the fake's log")?;
        lat.push(ms(at.duration_since(*t0)));
    }
    let counts = CallCounts::take(&world);
    println!("{}", summary("sign-in POST -> last Outline write", &lat));
    println!("{}", summary("sign-in POST answered (202)", &answers));
    println!(
        "calls for {signins} sign-ins ({:.2} Authentik reads, {:.2} Outline reads, {:.2} Outline writes per sign-in):\n{}",
        counts.authentik_reads() as f64 / signins as f64,
        counts.outline_reads() as f64 / signins as f64,
        counts.outline_writes() as f64 / signins as f64,
        counts.render()
    );
    Ok(vec![
        Figure {
            id: "3",
            what: format!(
                "sign-in POST -> last Outline write, fakes at {} ms",
                spec.latency.as_millis()
            ),
            value: format!(
                "p50 {:.1} ms, p99 {:.1} ms",
                percentile(&lat, 50.0),
                percentile(&lat, 99.0)
            ),
            target: "-",
            met: None,
        },
        Figure {
            id: "3",
            what: "sign-in POST answered (202)".into(),
            value: format!(
                "p50 {:.2} ms, p99 {:.2} ms",
                percentile(&answers, 50.0),
                percentile(&answers, 99.0)
            ),
            target: "-",
            met: None,
        },
    ])
}

// ----- 4: a bulk change under the rate limit ------------------------------------------------------------------

async fn bulk(args: &Args) -> BoxResult<Vec<Figure>> {
    let members = args.usize("members", 1000)?;
    let rate = args.rate("6000/60")?;
    let spec = WorldSpec {
        users: 0,
        groups: 1,
        per_user: 1,
        extra_users: members,
        drift_every: 0,
        latency: args.latency()?,
        rate,
    };
    let one_event = args.str("events", "per-member") == "one";
    println!(
        "## 4. {members} people added to one Authentik group at once, {}; Outline and the bridge at {}/{} s, fakes at {} ms",
        if one_event { "as ONE pushed group event" } else { "one pushed event per member, through the fake's webhook" },
        rate.requests,
        rate.window.as_secs(),
        spec.latency.as_millis()
    );
    let world = World::seed(&spec).await?;
    let bridge = start_in_process(&world, rate).await?;
    world.outline.clear_calls();
    world.authentik.clear_calls();
    // The bound is the configured limit itself: N writes at Outline's own rate.
    let limit_per_second = f64::from(rate.requests) / rate.window.as_secs_f64();
    let bound = members as f64 / limit_per_second;
    let started;
    if one_event {
        for pk in &world.extra_ak {
            world.authentik.add_member(&world.ak_groups[0], *pk);
        }
        let doc = world.authentik.events().pop().ok_or("no event recorded")?;
        started = Instant::now();
        let resp = reqwest::Client::new()
            .post(format!("{}/webhooks/authentik", bridge.url))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(python_json(&doc))
            .send()
            .await?;
        if resp.status().as_u16() != 202 {
            return Err(format!("the bridge answered {}", resp.status()).into());
        }
    } else {
        world.authentik.set_webhook(
            Some(format!("{}/webhooks/authentik", bridge.url)),
            Some(TOKEN.to_string()),
        );
        started = Instant::now();
        for pk in &world.extra_ak {
            world.authentik.add_member(&world.ak_groups[0], *pk);
        }
    }
    let queued = started.elapsed();
    let og = &world.ol_groups[0];
    let limit = Duration::from_secs_f64(bound * 2.0 + 30.0);
    let converged = wait_until(limit, "every member in Outline", || {
        world.outline.members(og).len() >= members
    })
    .await;
    if let Err(e) = converged {
        // Not a crash of the tool: a finding. Say what state it stopped in.
        let counts = CallCounts::take(&world);
        let deliveries = world.authentik.deliveries();
        let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
        for d in &deliveries {
            let k = d
                .status
                .map_or_else(|| "error".to_string(), |s| s.to_string());
            *by_status.entry(k).or_default() += 1;
        }
        println!(
            "NOT CONVERGED: {e}. Outline has {} of {members} members (Authentik has {}); deliveries by status {by_status:?}; group jobs ok {}, queue depth {}",
            world.outline.members(og).len(),
            world.authentik.group_members(&world.ak_groups[0]).len(),
            bridge.metrics.jobs.with_label_values(&["outline", "group", "ok"]).get(),
            bridge.queue.depth()
        );
        println!("calls so far:\n{}", counts.render());
        return Ok(vec![Figure {
            id: "4",
            what: format!(
                "{members} adds to one group ({}/{} s)",
                rate.requests,
                rate.window.as_secs()
            ),
            value: format!(
                "did not converge: {} of {members} members after {:.0} s",
                world.outline.members(og).len(),
                limit.as_secs_f64()
            ),
            target: "≤ 1.10, 0 x 429",
            met: Some(false),
        }]);
    }
    bridge.queue.wait_idle().await;
    let calls = world.outline.calls();
    let adds: Vec<&OutlineCall> = calls
        .iter()
        .filter(|c| c.method == "groups.add_user" && c.status == 200)
        .collect();
    let first = adds.iter().map(|c| c.at).min().ok_or("no add was made")?;
    let last = adds.iter().map(|c| c.at).max().ok_or("no add was made")?;
    let span = last.duration_since(first).as_secs_f64();
    let counts = CallCounts::take(&world);
    let deliveries = world.authentik.deliveries();
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for d in &deliveries {
        let k = d
            .status
            .map_or_else(|| "error".to_string(), |s| s.to_string());
        *by_status.entry(k).or_default() += 1;
    }
    let group_jobs = bridge
        .metrics
        .jobs
        .with_label_values(&["outline", "group", "ok"])
        .get();
    println!(
        "events posted by the fake: {} (by status: {by_status:?}); the {members} add_member calls took {:.0} ms",
        deliveries.len(),
        ms(queued)
    );
    println!("group jobs run: {group_jobs}");
    let total = last.duration_since(started).as_secs_f64();
    let ratio = total / bound;
    println!("first change -> last write: {total:.2} s; first write -> last write: {span:.2} s");
    println!(
        "bound: {members} writes / {limit_per_second:.2} per s (the configured limit, {}/{} s) = {bound:.2} s; ratio {ratio:.3}; 429s: {}",
        rate.requests,
        rate.window.as_secs(),
        counts.throttled
    );
    println!("calls during the bulk change:\n{}", counts.render());
    Ok(vec![
        Figure {
            id: "4",
            what: format!(
                "{members} adds to one group ({}), first change -> last write vs N / limit ({}/{} s)",
                if one_event { "one event" } else { "an event each" },
                rate.requests,
                rate.window.as_secs()
            ),
            value: format!("{total:.2} s vs {bound:.2} s: ratio {ratio:.3}"),
            target: "≤ 1.05",
            met: Some(ratio <= 1.05),
        },
        Figure {
            id: "4",
            what: "429s from Outline during it".into(),
            value: counts.throttled.to_string(),
            target: "0",
            met: Some(counts.throttled == 0),
        },
    ])
}

// ----- 5: reads per sign-in -------------------------------------------------------------------------------------

async fn signin_reads(args: &Args) -> BoxResult<Vec<Figure>> {
    let signins = args.usize("signins", 100)?;
    let spec = WorldSpec {
        users: args.usize("users", 300)?,
        groups: args.usize("groups", 40)?,
        per_user: args.usize("per-user", 3)?,
        extra_users: 0,
        drift_every: 0,
        latency: args.latency()?,
        rate: args.rate(UNLIMITED)?,
    };
    let signins = signins.min(spec.users);
    println!(
        "## 5. upstream reads per sign-in: {} users in {} groups ({} each), in step; {signins} sign-ins after the start-up reconcile (warm caches)",
        spec.users, spec.groups, spec.per_user
    );
    let world = World::seed(&spec).await?;
    let bridge = start_in_process(&world, spec.rate).await?;
    world.outline.clear_calls();
    world.authentik.clear_calls();
    let http = reqwest::Client::new();
    let done = || {
        bridge
            .metrics
            .jobs
            .with_label_values(&["outline", "signin", "ok"])
            .get()
    };
    for i in 0..signins {
        let before = done();
        let body = world.outline.signin_delivery(&world.ol_users[i]);
        let sig = outline_signature(SECRET, now_ms(), body.as_bytes());
        let resp = http
            .post(format!("{}/sync", bridge.url))
            .header("content-type", "application/json")
            .header("outline-signature", sig)
            .body(body)
            .send()
            .await?;
        if resp.status().as_u16() != 202 {
            return Err(format!("sign-in {i}: the bridge answered {}", resp.status()).into());
        }
        wait_until(Duration::from_secs(10), "the sign-in job", || {
            done() > before
        })
        .await?;
    }
    let counts = CallCounts::take(&world);
    let reads = counts.authentik_reads() + counts.outline_reads();
    let per = reads as f64 / signins as f64;
    println!(
        "{signins} sign-ins: {reads} reads ({:.2} per sign-in: {:.2} Authentik, {:.2} Outline), {} writes",
        per,
        counts.authentik_reads() as f64 / signins as f64,
        counts.outline_reads() as f64 / signins as f64,
        counts.outline_writes()
    );
    println!("{}", counts.render());
    Ok(vec![Figure {
        id: "5",
        what: format!(
            "upstream reads per sign-in, {} users in {} groups, warm caches",
            spec.users, spec.groups
        ),
        value: format!("{per:.2} ({} writes)", counts.outline_writes()),
        target: "≤ 3",
        met: Some(per <= 3.0),
    }])
}

// ----- 6: the calls of one reconcile ----------------------------------------------------------------------------

async fn reconcile_calls(args: &Args) -> BoxResult<Vec<Figure>> {
    let spec = WorldSpec {
        users: args.usize("users", 1000)?,
        groups: args.usize("groups", 100)?,
        per_user: args.usize("per-user", 3)?,
        extra_users: 0,
        drift_every: 0,
        latency: args.latency()?,
        rate: args.rate(UNLIMITED)?,
    };
    println!(
        "## 6. one reconcile, {} users in {} groups ({} memberships), no drift, fakes at {} ms",
        spec.users,
        spec.groups,
        spec.users * spec.per_user,
        spec.latency.as_millis()
    );
    let world = World::seed(&spec).await?;
    let engine = build_engine(&world.settings(spec.rate), Arc::new(Metrics::new())).await?;
    let t0 = Instant::now();
    let report = run_reconcile(&engine, ReconcileOptions::default()).await?;
    let took = t0.elapsed();
    let counts = CallCounts::take(&world);
    let expected = world.expected_reconcile_reads();
    let calls = counts.authentik_reads() + counts.outline_reads() + counts.outline_writes();
    println!(
        "reconcile: {:.0} ms, {} managed groups, plan of {} writes",
        ms(took),
        report.managed_groups,
        report.plan.write_count()
    );
    println!("{}", counts.render());
    println!(
        "pages read: {} (expected {}: Authentik groups {} + Outline users {} + Outline groups {} + memberships {}); writes: {}",
        counts.authentik_reads() + counts.outline_reads(),
        expected.total(),
        expected.authentik_group_pages,
        expected.outline_user_pages,
        expected.outline_group_pages,
        expected.membership_pages,
        counts.outline_writes()
    );
    Ok(vec![Figure {
        id: "6",
        what: format!(
            "one reconcile, {} users in {} groups, no drift",
            spec.users, spec.groups
        ),
        value: format!(
            "{calls} calls: {} pages read, {} writes, {:.0} ms",
            counts.authentik_reads() + counts.outline_reads(),
            counts.outline_writes(),
            ms(took)
        ),
        target: "pages only, 0 writes",
        met: Some(counts.outline_writes() == 0 && calls == expected.total()),
    }])
}

// ----- 7: idle RSS ----------------------------------------------------------------------------------------------

async fn idle_rss(args: &Args) -> BoxResult<Vec<Figure>> {
    let idle = args.usize("idle-seconds", 5)?;
    let spec = WorldSpec {
        users: args.usize("users", 1000)?,
        groups: args.usize("groups", 100)?,
        per_user: args.usize("per-user", 3)?,
        extra_users: 0,
        drift_every: 0,
        latency: args.latency()?,
        rate: args.rate(UNLIMITED)?,
    };
    println!(
        "## 7. idle RSS of `authentik-bridge serve` (release) after its start-up reconcile: {} users in {} groups, {idle} s idle",
        spec.users, spec.groups
    );
    let world = World::seed(&spec).await?;
    let dir = scratch_dir()?;
    let (bridge, _url, took) = spawn_serve(&world, spec.rate, &dir.join("rss.log")).await?;
    let pid = bridge.0.id();
    let after_reconcile = proc_status_kb(pid, "VmRSS").unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(idle as u64)).await;
    let rss = proc_status_kb(pid, "VmRSS").ok_or("no VmRSS")?;
    let hwm = proc_status_kb(pid, "VmHWM").unwrap_or(0);
    let threads = proc_status_kb(pid, "Threads").unwrap_or(0);
    println!(
        "start-up (spawn -> reconcile done): {:.0} ms; VmRSS right after: {:.1} MB; after {idle} s idle: VmRSS {:.1} MB, VmHWM {:.1} MB, {threads} threads",
        ms(took),
        after_reconcile as f64 / 1024.0,
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    drop(bridge);
    Ok(vec![Figure {
        id: "7",
        what: format!(
            "idle RSS of `serve` after start-up reconcile ({} users, {} groups)",
            spec.users, spec.groups
        ),
        value: format!(
            "{:.1} MB (peak {:.1} MB)",
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0
        ),
        target: "< 20 MB",
        met: Some((rss as f64 / 1024.0) < 20.0),
    }])
}

// ----- 8 and 9: reconcile as a separate process ------------------------------------------------------------------

struct ProcessRun {
    wall: Duration,
    peak_kb: u64,
    /// The child's user + system CPU, in seconds, at the last sample.
    cpu_seconds: f64,
    status: ExitStatus,
    samples: usize,
}

/// Runs a child to its end, sampling `VmHWM` every 2 ms; the last sample is the process's peak RSS to
/// within the memory it gained in its final 2 ms.
fn run_measured(mut cmd: Command, limit: Duration) -> BoxResult<ProcessRun> {
    let start = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bridge_bin()))?;
    let pid = child.id();
    let mut guard = ChildGuard(child);
    let mut peak = 0;
    let mut samples = 0;
    let mut ticks = 0;
    loop {
        if let Some(kb) = proc_status_kb(pid, "VmHWM") {
            peak = peak.max(kb);
            samples += 1;
        }
        ticks = ticks.max(proc_cpu_ticks(pid));
        if let Some(status) = guard.0.try_wait()? {
            return Ok(ProcessRun {
                wall: start.elapsed(),
                peak_kb: peak,
                cpu_seconds: ticks as f64 / clock_ticks(),
                status,
                samples,
            });
        }
        if start.elapsed() > limit {
            return Err(format!("the reconcile did not finish within {limit:?}").into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

struct ReconcileFigures {
    bridge_cpu: f64,
    fakes_cpu: f64,
    users: usize,
    groups: usize,
    memberships: usize,
    seconds: f64,
    peak_mb: f64,
    calls: usize,
    expected_reads: usize,
    writes_needed: usize,
    writes: usize,
    throttled: usize,
}

async fn reconcile_once(spec: &WorldSpec, dir: &Path) -> BoxResult<ReconcileFigures> {
    reconcile_once_with(spec, dir, &[]).await
}

/// [`reconcile_once`], with more settings for the bridge.
async fn reconcile_once_with(
    spec: &WorldSpec,
    dir: &Path,
    extra: &[(String, String)],
) -> BoxResult<ReconcileFigures> {
    let seeding = Instant::now();
    let world = World::seed(spec).await?;
    eprintln!(
        "  seeded {} users, {} groups, {} memberships ({} missing in Outline) in {:.1} s",
        spec.users,
        spec.groups,
        world.memberships,
        world.withheld,
        seeding.elapsed().as_secs_f64()
    );
    let out = File::create(dir.join(format!("reconcile-{}.out", spec.users)))?;
    let err = File::create(dir.join(format!("reconcile-{}.log", spec.users)))?;
    let mut cmd = Command::new(bridge_bin());
    cmd.arg("reconcile")
        .env_clear()
        .envs(world.env(spec.rate, "127.0.0.1:0"))
        .envs(extra.iter().cloned())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    let self_ticks = proc_cpu_ticks(std::process::id());
    let run =
        tokio::task::spawn_blocking(move || run_measured(cmd, Duration::from_secs(900))).await??;
    let fakes_cpu =
        proc_cpu_ticks(std::process::id()).saturating_sub(self_ticks) as f64 / clock_ticks();
    if !run.status.success() {
        return Err(format!(
            "`authentik-bridge reconcile` exited with {} (see {})",
            run.status,
            dir.display()
        )
        .into());
    }
    let counts = CallCounts::take(&world);
    let expected = world.expected_reconcile_reads();
    let calls = counts.authentik_reads() + counts.outline_reads() + counts.outline_writes();
    println!(
        "  {} users / {} groups: {:.2} s, peak RSS (VmHWM) {:.1} MB ({} samples); calls {calls} = {} pages read + {} writes (expected {} pages + {} writes needed: {})",
        spec.users,
        spec.groups,
        run.wall.as_secs_f64(),
        run.peak_kb as f64 / 1024.0,
        run.samples,
        counts.authentik_reads() + counts.outline_reads(),
        counts.outline_writes(),
        expected.total(),
        world.withheld,
        if calls == expected.total() + world.withheld { "identity holds" } else { "IDENTITY BROKEN" }
    );
    println!(
        "  CPU: the reconcile process {:.2} s; the fakes (this process) {fakes_cpu:.2} s",
        run.cpu_seconds
    );
    println!("{}", counts.render());
    Ok(ReconcileFigures {
        bridge_cpu: run.cpu_seconds,
        fakes_cpu,
        users: spec.users,
        groups: spec.groups,
        memberships: world.memberships,
        seconds: run.wall.as_secs_f64(),
        peak_mb: run.peak_kb as f64 / 1024.0,
        calls,
        expected_reads: expected.total(),
        writes_needed: world.withheld,
        writes: counts.outline_writes(),
        throttled: counts.throttled,
    })
}

/// The world of a 10k-user reconcile (8) and of the store under a pass (15), from the arguments.
fn reconcile_spec(args: &Args) -> BoxResult<WorldSpec> {
    Ok(WorldSpec {
        users: args.usize("users", 10_000)?,
        groups: args.usize("groups", 500)?,
        per_user: args.usize("per-user", 3)?,
        extra_users: 0,
        drift_every: args.usize("drift-every", 100)?,
        latency: args.latency()?,
        rate: args.rate(UNLIMITED)?,
    })
}

async fn reconcile_process(args: &Args) -> BoxResult<Vec<Figure>> {
    let spec = reconcile_spec(args)?;
    println!(
        "## 8. `authentik-bridge reconcile` (release) as its own process: {} users in {} groups ({} each), every {}th membership missing in Outline; fakes in this process at {} ms; OUTLINE_RATE_LIMIT {}/{} s",
        spec.users,
        spec.groups,
        spec.per_user,
        spec.drift_every,
        spec.latency.as_millis(),
        spec.rate.requests,
        spec.rate.window.as_secs()
    );
    let dir = scratch_dir()?;
    let f = reconcile_once(&spec, &dir).await?;
    let identity = f.calls == f.expected_reads + f.writes_needed && f.writes == f.writes_needed;
    Ok(vec![
        Figure {
            id: "8",
            what: format!(
                "reconcile of {} users in {} groups: peak RSS",
                f.users, f.groups
            ),
            value: format!("{:.1} MB", f.peak_mb),
            target: "< 64 MB",
            met: Some(f.peak_mb < 64.0),
        },
        Figure {
            id: "8",
            what: "... wall time, calls = pages read + writes needed".into(),
            value: format!(
                "{:.2} s; {} = {} + {} ({}), {} x 429",
                f.seconds,
                f.calls,
                f.expected_reads,
                f.writes_needed,
                if identity { "holds" } else { "BROKEN" },
                f.throttled
            ),
            target: "identity holds",
            met: Some(identity),
        },
    ])
}

/// The store under a pass: the same 10k-user reconcile (with `SUSPEND_DEACTIVATED`, so the account step and
/// its identity map run) without `STATE_DIR`, with a new one (the map learns everyone: 10k rows written), and
/// with it again (the map read at start, nothing new to write), then without once more, all in one run.
async fn store_pass(args: &Args) -> BoxResult<Vec<Figure>> {
    let spec = reconcile_spec(args)?;
    println!(
        "## 15. the store under a pass: `authentik-bridge reconcile` (release), {} users in {} groups, SUSPEND_DEACTIVATED=true, without and with STATE_DIR",
        spec.users, spec.groups
    );
    let dir = scratch_dir()?;
    let state = dir.join("store-pass-state");
    let _ = std::fs::remove_dir_all(&state);
    std::fs::create_dir_all(&state)?;
    let base = vec![("SUSPEND_DEACTIVATED".to_string(), "true".to_string())];
    let mut stored = base.clone();
    stored.push(("STATE_DIR".to_string(), state.display().to_string()));
    let cases = [
        ("without STATE_DIR", &base),
        ("STATE_DIR, first pass (the map learns everyone)", &stored),
        (
            "STATE_DIR, next pass (the map loaded, nothing new)",
            &stored,
        ),
        ("without STATE_DIR, again", &base),
    ];
    let mut rows = Vec::new();
    for (name, env) in cases {
        let f = reconcile_once_with(&spec, &dir, env).await?;
        rows.push((name, f));
    }
    let db = std::fs::metadata(state.join("bridge.db"))
        .map(|m| m.len())
        .unwrap_or(0);
    let without_s = (rows[0].1.seconds + rows[3].1.seconds) / 2.0;
    let without_mb = rows[0].1.peak_mb.max(rows[3].1.peak_mb);
    println!("\n| case | pass time | ÷ without | peak RSS | ÷ without |");
    println!("|---|---:|---:|---:|---:|");
    for (name, f) in &rows {
        println!(
            "| {name} | {:.2} s | {:.2} | {:.1} MB | {:.2} |",
            f.seconds,
            f.seconds / without_s,
            f.peak_mb,
            f.peak_mb / without_mb
        );
    }
    println!("\nthe store after both passes: {:.1} MB", db as f64 / 1e6);
    Ok(Vec::new())
}

async fn growth(args: &Args) -> BoxResult<()> {
    let sizes: Vec<usize> = args
        .str("sizes", "1000,10000,100000")
        .split(',')
        .map(|s| s.trim().replace('_', "").parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| "--sizes: comma-separated whole numbers")?;
    let per_group = args.usize("users-per-group", 20)?;
    let latency = args.latency()?;
    let rate = args.rate(UNLIMITED)?;
    let drift_every = args.usize("drift-every", 100)?;
    let per_user = args.usize("per-user", 3)?;
    println!(
        "## 9. growth: `authentik-bridge reconcile` by size, groups = users / {per_group}, {per_user} groups per user, every {drift_every}th membership missing in Outline, fakes at {} ms, OUTLINE_RATE_LIMIT {}/{} s",
        latency.as_millis(),
        rate.requests,
        rate.window.as_secs()
    );
    let dir = scratch_dir()?;
    let mut rows = Vec::new();
    for &users in &sizes {
        let spec = WorldSpec {
            users,
            groups: (users / per_group).max(1),
            per_user,
            extra_users: 0,
            drift_every,
            latency,
            rate,
        };
        rows.push(reconcile_once(&spec, &dir).await?);
    }
    println!("\n| users | groups | memberships | reconcile time | peak RSS (VmHWM) | calls (pages + writes) | 429s | bridge CPU | fakes CPU |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.2} s | {:.1} MB | {} ({} + {}) | {} | {:.2} s | {:.2} s |",
            r.users,
            r.groups,
            r.memberships,
            r.seconds,
            r.peak_mb,
            r.calls,
            r.expected_reads,
            r.writes,
            r.throttled,
            r.bridge_cpu,
            r.fakes_cpu
        );
    }
    println!("\n```text");
    println!("{}", ascii_plot(&rows));
    println!("```");
    Ok(())
}

/// Two bar charts on one log scale of users: time and peak RSS, each scaled to its largest value.
fn ascii_plot(rows: &[ReconcileFigures]) -> String {
    let width = 50.0;
    let max_t = rows.iter().map(|r| r.seconds).fold(0.0, f64::max).max(1e-9);
    let max_m = rows.iter().map(|r| r.peak_mb).fold(0.0, f64::max).max(1e-9);
    let mut s = String::from("reconcile time\n");
    for r in rows {
        let n = ((r.seconds / max_t) * width).round() as usize;
        let _ = writeln!(
            s,
            "{:>8} users |{:<50}| {:.2} s",
            r.users,
            "#".repeat(n.max(1)),
            r.seconds
        );
    }
    s.push_str("peak RSS\n");
    for r in rows {
        let n = ((r.peak_mb / max_m) * width).round() as usize;
        let _ = writeln!(
            s,
            "{:>8} users |{:<50}| {:.1} MB",
            r.users,
            "#".repeat(n.max(1)),
            r.peak_mb
        );
    }
    s.trim_end().to_string()
}

// ----- fakes for manual runs ---------------------------------------------------------------------------------

async fn fakes(args: &Args) -> BoxResult<()> {
    let spec = WorldSpec {
        users: args.usize("users", 1000)?,
        groups: args.usize("groups", 100)?,
        per_user: args.usize("per-user", 3)?,
        extra_users: 0,
        drift_every: args.usize("drift-every", 0)?,
        latency: args.latency()?,
        rate: args.rate("1000/60")?,
    };
    let max = Duration::from_secs(args.usize("max-seconds", 600)? as u64);
    let world = World::seed(&spec).await?;
    let listen = args.str("listen", "127.0.0.1:8430");
    println!(
        "# {} users in {} groups, {} memberships ({} missing in Outline); latency {} ms; Outline limit {}/{} s",
        spec.users,
        spec.groups,
        world.memberships,
        world.withheld,
        spec.latency.as_millis(),
        spec.rate.requests,
        spec.rate.window.as_secs()
    );
    println!(
        "# paste into a shell, then run: target/release/authentik-bridge serve (or reconcile)"
    );
    for (k, v) in world.env(spec.rate, listen) {
        println!("export {k}={v}");
    }
    let body = world.outline.signin_delivery(&world.ol_users[0]);
    println!(
        "# a signed sign-in body for user 0 (valid 5 minutes):\n# body: {body}\n# outline-signature: {}",
        outline_signature(SECRET, now_ms(), body.as_bytes())
    );
    println!(
        "# serving for at most {} s; Ctrl-C prints the calls and stops",
        max.as_secs()
    );
    tokio::select! {
        _ = tokio::time::sleep(max) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    let counts = CallCounts::take(&world);
    println!(
        "# calls answered: {} Authentik reads, {} Outline reads, {} Outline writes\n{}",
        counts.authentik_reads(),
        counts.outline_reads(),
        counts.outline_writes(),
        counts.render()
    );
    Ok(())
}

// ----- all ---------------------------------------------------------------------------------------------------

async fn all(args: &Args) -> BoxResult<()> {
    let mut figures = Vec::new();
    figures.extend(event_latency(args).await?);
    figures.extend(signin_latency(args).await?);
    figures.extend(bulk(args).await?);
    figures.extend(signin_reads(args).await?);
    figures.extend(reconcile_calls(args).await?);
    figures.extend(idle_rss(args).await?);
    figures.extend(reconcile_process(args).await?);
    println!("\n| # | figure | value | target | |\n|---|---|---|---|---|");
    for f in &figures {
        println!("{}", f.row());
    }
    Ok(())
}

// ----- a group event while the group's read is in flight ----------------------------------------------------

/// A TCP proxy on 127.0.0.1 that holds every chunk coming back from `upstream` for `delay`: a server that has
/// computed its answer but takes a while to deliver it, as a large `include_users` page does.
async fn start_delaying_proxy(
    upstream: std::net::SocketAddr,
    delay: Duration,
) -> BoxResult<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let requests = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                });
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = server_read.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    tokio::time::sleep(delay).await;
                    if client_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                requests.abort();
            });
        }
    });
    Ok(format!("http://{addr}"))
}

/// Two members are added to one group 25 ms apart while the bridge's read of the group takes `delay` to come
/// back. The first event's job reads the group before the second change and caches the answer after the
/// second event has invalidated the cache; the trailing run the second event scheduled then plans from that
/// cached answer. The figure is whether the second member reaches Outline.
async fn stale_cache(args: &Args) -> BoxResult<Vec<Figure>> {
    let delay = Duration::from_millis(args.usize("delay-ms", 100)? as u64);
    let spec = WorldSpec {
        users: 10,
        groups: 1,
        per_user: 1,
        extra_users: 2,
        drift_every: 0,
        latency: Duration::ZERO,
        rate: parse_rate(UNLIMITED)?,
    };
    println!(
        "## 4b. a group event while the group's read is in flight: Authentik's answers delayed {} ms on the way back (proxy), two members added 25 ms apart, bridge in-process",
        delay.as_millis()
    );
    let world = World::seed(&spec).await?;
    let upstream: std::net::SocketAddr = world
        .authentik
        .url()
        .trim_start_matches("http://")
        .parse()?;
    let proxy = start_delaying_proxy(upstream, delay).await?;
    let mut settings = world.settings(spec.rate);
    settings.authentik = Some(UpstreamSettings {
        url: proxy,
        token: Secret::new(world.authentik.token()),
    });
    let bridge = start_with_settings(settings).await?;
    world.authentik.set_webhook(
        Some(format!("{}/webhooks/authentik", bridge.url)),
        Some(TOKEN.to_string()),
    );
    world.authentik.clear_calls();
    world.outline.clear_calls();
    let (group, og) = (&world.ak_groups[0], &world.ol_groups[0]);
    let (first, second) = (&world.extra_ol[0], &world.extra_ol[1]);
    world.authentik.add_member(group, world.extra_ak[0]);
    tokio::time::sleep(Duration::from_millis(25)).await;
    world.authentik.add_member(group, world.extra_ak[1]);
    wait_until(
        Duration::from_secs(10),
        "the first member in Outline",
        || world.outline.members(og).contains_key(first),
    )
    .await?;
    bridge.queue.wait_idle().await;
    let second_added = world.outline.members(og).contains_key(second);
    let reads = world.authentik.count_calls("/api/v3/core/groups/");
    let jobs = bridge
        .metrics
        .jobs
        .with_label_values(&["outline", "group", "ok"])
        .get();
    let hits = bridge
        .metrics
        .cache_requests
        .with_label_values(&["authentik_groups", "hit"])
        .get();
    println!(
        "group jobs run: {jobs}; Authentik group reads: {reads}; group-cache hits: {hits}; Authentik has both members: {}; Outline has the first: yes, the second: {}",
        world.authentik.group_members(group).len() == spec.users / spec.groups + 2,
        if second_added { "yes" } else { "NO (lost until the next reconcile)" }
    );
    Ok(vec![Figure {
        id: "4b",
        what: format!(
            "second of two quick changes to one group, group read taking {} ms",
            delay.as_millis()
        ),
        value: if second_added {
            "reached Outline".into()
        } else {
            format!("lost: the trailing run planned from the cached first read ({hits} cache hit)")
        },
        target: "reaches Outline",
        met: Some(second_added),
    }])
}

// ----- 11, 12: the OpenFGA sink --------------------------------------------------------------------------

/// An Authentik directory and an OpenFGA store that mirrors it, as the Outline world does: `users` people in
/// `per_user` of `groups` groups; every `drift_every`-th tuple missing in OpenFGA and `strays` tuples of
/// non-members on managed groups, so a pass has writes and deletes to make.
struct FgaWorld {
    authentik: FakeAuthentik,
    openfga: FakeOpenFga,
    ak_groups: Vec<String>,
    extra_ak: Vec<i64>,
    memberships: usize,
    missing: usize,
    strays: usize,
}

impl FgaWorld {
    async fn seed(
        users: usize,
        groups: usize,
        per_user: usize,
        drift_every: usize,
        strays: usize,
        latency: Duration,
    ) -> BoxResult<FgaWorld> {
        let authentik = FakeAuthentik::start(FakeAuthentikOptions {
            latency,
            ..FakeAuthentikOptions::default()
        })
        .await?;
        let openfga = FakeOpenFga::start(FakeOpenFgaOptions {
            latency,
            ..FakeOpenFgaOptions::default()
        })
        .await?;
        let ak_groups: Vec<String> = (0..groups)
            .map(|g| authentik.add_group(&format!("team-{g:05}")))
            .collect();
        let (mut memberships, mut missing) = (0, 0);
        for i in 0..users {
            let username = format!("user{i:06}");
            let pk = authentik.add_user(&username, "U", &format!("{username}@example.com"));
            for g in groups_of(i, groups, per_user) {
                authentik.add_member(&ak_groups[g], pk);
                memberships += 1;
                if drift_every > 0 && memberships % drift_every == 0 {
                    missing += 1;
                } else {
                    openfga.add_tuple(
                        &format!("user:{username}"),
                        "member",
                        &format!("group:{}", ak_groups[g]),
                    );
                }
            }
        }
        for (s, group) in ak_groups.iter().take(strays).enumerate() {
            openfga.add_tuple(
                &format!("user:stray{s:05}"),
                "member",
                &format!("group:{group}"),
            );
        }
        let extra_ak = (0..groups)
            .map(|i| {
                authentik.add_user(
                    &format!("extra{i:06}"),
                    "E",
                    &format!("extra{i:06}@example.com"),
                )
            })
            .collect();
        authentik.clear_events();
        authentik.clear_calls();
        openfga.clear_calls();
        Ok(FgaWorld {
            authentik,
            openfga,
            ak_groups,
            extra_ak,
            memberships,
            missing,
            strays: strays.min(groups),
        })
    }

    fn env(&self) -> Vec<(String, String)> {
        [
            ("AUTHENTIK_URL", self.authentik.url()),
            ("AUTHENTIK_TOKEN", self.authentik.token()),
            ("AUTHENTIK_WEBHOOK_TOKEN", TOKEN.to_string()),
            ("OPENFGA_URL", self.openfga.url()),
            ("OPENFGA_STORE_ID", self.openfga.store_id()),
            ("OPENFGA_API_TOKEN", self.openfga.token()),
            ("LISTEN_ADDR", "127.0.0.1:0".to_string()),
            ("RECONCILE_INTERVAL", "0".to_string()),
            ("MAX_REMOVALS", "1000000".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// Figure 11: an Authentik group event to its one OpenFGA write, with the OpenFGA sink alone. A push costs
/// three round trips (the group from Authentik, its tuples from OpenFGA, the write), so the floor is three
/// times the fakes' latency; the ratio to that floor is the bridge's own share.
async fn openfga_push(args: &Args) -> BoxResult<Vec<Figure>> {
    let events = args.usize("events", 200)?;
    let latency = args.latency()?;
    println!(
        "## 11. Authentik event -> OpenFGA write: {events} sequential group events (one new member each, distinct groups of 10), fakes at {} ms, OpenFGA sink alone, bridge in-process",
        latency.as_millis()
    );
    let world = FgaWorld::seed(events * 10, events, 1, 0, 0, latency).await?;
    let mut settings = Settings::for_upstreams(
        UpstreamSettings {
            url: world.authentik.url(),
            token: Secret::new(world.authentik.token()),
        },
        UpstreamSettings {
            url: String::new(),
            token: Secret::new(""),
        },
    );
    settings.outline = None;
    settings.authentik_webhook_token = Some(Secret::new(TOKEN));
    settings.reconcile_interval = None;
    settings.openfga = Some(authentik_bridge::app::demo::openfga_settings_for_fake(
        &world.openfga,
    ));
    let bridge = start_with_settings(settings).await?;
    world.openfga.clear_calls();
    world.authentik.clear_calls();
    let http = reqwest::Client::new();
    let (mut lat, mut answers) = (Vec::with_capacity(events), Vec::with_capacity(events));
    for i in 0..events {
        let (group, pk) = (&world.ak_groups[i], world.extra_ak[i]);
        world.authentik.add_member(group, pk);
        let doc = world.authentik.events().pop().ok_or("no event recorded")?;
        world.authentik.clear_events();
        let body = python_json(&doc);
        let tuple = (
            format!("user:extra{i:06}"),
            "member".to_string(),
            format!("group:{group}"),
        );
        let t0 = Instant::now();
        let resp = http
            .post(format!("{}/webhooks/authentik", bridge.url))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        answers.push(ms(t0.elapsed()));
        if resp.status().as_u16() != 202 {
            return Err(format!("event {i}: the bridge answered {}", resp.status()).into());
        }
        wait_until(Duration::from_secs(10), "the OpenFGA write", || {
            world.openfga.tuples().contains(&tuple)
        })
        .await?;
        lat.push(ms(t0.elapsed()));
    }
    bridge.queue.wait_idle().await;
    let floor = 3.0 * ms(latency);
    let p50 = percentile(&lat, 50.0);
    let (reads, writes) = (
        world.openfga.count_calls("read"),
        world.openfga.count_calls("write"),
    );
    println!("{}", summary("event POST -> tuple in OpenFGA", &lat));
    println!("{}", summary("event POST answered (202)", &answers));
    println!(
        "calls for {events} events: {} Authentik, {reads} OpenFGA reads, {writes} OpenFGA writes ({:.2} / {:.2} / {:.2} per event); floor of 3 round trips = {floor:.1} ms, p50 / floor = {:.2}",
        world.authentik.calls().len(),
        world.authentik.calls().len() as f64 / events as f64,
        reads as f64 / events as f64,
        writes as f64 / events as f64,
        p50 / floor
    );
    Ok(vec![Figure {
        id: "11",
        what: format!("Authentik event -> OpenFGA write, fakes at {} ms", latency.as_millis()),
        value: format!("p50 {p50:.1} ms ({:.2} x the 3-round-trip floor), p99 {:.1} ms; {:.2} writes per event", p50 / floor, percentile(&lat, 99.0), writes as f64 / events as f64),
        target: "p99 < 1 s, 1 write per event",
        met: Some(percentile(&lat, 99.0) < 1000.0 && writes == events),
    }])
}

/// Figure 12: `authentik-bridge reconcile` as its own process, OpenFGA sink alone.
async fn openfga_reconcile(args: &Args) -> BoxResult<Vec<Figure>> {
    let users = args.usize("users", 10_000)?;
    let groups = args.usize("groups", 500)?;
    let per_user = args.usize("per-user", 3)?;
    let drift_every = args.usize("drift-every", 100)?;
    let strays = args.usize("strays", 50)?;
    let latency = args.latency()?;
    println!(
        "## 12. `authentik-bridge reconcile` (release) into OpenFGA alone: {users} users in {groups} groups ({per_user} each), every {drift_every}th tuple missing, {strays} stray tuples; fakes in this process at {} ms",
        latency.as_millis()
    );
    let seeding = Instant::now();
    let world = FgaWorld::seed(users, groups, per_user, drift_every, strays, latency).await?;
    eprintln!(
        "  seeded {} memberships ({} tuples missing, {} strays) in {:.1} s",
        world.memberships,
        world.missing,
        world.strays,
        seeding.elapsed().as_secs_f64()
    );
    let dir = scratch_dir()?;
    let mut cmd = Command::new(bridge_bin());
    cmd.arg("reconcile")
        .env_clear()
        .envs(world.env())
        .stdin(Stdio::null())
        .stdout(File::create(dir.join("openfga-reconcile.out"))?)
        .stderr(File::create(dir.join("openfga-reconcile.log"))?);
    let run =
        tokio::task::spawn_blocking(move || run_measured(cmd, Duration::from_secs(900))).await??;
    if !run.status.success() {
        return Err(format!(
            "`authentik-bridge reconcile` exited with {} (see {})",
            run.status,
            dir.display()
        )
        .into());
    }
    let tuples_written: usize = world
        .openfga
        .writes()
        .iter()
        .map(|w| {
            let n = |side: &str| w[side]["tuple_keys"].as_array().map_or(0, Vec::len);
            n("writes") + n("deletes")
        })
        .sum();
    let (ak, reads, writes) = (
        world.authentik.calls().len(),
        world.openfga.count_calls("read"),
        world.openfga.count_calls("write"),
    );
    // One Read per group (each holds fewer than 100 tuples here), one Write per group that drifted.
    let exact = tuples_written == world.missing + world.strays;
    println!(
        "  {:.2} s, peak RSS (VmHWM) {:.1} MB ({} samples), CPU {:.2} s; calls: {ak} Authentik pages, {reads} OpenFGA reads (one per group: {groups}), {writes} OpenFGA writes carrying {tuples_written} tuples (needed {} + {}: {})",
        run.wall.as_secs_f64(),
        run.peak_kb as f64 / 1024.0,
        run.samples,
        run.cpu_seconds,
        world.missing,
        world.strays,
        if exact { "exact" } else { "NOT EXACT" }
    );
    Ok(vec![Figure {
        id: "12",
        what: format!("reconcile of {users} users in {groups} groups into OpenFGA"),
        value: format!(
            "{:.2} s, peak RSS {:.1} MB; {} calls ({ak} + {reads} + {writes}), {tuples_written} tuples changed",
            run.wall.as_secs_f64(),
            run.peak_kb as f64 / 1024.0,
            ak + reads + writes
        ),
        target: "only the drift is written",
        met: Some(exact && reads == groups),
    }])
}

// ----- 13, 14: SCIM intake and an initial full sync ------------------------------------------------------

const SCIM_TOKEN: &str = "bench-scim-token-0123456789abcdef";

/// `authentik-bridge serve` with `SOURCE=scim` against `outline`, its store in a fresh scratch folder;
/// returns once the start-up reconcile is done.
async fn spawn_scim_serve(
    outline: &FakeOutline,
    rate: RateLimit,
    dir: &Path,
) -> BoxResult<(ChildGuard, String)> {
    let state = dir.join("state");
    let _ = std::fs::remove_dir_all(&state);
    std::fs::create_dir_all(&state)?;
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let out = File::create(dir.join("scim-serve.log"))?;
    let err = out.try_clone()?;
    let env: Vec<(String, String)> = [
        ("SOURCE", "scim".to_string()),
        ("SCIM_TOKEN", SCIM_TOKEN.to_string()),
        ("STATE_DIR", state.display().to_string()),
        ("OUTLINE_URL", outline.url()),
        ("OUTLINE_TOKEN", outline.token()),
        ("OUTLINE_WEBHOOK_SECRET", SECRET.to_string()),
        ("LISTEN_ADDR", listen.clone()),
        ("RECONCILE_INTERVAL", "0".to_string()),
        ("AUTO_CREATE_GROUPS", "true".to_string()),
        ("OUTLINE_RATE_LIMIT_REQUESTS", rate.requests.to_string()),
        (
            "OUTLINE_RATE_LIMIT_WINDOW",
            rate.window.as_secs().to_string(),
        ),
        ("MAX_REMOVALS", "1000000".to_string()),
        // `BENCH_DEBUG=true` passes the bridge's debug logging through, to see where time goes.
        (
            "DEBUG",
            std::env::var("BENCH_DEBUG").unwrap_or_else(|_| "false".into()),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let child = Command::new(bridge_bin())
        .arg("serve")
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bridge_bin()))?;
    let guard = ChildGuard(child);
    let url = format!("http://{listen}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = scrape(&http, &url).await;
        if metric(&text, "bridge_reconcile_total", &[("result", "ok")]) >= 1.0 {
            break;
        }
        if Instant::now() > deadline {
            return Err("the SCIM bridge's start-up reconcile did not finish within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((guard, url))
}

/// One SCIM request; its status and JSON answer.
async fn scim_send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<&Value>,
) -> BoxResult<(u16, Value)> {
    let mut req = http
        .request(method, url)
        .bearer_auth(SCIM_TOKEN)
        .header("content-type", "application/scim+json");
    if let Some(body) = body {
        req = req.body(body.to_string());
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

fn scim_user(name: &str) -> Value {
    json!({"userName": name, "name": {"formatted": format!("{name} Example"), "givenName": name, "familyName": "Example"},
        "displayName": format!("{name} Example"), "active": true,
        "emails": [{"value": format!("{name}@example.com"), "type": "other", "primary": true}],
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "externalId": format!("ext-{name}")})
}

fn member_patch(op: &str, ids: &[String]) -> Value {
    let ops: Vec<Value> = ids
        .iter()
        .map(|id| json!({"op": op, "path": "members", "value": [{"value": id}]}))
        .collect();
    json!({"Operations": ops, "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"]})
}

/// POSTs users `u0`…`u{n-1}`, `concurrency` at a time: their SCIM ids by number, then what [`drive`]
/// measured.
async fn post_users(
    http: &reqwest::Client,
    base: &str,
    n: usize,
    concurrency: usize,
) -> BoxResult<(Vec<String>, Vec<f64>, usize, Duration)> {
    let user_ids = Arc::new(std::sync::Mutex::new(vec![String::new(); n]));
    let ids = user_ids.clone();
    let (h, b) = (http.clone(), base.to_string());
    let (lat, bad, wall) = drive(n, concurrency, move |i| {
        let (h, b, ids) = (h.clone(), b.clone(), ids.clone());
        async move {
            let (status, body) = scim_send(
                &h,
                reqwest::Method::POST,
                format!("{b}/Users"),
                Some(&scim_user(&format!("u{i}"))),
            )
            .await?;
            if let (Some(id), Ok(mut ids)) = (body["id"].as_str(), ids.lock()) {
                ids[i] = id.to_string();
            }
            Ok(status)
        }
    })
    .await?;
    let ids = user_ids.lock().map(|v| v.clone()).unwrap_or_default();
    Ok((ids, lat, bad, wall))
}

/// Runs `total` requests, `concurrency` at a time, each built by `make(i)`; the latencies in ms, the
/// statuses that were not 2xx, and the wall time.
async fn drive<F, Fut>(
    total: usize,
    concurrency: usize,
    make: F,
) -> BoxResult<(Vec<f64>, usize, Duration)>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = BoxResult<u16>> + Send,
{
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let make = Arc::new(make);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let next = next.clone();
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut bad = 0usize;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= total {
                    break;
                }
                let t0 = Instant::now();
                let status = make(i).await?;
                lat.push(ms(t0.elapsed()));
                if !(200..300).contains(&status) {
                    bad += 1;
                }
            }
            Ok::<_, Box<dyn Error + Send + Sync>>((lat, bad))
        }));
    }
    let mut all = Vec::with_capacity(total);
    let mut bad = 0;
    for t in tasks {
        let (lat, b) = t.await??;
        all.extend(lat);
        bad += b;
    }
    Ok((all, bad, started.elapsed()))
}

async fn scim_intake(args: &Args) -> BoxResult<Vec<Figure>> {
    let requests = args.usize("requests", 2000)?;
    let concurrency = args.usize("concurrency", 8)?;
    let groups = args.usize("groups", 20)?;
    let latency = args.latency()?;
    let rate = args.rate(UNLIMITED)?;
    println!(
        "## 13. SCIM intake: `authentik-bridge serve` (release, SOURCE=scim, store in a scratch STATE_DIR) under {concurrency} concurrent clients, {requests} requests per case; /healthz in the same run as the baseline; fake Outline in this process, {} ms latency",
        latency.as_millis()
    );
    let outline = FakeOutline::start(FakeOutlineOptions {
        latency,
        rate_limit_requests: rate.requests,
        rate_limit_window: rate.window,
        ..FakeOutlineOptions::default()
    })
    .await?;
    for i in 0..requests {
        outline.add_user(&format!("u{i} Example"), &format!("u{i}@example.com"));
    }
    let dir = scratch_dir()?;
    let (bridge, url) = spawn_scim_serve(&outline, rate, &dir).await?;
    let pid = bridge.0.id();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let base = format!("{url}/scim/v2");
    // The groups the PATCHes add to, created before the clock starts.
    let mut group_ids = Vec::new();
    for g in 0..groups {
        let (status, body) = scim_send(
            &http,
            reqwest::Method::POST,
            format!("{base}/Groups"),
            Some(&json!({"displayName": format!("team-{g}"), "externalId": format!("00000000-0000-4000-8000-{g:012}")})),
        )
        .await?;
        if status != 201 {
            return Err(format!("creating a group answered {status}: {body}").into());
        }
        group_ids.push(body["id"].as_str().unwrap_or_default().to_string());
    }
    let healthz = || {
        let (h, u) = (http.clone(), url.clone());
        drive(requests, concurrency, move |_| {
            let (h, u) = (h.clone(), u.clone());
            async move {
                Ok(h.get(format!("{u}/healthz"))
                    .send()
                    .await?
                    .status()
                    .as_u16())
            }
        })
    };
    // The bridge's CPU time over a case, per request: what the ratio comes to once the cores are busy.
    let cpu_ticks = || proc_cpu_ticks(pid);
    let t0 = cpu_ticks();
    let (lat_h1, _, wall_h1) = healthz().await?;
    let t1 = cpu_ticks();
    // An authenticated SCIM read with a JSON answer and no store: the HTTP and JSON share of a SCIM request.
    let (h, b) = (http.clone(), base.clone());
    let (lat_spc, bad_spc, wall_spc) = drive(requests, concurrency, move |_| {
        let (h, b) = (h.clone(), b.clone());
        async move {
            let (status, _) = scim_send(
                &h,
                reqwest::Method::GET,
                format!("{b}/ServiceProviderConfig"),
                None,
            )
            .await?;
            Ok(status)
        }
    })
    .await?;
    let t2 = cpu_ticks();
    let (ids, lat_post, bad_post, wall_post) =
        post_users(&http, &base, requests, concurrency).await?;
    let t3 = cpu_ticks();
    let ids = Arc::new(ids);
    let groups_arc = Arc::new(group_ids);
    let (h, b, g) = (http.clone(), base.clone(), groups_arc.clone());
    let (lat_patch, bad_patch, wall_patch) = drive(requests, concurrency, move |i| {
        let (h, b, g, ids) = (h.clone(), b.clone(), g.clone(), ids.clone());
        async move {
            let group = &g[i % g.len()];
            let body = member_patch("add", std::slice::from_ref(&ids[i]));
            let (status, _) = scim_send(
                &h,
                reqwest::Method::PATCH,
                format!("{b}/Groups/{group}"),
                Some(&body),
            )
            .await?;
            Ok(status)
        }
    })
    .await?;
    let t4 = cpu_ticks();
    let (lat_h2, _, wall_h2) = healthz().await?;
    let t5 = cpu_ticks();
    let mut lat_h = lat_h1.clone();
    lat_h.extend(&lat_h2);
    let healthz_p99 = percentile(&lat_h, 99.0);
    println!(
        "| case | req/s | p50 | p99 | p99 ÷ /healthz p99 | bridge CPU per request | non-2xx |"
    );
    println!("|---|---|---|---|---|---|---|");
    let per_request_us =
        |from: u64, to: u64| to.saturating_sub(from) as f64 / clock_ticks() / requests as f64 * 1e6;
    let row = |name: &str, lat: &[f64], bad: usize, wall: Duration, cpu_us: f64| {
        println!(
            "| {name} | {:.0} | {:.2} ms | {:.2} ms | {:.2} | {cpu_us:.0} µs | {bad} |",
            lat.len() as f64 / wall.as_secs_f64(),
            percentile(lat, 50.0),
            percentile(lat, 99.0),
            percentile(lat, 99.0) / healthz_p99
        );
    };
    row(
        "GET /healthz (before)",
        &lat_h1,
        0,
        wall_h1,
        per_request_us(t0, t1),
    );
    row(
        "GET /ServiceProviderConfig (no store)",
        &lat_spc,
        bad_spc,
        wall_spc,
        per_request_us(t1, t2),
    );
    row(
        "POST /Users (a new user each)",
        &lat_post,
        bad_post,
        wall_post,
        per_request_us(t2, t3),
    );
    row(
        "PATCH /Groups/{id} (one member add each)",
        &lat_patch,
        bad_patch,
        wall_patch,
        per_request_us(t3, t4),
    );
    row(
        "GET /healthz (after)",
        &lat_h2,
        0,
        wall_h2,
        per_request_us(t4, t5),
    );
    println!(
        "bridge peak RSS {} kB; CPU is utime + stime from /proc in {:.0} ms ticks, so a case's figure is ±{:.0} µs",
        proc_status_kb(pid, "VmHWM").unwrap_or(0),
        1000.0 / clock_ticks(),
        1e6 / clock_ticks() / requests as f64
    );
    let worst = percentile(&lat_post, 99.0).max(percentile(&lat_patch, 99.0));
    Ok(vec![Figure {
        id: "13",
        what: "SCIM intake p99 ÷ /healthz p99 (worst of POST /Users and member PATCH)".into(),
        value: format!("{:.2}", worst / healthz_p99),
        target: "≤ 2",
        met: Some(worst / healthz_p99 <= 2.0 && bad_post == 0 && bad_patch == 0),
    }])
}

async fn scim_sync(args: &Args) -> BoxResult<Vec<Figure>> {
    let users = args.usize("users", 10_000)?;
    let groups = args.usize("groups", 500)?;
    let per_user = args.usize("per-user", 3)?;
    let concurrency = args.usize("concurrency", 4)?;
    let latency = args.latency()?;
    let rate = args.rate("6000/60")?;
    let per_second = f64::from(rate.requests) / rate.window.as_secs_f64();
    println!(
        "## 14. SCIM initial full sync: {users} users in {groups} groups ({per_user} each), pushed as Authentik's full sync does (every user POSTed, then every group POSTed and followed by one members PATCH of ≤1000 operations), {concurrency} requests at a time, into `authentik-bridge serve` (release, SOURCE=scim); Outline (fake, {} ms latency) allows {per_second:.0} requests/s and the bridge is told so",
        latency.as_millis()
    );
    let outline = FakeOutline::start(FakeOutlineOptions {
        latency,
        rate_limit_requests: rate.requests,
        rate_limit_window: rate.window,
        ..FakeOutlineOptions::default()
    })
    .await?;
    for i in 0..users {
        outline.add_user(&format!("u{i} Example"), &format!("u{i}@example.com"));
    }
    // Outline allows 10 `groups.create` a minute (docs/src/upstream/outline.md §4.3): 500 new groups alone
    // need 50 minutes. By default the groups exist in Outline already, by name and unlinked, as when a
    // team moves to the bridge; the bridge links each one. `--new-groups 1` leaves them to be created.
    let new_groups = args.usize("new-groups", 0)? == 1;
    if !new_groups {
        for g in 0..groups {
            outline.add_group(&format!("team-{g:03}"), None);
        }
    }
    let dir = scratch_dir()?;
    let (bridge, url) = spawn_scim_serve(&outline, rate, &dir).await?;
    let pid = bridge.0.id();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let base = format!("{url}/scim/v2");
    outline.clear_calls();
    let t0 = Instant::now();
    let (ids, _, bad_users, _) = post_users(&http, &base, users, concurrency).await?;
    // Person i is in groups i, i+1, … (mod groups): every group gets users × per_user ÷ groups members.
    let mut members: Vec<Vec<String>> = vec![Vec::new(); groups];
    for (i, id) in ids.iter().enumerate() {
        for k in 0..per_user {
            members[(i + k) % groups].push(id.clone());
        }
    }
    let members = Arc::new(members);
    let (h, b, m) = (http.clone(), base.clone(), members.clone());
    let (_, bad_groups, _) = drive(groups, concurrency, move |g| {
        let (h, b, m) = (h.clone(), b.clone(), m.clone());
        async move {
            let (status, body) = scim_send(
                &h,
                reqwest::Method::POST,
                format!("{b}/Groups"),
                Some(&json!({"displayName": format!("team-{g:03}"), "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                    "externalId": format!("00000000-0000-4000-8000-{g:012}")})),
            )
            .await?;
            if status != 201 {
                return Ok(status);
            }
            let gid = body["id"].as_str().unwrap_or_default().to_string();
            let mut last = 200;
            for chunk in m[g].chunks(1000) {
                let (s, _) = scim_send(
                    &h,
                    reqwest::Method::PATCH,
                    format!("{b}/Groups/{gid}"),
                    Some(&member_patch("add", chunk)),
                )
                .await?;
                last = s;
            }
            Ok(last)
        }
    })
    .await?;
    let pushed = t0.elapsed();
    let expected = users * per_user;
    let converged = || {
        outline.groups().len() >= groups
            && outline
                .groups()
                .iter()
                .map(|g| outline.members(&g.id).len())
                .sum::<usize>()
                >= expected
    };
    let deadline = Duration::from_secs(1800);
    while !converged() {
        if t0.elapsed() > deadline {
            return Err("Outline did not converge within 30 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = t0.elapsed();
    let calls = outline.calls();
    let writes = calls.iter().filter(|c| is_outline_write(&c.method)).count();
    let reads = calls.len() - writes;
    let creates = calls.iter().filter(|c| c.method == "groups.create").count();
    // The bound: every call at Outline's limit, or the creates at theirs, whichever is longer.
    let bound = ((writes + reads) as f64 / per_second).max(creates as f64 * 60.0 / 10.0);
    let rss = proc_status_kb(pid, "VmHWM").unwrap_or(0);
    let ratio = took.as_secs_f64() / bound;
    println!("| users | groups | memberships | SCIM requests pushed in | Outline converged after | Outline writes (creates) | Outline reads | bound (calls ÷ rate) | ratio | 429s | bridge peak RSS | non-2xx |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {users} | {groups} | {expected} | {:.1} s | {:.1} s | {writes} ({creates}) | {reads} | {bound:.1} s | {ratio:.3} | {} | {:.1} MB | {} |",
        pushed.as_secs_f64(),
        took.as_secs_f64(),
        outline.throttled_count(),
        rss as f64 / 1024.0,
        bad_users + bad_groups
    );
    Ok(vec![
        Figure {
            id: "14",
            what: format!(
                "SCIM full sync of {users} users / {groups} groups ÷ the rate-limit bound"
            ),
            value: format!("{ratio:.3}"),
            target: "≤ 1.10",
            met: Some(ratio <= 1.10 && bad_users + bad_groups == 0),
        },
        Figure {
            id: "14",
            what: "bridge peak RSS during it".into(),
            value: format!("{:.1} MB", rss as f64 / 1024.0),
            target: "< 100 MB",
            met: Some((rss as f64 / 1024.0) < 100.0),
        },
    ])
}
