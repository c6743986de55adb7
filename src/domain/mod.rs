//! The domain: who should be in which group, and the pure planner that turns two snapshots into the calls
//! that make Outline match Authentik. Nothing here does I/O, so every rule is tested exhaustively.

pub mod accounts;
pub mod held;
pub mod identity;
pub mod invites;
pub mod plan;
pub mod snapshot;
pub mod tuples;

pub use identity::{
    AuthentikGroupId, AuthentikUserId, Email, GroupName, OutlineGroupId, OutlineUserId,
};
pub use plan::{
    plan_membership, GroupIndex, GroupRef, GroupTarget, LinkedBy, MembershipPlan, PlanInput,
};
pub use snapshot::{
    DesiredMember, GroupSelector, GroupSnapshot, GroupSummary, MemberSnapshot, OutlineGroup,
    Permission, UserSnapshot,
};
