//! `GET /healthz` (the process answers), `GET /readyz` (Authentik and every configured sink answered their
//! last call) and
//! `GET /metrics` (Prometheus text format).

use actix_web::{web, HttpResponse};

use super::AppState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let mut upstreams = vec!["authentik"];
    upstreams.extend(state.queue.engine().sinks().iter().map(|s| s.as_str()));
    let down: Vec<&str> = upstreams
        .into_iter()
        .filter(|u| state.metrics.upstream_up.with_label_values(&[u]).get() != 1)
        .collect();
    if down.is_empty() {
        HttpResponse::Ok().json(serde_json::json!({ "status": "ready" }))
    } else {
        HttpResponse::ServiceUnavailable().json(serde_json::json!({
            "status": "not ready",
            "reason": format!("no answer yet, or an error at the last call: {}", down.join(", ")),
        }))
    }
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    state.metrics.queue_depth.set(state.queue.depth() as i64);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
