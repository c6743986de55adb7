//! The one retry loop for outgoing calls: `Retry-After` on 429, exponential backoff with jitter on 5xx and
//! transport errors, a timeout on every call, and the metrics of each attempt.

use std::future::Future;
use std::time::{Duration, SystemTime};

use rand::Rng;

use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("{upstream} {call}: HTTP {status}: {message}")]
    Status {
        upstream: &'static str,
        call: String,
        status: u16,
        message: String,
    },
    #[error("{upstream} {call}: {message}")]
    Transport {
        upstream: &'static str,
        call: String,
        message: String,
    },
    #[error("{upstream} {call}: unexpected answer: {message}")]
    Decode {
        upstream: &'static str,
        call: String,
        message: String,
    },
    /// A 429 the policy no longer waits out, with the wait the server asked for.
    #[error("{upstream} {call}: HTTP 429: {message}")]
    Throttled {
        upstream: &'static str,
        call: String,
        retry_after: Option<Duration>,
        message: String,
    },
    #[error("{upstream} {call}: listing incomplete: {message}")]
    Incomplete {
        upstream: &'static str,
        call: String,
        message: String,
    },
}

impl UpstreamError {
    pub fn status(&self) -> Option<u16> {
        match self {
            UpstreamError::Status { status, .. } => Some(*status),
            UpstreamError::Throttled { .. } => Some(429),
            _ => None,
        }
    }
    /// A refusal that no retry can fix: a 4xx other than 401 (the key itself, which an admin can fix while
    /// the job retries), 408 and 429. Outline answers 400 to a name it will not take and to a membership
    /// change on a provider-managed group, and 403 to an id it does not know (docs/src/upstream/outline.md §3.6).
    pub fn is_refusal(&self) -> bool {
        matches!(self.status(), Some(s) if (400..500).contains(&s) && !matches!(s, 401 | 408 | 429))
    }

    /// A failure no retry of the job can fix: a refusal other than 403. A 403 on a read may be the key's
    /// permissions (Authentik's view rights, Outline's scopes, a suspended key owner), which an admin fixes
    /// while the job retries.
    pub fn is_permanent(&self) -> bool {
        self.is_refusal() && self.status() != Some(403)
    }

    pub fn upstream(&self) -> &'static str {
        match self {
            UpstreamError::Status { upstream, .. }
            | UpstreamError::Throttled { upstream, .. }
            | UpstreamError::Transport { upstream, .. }
            | UpstreamError::Decode { upstream, .. }
            | UpstreamError::Incomplete { upstream, .. } => upstream,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts for 5xx answers and transport errors, the first included.
    pub attempts: u32,
    /// 429 answers tolerated in one call. Outline never re-sends a webhook, so giving up early loses the change
    /// (the Python connector gave up after two); the job-level retry still stands behind this.
    pub throttled_attempts: u32,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// A longer `Retry-After` is clamped, so one bad header cannot park a worker for hours.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            throttled_attempts: 20,
            base_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

/// Full jitter: a random delay between zero and the exponential ceiling, so retries from many jobs spread out.
pub fn backoff_delay(attempt: u32, base: Duration, max: Duration) -> Duration {
    let ceiling = base
        .saturating_mul(2u32.saturating_pow(attempt.min(20)))
        .min(max);
    let ms = ceiling.as_millis().max(1) as u64;
    Duration::from_millis(rand::rng().random_range(ms / 2..=ms))
}

/// `Retry-After` as delta seconds, fractional in Outline v1.9.2 (docs/src/upstream/outline.md §4.4), or as an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0)
            .then(|| Duration::from_secs_f64(seconds.min(86_400.0)));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(now)
            .unwrap_or_default()
            .min(Duration::from_secs(86_400)),
    )
}

/// Reads a one-line reason out of an error body: Outline's `message`, Authentik's `detail`, or the text.
pub fn error_message(body: &str) -> String {
    let from_json = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            ["message", "detail", "error"]
                .iter()
                .find_map(|k| v.get(*k).and_then(|m| m.as_str()).map(str::to_string))
        });
    let text = from_json.unwrap_or_else(|| body.to_string());
    let line = crate::reason::one_line(&text);
    if line.is_empty() {
        "(empty body)".to_string()
    } else {
        line
    }
}

pub struct Call<'a> {
    pub upstream: &'static str,
    pub name: &'a str,
    pub metrics: &'a Metrics,
    pub policy: RetryPolicy,
    /// Told how long a 429 asked to wait, so that every caller of the upstream waits, not only this one.
    pub on_throttled: Option<&'a (dyn Fn(Duration) + Sync)>,
}

impl Call<'_> {
    fn record(&self, status: &str, up: bool) {
        self.metrics
            .upstream_requests
            .with_label_values(&[self.upstream, self.name, status])
            .inc();
        self.metrics
            .upstream_up
            .with_label_values(&[self.upstream])
            .set(i64::from(up));
    }

    fn fail(&self, err: UpstreamError) -> UpstreamError {
        self.metrics
            .upstream_errors
            .with_label_values(&[self.upstream, self.name])
            .inc();
        err
    }

    /// Runs `send` until it gives a 2xx answer, a final error, or the policy runs out. `permit` runs before each
    /// attempt (the Outline rate limiter); 4xx answers other than 429 are final and returned as errors.
    pub async fn execute<P, PF, S, SF>(
        &self,
        mut permit: P,
        mut send: S,
    ) -> Result<reqwest::Response, UpstreamError>
    where
        P: FnMut() -> PF,
        PF: Future<Output = ()>,
        S: FnMut() -> SF,
        SF: Future<Output = Result<reqwest::Response, reqwest::Error>>,
    {
        let mut failures = 0u32;
        let mut throttled = 0u32;
        loop {
            permit().await;
            let err = match send().await {
                Ok(resp) if resp.status().is_success() => {
                    self.record(resp.status().as_str(), true);
                    return Ok(resp);
                }
                Ok(resp) if resp.status().as_u16() == 429 => {
                    self.record("429", true);
                    if self.upstream == "outline" {
                        self.metrics.outline_throttled.inc();
                    }
                    throttled += 1;
                    let wait = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, SystemTime::now()));
                    let message = error_message(&resp.text().await.unwrap_or_default());
                    if throttled >= self.policy.throttled_attempts {
                        return Err(self.fail(UpstreamError::Throttled {
                            upstream: self.upstream,
                            call: self.name.to_string(),
                            retry_after: wait,
                            message,
                        }));
                    }
                    let wait = wait
                        .unwrap_or_else(|| {
                            backoff_delay(
                                throttled,
                                Duration::from_secs(1),
                                self.policy.max_backoff,
                            )
                        })
                        .min(self.policy.max_retry_after);
                    tracing::debug!(
                        upstream = self.upstream,
                        call = self.name,
                        wait_ms = wait.as_millis() as u64,
                        "throttled; waiting Retry-After"
                    );
                    if let Some(pause) = self.on_throttled {
                        pause(wait);
                    }
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    // A 401 is the key failing: the upstream is not usable, so /readyz says so.
                    self.record(resp.status().as_str(), status < 500 && status != 401);
                    let message = error_message(&resp.text().await.unwrap_or_default());
                    let err = UpstreamError::Status {
                        upstream: self.upstream,
                        call: self.name.to_string(),
                        status,
                        message,
                    };
                    if status == 404 {
                        // "No such object" is an answer, not a failure: callers turn it into `None`.
                        return Err(err);
                    }
                    if err.is_permanent() {
                        // A refusal of this one request (a name Outline will not take, an unknown id): the
                        // upstream itself is fine, so `bridge_upstream_errors_total` does not count it.
                        return Err(err);
                    }
                    if status < 500 {
                        return Err(self.fail(err));
                    }
                    err
                }
                Err(e) => {
                    self.record(if e.is_timeout() { "timeout" } else { "error" }, false);
                    let message = if e.is_timeout() {
                        "timed out".to_string()
                    } else if e.is_connect() {
                        connect_failure(&e)
                    } else {
                        e.without_url().to_string()
                    };
                    UpstreamError::Transport {
                        upstream: self.upstream,
                        call: self.name.to_string(),
                        message,
                    }
                }
            };
            failures += 1;
            if failures >= self.policy.attempts {
                return Err(self.fail(err));
            }
            tokio::time::sleep(backoff_delay(
                failures,
                self.policy.base_backoff,
                self.policy.max_backoff,
            ))
            .await;
        }
    }
}

/// Why a connection could not be made, named so a person can fix it: the server (scheme, host and port,
/// never a path or query) and the cause, read from the error's source chain.
fn connect_failure(e: &reqwest::Error) -> String {
    let server = e.url().map_or_else(
        || "the server".to_string(),
        |u| match (u.host_str(), u.port_or_known_default()) {
            (Some(host), Some(port)) => format!("{}://{host}:{port}", u.scheme()),
            _ => u.scheme().to_string(),
        },
    );
    let mut chain = Vec::new();
    let mut refused = false;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            refused |= io.kind() == std::io::ErrorKind::ConnectionRefused;
        }
        chain.push(err.to_string());
        source = err.source();
    }
    let all = chain.join(": ").to_lowercase();
    let innermost = chain.last().cloned().unwrap_or_default();
    let cause = if refused || all.contains("connection refused") {
        "connection refused (nothing listens on that port)".to_string()
    } else if all.contains("dns error") || all.contains("lookup address") {
        "the host name did not resolve (DNS)".to_string()
    } else if [
        "tls",
        "certificate",
        "corrupt message",
        "invalidcontenttype",
        "handshake",
    ]
    .iter()
    .any(|w| all.contains(w))
    {
        format!("TLS failed ({innermost})")
    } else {
        format!("connection failed ({innermost})")
    };
    format!("cannot connect to {server}: {cause}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn retry_after_takes_fractions_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            parse_retry_after("1.234", now),
            Some(Duration::from_millis(1234))
        );
        assert_eq!(parse_retry_after("37", now), Some(Duration::from_secs(37)));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(5));
        assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(5)));
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let max = Duration::from_secs(10);
        for attempt in 0..30 {
            let d = backoff_delay(attempt, Duration::from_millis(100), max);
            assert!(d <= max);
        }
        assert!(backoff_delay(1, Duration::from_millis(100), max) <= Duration::from_millis(200));
    }

    #[test]
    fn error_messages_are_one_line() {
        assert_eq!(
            error_message(r#"{"ok":false,"error":"x","message":"Invalid API key"}"#),
            "Invalid API key"
        );
        assert_eq!(
            error_message(r#"{"detail":"Token invalid/expired"}"#),
            "Token invalid/expired"
        );
        assert_eq!(error_message("<html>\nboom"), "<html>");
    }

    proptest! {
        #[test]
        fn retry_after_never_panics(s in ".{0,60}") {
            let _ = parse_retry_after(&s, SystemTime::now());
        }
    }
}
