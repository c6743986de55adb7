//! The Outline sink's own kinds of job, as keys the runtime queues without knowing what they mean.

use super::sink::OUTLINE;
use crate::domain::OutlineUserId;
use crate::runtime::job::{JobKey, OwnJob};

/// A `users.signin` from Outline: that person's groups (and role) follow Authentik.
pub fn signin_key(id: &OutlineUserId) -> JobKey {
    JobKey::Own(OwnJob {
        sink: OUTLINE,
        kind: "signin",
        target: id.to_string(),
        interactive: true,
    })
}

/// Every Outline account's role and suspension (`ROLE_MAP`, `SUSPEND_DEACTIVATED`), after a change to a group
/// that decides roles.
pub fn accounts_key() -> JobKey {
    JobKey::Own(OwnJob {
        sink: OUTLINE,
        kind: "accounts",
        target: String::new(),
        interactive: false,
    })
}

/// Invitations for members of managed groups without an Outline account (`INVITE_MEMBERS`).
pub fn invites_key() -> JobKey {
    JobKey::Own(OwnJob {
        sink: OUTLINE,
        kind: "invites",
        target: String::new(),
        interactive: false,
    })
}
