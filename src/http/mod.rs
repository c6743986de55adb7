//! Thin HTTP handlers: verify, parse, enqueue, answer. Each webhook answers within milliseconds; the work
//! runs behind the queue, because Outline waits only 5 s and disables a webhook that fails often
//! (docs/src/upstream/outline.md §2.6, §2.7).

pub mod authentik;
pub mod health;
pub mod outline;
pub mod scim;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use futures::StreamExt;

use crate::configuration::Secret;
use crate::metrics::Metrics;
use crate::runtime::{EventDeduper, JobQueue};
use crate::sinks::SyncEngine;

/// What the handlers share.
pub struct AppState {
    pub outline_webhook_secret: Option<Secret>,
    pub authentik_webhook_token: Option<Secret>,
    /// The SCIM endpoint, when SCIM is the source.
    pub scim: Option<scim::ScimState>,
    pub queue: JobQueue,
    /// What intake reads and invalidates before it queues (caches, change clock, which groups give roles).
    pub engine: std::sync::Arc<SyncEngine>,
    pub dedupe: EventDeduper,
    pub metrics: std::sync::Arc<Metrics>,
    /// `BODY_TIMEOUT`: the server's own timeout covers only the headers, so without this a client trickling
    /// a body (a slowloris) would hold a connection and a handler for ever.
    pub body_timeout: std::time::Duration,
}

/// Every way a webhook is refused, each with its status and a one-line reason.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    QueueFull(String),
    #[error("the body did not arrive within 10 s")]
    Timeout,
    #[error("{0}")]
    NotConfigured(&'static str),
}

impl WebhookError {
    pub fn outcome(&self) -> &'static str {
        match self {
            WebhookError::Unauthorized(_) => "rejected_auth",
            WebhookError::TooLarge(_) | WebhookError::BadRequest(_) | WebhookError::Timeout => {
                "rejected_body"
            }
            WebhookError::QueueFull(_) => "queue_full",
            WebhookError::NotConfigured(_) => "not_configured",
        }
    }
}

impl ResponseError for WebhookError {
    fn status_code(&self) -> StatusCode {
        match self {
            WebhookError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            WebhookError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            WebhookError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebhookError::Timeout => StatusCode::REQUEST_TIMEOUT,
            WebhookError::QueueFull(_) | WebhookError::NotConfigured(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }
    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status_code());
        if matches!(self, WebhookError::QueueFull(_)) {
            resp.insert_header(("Retry-After", "5"));
        }
        resp.json(serde_json::json!({ "error": self.to_string() }))
    }
}

/// Reads the raw body, refusing it as soon as it passes `limit` bytes (by `Content-Length` when sent), or
/// when it takes longer than `timeout`.
pub async fn read_body(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<web::Bytes, WebhookError> {
    tokio::time::timeout(timeout, read_body_within(req, payload, limit))
        .await
        .map_err(|_| WebhookError::Timeout)?
}

async fn read_body_within(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, WebhookError> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(WebhookError::TooLarge(limit));
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(1024).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| WebhookError::BadRequest(format!("could not read the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(WebhookError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

static OUTLINE_REFUSALS: RefusalLog = RefusalLog::new();
static AUTHENTIK_REFUSALS: RefusalLog = RefusalLog::new();

/// Logs refused webhooks at most once a second per source, with the number left out since the last line.
/// Each refusal is still counted in `bridge_webhooks_total`; without the throttle a flood of bad signatures
/// becomes a flood of log lines, one per request.
pub struct RefusalLog {
    last_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl RefusalLog {
    pub const fn new() -> RefusalLog {
        RefusalLog {
            last_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    pub fn warn(&self, source: &'static str, error: &WebhookError) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        let last = self.last_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 1000
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
            tracing::warn!(source, reason = %error, suppressed, "webhook refused");
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Default for RefusalLog {
    fn default() -> Self {
        Self::new()
    }
}

/// Counts a webhook by source and outcome, times its intake, and logs a refusal once with its reason.
pub fn record_outcome(
    state: &AppState,
    source: &'static str,
    started: std::time::Instant,
    result: Result<(HttpResponse, &'static str), WebhookError>,
) -> Result<HttpResponse, WebhookError> {
    let outcome = match &result {
        Ok((_, outcome)) => *outcome,
        Err(e) => {
            let log = if source == "outline" {
                &OUTLINE_REFUSALS
            } else {
                &AUTHENTIK_REFUSALS
            };
            log.warn(source, e);
            e.outcome()
        }
    };
    state
        .metrics
        .webhooks
        .with_label_values(&[source, outcome])
        .inc();
    // A wrong token refuses every push: counted until one gets through, which clears it.
    let in_a_row = state
        .metrics
        .webhooks_refused_in_a_row
        .with_label_values(&[source]);
    match &result {
        Err(WebhookError::Unauthorized(_)) => in_a_row.inc(),
        Err(_) => {}
        Ok(_) => in_a_row.set(0),
    }
    state
        .metrics
        .webhook_intake_seconds
        .observe(started.elapsed().as_secs_f64());
    result.map(|(resp, _)| resp)
}

pub fn accepted(status: &'static str) -> HttpResponse {
    HttpResponse::Accepted().json(serde_json::json!({ "status": status }))
}
