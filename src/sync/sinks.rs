//! The registered sinks: the one place that names each sink's jobs. The queue runs whatever is listed
//! here through [`SinkJobs`], so adding a sink is a folder of its own and one line in [`registered`].

use std::sync::Arc;

use super::cache::SnapshotCaches;
use super::engine::{BridgeState, OutlineSync, OUTLINE};
use super::intake::IntakeContext;
use super::openfga::{OpenFgaSink, OPENFGA};
use super::reconcile::ReconcileReport;
use super::snapshots::SnapshotReader;
use crate::clients::{AuthentikClient, OpenFgaClient, OutlineClient, UpstreamError};
use crate::configuration::Settings;
use crate::domain::GroupSelector;
use crate::metrics::Metrics;
use crate::runtime::context::{Runtime, SyncContext};
use crate::runtime::converge::{self, Converging};
use crate::runtime::job::ReconcileOptions;
use crate::runtime::job::{SinkJobs, SyncError};

/// The context every sink shares, and the sinks that are configured.
pub struct SyncEngine {
    pub ctx: Arc<SyncContext>,
    pub outline: Option<Arc<OutlineSync>>,
    pub openfga: Option<Arc<OpenFgaSink>>,
    /// The configured sinks as the runtime sees them, in the order their jobs are queued.
    registered: Vec<Arc<dyn SinkJobs>>,
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
            runtime: Arc::new(Runtime::new(settings.max_removals, metrics.clone())),
        });
        let openfga = openfga.and_then(|client| {
            let naming = settings.openfga.as_ref()?.naming.clone();
            Some(Arc::new(OpenFgaSink::new(ctx.clone(), client, naming)))
        });
        let outline =
            outline.map(|client| Arc::new(OutlineSync::new(settings, ctx.clone(), client, state)));
        let mut registered: Vec<Arc<dyn SinkJobs>> = Vec::new();
        if let Some(sink) = &outline {
            registered.push(Arc::new(Converging {
                ctx: ctx.runtime.clone(),
                sink: sink.clone(),
            }));
        }
        if let Some(sink) = &openfga {
            registered.push(Arc::new(Converging {
                ctx: ctx.runtime.clone(),
                sink: sink.clone(),
            }));
        }
        SyncEngine {
            outline,
            openfga,
            registered,
            ctx,
        }
    }

    /// What intake weighs an Authentik change with.
    pub fn intake(&self) -> IntakeContext<'_> {
        IntakeContext {
            reader: &self.reader,
            runtime: &self.runtime,
            sinks: &self.registered,
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
    pub fn openfga(&self) -> Result<&Arc<OpenFgaSink>, SyncError> {
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
            Some(outline) => Some(converge::pass(&engine.runtime, &**outline, options).await),
            None => None,
        }
    };
    let openfga_pass = async {
        match &engine.openfga {
            Some(sink) => Some(converge::pass(&engine.runtime, &**sink, options).await),
            None => None,
        }
    };
    let (outline, fga) = tokio::join!(outline_pass, openfga_pass);
    let mut report = match outline {
        Some(r) => r?.report,
        None => ReconcileReport::without_outline(options.dry_run),
    };
    report.sinks = engine.sinks();
    report.openfga = fga.transpose()?.map(|done| done.report);
    Ok(report)
}

fn not_configured(sink: &'static str) -> SyncError {
    SyncError::Upstream(UpstreamError::Decode {
        upstream: sink,
        call: "job".into(),
        message: format!("{sink} is not configured"),
    })
}

/// The configured sinks, in the order their jobs are queued: each is converged by the runtime
/// (`runtime/converge.rs`) through its [`converge::Sink`] contract.
pub fn registered(engine: &SyncEngine) -> Vec<Arc<dyn SinkJobs>> {
    engine.registered.clone()
}
