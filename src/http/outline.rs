//! `POST /sync` (the Python connector's path) and `POST /webhooks/outline`: Outline's signed `users.signin`.

use std::time::SystemTime;

use actix_web::{web, HttpRequest, HttpResponse};

use crate::http::{accepted, read_body, record_outcome, AppState, WebhookError};
use crate::sinks::outline::keys::signin_key;
use crate::sinks::outline::signin::MAX_BODY_BYTES;
use crate::sinks::outline::signin::{
    parse_outline_delivery, verify_outline_signature, SIGNIN_EVENT,
};

pub async fn outline_webhook(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, WebhookError> {
    let started = std::time::Instant::now();
    let result = handle(&req, payload, &state).await;
    record_outcome(&state, "outline", started, result)
}

async fn handle(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<(HttpResponse, &'static str), WebhookError> {
    let secret = state
        .outline_webhook_secret
        .as_ref()
        .ok_or(WebhookError::NotConfigured(
            "OUTLINE_WEBHOOK_SECRET is not set",
        ))?;
    let body = read_body(req, payload, MAX_BODY_BYTES, state.body_timeout).await?;
    let header = req
        .headers()
        .get("outline-signature")
        .and_then(|v| v.to_str().ok());
    verify_outline_signature(secret, header, &body, SystemTime::now())
        .map_err(|e| WebhookError::Unauthorized(e.to_string()))?;
    let delivery =
        parse_outline_delivery(&body).map_err(|e| WebhookError::BadRequest(e.to_string()))?;
    // Without Outline settings there is no sink a sign-in could change.
    if delivery.event != SIGNIN_EVENT || state.engine.outline.is_none() {
        return Ok((accepted("ignored"), "ignored"));
    }
    let Some(user) = delivery.user_id else {
        return Err(WebhookError::BadRequest(
            "users.signin delivery has no payload.id".into(),
        ));
    };
    tracing::debug!(user = %user, "users.signin accepted; sync queued");
    state
        .queue
        .submit(signin_key(&user))
        .map_err(|e| WebhookError::QueueFull(e.to_string()))?;
    Ok((accepted("queued"), "accepted"))
}
