//! Thin HTTP handlers: verify, parse, enqueue, answer. Each webhook answers within milliseconds; the work
//! runs behind the queue, because Outline waits only 5 s and disables a webhook that fails often
//! (OUTLINE.md §2.6, §2.7).

pub mod authentik;
pub mod health;
pub mod outline;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use futures::StreamExt;

use crate::configuration::Secret;
use crate::metrics::Metrics;
use crate::sync::{EventDeduper, JobQueue};
use crate::webhooks::MAX_BODY_BYTES;

/// What the handlers share.
pub struct AppState {
    pub outline_webhook_secret: Option<Secret>,
    pub authentik_webhook_token: Option<Secret>,
    pub queue: JobQueue,
    pub dedupe: EventDeduper,
    pub metrics: std::sync::Arc<Metrics>,
}

/// Every way a webhook is refused, each with its status and a one-line reason.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("body larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
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
            WebhookError::TooLarge | WebhookError::BadRequest(_) | WebhookError::Timeout => {
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
            WebhookError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
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

/// A body must arrive within this long. The server's own timeout covers only the headers, so without it a
/// client trickling a body (a slowloris) would hold a connection and a handler for ever.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads the raw body, refusing it as soon as it passes [`MAX_BODY_BYTES`] (by `Content-Length` when sent),
/// or when it takes longer than [`BODY_TIMEOUT`].
pub async fn read_body(
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<web::Bytes, WebhookError> {
    tokio::time::timeout(BODY_TIMEOUT, read_body_unbounded(req, payload))
        .await
        .map_err(|_| WebhookError::Timeout)?
}

async fn read_body_unbounded(
    req: &HttpRequest,
    mut payload: web::Payload,
) -> Result<web::Bytes, WebhookError> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(WebhookError::TooLarge);
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(1024).min(MAX_BODY_BYTES));
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| WebhookError::BadRequest(format!("could not read the body: {e}")))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(WebhookError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
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
            tracing::warn!(source, reason = %e, "webhook refused");
            e.outcome()
        }
    };
    state
        .metrics
        .webhooks
        .with_label_values(&[source, outcome])
        .inc();
    state
        .metrics
        .webhook_intake_seconds
        .observe(started.elapsed().as_secs_f64());
    result.map(|(resp, _)| resp)
}

pub fn accepted(status: &'static str) -> HttpResponse {
    HttpResponse::Accepted().json(serde_json::json!({ "status": status }))
}
