//! `/scim/v2`: the SCIM 2.0 endpoint (RFC 7644). Each handler checks the token, reads the body, lets the
//! SCIM service run the request as one transaction, hands what changed to the runtime's intake, and answers.
//! The answer follows the commit, never the sinks: the queue does the rest.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

use crate::configuration::Secret;
use crate::http::{read_body, AppState, WebhookError};
use crate::runtime::intake::accept_changes;
use crate::source::scim::discovery::{self, MAX_PAYLOAD};
use crate::source::scim::resource::Projection;
use crate::source::scim::service::{ListQuery, ScimAnswer};
use crate::source::scim::{ScimError, ScimService};

/// The base path every SCIM URL starts with.
pub const BASE_PATH: &str = "/scim/v2";
const SCIM_JSON: &str = "application/scim+json";

/// SCIM's part of the app state: the service over the store, and the token it requires.
pub struct ScimState {
    pub service: ScimService,
    pub token: Option<Secret>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    // Each path answers its methods; any other method gets 405 (RFC 7644 §3.12), any other path 404.
    let resource = |path: &str| web::resource(path).default_service(web::to(method_not_allowed));
    cfg.service(
        web::scope(BASE_PATH)
            .service(
                resource("/ServiceProviderConfig").route(web::get().to(service_provider_config)),
            )
            .service(resource("/ResourceTypes").route(web::get().to(resource_types)))
            .service(resource("/ResourceTypes/{name}").route(web::get().to(resource_type)))
            .service(resource("/Schemas").route(web::get().to(schemas)))
            .service(resource("/Schemas/{id}").route(web::get().to(schema)))
            .service(
                resource("/Users")
                    .route(web::post().to(create_user))
                    .route(web::get().to(list_users)),
            )
            .service(resource("/Users/.search").route(web::post().to(search_users)))
            .service(
                resource("/Users/{id}")
                    .route(web::get().to(get_user))
                    .route(web::put().to(replace_user))
                    .route(web::patch().to(patch_user))
                    .route(web::delete().to(delete_user)),
            )
            .service(
                resource("/Groups")
                    .route(web::post().to(create_group))
                    .route(web::get().to(list_groups)),
            )
            .service(resource("/Groups/.search").route(web::post().to(search_groups)))
            .service(
                resource("/Groups/{id}")
                    .route(web::get().to(get_group))
                    .route(web::put().to(replace_group))
                    .route(web::patch().to(patch_group))
                    .route(web::delete().to(delete_group)),
            )
            .service(resource("/.search").route(web::post().to(search_everything)))
            .default_service(web::to(unknown)),
    );
}

/// The base URL answers' `meta.location` starts with, as the client reached the bridge (a proxy's
/// `Forwarded` or `X-Forwarded-*` headers included).
fn base_url(req: &HttpRequest) -> String {
    let info = req.connection_info();
    format!("{}://{}{BASE_PATH}", info.scheme(), info.host())
}

fn respond(answer: &ScimAnswer) -> HttpResponse {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let mut resp = HttpResponse::build(status);
    if let Some(location) = &answer.location {
        resp.insert_header((header::LOCATION, location.as_str()));
    }
    match &answer.body {
        Some(body) => resp.content_type(SCIM_JSON).body(body.to_string()),
        None => resp.finish(),
    }
}

fn error_response(e: &ScimError) -> HttpResponse {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut resp = HttpResponse::build(status);
    if e.status == 401 {
        resp.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"scim\""));
    }
    if e.status == 503 {
        resp.insert_header((header::RETRY_AFTER, "5"));
    }
    resp.content_type(SCIM_JSON).body(e.body().to_string())
}

/// The outcome label of `bridge_webhooks_total{source="scim"}`.
fn outcome(e: &ScimError) -> &'static str {
    match e.status {
        401 => "rejected_auth",
        404 => "not_found",
        409 => "conflict",
        503 => "unavailable",
        500..=599 => "failed",
        _ => "rejected_body",
    }
}

/// Counts the request as the webhooks are counted, with `source="scim"`, and turns an error into SCIM's body.
fn finish(
    state: &AppState,
    started: std::time::Instant,
    result: Result<HttpResponse, ScimError>,
) -> HttpResponse {
    let metrics = &state.metrics;
    let label = match &result {
        Ok(_) => "accepted",
        Err(e) => outcome(e),
    };
    metrics.webhooks.with_label_values(&["scim", label]).inc();
    let in_a_row = metrics
        .webhooks_refused_in_a_row
        .with_label_values(&["scim"]);
    match &result {
        Err(e) if e.status == 401 => in_a_row.inc(),
        Err(_) => {}
        Ok(_) => in_a_row.set(0),
    }
    metrics
        .webhook_intake_seconds
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(resp) => resp,
        Err(e) => {
            if e.status >= 500 {
                tracing::warn!(status = e.status, detail = %e.detail, "SCIM request failed");
            } else {
                tracing::info!(status = e.status, scim_type = e.scim_type.unwrap_or(""), detail = %e.detail, "SCIM request refused");
            }
            error_response(&e)
        }
    }
}

/// The SCIM service, once the bearer token checks out. The token is compared in constant time.
fn authorize<'a>(req: &HttpRequest, state: &'a AppState) -> Result<&'a ScimService, ScimError> {
    let scim = state.scim.as_ref().ok_or_else(|| {
        ScimError::not_found(
            "SCIM is off on this bridge — fix: set SOURCE=scim, SCIM_TOKEN and STATE_DIR",
        )
    })?;
    let token = scim
        .token
        .as_ref()
        .ok_or_else(|| ScimError::unavailable("SCIM_TOKEN is not set on the bridge"))?;
    let sent = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .ok_or_else(|| {
            ScimError::unauthorized("no bearer token (Authorization: Bearer <SCIM_TOKEN>)")
        })?;
    if token.matches(sent) {
        Ok(&scim.service)
    } else {
        Err(ScimError::unauthorized(
            "the bearer token is not SCIM_TOKEN",
        ))
    }
}

/// Reads a JSON body: SCIM's media type or plain JSON, at most 1 MiB.
async fn json_body(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<Value, ScimError> {
    let media = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if let Some(media) = &media {
        if media != SCIM_JSON && media != "application/json" {
            return Err(ScimError::unsupported_media(format!(
                "Content-Type {media} is not {SCIM_JSON} or application/json"
            )));
        }
    }
    let body = read_body(req, payload, MAX_PAYLOAD, state.body_timeout)
        .await
        .map_err(|e| match e {
            WebhookError::TooLarge(limit) => ScimError::too_large(limit),
            other => ScimError::invalid_syntax(other.to_string()),
        })?;
    serde_json::from_slice(&body)
        .map_err(|e| ScimError::invalid_syntax(format!("the body is not JSON: {e}")))
}

/// Drains a body nobody reads, so a keep-alive connection survives a refusal.
async fn drain(req: &HttpRequest, payload: web::Payload, state: &AppState) {
    let _ = read_body(req, payload, MAX_PAYLOAD, state.body_timeout).await;
}

/// Hands what a write changed to intake and queues the jobs. The change is committed: a full queue
/// loses nothing, because the next pass compares the store with every sink; it is logged and counted.
async fn enqueue(state: &AppState, answer: &ScimAnswer) {
    let keys = accept_changes(&state.engine.intake(), &answer.changes).await;
    for key in keys {
        if let Err(full) = state.queue.submit(key) {
            state
                .metrics
                .webhooks
                .with_label_values(&["scim", "queue_full"])
                .inc();
            tracing::warn!(error = %full, "SCIM change stored but not queued; the next reconcile pass converges it");
        }
    }
}

/// Parses the list parameters, without case in their names; unknown ones are ignored (Entra ID adds its own).
fn list_query(req: &HttpRequest) -> Result<ListQuery, ScimError> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map_err(|e| ScimError::invalid_syntax(format!("the query cannot be read: {e}")))?
        .into_inner();
    let mut query = ListQuery::default();
    let number = |name: &str, v: &str| {
        v.trim()
            .parse::<i64>()
            .map_err(|_| ScimError::invalid_value(format!("{name} must be an integer, not {v:?}")))
    };
    let (mut attributes, mut excluded) = (None, None);
    for (name, value) in &pairs {
        match name.to_ascii_lowercase().as_str() {
            "filter" => query.filter = Some(value.clone()),
            "startindex" => query.start_index = Some(number("startIndex", value)?),
            "count" => query.count = Some(number("count", value)?),
            "attributes" => attributes = Some(value.as_str()),
            "excludedattributes" => excluded = Some(value.as_str()),
            _ => {}
        }
    }
    query.projection = Projection::parse(attributes, excluded);
    Ok(query)
}

/// A discovery document: the token, then the document for this base URL, or a 404 naming what is missing.
fn discover(
    req: &HttpRequest,
    state: &AppState,
    document: impl FnOnce(&str) -> Option<Value>,
    missing: impl FnOnce() -> String,
) -> HttpResponse {
    let started = std::time::Instant::now();
    let result = authorize(req, state).and_then(|_| {
        document(&base_url(req))
            .map(|body| respond(&ScimAnswer::ok(body)))
            .ok_or_else(|| ScimError::not_found(missing()))
    });
    finish(state, started, result)
}

async fn service_provider_config(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    discover(
        &req,
        &state,
        |base| Some(discovery::service_provider_config(base)),
        String::new,
    )
}

async fn resource_types(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    discover(
        &req,
        &state,
        |base| Some(discovery::resource_types(base)),
        String::new,
    )
}

async fn resource_type(
    req: HttpRequest,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    discover(
        &req,
        &state,
        |base| discovery::resource_type(base, &name),
        || format!("no resource type {name:?}"),
    )
}

async fn schemas(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    discover(
        &req,
        &state,
        |base| Some(discovery::schemas(base)),
        String::new,
    )
}

async fn schema(
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    discover(
        &req,
        &state,
        |base| discovery::schema(base, &id),
        || format!("no schema {id:?}"),
    )
}

/// A request with a body: the token, the body, the service's answer, intake.
async fn write<F, Fut>(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    run: F,
) -> HttpResponse
where
    F: FnOnce(ScimService, String, Value) -> Fut,
    Fut: std::future::Future<Output = Result<ScimAnswer, ScimError>>,
{
    let started = std::time::Instant::now();
    let result = async {
        let service = match authorize(&req, &state) {
            Ok(service) => service.clone(),
            Err(e) => {
                drain(&req, payload, &state).await;
                return Err(e);
            }
        };
        let body = json_body(&req, payload, &state).await?;
        let answer = run(service, base_url(&req), body).await?;
        enqueue(&state, &answer).await;
        Ok(respond(&answer))
    }
    .await;
    finish(&state, started, result)
}

/// A request without a body: GET or DELETE.
async fn read<F, Fut>(req: HttpRequest, state: web::Data<AppState>, run: F) -> HttpResponse
where
    F: FnOnce(ScimService, String) -> Fut,
    Fut: std::future::Future<Output = Result<ScimAnswer, ScimError>>,
{
    let started = std::time::Instant::now();
    let result = async {
        let service = authorize(&req, &state)?.clone();
        let answer = run(service, base_url(&req)).await?;
        enqueue(&state, &answer).await;
        Ok(respond(&answer))
    }
    .await;
    finish(&state, started, result)
}

async fn create_user(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    write(req, payload, state, |s, base, body| async move {
        s.create_user(&base, body).await
    })
    .await
}

async fn list_users(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let query = list_query(&req);
    read(req, state, |s, base| async move {
        s.list_users(&base, &query?).await
    })
    .await
}

async fn get_user(
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let id = id.into_inner();
    let query = list_query(&req);
    read(req, state, |s, base| async move {
        s.get_user(&base, &id, &query?.projection).await
    })
    .await
}

async fn search_users(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    write(req, payload, state, |s, base, body| async move {
        s.list_users(&base, &ListQuery::from_search(body)?).await
    })
    .await
}

async fn search_groups(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    write(req, payload, state, |s, base, body| async move {
        s.list_groups(&base, &ListQuery::from_search(body)?).await
    })
    .await
}

/// A search across every resource type at once is not offered; RFC 7644 §3.4.3 lets a server say so with 501.
async fn search_everything(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    refuse(req, payload, state, |_| {
        ScimError::not_implemented(
            "searching every resource type at once is not offered; POST /Users/.search or /Groups/.search",
        )
    })
    .await
}

/// A method the path does not answer.
async fn method_not_allowed(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    refuse(req, payload, state, |req| {
        ScimError::method_not_allowed(format!("{} is not allowed on {}", req.method(), req.path()))
    })
    .await
}

/// A request this endpoint does not serve: its body drained (the connection stays usable), then the token
/// checked, so that a stranger learns nothing but 401, then the refusal.
async fn refuse(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    refusal: impl FnOnce(&HttpRequest) -> ScimError,
) -> HttpResponse {
    let started = std::time::Instant::now();
    drain(&req, payload, &state).await;
    let result = authorize(&req, &state).and_then(|_| Err(refusal(&req)));
    finish(&state, started, result)
}

async fn replace_user(
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let id = id.into_inner();
    write(req, payload, state, |s, base, body| async move {
        s.replace_user(&base, &id, body).await
    })
    .await
}

async fn patch_user(
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let id = id.into_inner();
    write(req, payload, state, |s, base, body| async move {
        s.patch_user(&base, &id, body).await
    })
    .await
}

async fn delete_user(
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let id = id.into_inner();
    read(req, state, |s, _| async move { s.delete_user(&id).await }).await
}

async fn create_group(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    write(req, payload, state, |s, base, body| async move {
        s.create_group(&base, body).await
    })
    .await
}

async fn list_groups(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let query = list_query(&req);
    read(req, state, |s, base| async move {
        s.list_groups(&base, &query?).await
    })
    .await
}

async fn get_group(
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let id = id.into_inner();
    let query = list_query(&req);
    read(req, state, |s, base| async move {
        s.get_group(&base, &id, &query?.projection).await
    })
    .await
}

async fn replace_group(
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let id = id.into_inner();
    write(req, payload, state, |s, base, body| async move {
        s.replace_group(&base, &id, body).await
    })
    .await
}

async fn patch_group(
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let id = id.into_inner();
    write(req, payload, state, |s, base, body| async move {
        s.patch_group(&base, &id, body).await
    })
    .await
}

async fn delete_group(
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let id = id.into_inner();
    read(req, state, |s, _| async move { s.delete_group(&id).await }).await
}

/// Any other path or method under the base: `/Bulk` and `/Me` are not offered.
async fn unknown(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    refuse(req, payload, state, |req| {
        ScimError::not_found(format!(
            "{} {} is not a SCIM endpoint of this bridge (Users, Groups, ServiceProviderConfig, ResourceTypes, Schemas)",
            req.method(),
            req.path()
        ))
    })
    .await
}
