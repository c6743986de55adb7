//! The domain: the pure types every layer shares. Ids, the directory snapshots a source reads, the one
//! desired-members function (direct or inherited), and what the guards hold back. Nothing here does I/O.

pub mod held;
pub mod identity;
pub mod snapshot;

pub use identity::{
    AuthentikGroupId, AuthentikUserId, Email, GroupName, OutlineGroupId, OutlineUserId,
};
pub use snapshot::{
    DesiredMember, GroupSelector, GroupSnapshot, GroupSummary, MemberSnapshot, OutlineGroup,
    Permission, UserSnapshot,
};
