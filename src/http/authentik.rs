//! `POST /webhooks/authentik`: Authentik's notification transport, with the blueprint's body mapping.

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};

use crate::http::{accepted, read_body, record_outcome, AppState, WebhookError};
use crate::runtime::intake::{accept_change, Intake};
use crate::runtime::JobKey;
use crate::source::webhook::MAX_AUTHENTIK_BODY_BYTES;
use crate::source::webhook::{parse_authentik_change, verify_webhook_token, AuthentikChange};

pub async fn authentik_webhook(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, WebhookError> {
    let started = std::time::Instant::now();
    let result = handle(&req, payload, &state).await;
    record_outcome(&state, "authentik", started, result)
}

async fn handle(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<(HttpResponse, &'static str), WebhookError> {
    let token = state
        .authentik_webhook_token
        .as_ref()
        .ok_or(WebhookError::NotConfigured(
            "AUTHENTIK_WEBHOOK_TOKEN is not set on the bridge",
        ))?;
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string()).ok();
    let query_token = query
        .as_ref()
        .and_then(|q| q.get("token"))
        .map(String::as_str);
    let authorization = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    // The body is read before the token is checked: actix closes a keep-alive connection whose request body
    // was left unread, so a refusal would otherwise cost the sender a new connection per request.
    let body = read_body(req, payload, MAX_AUTHENTIK_BODY_BYTES, state.body_timeout).await?;
    verify_webhook_token(token, authorization, query_token)
        .map_err(|e| WebhookError::Unauthorized(e.to_string()))?;
    let change =
        parse_authentik_change(&body).map_err(|e| WebhookError::BadRequest(e.to_string()))?;
    match &change {
        AuthentikChange::Test => {
            tracing::info!("Authentik transport test received");
            return Ok((
                HttpResponse::Ok().json(serde_json::json!({ "status": "test received" })),
                "test",
            ));
        }
        AuthentikChange::DefaultBody => tracing::info!(
            "Authentik default body (no body mapping on the transport); scheduling a reconcile"
        ),
        _ => {}
    }
    if let Some(pk) = change.event_pk() {
        if !state.dedupe.first_time(pk).await {
            return Ok((accepted("duplicate"), "duplicate"));
        }
    }
    let keys = match accept_change(&state.engine.intake(), &change).await {
        Intake::Queue(keys) => keys,
        Intake::Ignore(why) => return Ok((accepted(why), "ignored")),
    };
    let status = if keys == [JobKey::Reconcile] {
        "reconcile scheduled"
    } else {
        "queued"
    };
    for key in keys {
        tracing::debug!(
            job = key.kind(),
            event = change.event_pk().unwrap_or(""),
            "Authentik change accepted; sync queued"
        );
        submit(state, key, change.event_pk()).await?;
    }
    Ok((accepted(status), "accepted"))
}

async fn submit(state: &AppState, key: JobKey, event_pk: Option<&str>) -> Result<(), WebhookError> {
    if let Err(full) = state.queue.submit(key) {
        if let Some(pk) = event_pk {
            state.dedupe.forget(pk).await;
        }
        return Err(WebhookError::QueueFull(full.to_string()));
    }
    Ok(())
}
