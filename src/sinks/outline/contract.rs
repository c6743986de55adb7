//! The Outline sink's contract with the runtime: its plans are [`MembershipPlan`]s, its push planning is
//! in `push.rs`, its pass in `pass.rs`, and its writes go through [`OutlineSync::apply`].

use super::keys::accounts_key;
use super::plan::MembershipPlan;
use super::sink::{OutlineSync, OUTLINE};
use crate::runtime::changes::{GroupLocks, Tick};
use crate::runtime::converge::{PassDone, PassPlan, PassWrites, PlanPart, Planned, Sink};
use crate::runtime::job::{
    GroupChange, GroupInterest, JobKey, JobOutcome, ReconcileOptions, SyncError, SyncReport,
};
use crate::runtime::progress::PassProgress;

impl PlanPart for MembershipPlan {
    fn removals(&self) -> usize {
        self.removes.len()
    }

    fn writes(&self) -> usize {
        self.write_count()
    }

    fn is_empty(&self) -> bool {
        MembershipPlan::is_empty(self)
    }

    fn hold_removals(mut self) -> (Self, Self) {
        let removals = MembershipPlan {
            removes: std::mem::take(&mut self.removes),
            ..MembershipPlan::default()
        };
        (self, removals)
    }
}

impl Sink for OutlineSync {
    type Part = MembershipPlan;
    type Then = super::push::OutlinePush;
    type Pass = super::pass::OutlinePass;
    type Report = super::pass::OutlinePassReport;

    fn name(&self) -> &'static str {
        OUTLINE
    }

    /// Every Authentik user and group, passes, and Outline's own jobs (sign-ins, accounts, invitations).
    fn interested(&self, key: &JobKey) -> bool {
        match key {
            JobKey::Own(own) => own.sink == OUTLINE,
            _ => true,
        }
    }

    /// Roles are Outline's: a change to a group that gives roles, or gave them under the name the bridge last
    /// saw (a rename or deletion takes them away), ticks the roles and queues the accounts job. The bridge
    /// remembers which groups gave roles for as long as it runs, since a cached catalog may have expired when
    /// the admin acts. A group outside the filter is followed while an Outline group is linked to it: it was
    /// renamed out of the filter, and its job warns about that.
    async fn group_changed(&self, change: &GroupChange<'_>) -> GroupInterest {
        let accounts = &self.accounts;
        let role_map_set = accounts.role_map.is_some();
        let gave_roles = accounts.gives_roles(change.id, change.name);
        accounts.note_role_group(change.id, change.name);
        if role_map_set && (gave_roles || change.inherited || change.deleted) {
            self.clock.roles_changed();
        }
        if change.deleted {
            // With `ROLE_MAP`, any deletion re-reads the mapped groups: a few reads, and no deleted admin
            // group is missed, whatever the bridge saw of it before.
            return if role_map_set {
                GroupInterest::Own(accounts_key())
            } else {
                GroupInterest::Nothing
            };
        }
        // A group `ROLE_MAP` names is followed whether or not it is synced: it decides roles.
        if change.managed || change.inherited || accounts.decides_roles(change.name) {
            return GroupInterest::Group;
        }
        if gave_roles {
            return GroupInterest::Own(accounts_key());
        }
        // Without a cached Outline index the group job decides.
        let linked = match self.index.groups.get(&()).await {
            Some(groups) => groups
                .iter()
                .any(|og| og.linked_authentik_group().as_ref() == Some(change.id)),
            None => true,
        };
        if linked {
            GroupInterest::Group
        } else {
            GroupInterest::Nothing
        }
    }

    fn check(
        &self,
    ) -> impl std::future::Future<Output = Vec<crate::runtime::check::CheckLine>> + Send + '_ {
        self.check_lines()
    }

    fn locks(&self) -> &GroupLocks {
        &self.locks
    }

    fn progress(&self) -> Option<&PassProgress> {
        Some(&self.progress)
    }

    async fn plan_push(
        &self,
        key: &JobKey,
    ) -> Result<Planned<MembershipPlan, Self::Then>, SyncError> {
        let planned = super::push::plan_push(self, key).await;
        // Whom the plan matched is kept whatever the plan says, even when it writes nothing.
        self.reader.caches.identities.save().await;
        planned
    }

    async fn write(
        &self,
        part: &MembershipPlan,
        interactive: bool,
    ) -> Result<SyncReport, SyncError> {
        let lane = if interactive {
            crate::clients::Lane::Interactive
        } else {
            crate::clients::Lane::Bulk
        };
        Ok(self.apply(&self.outline.in_lane(lane), part).await?)
    }

    async fn after_push(
        &self,
        then: Self::Then,
        report: SyncReport,
    ) -> Result<JobOutcome, SyncError> {
        super::push::after_push(self, then, report).await
    }

    async fn plan_pass(
        &self,
        read_at: Tick,
    ) -> Result<PassPlan<MembershipPlan, Self::Pass>, SyncError> {
        super::pass::plan_pass(self, read_at).await
    }

    async fn after_pass(
        &self,
        pass: Self::Pass,
        writes: PassWrites<MembershipPlan>,
        options: ReconcileOptions,
    ) -> Result<PassDone<Self::Report>, SyncError> {
        super::pass::after_pass(self, pass, writes, options).await
    }
}
