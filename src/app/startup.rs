//! Builds the whole app from settings: clients, engine, queue, HTTP server and the reconcile schedule. The
//! binary, the tests (on port 0) and the demo all start the bridge through here.

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use tracing_actix_web::TracingLogger;

use crate::app::telemetry::RedactedRootSpan;
use crate::clients::ClientBuildError;
use crate::configuration::{ConfigError, Settings, SourceKind};
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::runtime::{EventDeduper, JobKey, JobQueue};
use crate::sinks::{BridgeState, SyncEngine};
use crate::source::directory::Directory;
use crate::source::scim::directory::ScimDirectory;
use crate::source::scim::ScimService;
use crate::source::AuthentikClient;
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    HttpClient(#[from] ClientBuildError),
    #[error(transparent)]
    State(#[from] crate::store::RecordError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

/// Builds the sync engine alone (no HTTP), for `reconcile`.
pub async fn build_engine(
    settings: &Settings,
    metrics: Arc<Metrics>,
) -> Result<Arc<SyncEngine>, StartupError> {
    Ok(build_parts(settings, metrics, Access::Write).await?.engine)
}

/// Builds the engine for `check` and `reconcile --dry-run`, which promise to change nothing: a store that
/// does not exist yet is not created (except SCIM's, the source itself), and the JSON files of an earlier
/// version are read, not imported.
pub async fn build_engine_to_look(
    settings: &Settings,
    metrics: Arc<Metrics>,
) -> Result<Arc<SyncEngine>, StartupError> {
    let engine = build_parts(settings, metrics, Access::Look).await?.engine;
    engine.freeze();
    Ok(engine)
}

/// Whether the process may write what the bridge keeps (`serve`, `reconcile`), or only looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Write,
    Look,
}

/// The engine, and the SCIM service when SCIM is the source.
pub struct Parts {
    pub engine: Arc<SyncEngine>,
    pub scim: Option<ScimService>,
}

/// Opens the source (Authentik's API, or the SCIM store in `STATE_DIR`, migrated) and builds the engine over it.
pub async fn build_parts(
    settings: &Settings,
    metrics: Arc<Metrics>,
    access: Access,
) -> Result<Parts, StartupError> {
    settings.require_upstreams()?;
    // One store for everything the bridge must not forget, the SCIM resources included.
    let creates = access == Access::Write || settings.source == SourceKind::Scim;
    let store = match settings.state_dir.as_deref() {
        Some(dir) if creates || dir.join(crate::store::FILE_NAME).exists() => {
            let store = Store::open(dir).await?;
            tracing::info!(path = %store.path().display(), "store open");
            Some(store)
        }
        _ => None,
    };
    let (directory, scim): (Arc<dyn Directory>, Option<ScimService>) = match settings.source {
        SourceKind::Authentik => {
            let authentik = settings.authentik.as_ref().ok_or(ConfigError::Missing {
                name: "AUTHENTIK_URL",
            })?;
            let client =
                AuthentikClient::new(authentik, settings.upstream_timeout, metrics.clone())?;
            (Arc::new(client), None)
        }
        SourceKind::Scim => {
            let store = store
                .clone()
                .ok_or(ConfigError::Missing { name: "STATE_DIR" })?;
            (
                Arc::new(ScimDirectory::new(store.clone())),
                Some(ScimService::new(store)),
            )
        }
    };
    let state = match (&store, &settings.state_dir) {
        (Some(store), Some(dir)) => {
            BridgeState::open(store, dir, settings.source, access == Access::Write).await?
        }
        (None, Some(dir)) => BridgeState::from_files(dir)?,
        _ => BridgeState::in_memory(),
    };
    Ok(Parts {
        engine: Arc::new(SyncEngine::from_settings(
            settings, directory, state, metrics,
        )?),
        scim,
    })
}

pub struct Application {
    port: u16,
    server: Server,
    queue: JobQueue,
    engine: Arc<SyncEngine>,
    metrics: Arc<Metrics>,
    shutdown_grace: Duration,
}

impl Application {
    /// Binds the listener (port 0 picks a free port) and wires everything; nothing runs until
    /// [`Application::run_until_stopped`].
    pub async fn build(settings: Settings) -> Result<Application, StartupError> {
        let listener =
            TcpListener::bind(settings.listen_addr).map_err(|source| StartupError::Bind {
                addr: settings.listen_addr.to_string(),
                source,
            })?;
        Self::build_with_listener(settings, listener).await
    }

    pub async fn build_with_listener(
        settings: Settings,
        listener: TcpListener,
    ) -> Result<Application, StartupError> {
        let metrics = Arc::new(Metrics::new());
        let Parts { engine, scim } = build_parts(&settings, metrics.clone(), Access::Write).await?;
        if let Some(outline) = &engine.outline {
            outline.accounts.check_writable().await?;
            outline.invites.check_writable().await?;
        }
        let queue = JobQueue::new(
            engine.registered(),
            settings.queue_capacity,
            settings.worker_concurrency,
            metrics.clone(),
        );
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let state = web::Data::new(AppState {
            outline_webhook_secret: settings.outline_webhook_secret.clone(),
            authentik_webhook_token: settings.authentik_webhook_token.clone(),
            scim: scim.map(|service| http::scim::ScimState {
                service,
                token: settings.scim_token.clone(),
            }),
            queue: queue.clone(),
            engine: engine.clone(),
            dedupe: EventDeduper::new(),
            metrics: metrics.clone(),
            body_timeout: settings.body_timeout,
        });
        let server = HttpServer::new(move || {
            App::new()
                .wrap(TracingLogger::<RedactedRootSpan>::new())
                .app_data(state.clone())
                .route("/sync", web::post().to(http::outline::outline_webhook))
                .route(
                    "/webhooks/outline",
                    web::post().to(http::outline::outline_webhook),
                )
                .route(
                    "/webhooks/authentik",
                    web::post().to(http::authentik::authentik_webhook),
                )
                .configure(http::scim::routes)
                .route("/healthz", web::get().to(http::health::healthz))
                .route("/readyz", web::get().to(http::health::readyz))
                .route("/metrics", web::get().to(http::health::metrics))
        })
        // Slow clients (slowloris) are dropped: the headers must arrive within HEADER_TIMEOUT, and a request
        // that stalls mid-body is cut by BODY_TIMEOUT in the handlers.
        .client_request_timeout(settings.header_timeout)
        .client_disconnect_timeout(Duration::from_secs(1))
        // SIGTERM and Ctrl-C are the caller's to handle (`run_until_stopped`), so that the queue drains too.
        .disable_signals()
        .shutdown_timeout(settings.shutdown_grace.as_secs().max(1))
        .listen(listener)
        .map_err(|source| StartupError::Bind {
            addr: "listener".into(),
            source,
        })?
        .run();

        if let Some(outline) = &engine.outline {
            tokio::spawn(crate::sinks::outline::invite_jobs::pump(
                queue.clone(),
                outline.clone(),
            ));
        }
        // The start-up reconcile runs as soon as the server listens, then every interval.
        let _ = queue.submit(JobKey::Reconcile);
        if let Some(interval) = settings.reconcile_interval {
            let q = queue.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    if let Err(e) = q.submit(JobKey::Reconcile) {
                        tracing::warn!(error = %e, "scheduled reconcile not queued");
                    }
                }
            });
        }
        Ok(Application {
            port,
            server,
            queue,
            engine,
            metrics,
            shutdown_grace: settings.shutdown_grace,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn queue(&self) -> JobQueue {
        self.queue.clone()
    }

    /// What the jobs share: for the CLI, the demo and tests that run a pass beside the queue.
    pub fn engine(&self) -> Arc<SyncEngine> {
        self.engine.clone()
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Serves until the server fails or `shutdown` resolves. Then it stops accepting connections, lets the
    /// requests in flight answer, and gives the running jobs `SHUTDOWN_GRACE` to finish; jobs not started, or
    /// cut by the grace period, are left to the start-up reconcile of the next process, which repairs any
    /// difference. Returns `Ok` after a shutdown, whether or not every job finished.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let handle = self.server.handle();
        let mut server = tokio::spawn(self.server);
        tokio::select! {
            result = &mut server => return result.unwrap_or_else(|e| Err(std::io::Error::other(e))),
            () = shutdown => {}
        }
        tracing::info!(
            grace_ms = self.shutdown_grace.as_millis() as u64,
            jobs = self.queue.depth(),
            "shutting down: no new requests; running jobs may finish"
        );
        self.queue.close();
        let (_, drained) = tokio::join!(
            handle.stop(true),
            tokio::time::timeout(self.shutdown_grace, self.queue.wait_idle())
        );
        match drained {
            Ok(()) => tracing::info!("shut down: every running job finished"),
            Err(_) => tracing::warn!(
                left = self.queue.depth(),
                "shut down at the end of the grace period; the start-up reconcile will finish the rest"
            ),
        }
        let _ = server.await;
        Ok(())
    }
}
