//! The registered sinks: the one place that names each sink's jobs. The queue runs whatever is listed
//! here through [`SinkJobs`], so adding a sink is a folder of its own and one line in [`registered`].

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;

use super::account_jobs::accounts_job;
use super::cache::SnapshotCaches;
use super::engine::{BridgeState, OutlineSync, OUTLINE};
use super::invite_jobs::invites_job;
use super::jobs::{group_job, signin_job, user_job};
use super::openfga::{self, OpenFgaSink, OPENFGA};
use super::reconcile::{reconcile_job, run_outline_reconcile, ReconcileReport};
use super::snapshots::SnapshotReader;
use crate::clients::{AuthentikClient, OpenFgaClient, OutlineClient, UpstreamError};
use crate::configuration::Settings;
use crate::domain::{GroupSelector, OutlineUserId};
use crate::metrics::Metrics;
use crate::runtime::changes::ChangeClock;
use crate::runtime::context::SyncContext;
use crate::runtime::job::ReconcileOptions;
use crate::runtime::job::{JobKey, JobOutcome, SinkJobs, SyncError};
use crate::runtime::progress::PassProgress;

/// The context every sink shares, and the sinks that are configured.
pub struct SyncEngine {
    pub ctx: Arc<SyncContext>,
    pub outline: Option<Arc<OutlineSync>>,
    pub openfga: Option<OpenFgaSink>,
}

impl std::ops::Deref for SyncEngine {
    type Target = SyncContext;
    fn deref(&self) -> &SyncContext {
        &self.ctx
    }
}

impl SyncEngine {
    pub fn new(
        settings: &Settings,
        authentik: AuthentikClient,
        outline: Option<OutlineClient>,
        openfga: Option<OpenFgaClient>,
        state: BridgeState,
        metrics: Arc<Metrics>,
    ) -> SyncEngine {
        let ctx = Arc::new(SyncContext {
            reader: SnapshotReader {
                authentik,
                caches: SnapshotCaches::new(settings.cache_ttl, metrics.clone()),
                selector: GroupSelector {
                    filter: settings.group_filter.clone(),
                },
                membership: settings.membership,
            },
            clock: ChangeClock::new(),
            progress: PassProgress::default(),
            max_removals: settings.max_removals,
            metrics: metrics.clone(),
        });
        let openfga = openfga.and_then(|client| {
            let naming = settings.openfga.as_ref()?.naming.clone();
            Some(OpenFgaSink::new(client, naming, metrics.clone()))
        });
        SyncEngine {
            outline: outline
                .map(|client| Arc::new(OutlineSync::new(settings, ctx.clone(), client, state))),
            openfga,
            ctx,
        }
    }

    /// The names of the sinks that are configured, in the order their jobs are queued.
    pub fn sinks(&self) -> Vec<&'static str> {
        let mut sinks = Vec::new();
        if self.outline.is_some() {
            sinks.push(OUTLINE);
        }
        if self.openfga.is_some() {
            sinks.push(OPENFGA);
        }
        sinks
    }

    /// The Outline sink, for what only it does (the CLI's invitations, the sign-in webhook).
    pub fn outline(&self) -> Result<&Arc<OutlineSync>, SyncError> {
        self.outline
            .as_ref()
            .ok_or_else(|| not_configured("outline"))
    }

    /// The OpenFGA sink.
    pub fn openfga(&self) -> Result<&OpenFgaSink, SyncError> {
        self.openfga
            .as_ref()
            .ok_or_else(|| not_configured("openfga"))
    }
}

/// Both sinks' passes at once, for the CLI and tests: each reads and writes on its own, and the report has
/// both halves. A failure of either fails the whole; the other half's writes stand.
pub async fn run_reconcile(
    engine: &SyncEngine,
    options: ReconcileOptions,
) -> Result<ReconcileReport, SyncError> {
    let outline_pass = async {
        match &engine.outline {
            Some(outline) => Some(run_outline_reconcile(outline, options).await),
            None => None,
        }
    };
    let openfga_pass = async {
        match &engine.openfga {
            Some(sink) => Some(openfga::run_reconcile(&engine.ctx, sink, options).await),
            None => None,
        }
    };
    let (outline, fga) = tokio::join!(outline_pass, openfga_pass);
    let mut report = match outline {
        Some(r) => r?,
        None => ReconcileReport::without_outline(options.dry_run),
    };
    report.sinks = engine.sinks();
    report.openfga = fga.transpose()?;
    Ok(report)
}

fn not_configured(sink: &'static str) -> SyncError {
    SyncError::Upstream(UpstreamError::Decode {
        upstream: sink,
        call: "job".into(),
        message: format!("{sink} is not configured"),
    })
}

/// The configured sinks, in the order their jobs are queued.
pub fn registered(engine: &Arc<SyncEngine>) -> Vec<Arc<dyn SinkJobs>> {
    let mut sinks: Vec<Arc<dyn SinkJobs>> = Vec::new();
    if engine.outline.is_some() {
        sinks.push(Arc::new(OutlineJobs(engine.clone())));
    }
    if engine.openfga.is_some() {
        sinks.push(Arc::new(OpenFgaJobs(engine.clone())));
    }
    sinks
}

/// Outline's jobs: memberships for users and groups, passes, and its own sign-ins, accounts and
/// invitations.
struct OutlineJobs(Arc<SyncEngine>);

impl SinkJobs for OutlineJobs {
    fn name(&self) -> &'static str {
        OUTLINE
    }

    fn interested(&self, key: &JobKey) -> bool {
        match key {
            JobKey::Own(own) => own.sink == OUTLINE,
            _ => true,
        }
    }

    fn run<'a>(&'a self, key: &'a JobKey) -> BoxFuture<'a, Result<JobOutcome, SyncError>> {
        async move {
            let engine = self.0.outline()?;
            match key {
                JobKey::AuthentikUser(pk) => user_job(engine, *pk).await,
                JobKey::AuthentikGroup(id) => group_job(engine, id).await,
                JobKey::Reconcile => reconcile_job(engine).await,
                JobKey::Own(own) => match own.kind {
                    "signin" => signin_job(engine, &OutlineUserId::new(own.target.clone())).await,
                    "accounts" => accounts_job(engine).await,
                    "invites" => invites_job(engine).await,
                    _ => Ok(JobOutcome::default()),
                },
            }
        }
        .boxed()
    }
}

/// OpenFGA's jobs: `member` tuples for users and groups, and passes.
struct OpenFgaJobs(Arc<SyncEngine>);

impl SinkJobs for OpenFgaJobs {
    fn name(&self) -> &'static str {
        OPENFGA
    }

    fn interested(&self, key: &JobKey) -> bool {
        !matches!(key, JobKey::Own(own) if own.sink != OPENFGA)
    }

    fn run<'a>(&'a self, key: &'a JobKey) -> BoxFuture<'a, Result<JobOutcome, SyncError>> {
        async move {
            let (engine, sink) = (&*self.0.ctx, self.0.openfga()?);
            match key {
                JobKey::AuthentikUser(pk) => openfga::user_job(engine, sink, *pk).await,
                JobKey::AuthentikGroup(id) => openfga::group_job(engine, sink, id).await,
                JobKey::Reconcile => openfga::reconcile_job(engine, sink).await,
                JobKey::Own(_) => Ok(JobOutcome::default()),
            }
        }
        .boxed()
    }
}
