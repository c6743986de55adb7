//! Why a guard held changes back. The CLI's report, its JSON, and the log line of a job all take their
//! words from here, so an operator reads one explanation per guard, never two that disagree.

use serde::Serialize;

/// The log target of the guards' explanations. The CLI's `reconcile` prints them in its report, so it
/// turns this target off on stderr (unless `RUST_LOG` says otherwise); `serve` logs them as usual.
pub const GUARD_LOG: &str = "authentik_bridge::guard";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldReason {
    /// Removals (every sink's memberships and admin roles together) over `MAX_REMOVALS`.
    MaxRemovals,
    /// Demotions from admin under a `ROLE_MAP` that is new or changed since it was last applied.
    RoleMapNotApplied,
    /// Suspensions over the hour's `MAX_SUSPENSIONS`, or held since an earlier hour.
    MaxSuspensions,
}

impl HoldReason {
    pub fn explanation(self) -> &'static str {
        match self {
            HoldReason::MaxRemovals => "mass-removal guard: the plan removes more memberships, tuples or admin roles than MAX_REMOVALS, so none of them was removed. Check the plan with `authentik-bridge reconcile --dry-run`, then apply it with `reconcile --force`",
            HoldReason::RoleMapNotApplied => "ROLE_MAP is new or changed since it was last applied: admin rights are taken from nobody until you check the plan with `authentik-bridge reconcile --dry-run` and apply it with `reconcile --force`",
            HoldReason::MaxSuspensions => "suspension guard: this hour's suspensions (MAX_SUSPENSIONS) are spent, so the rest are held back until `reconcile --force`, even after the hour. Check the plan with `authentik-bridge reconcile --dry-run`, then apply it with `reconcile --force`",
        }
    }
}
