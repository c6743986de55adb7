//! The one place an accepted Authentik change becomes a job: the caches it makes stale are invalidated and
//! the change clock ticks before the job is queued, so the job, and any pass running meanwhile, see it.

use super::jobs::accounts_key;
use super::sinks::SyncEngine;
use crate::configuration::MembershipMode;
use crate::domain::GroupName;
use crate::runtime::job::JobKey;
use crate::webhooks::authentik::{AuthentikChange, ModelAction};

/// What to do with an accepted change.
#[derive(Debug, PartialEq, Eq)]
pub enum Intake {
    Queue(JobKey),
    /// Accepted, and nothing to sync; the reason is the webhook's answer.
    Ignore(&'static str),
}

pub async fn accept_change(engine: &SyncEngine, change: &AuthentikChange) -> Intake {
    let caches = &engine.reader.caches;

    match change {
        AuthentikChange::Group {
            action, id, name, ..
        } => {
            engine.clock.group_changed(id);
            let name = GroupName::new(name.as_str());
            // Roles are the Outline sink's; without it no group gives any.
            let accounts = engine.outline.as_ref().map(|o| &o.accounts);
            let role_map_set = accounts.is_some_and(|a| a.role_map.is_some());
            // Whether the group gives roles under its new name, or gave them under the name the bridge last
            // saw: a rename or deletion takes those roles away. The bridge remembers which groups gave roles
            // for as long as it runs, since a cached catalog may have expired when the admin acts.
            let gave_roles = accounts.is_some_and(|a| a.gives_roles(id, &name));
            if let Some(a) = accounts {
                a.note_role_group(id, &name);
            }
            let inherited = engine.reader.membership == MembershipMode::Inherited;
            let deleted = *action == ModelAction::Deleted;
            if role_map_set && (gave_roles || inherited || deleted) {
                engine.clock.roles_changed();
            }
            caches.catalog.invalidate(&()).await;
            if deleted {
                tracing::warn!(group = %name, authentik_group = %id, "Authentik group deleted; its Outline group and members are kept. Delete the Outline group by hand if it should go, or create a group of the same name to take it over");
                // With `ROLE_MAP`, any deletion re-reads the mapped groups: a few reads, and no deleted admin
                // group is missed, whatever the bridge saw of it before.
                if role_map_set {
                    return Intake::Queue(accounts_key());
                }
                return Intake::Ignore("kept");
            }
            // A group outside the filter is ignored, unless an Outline group is linked to it: then it was
            // renamed out of the filter, and its job warns about that. Without a cached Outline index the
            // job decides.
            // A group `ROLE_MAP` names is followed whether or not it is synced as a group: it decides roles.
            // With `MEMBERSHIP=inherited` any group may sit below a synced or mapped one, so the job decides.
            if !engine.reader.selector.is_managed(&name, false)
                && !accounts.is_some_and(|a| a.decides_roles(&name))
                && !inherited
            {
                let linked = match caches.outline_groups.get(&()).await {
                    Some(groups) => groups
                        .iter()
                        .any(|og| og.linked_authentik_group().as_ref() == Some(id)),
                    None => true,
                };
                if gave_roles {
                    return Intake::Queue(accounts_key());
                }
                if !linked {
                    return Intake::Ignore("ignored");
                }
            }
            Intake::Queue(JobKey::AuthentikGroup(id.clone()))
        }
        AuthentikChange::User { pk, .. } => {
            // A user-side change (groups, deactivation) alters group member lists without a group event.
            engine.clock.user_changed(*pk);
            Intake::Queue(JobKey::AuthentikUser(*pk))
        }
        // No target to re-read: a full pass, debounced by the queue's coalescing.
        AuthentikChange::DefaultBody => Intake::Queue(JobKey::Reconcile),
        AuthentikChange::Test => Intake::Ignore("test received"),
        AuthentikChange::Ignored { .. } => Intake::Ignore("ignored"),
    }
}
