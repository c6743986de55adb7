//! `GET /healthz` (the process answers), `GET /readyz` (Authentik, unless SCIM is the source, and every
//! configured sink answered their last call) and
//! `GET /metrics` (Prometheus text format).

use actix_web::{web, HttpResponse};

use crate::http::AppState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// Refusals in a row from which `/readyz` warns: one or two may be a stranger probing the port; more, with
/// none accepted in between, is a sender holding the wrong token or secret.
const REFUSED_IN_A_ROW_WARNING: i64 = 3;

/// Ready while every upstream answered its last call. Webhooks refused in a row are reported as `warnings`
/// but leave the answer 200: failing readiness would take the bridge out of its Service, and then the
/// webhooks that are signed right (Outline's sign-ins, say) would stop as well.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    // In SCIM mode the source is the store, answered locally; Authentik is not called at all.
    let mut upstreams = if state.scim.is_some() {
        Vec::new()
    } else {
        vec!["authentik"]
    };
    upstreams.extend(state.engine.sinks());
    let down: Vec<&str> = upstreams
        .into_iter()
        .filter(|u| state.metrics.upstream_up.with_label_values(&[u]).get() != 1)
        .collect();
    let warnings: Vec<String> = [
        ("authentik", "AUTHENTIK_WEBHOOK_TOKEN differs from the token in the Authentik transport's header (apply the blueprint again with the same token)"),
        ("outline", "OUTLINE_WEBHOOK_SECRET differs from the signing secret of Outline's webhook subscription"),
        ("scim", "SCIM_TOKEN differs from the bearer token the identity provider sends"),
    ]
    .into_iter()
    .filter_map(|(source, cause)| {
        let n = state
            .metrics
            .webhooks_refused_in_a_row
            .with_label_values(&[source])
            .get();
        (n >= REFUSED_IN_A_ROW_WARNING).then(|| {
            format!("the last {n} {source} webhooks were refused (rejected_auth) and none accepted since: {cause}")
        })
    })
    .collect();
    if down.is_empty() {
        let mut body = serde_json::json!({ "status": "ready" });
        if !warnings.is_empty() {
            body["warnings"] = serde_json::json!(warnings);
        }
        HttpResponse::Ok().json(body)
    } else {
        let mut body = serde_json::json!({
            "status": "not ready",
            "reason": format!("no answer yet, or an error at the last call: {}", down.join(", ")),
        });
        if !warnings.is_empty() {
            body["warnings"] = serde_json::json!(warnings);
        }
        HttpResponse::ServiceUnavailable().json(body)
    }
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    state.metrics.queue_depth.set(state.queue.depth() as i64);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
