//! What every upstream client shares: the retry loop, the error type, the lanes and the HTTP client. Each
//! client lives with its upstream (`source/client.rs`, each sink's `client.rs`); none knows the others
//! exist.

pub mod explain;
pub mod retry;

pub use retry::UpstreamError;

/// Which queue a call serves. Interactive calls (sign-ins, single users) go before bulk ones (groups,
/// reconcile) at the Outline rate limiter, so a 1,000-member group change never starves a sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Interactive,
    Bulk,
}

/// A client that could not be built: no TLS backend or system configuration for it. Start-up stops with
/// this error, since a fallback client would have no timeout and could hang a job for ever.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the {upstream} HTTP client: {source}")]
pub struct ClientBuildError {
    pub upstream: &'static str,
    pub source: reqwest::Error,
}

/// The HTTP client every upstream client uses: a timeout per call, a shorter one to connect, and idle
/// connections kept so that a job's calls reuse them.
pub fn http_client(
    upstream: &'static str,
    timeout: std::time::Duration,
) -> Result<reqwest::Client, ClientBuildError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(std::time::Duration::from_secs(5)))
        .pool_max_idle_per_host(32)
        .user_agent(concat!("authentik-bridge/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|source| ClientBuildError { upstream, source })
}
