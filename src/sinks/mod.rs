//! The registered sinks, one folder each: the one place that names each sink's jobs. The queue runs whatever is listed
//! here through [`SinkJobs`], so adding a sink is a folder of its own and one line in [`registered`].

pub mod openfga;
pub mod outline;

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::clients::{ClientBuildError, UpstreamError};
use crate::configuration::Settings;
use crate::domain::held::HoldReason;
use crate::domain::GroupSelector;
use crate::metrics::Metrics;
use crate::runtime::context::{Runtime, SyncContext};
use crate::runtime::converge::{self, Converging};
use crate::runtime::intake::IntakeContext;
use crate::runtime::job::ReconcileOptions;
use crate::runtime::job::{SinkJobs, SyncError};
use crate::sinks::openfga::sink::OpenFgaPassReport;
use crate::sinks::openfga::sink::{OpenFgaSink, OpenFgaState, OPENFGA};
use crate::sinks::openfga::OpenFgaClient;
use crate::sinks::outline::pass::OutlinePassReport;
use crate::sinks::outline::sink::{OutlineState, OutlineSync, OUTLINE};
use crate::sinks::outline::OutlineClient;
use crate::source::cache::SnapshotCaches;
use crate::source::directory::Directory;
use crate::source::identities::IdentityMap;
use crate::source::reader::SnapshotReader;
use crate::store::{RecordError, Store};

/// What the bridge keeps in the store in `STATE_DIR` (in memory without it): the identity map, and each
/// sink's own memory.
pub struct BridgeState {
    pub identities: IdentityMap,
    pub outline: OutlineState,
    pub openfga: OpenFgaState,
}

impl BridgeState {
    pub fn in_memory() -> BridgeState {
        BridgeState {
            identities: IdentityMap::in_memory(),
            outline: OutlineState::in_memory(),
            openfga: OpenFgaState::in_memory(),
        }
    }

    /// Opens every part in `store`, importing (with `import`; else reading) the JSON files an earlier version
    /// left in `dir`. A part that cannot be read stops the start-up: going on without it would forget what it
    /// holds.
    pub async fn open(
        store: &Store,
        dir: &std::path::Path,
        source: crate::configuration::SourceKind,
        import: bool,
    ) -> Result<BridgeState, RecordError> {
        let unreadable =
            |e: crate::store::StoreError| RecordError::new(store.path(), e.to_string());
        Ok(BridgeState {
            identities: IdentityMap::open(store, source).await.map_err(unreadable)?,
            outline: OutlineState::open(store, dir, import).await?,
            openfga: OpenFgaState::open(store).await.map_err(unreadable)?,
        })
    }

    /// For a look (`check`, a dry run) at a `STATE_DIR` with no store yet: the JSON files of an earlier
    /// version, read into memory.
    pub fn from_files(dir: &std::path::Path) -> Result<BridgeState, RecordError> {
        Ok(BridgeState {
            outline: OutlineState::from_files(dir)?,
            ..BridgeState::in_memory()
        })
    }

    pub fn is_persistent(&self) -> bool {
        self.identities.is_persistent()
    }
}

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
    /// Each configured sink built from its settings, with its client: a sink is on when its settings are.
    pub fn from_settings(
        settings: &Settings,
        directory: Arc<dyn Directory>,
        state: BridgeState,
        metrics: Arc<Metrics>,
    ) -> Result<SyncEngine, ClientBuildError> {
        let outline = match &settings.outline {
            Some(outline) => Some(OutlineClient::new(
                outline,
                settings.outline_rate_limit,
                settings.upstream_timeout,
                metrics.clone(),
            )?),
            None => None,
        };
        let openfga = match &settings.openfga {
            Some(fga) => Some(OpenFgaClient::new(
                fga,
                settings.upstream_timeout,
                metrics.clone(),
            )?),
            None => None,
        };
        Ok(SyncEngine::new(
            settings, directory, outline, openfga, state, metrics,
        ))
    }

    pub fn new(
        settings: &Settings,
        directory: Arc<dyn Directory>,
        outline: Option<OutlineClient>,
        openfga: Option<OpenFgaClient>,
        state: BridgeState,
        metrics: Arc<Metrics>,
    ) -> SyncEngine {
        let ctx = Arc::new(SyncContext {
            reader: SnapshotReader {
                directory,
                caches: SnapshotCaches::new(settings.cache_ttl, state.identities, metrics.clone()),
                selector: GroupSelector {
                    filter: settings.group_filter.clone(),
                },
                membership: settings.membership,
            },
            runtime: Arc::new(Runtime::new(settings.max_removals, metrics.clone())),
        });
        let openfga = openfga.and_then(|client| {
            let naming = settings.openfga.as_ref()?.naming.clone();
            Some(Arc::new(OpenFgaSink::new(
                ctx.clone(),
                client,
                naming,
                state.openfga,
            )))
        });
        let outline = outline.map(|client| {
            Arc::new(OutlineSync::new(
                settings,
                ctx.clone(),
                client,
                state.outline,
            ))
        });
        let mut registered: Vec<Arc<dyn SinkJobs>> = Vec::new();
        if let Some(sink) = &outline {
            registered.push(Arc::new(Converging {
                runtime: ctx.runtime.clone(),
                sink: sink.clone(),
            }));
        }
        if let Some(sink) = &openfga {
            registered.push(Arc::new(Converging {
                runtime: ctx.runtime.clone(),
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

    /// For `reconcile --dry-run` and `check`: what the reads teach the bridge is not written to the store.
    pub fn freeze(&self) {
        self.reader.caches.identities.freeze();
        if let Some(fga) = &self.openfga {
            fga.freeze();
        }
    }

    /// The configured sinks, in the order their jobs are queued: each is converged by the runtime
    /// (`runtime/converge.rs`) through its [`converge::Sink`] contract.
    pub fn registered(&self) -> Vec<Arc<dyn SinkJobs>> {
        self.registered.clone()
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

/// A pass of every sink, as `reconcile` prints it and `--json` writes it: Outline's fields at the top level
/// (as before there was a second sink), then which sinks ran, then OpenFGA's half.
#[derive(Debug, serde::Serialize)]
pub struct ReconcileReport {
    #[serde(flatten)]
    pub outline: OutlinePassReport,
    /// Which sinks the pass covered; the Outline fields are empty when Outline is off.
    pub sinks: Vec<&'static str>,
    /// The OpenFGA half of the pass, when OpenFGA is configured.
    pub openfga: Option<OpenFgaPassReport>,
}

/// The report reads as Outline's where only Outline has something to say.
impl std::ops::Deref for ReconcileReport {
    type Target = OutlinePassReport;
    fn deref(&self) -> &OutlinePassReport {
        &self.outline
    }
}

impl ReconcileReport {
    /// Each guard that held something back, once, in a stable order.
    pub fn hold_reasons(&self) -> BTreeSet<HoldReason> {
        let held = &self.held_back;
        let mut reasons = BTreeSet::new();
        if held.removals || self.openfga.as_ref().is_some_and(|f| f.guarded) {
            reasons.insert(HoldReason::MaxRemovals);
        }
        reasons.extend(held.demotions);
        if !held.suspensions.is_empty() {
            reasons.insert(HoldReason::MaxSuspensions);
        }
        reasons
    }

    /// True when either sink held its removals back.
    pub fn any_guarded(&self) -> bool {
        self.guarded || self.openfga.as_ref().is_some_and(|f| f.guarded)
    }

    /// The report's lines for the sinks besides Outline, after Outline's own.
    pub fn render_other_sinks(&self, out: &mut String, verb: &str) {
        if let Some(fga) = &self.openfga {
            openfga::report::render(fga, self.dry_run, verb, out);
        }
    }

    pub fn refused_groups(&self) -> usize {
        self.summary.refused_groups + self.openfga.as_ref().map_or(0, |f| f.refused_groups)
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
    let outline = match outline {
        Some(r) => r?.report,
        None => OutlinePassReport::empty(options.dry_run),
    };
    Ok(ReconcileReport {
        outline,
        sinks: engine.sinks(),
        openfga: fga.transpose()?.map(|done| done.report),
    })
}

fn not_configured(sink: &'static str) -> SyncError {
    SyncError::Upstream(UpstreamError::Decode {
        upstream: sink,
        call: "job".into(),
        message: format!("{sink} is not configured"),
    })
}
