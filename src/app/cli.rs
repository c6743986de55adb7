//! The command line: `serve` (default), `check`, `reconcile`, `demo` and `healthcheck`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

use crate::app::startup::{build_engine, build_engine_to_look, Application};
use crate::clients::explain::{explain, is_token_refused};
use crate::clients::UpstreamError;
use crate::configuration::{DotEnv, ProcessEnv, Settings, SourceKind};
use crate::metrics::Metrics;
use crate::runtime::check::{CheckLine, Mark};
use crate::runtime::progress::{PassPhase, PassProgress};
use crate::runtime::ReconcileOptions;
use crate::sinks::outline::invite_jobs::invite_and_place;
use crate::sinks::{run_reconcile, SyncEngine};
use crate::source::client::WebhookTransport;
use crate::source::AuthentikClient;

#[derive(Parser, Debug)]
#[command(
    name = "authentik-bridge",
    version,
    about = "Keeps Outline's groups in step with Authentik, in real time.",
    after_help = "Settings come from the environment and a .env file in the working directory; every one is listed, with its default, in .env.example, and explained in the README and docs/src/."
)]
pub struct Cli {
    /// A TOML file of settings, read between the defaults and the environment.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the webhook server, the queue and the scheduled reconcile (the default).
    Serve,
    /// Prove that both tokens work and hold the permissions the bridge needs; one line per check.
    Check,
    /// Converge every managed group now.
    Reconcile {
        /// Print the plan and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Make the removals even when there are more than MAX_REMOVALS.
        #[arg(long)]
        force: bool,
    },
    /// Play the whole story against simulated Authentik and Outline servers on loopback; needs nothing else.
    /// Only in builds with the `demo` feature (the default); production builds leave it out.
    #[cfg(feature = "demo")]
    Demo,
    /// Exit 0 when the bridge answers GET /healthz (for images without curl).
    Healthcheck {
        #[arg(long, default_value = "http://127.0.0.1:8430/healthz")]
        url: String,
    },
}

/// Exit codes: 0 success, 1 failure, 2 configuration error, 3 mass-removal guard tripped, 4 done but
/// Outline refused the writes to some groups (the warnings name them).
pub const EXIT_CONFIG: u8 = 2;
pub const EXIT_GUARDED: u8 = 3;
pub const EXIT_REFUSED: u8 = 4;

/// Reads the settings as the Python connector did: the working directory's `.env` when there is one, under
/// the real environment, which wins.
pub fn load_settings(cli: &Cli) -> Result<Settings, ExitCode> {
    let config_error = |e: crate::configuration::ConfigError| {
        eprintln!("configuration error: {e}");
        ExitCode::from(EXIT_CONFIG)
    };
    let dotenv = DotEnv::read(Path::new(".env")).map_err(config_error)?;
    Settings::load_layers(cli.config.as_deref(), &[&dotenv, &ProcessEnv]).map_err(config_error)
}

/// Variables in `.env` and the environment that look like settings but are not, each with the closest real
/// one; `serve` logs them and `check` prints them.
pub fn unknown_variables() -> Vec<String> {
    let from_file = DotEnv::read(Path::new(".env"))
        .map(|d| d.names())
        .unwrap_or_default();
    let from_env: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .collect();
    Settings::unknown_variables(from_file.iter().chain(&from_env).map(String::as_str))
}

/// Resolves on SIGTERM (Docker, Kubernetes, systemd) or Ctrl-C.
pub async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("interrupt received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}

pub async fn serve(settings: Settings) -> ExitCode {
    // With Outline, the sign-in webhook is the connector's whole job; a bridge that would answer it 503 should
    // not start.
    let missing = settings.missing_for_serve();
    if !missing.is_empty() {
        let e = crate::configuration::ConfigError::MissingAll { names: missing };
        eprintln!("configuration error: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    if settings.source == SourceKind::Authentik && settings.authentik_webhook_token.is_none() {
        tracing::warn!("AUTHENTIK_WEBHOOK_TOKEN is not set: /webhooks/authentik answers 503, so only sign-ins and reconcile sync");
    }
    for warning in unknown_variables() {
        tracing::warn!("{warning}");
    }
    if settings.state_dir.is_none() {
        tracing::warn!("{IN_MEMORY_ONLY}");
    }
    let addr = settings.listen_addr;
    let app = match Application::build(settings).await {
        Ok(app) => app,
        // A port still held by the process being replaced is not a configuration error: exit 1, which
        // systemd's Restart=on-failure tries again (exit 2 is not restarted).
        Err(e @ crate::app::startup::StartupError::Bind { .. }) => {
            eprintln!(
                "error: {e} — is another process listening there? Set LISTEN_ADDR to a free port"
            );
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("configuration error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    tracing::info!(%addr, version = env!("CARGO_PKG_VERSION"), "authentik-bridge listening");
    match app.run_until_stopped(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server error: {e}");
            ExitCode::FAILURE
        }
    }
}

pub async fn reconcile(settings: Settings, dry_run: bool, json: bool, force: bool) -> ExitCode {
    let metrics = Arc::new(Metrics::new());
    let built = if dry_run {
        build_engine_to_look(&settings, metrics).await
    } else {
        build_engine(&settings, metrics).await
    };
    let engine = match built {
        Ok(e) => e,
        Err(e) => {
            eprintln!("configuration error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let bar = ProgressView::start(&engine);
    let mut result = run_reconcile(&engine, ReconcileOptions { dry_run, force }).await;
    let inviting = engine.outline.as_ref().filter(|o| o.invites.enabled);
    if let (Ok(report), false, Some(outline)) = (&mut result, dry_run, inviting) {
        // `serve` leaves this to its invitations job; a one-off pass does it before it exits.
        match invite_and_place(outline).await {
            Ok(n) => {
                if let Some(inv) = &mut report.outline.invites {
                    inv.invited_now = n;
                }
            }
            Err(e) => eprintln!("invitations not sent: {e}; the next pass tries again"),
        }
    }
    if let Some(bar) = bar {
        bar.finish().await;
    }
    match result {
        Ok(report) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                print!("{}", crate::app::report::render_reconcile(&report));
            }
            if report.any_guarded() {
                // Once per guard: the pass's own log lines for them are off in this command.
                for reason in report.hold_reasons() {
                    eprintln!("{}", reason.explanation());
                }
                ExitCode::from(EXIT_GUARDED)
            } else if report.refused_groups() > 0 {
                eprintln!(
                    "the sinks refused the writes to {} group(s); the other groups are done. The warnings above name them and the reason.",
                    report.refused_groups()
                );
                ExitCode::from(EXIT_REFUSED)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("reconcile failed: {e}. A failed read writes nothing; a failure while writing leaves the groups not yet written to the next pass");
            ExitCode::FAILURE
        }
    }
}

/// What a pass is doing, drawn on stderr while it runs, and only when stderr is a terminal: pages read on
/// each side, groups planned, writes done out of planned, and the time left at Outline's rate limit. Logs
/// are written around it, and stdout (the report, `--json`) never sees it.
struct ProgressView {
    bar: ProgressBar,
    drawing: tokio::task::JoinHandle<()>,
}

impl ProgressView {
    fn start(engine: &Arc<SyncEngine>) -> Option<ProgressView> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        crate::app::telemetry::set_active_bar(Some(bar.clone()));
        let (shown, engine) = (bar.clone(), engine.clone());
        let drawing = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                shown.set_message(progress_line(&engine));
                shown.tick();
            }
        });
        Some(ProgressView { bar, drawing })
    }

    async fn finish(self) {
        self.drawing.abort();
        let _ = self.drawing.await;
        self.bar.finish_and_clear();
        crate::app::telemetry::set_active_bar(None);
    }
}

fn progress_line(engine: &SyncEngine) -> String {
    // The counters are the Outline sink's: it is the one bound by a rate limit.
    let idle = PassProgress::default();
    let p = engine.outline.as_ref().map_or(&idle, |o| &o.progress);
    let lists = PassProgress::get(&p.member_lists_read);
    let lists_total = PassProgress::get(&p.member_lists_total);
    let writes = PassProgress::get(&p.writes_done);
    let writes_total = PassProgress::get(&p.writes_planned);
    let calls_left = lists_total.saturating_sub(lists) + writes_total.saturating_sub(writes);
    let left = match &engine.outline {
        Some(outline) => format!(
            " · ~{:.0} s left at the rate limit",
            calls_left as f64
                / outline
                    .outline
                    .limiter()
                    .allowed_per_second
                    .max(f64::MIN_POSITIVE)
        ),
        None => String::new(),
    };
    let phase = match p.phase() {
        PassPhase::ReadingAuthentik => "reading Authentik",
        PassPhase::ReadingOutline => "reading Outline",
        PassPhase::Writing => "writing",
        PassPhase::Idle => "done",
    };
    format!(
        "{phase} · Authentik {} pages · Outline {} pages · OpenFGA {} calls · member lists {lists}/{lists_total} · managed groups {} · writes {writes}/{writes_total}{left}",
        engine.metrics.requests_to("authentik"),
        engine.metrics.requests_to("outline"),
        engine.metrics.requests_to("openfga"),
        PassProgress::get(&p.groups_planned),
    )
}

/// One line of `check`. Written without `println!`, which panics when the reader has gone (`check | head -1`):
/// a closed pipe simply ends the output.
fn line(ok: bool, what: &str, detail: &str) -> bool {
    print_line(if ok { "ok  " } else { "FAIL" }, what, detail);
    ok
}

/// A line that is neither a pass nor a failure: something the operator should know.
fn warn_line(what: &str, detail: &str) {
    print_line("warn", what, detail);
}

/// A sink's line; false when it failed.
fn print_check(check: &CheckLine) -> bool {
    let mark = match check.mark {
        Mark::Ok => "ok  ",
        Mark::Warn => "warn",
        Mark::Fail => "FAIL",
    };
    print_line(mark, check.what, &check.detail);
    !check.failed()
}

fn print_line(mark: &str, what: &str, detail: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{mark} {what}: {detail}");
}

pub async fn check(settings: Settings) -> ExitCode {
    let mut all_ok = true;
    // A STATE_DIR that is missing or cannot be written is reported below; the other checks go on without it.
    let usable = settings
        .state_dir
        .as_ref()
        .is_some_and(|d| d.is_dir() && !read_only(d));
    let engine_settings = if usable || settings.source == SourceKind::Scim {
        settings.clone()
    } else {
        Settings {
            state_dir: None,
            ..settings.clone()
        }
    };
    let engine = match build_engine_to_look(&engine_settings, Arc::new(Metrics::new())).await {
        Ok(e) => e,
        Err(e) => {
            line(false, "configuration", &e.to_string());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    all_ok &= line(
        true,
        "configuration",
        &format!("loaded; listening on {}", settings.listen_addr),
    );
    for warning in unknown_variables() {
        warn_line("configuration", &warning);
    }
    all_ok &= check_state_dir(&settings);
    if usable {
        let people = engine.reader.caches.identities.people().len();
        let what = if engine.reader.caches.identities.is_persistent() {
            format!("the store opens; its identity map knows {people} people")
        } else {
            "no store yet: `serve` creates it at its first start".to_string()
        };
        all_ok &= line(true, "state", &what);
    }
    let authentik = match settings.source {
        SourceKind::Authentik => settings.authentik.as_ref().and_then(|a| {
            AuthentikClient::new(a, settings.upstream_timeout, Arc::new(Metrics::new())).ok()
        }),
        SourceKind::Scim => None,
    };
    match &authentik {
        Some(client) => all_ok &= check_authentik_access(client).await,
        None => all_ok &= check_scim(&settings),
    }
    for sink in engine.registered() {
        for check in sink.check().await {
            all_ok &= print_check(&check);
        }
    }
    if let Some(client) = &authentik {
        all_ok &= check_authentik_transport(client, &settings).await;
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Authentik's token: it must read users and groups.
async fn check_authentik_access(authentik: &AuthentikClient) -> bool {
    let mut all_ok = true;
    let ak_fix = "give the token's user a role with authentik_core.view_user and authentik_core.view_group (Authentik answers 403 without them)";
    for what in ["users", "groups"] {
        all_ok &= match authentik.probe(what).await {
            Ok(()) => line(true, "authentik", &format!("token can read {what}")),
            Err(e) => line(
                false,
                "authentik",
                &format!("cannot read {what}: {}", explain(&e, ak_fix)),
            ),
        };
    }
    all_ok
}

/// Authentik's transport must post here, with the token the bridge expects.
async fn check_authentik_transport(authentik: &AuthentikClient, settings: &Settings) -> bool {
    let mut all_ok = true;
    let transports = authentik.webhook_transports().await;
    for (mark, detail) in transport_lines(
        transports,
        settings.listen_addr,
        settings.authentik_webhook_token.is_some(),
    ) {
        all_ok &= match mark {
            Mark::Ok => line(true, "authentik transport", &detail),
            Mark::Fail => line(false, "authentik transport", &detail),
            Mark::Warn => {
                warn_line("authentik transport", &detail);
                true
            }
        };
    }
    all_ok &= match &settings.authentik_webhook_token {
        Some(_) => line(true, "authentik webhook", "AUTHENTIK_WEBHOOK_TOKEN is set"),
        None => line(false, "authentik webhook", "AUTHENTIK_WEBHOOK_TOKEN is not set, so /webhooks/authentik answers 503 — fix: set the same value here and in Authentik's server and worker, then re-apply the blueprint"),
    };
    all_ok
}

/// SCIM mode: the engine was built, so the store opened and migrated; the token must be set.
fn check_scim(settings: &Settings) -> bool {
    let store = settings
        .state_dir
        .as_ref()
        .map(|d| d.join(crate::store::FILE_NAME).display().to_string())
        .unwrap_or_default();
    let mut all_ok = line(
        true,
        "scim",
        &format!("the store {store} opens and is migrated"),
    );
    all_ok &= match &settings.scim_token {
        Some(_) => line(true, "scim", &format!("SCIM_TOKEN is set; point the identity provider at http://<this bridge's host>:{}/scim/v2", settings.listen_addr.port())),
        None => line(false, "scim", "SCIM_TOKEN is not set — fix: set it, and give the identity provider the same token"),
    };
    all_ok
}

/// The path Authentik's transport must post to.
const AUTHENTIK_WEBHOOK_PATH: &str = "/webhooks/authentik";

/// What `check` says of Authentik's webhook transports: whether one posts to this bridge's path, and
/// whether its port is `LISTEN_ADDR`'s. The host cannot be checked from here (a proxy or a Service may
/// stand between), so even a match says what it did not check; and when the transports cannot be read,
/// it says it cannot tell, never `ok`.
fn transport_lines(
    transports: Result<Vec<WebhookTransport>, UpstreamError>,
    listen: std::net::SocketAddr,
    token_set: bool,
) -> Vec<(Mark, String)> {
    let apply_again = format!("set AUTHENTIK_BRIDGE_URL=http://<this bridge's host>:{}{AUTHENTIK_WEBHOOK_PATH} in Authentik's server and worker (or `bridge_url` in the blueprint instance's context) and apply the blueprint again", listen.port());
    let transports = match transports {
        Ok(t) => t,
        // A 403 for the token itself is named by the Authentik lines above; this one is a permission.
        Err(e) if e.status() == Some(403) && !is_token_refused(&e) => {
            return vec![(Mark::Warn, "cannot tell whether Authentik posts to this bridge: the token may not read notification transports (give its role authentik_events.view_notificationtransport to have it checked)".to_string())];
        }
        Err(e) => {
            return vec![(
                Mark::Warn,
                format!("cannot tell whether Authentik posts to this bridge: {e}"),
            )];
        }
    };
    let parsed: Vec<(&WebhookTransport, reqwest::Url)> = transports
        .iter()
        .filter_map(|t| {
            let url = reqwest::Url::parse(t.webhook_url.as_deref()?).ok()?;
            Some((t, url))
        })
        .collect();
    let ours: Vec<&(&WebhookTransport, reqwest::Url)> = parsed
        .iter()
        .filter(|(_, url)| {
            url.path()
                .trim_end_matches('/')
                .ends_with(AUTHENTIK_WEBHOOK_PATH)
        })
        .collect();
    if ours.is_empty() {
        if let Some((t, url)) = parsed
            .iter()
            .find(|(t, _)| t.name.contains("authentik-bridge"))
        {
            return vec![(
                Mark::Fail,
                format!(
                    "transport {:?} posts to {}, whose path is not {AUTHENTIK_WEBHOOK_PATH} — fix: {apply_again}",
                    t.name,
                    without_query(url)
                ),
            )];
        }
        let text = format!("no webhook transport posts to a URL ending in {AUTHENTIK_WEBHOOK_PATH}, so Authentik pushes nothing here — fix: import authentik-blueprints/outline-bridge.yaml (docs/src/first-hour.md)");
        return vec![(if token_set { Mark::Fail } else { Mark::Warn }, text)];
    }
    let mut out = Vec::new();
    for (t, url) in ours {
        let shown = without_query(url);
        let has_token =
            t.webhook_mapping_headers.is_some() || url.query_pairs().any(|(k, _)| k == "token");
        if !has_token {
            out.push((Mark::Fail, format!("transport {:?} posts to {shown} without a token (no header mapping, no ?token=), so every push is refused — fix: apply the blueprint again, with AUTHENTIK_WEBHOOK_TOKEN set in Authentik's server and worker", t.name)));
            continue;
        }
        match url.port_or_known_default() {
            Some(port) if port == listen.port() => out.push((
                Mark::Ok,
                format!(
                    "transport {:?} posts to {shown}: path and port match LISTEN_ADDR {listen} (whether its host reaches this machine shows at the first push)",
                    t.name
                ),
            )),
            port => out.push((
                Mark::Warn,
                format!(
                    "transport {:?} posts to {shown}, port {}, but LISTEN_ADDR is {listen}: right only behind a proxy or a Service that maps that port here; otherwise {apply_again}",
                    t.name,
                    port.map_or_else(|| "unknown".to_string(), |p| p.to_string())
                ),
            )),
        }
    }
    out
}

/// A URL as `check` prints it: without its query, which may hold `?token=`.
fn without_query(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.to_string()
}

/// What a restart forgets without `STATE_DIR`: `serve` logs it once at start, and `check` warns with it.
pub const IN_MEMORY_ONLY: &str = "STATE_DIR is not set, so these hold only while this process runs: whom the bridge suspended or held (after a restart they stay suspended, never activated wrongly), the hour's suspension and invite allowances, the applied ROLE_MAP, the invitations Outline refused, and the identity map (a person deleted in Authentik while the bridge is down is not suspended, a changed email loses its link until the next sign-in, and with OPENFGA_GROUP_ID=name a rename's old tuples stay; docs/src/roles-and-offboarding.md)";

/// Whether a folder refuses writes (probed with a file that is removed at once).
fn read_only(dir: &std::path::Path) -> bool {
    let probe = dir.join(format!(".check-{}", std::process::id()));
    let refused = std::fs::write(&probe, b"").is_err();
    let _ = std::fs::remove_file(&probe);
    refused
}

/// `STATE_DIR`: a folder the bridge can write, or a warning of what a restart forgets without it.
fn check_state_dir(settings: &Settings) -> bool {
    let Some(dir) = &settings.state_dir else {
        warn_line("state", IN_MEMORY_ONLY);
        return true;
    };
    if !dir.is_dir() {
        return line(
            false,
            "state",
            &format!(
                "STATE_DIR {} is not a folder — fix: create it (mkdir -p) for the user the bridge runs as",
                dir.display()
            ),
        );
    }
    let probe = dir.join(format!(".check-{}", std::process::id()));
    match std::fs::write(&probe, b"") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            line(
                true,
                "state",
                &format!("STATE_DIR {} is writable", dir.display()),
            )
        }
        Err(e) => line(
            false,
            "state",
            &format!(
                "STATE_DIR {} cannot be written ({e}) — fix: give the bridge's user write access",
                dir.display()
            ),
        ),
    }
}

pub async fn healthcheck(url: &str) -> ExitCode {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build()
        .unwrap_or_default();
    match client.get(url).send().await {
        Ok(r) if r.status().is_success() => ExitCode::SUCCESS,
        Ok(r) => {
            eprintln!("unhealthy: HTTP {}", r.status());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("unhealthy: {}", e.without_url());
            ExitCode::FAILURE
        }
    }
}
