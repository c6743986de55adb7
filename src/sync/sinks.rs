//! The registered sinks: the one place that names each sink's jobs. The queue runs whatever is listed
//! here through [`SinkJobs`], so adding a sink is a folder of its own and one line in [`registered`].

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;

use super::accounts::accounts_job;
use super::engine::SyncEngine;
use super::invites::invites_job;
use super::job::{JobKey, JobOutcome, SinkJobs, SyncError};
use super::jobs::{group_job, signin_job, user_job, OUTLINE};
use super::openfga::{self, OPENFGA};
use super::reconcile::reconcile_job;
use crate::domain::OutlineUserId;

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
        let engine = &self.0;
        async move {
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
        let engine = &self.0;
        async move {
            let sink = openfga::sink_of(engine)?;
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
