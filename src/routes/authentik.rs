//! `POST /webhooks/authentik`: Authentik's notification transport, with the blueprint's body mapping.

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};

use super::{accepted, read_body, record_outcome, AppState, WebhookError};
use crate::domain::GroupName;
use crate::sync::JobKey;
use crate::webhooks::authentik::{
    parse_authentik_notification, verify_webhook_token, AuthentikNotification, EventTarget,
    ModelAction,
};

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
    let body = read_body(req, payload, state.body_timeout).await?;
    verify_webhook_token(token, authorization, query_token)
        .map_err(|e| WebhookError::Unauthorized(e.to_string()))?;
    let notification =
        parse_authentik_notification(&body).map_err(|e| WebhookError::BadRequest(e.to_string()))?;
    let event = match notification {
        AuthentikNotification::Test => {
            tracing::info!("Authentik transport test received");
            return Ok((
                HttpResponse::Ok().json(serde_json::json!({ "status": "test received" })),
                "test",
            ));
        }
        AuthentikNotification::DefaultBody => {
            // No target to re-read: a full reconcile, debounced by the queue's coalescing.
            tracing::info!(
                "Authentik default body (no body mapping on the transport); scheduling a reconcile"
            );
            submit(state, JobKey::Reconcile, None).await?;
            return Ok((accepted("reconcile scheduled"), "accepted"));
        }
        AuthentikNotification::Event(e) => e,
    };
    if let Some(pk) = &event.event_pk {
        if !state.dedupe.first_time(pk).await {
            return Ok((accepted("duplicate"), "duplicate"));
        }
    }
    let engine = state.queue.engine();
    let key = match (event.model_action(), &event.target) {
        (
            Some(ModelAction::Created | ModelAction::Updated),
            Some(EventTarget::Group { id, name }),
        ) => {
            engine.caches.groups.invalidate(id).await;
            engine.caches.catalog.invalidate(&()).await;
            if !engine
                .selector
                .is_managed(&GroupName::new(name.as_str()), false)
            {
                return Ok((accepted("ignored"), "ignored"));
            }
            JobKey::AuthentikGroup(id.clone())
        }
        (Some(ModelAction::Deleted), Some(EventTarget::Group { id, name })) => {
            engine.caches.groups.invalidate(id).await;
            engine.caches.catalog.invalidate(&()).await;
            tracing::warn!(group = %name, authentik_group = %id, "Authentik group deleted; its Outline group and members are kept. Delete the Outline group by hand if it should go");
            return Ok((accepted("kept"), "ignored"));
        }
        (Some(_), Some(EventTarget::User { pk, .. })) => {
            // A user-side change (groups, deactivation) alters group member lists without a group event.
            engine.caches.groups.invalidate_all();
            JobKey::AuthentikUser(*pk)
        }
        _ => return Ok((accepted("ignored"), "ignored")),
    };
    tracing::debug!(action = %event.action, job = key.kind(), event = event.event_pk.as_deref().unwrap_or(""), "Authentik event accepted; sync queued");
    submit(state, key, event.event_pk.as_deref()).await?;
    Ok((accepted("queued"), "accepted"))
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
