//! The one place an accepted Authentik change becomes jobs: the caches it makes stale are invalidated and
//! the change clock ticks before the jobs are queued, so the jobs, and any pass running meanwhile, see it.
//! What a group change means beyond that is each sink's to say ([`SinkJobs::group_changed`]).

use crate::configuration::MembershipMode;
use crate::domain::GroupName;
use crate::runtime::job::{GroupChange, GroupInterest, JobKey, SinkJobs};
use crate::source::webhook::{AuthentikChange, ModelAction};
use crate::source::SourceChanges;

use crate::runtime::context::Runtime;
use crate::source::reader::SnapshotReader;

/// What to do with an accepted change.
#[derive(Debug, PartialEq, Eq)]
pub enum Intake {
    /// The jobs to queue; never empty.
    Queue(Vec<JobKey>),
    /// Accepted, and nothing to sync; the reason is the webhook's answer.
    Ignore(&'static str),
}

/// The source's reader, the runtime's clock, and the registered sinks: what intake weighs a change with.
pub struct IntakeContext<'a> {
    pub reader: &'a SnapshotReader,
    pub runtime: &'a Runtime,
    pub sinks: &'a [std::sync::Arc<dyn SinkJobs>],
}

pub async fn accept_change(cx: &IntakeContext<'_>, change: &AuthentikChange) -> Intake {
    match change {
        AuthentikChange::Group {
            action, id, name, ..
        } => {
            cx.runtime.clock.group_changed(id);
            let name = GroupName::new(name.as_str());
            let change = GroupChange {
                id,
                name: &name,
                deleted: *action == ModelAction::Deleted,
                managed: cx.reader.selector.is_managed(&name, false),
                inherited: cx.reader.membership == MembershipMode::Inherited,
            };
            let mut wanted = Vec::new();
            for sink in cx.sinks {
                wanted.push(sink.group_changed(&change).await);
            }
            cx.reader.caches.catalog.invalidate(&()).await;
            let mut keys: Vec<JobKey> = Vec::new();
            if !change.deleted && (change.managed || wanted.contains(&GroupInterest::Group)) {
                keys.push(JobKey::AuthentikGroup(id.clone()));
            }
            for interest in wanted {
                if let GroupInterest::Own(key) = interest {
                    if !keys.contains(&key) {
                        keys.push(key);
                    }
                }
            }
            if change.deleted {
                tracing::warn!(group = %name, authentik_group = %id, "Authentik group deleted; its Outline group and members are kept. Delete the Outline group by hand if it should go, or create a group of the same name to take it over");
            }
            match (keys.is_empty(), change.deleted) {
                (false, _) => Intake::Queue(keys),
                (true, true) => Intake::Ignore("kept"),
                (true, false) => Intake::Ignore("ignored"),
            }
        }
        AuthentikChange::User { pk, .. } => {
            // A user-side change (groups, deactivation) alters group member lists without a group event.
            cx.runtime.clock.user_changed(*pk);
            Intake::Queue(vec![JobKey::AuthentikUser(*pk)])
        }
        // No target to re-read: a full pass, debounced by the queue's coalescing.
        AuthentikChange::DefaultBody => Intake::Queue(vec![JobKey::Reconcile]),
        AuthentikChange::Test => Intake::Ignore("test received"),
        AuthentikChange::Ignored { .. } => Intake::Ignore("ignored"),
    }
}

/// A source's write, as intake takes it: the emails it hands over are remembered first, then each change is
/// accepted in order. The distinct keys to queue.
pub async fn accept_changes(cx: &IntakeContext<'_>, written: &SourceChanges) -> Vec<JobKey> {
    for (pk, email) in &written.emails {
        cx.reader.caches.identities.remember(*pk, email);
    }
    let mut keys: Vec<JobKey> = Vec::new();
    for change in &written.changes {
        if let Intake::Queue(more) = accept_change(cx, change).await {
            for key in more {
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
    }
    keys
}
