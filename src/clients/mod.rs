//! One module per upstream. Each owns its models, pagination, limiter and retries; neither knows the other
//! exists. Both share only the retry loop and the error type.

pub mod authentik;
pub mod limiter;
pub mod outline;
pub mod retry;

pub use authentik::AuthentikClient;
pub use outline::OutlineClient;
pub use retry::UpstreamError;

/// Which queue a call serves. Interactive calls (sign-ins, single users) go before bulk ones (groups,
/// reconcile) at the Outline rate limiter, so a 1,000-member group change never starves a sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Interactive,
    Bulk,
}
