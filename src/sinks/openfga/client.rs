//! The OpenFGA API client (docs/src/upstream/openfga.md §2): paged Reads of one group's or one person's tuples,
//! Writes of at most one batch, and the store and model look-ups `check` needs. OpenFGA has no rate limit
//! and never answers 429 (docs/src/upstream/openfga.md §3.3), so there is no limiter here; 5xx and transport
//! errors are retried by the shared loop.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::clients::retry::{Call, RetryPolicy, UpstreamError};
use crate::clients::{http_client, ClientBuildError};
use crate::configuration::{OpenFgaSettings, Secret};
use crate::metrics::Metrics;
use crate::sinks::openfga::tuples::TuplePlan;

const UPSTREAM: &str = "openfga";
/// The largest page Read allows (docs/src/upstream/openfga.md §2.3); the default is only 50.
const PAGE_SIZE: u32 = 100;
/// A Read that has not ended after this many pages is treated as a broken answer, not walked for ever.
const MAX_PAGES: usize = 100_000;

#[derive(Clone)]
pub struct OpenFgaClient {
    http: reqwest::Client,
    base: Arc<str>,
    store: Arc<str>,
    token: Option<Secret>,
    model_id: Option<Arc<str>>,
    metrics: Arc<Metrics>,
    policy: RetryPolicy,
}

/// A stored tuple as Read returns it; the condition is ignored, as the sink never writes one.
#[derive(Debug, Clone, Deserialize)]
pub struct StoredTuple {
    pub user: String,
    pub relation: String,
    pub object: String,
}

#[derive(Deserialize)]
struct ReadAnswer {
    #[serde(default)]
    tuples: Vec<ReadTuple>,
    #[serde(default)]
    continuation_token: Option<String>,
}

#[derive(Deserialize)]
struct ReadTuple {
    key: StoredTuple,
}

/// What `check` learns of the model the writes are validated against.
#[derive(Debug)]
pub struct ModelFit {
    pub model_id: String,
    /// The user types `<group type>#<relation>` accepts directly, e.g. `user`, `group#member`; empty when the
    /// group type or relation is missing.
    pub accepted: Vec<String>,
    pub group_type_found: bool,
}

impl OpenFgaClient {
    pub fn new(
        settings: &OpenFgaSettings,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<OpenFgaClient, ClientBuildError> {
        Ok(OpenFgaClient {
            http: http_client(UPSTREAM, timeout)?,
            base: Arc::from(settings.url.trim_end_matches('/')),
            store: Arc::from(settings.store_id.as_str()),
            token: settings.token.clone(),
            model_id: settings.model_id.as_deref().map(Arc::from),
            metrics,
            policy: RetryPolicy::default(),
        })
    }

    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> OpenFgaClient {
        self.policy = policy;
        self
    }

    async fn call<T: DeserializeOwned>(
        &self,
        call: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, UpstreamError> {
        let url = format!("{}{path}", self.base);
        let c = Call {
            upstream: UPSTREAM,
            name: call,
            metrics: &self.metrics,
            policy: self.policy,
            on_throttled: None,
        };
        let resp = c
            .execute(
                || async {},
                || {
                    let req = match body {
                        Some(b) => self.http.post(&url).json(b),
                        None => self.http.get(&url),
                    };
                    match &self.token {
                        Some(t) => req.bearer_auth(t.expose()).send(),
                        None => req.send(),
                    }
                },
            )
            .await?;
        let bytes = resp.bytes().await.map_err(|e| UpstreamError::Transport {
            upstream: UPSTREAM,
            call: call.to_string(),
            message: format!("reading the answer: {}", e.without_url()),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| UpstreamError::Decode {
            upstream: UPSTREAM,
            call: call.to_string(),
            message: e.to_string(),
        })
    }

    /// Every tuple matching `tuple_key`, paged to the end. Reads ask for `HIGHER_CONSISTENCY`, so a store with
    /// a read replica answers from the primary and a diff never starts from a stale read
    /// (docs/src/upstream/openfga.md §2.3).
    pub async fn read_all(&self, tuple_key: Value) -> Result<Vec<StoredTuple>, UpstreamError> {
        let path = format!("/stores/{}/read", self.store);
        let mut out = Vec::new();
        let mut token = String::new();
        for _ in 0..MAX_PAGES {
            let body = json!({
                "tuple_key": tuple_key,
                "page_size": PAGE_SIZE,
                "continuation_token": token,
                "consistency": "HIGHER_CONSISTENCY",
            });
            let page: ReadAnswer = self.call("read", &path, Some(&body)).await?;
            out.extend(page.tuples.into_iter().map(|t| t.key));
            match page.continuation_token.filter(|t| !t.is_empty()) {
                Some(next) if next == token => break,
                Some(next) => token = next,
                None => return Ok(out),
            }
        }
        Err(UpstreamError::Incomplete {
            upstream: UPSTREAM,
            call: "read".into(),
            message: "the continuation token did not end".into(),
        })
    }

    /// One Write of at most one batch, with `on_duplicate`/`on_missing: ignore`, so a replay after a timeout,
    /// or a tuple another writer already made, is not an error (docs/src/upstream/openfga.md §2.2, §3.4). A server
    /// before 1.10 ignores the two options and answers 400 `write_failed_due_to_invalid_input` instead; the
    /// sink then reads again and re-diffs.
    pub async fn write(&self, batch: &TuplePlan, relation: &str) -> Result<(), UpstreamError> {
        let key = |t: &crate::sinks::openfga::tuples::MemberTuple| json!({"user": &*t.user, "relation": relation, "object": &*t.object});
        let mut body = serde_json::Map::new();
        if !batch.writes.is_empty() {
            body.insert(
                "writes".into(),
                json!({"tuple_keys": batch.writes.iter().map(key).collect::<Vec<_>>(), "on_duplicate": "ignore"}),
            );
        }
        if !batch.deletes.is_empty() {
            body.insert(
                "deletes".into(),
                json!({"tuple_keys": batch.deletes.iter().map(key).collect::<Vec<_>>(), "on_missing": "ignore"}),
            );
        }
        if let Some(model) = &self.model_id {
            body.insert("authorization_model_id".into(), json!(&**model));
        }
        let path = format!("/stores/{}/write", self.store);
        let _: Value = self
            .call("write", &path, Some(&Value::Object(body)))
            .await?;
        Ok(())
    }

    /// The store's name, or `None` when OpenFGA does not know the store id: Read cannot tell, since it answers
    /// an unknown store with no tuples (docs/src/upstream/openfga.md §2.3, §2.6).
    pub async fn store_name(&self) -> Result<Option<String>, UpstreamError> {
        #[derive(Deserialize)]
        struct Store {
            name: String,
        }
        let path = format!("/stores/{}", self.store);
        match self.call::<Store>("store", &path, None).await {
            Ok(s) => Ok(Some(s.name)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Which user types the model lets `<group_type>#<relation>` hold directly: the configured model, or the
    /// store's latest (the first of a one-item listing, which is newest first; docs/src/upstream/openfga.md §2.4,
    /// §6). `None` when the store has no model.
    pub async fn model_fit(
        &self,
        group_type: &str,
        relation: &str,
    ) -> Result<Option<ModelFit>, UpstreamError> {
        let model: Value = match &self.model_id {
            Some(id) => {
                let path = format!("/stores/{}/authorization-models/{id}", self.store);
                let answer: Value = self.call("model", &path, None).await?;
                answer["authorization_model"].clone()
            }
            None => {
                let path = format!("/stores/{}/authorization-models?page_size=1", self.store);
                let answer: Value = self.call("models", &path, None).await?;
                match answer["authorization_models"].get(0) {
                    Some(m) => m.clone(),
                    None => return Ok(None),
                }
            }
        };
        let definition = model["type_definitions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["type"] == group_type);
        let accepted = definition
            .and_then(|d| {
                d["metadata"]["relations"][relation]["directly_related_user_types"].as_array()
            })
            .into_iter()
            .flatten()
            .filter_map(|r| {
                let t = r["type"].as_str()?;
                let shown = match (r["relation"].as_str(), r["wildcard"].is_object()) {
                    (Some(rel), _) if !rel.is_empty() => format!("{t}#{rel}"),
                    (_, true) => format!("{t}:*"),
                    _ => t.to_string(),
                };
                // `[user with office]` alone refuses a tuple without that condition ("condition is
                // missing", OpenFGA's engine), and the sink writes none: it is not `user`.
                Some(match r["condition"].as_str().filter(|c| !c.is_empty()) {
                    Some(c) => format!("{shown} with {c}"),
                    None => shown,
                })
            })
            .collect();
        Ok(Some(ModelFit {
            model_id: model["id"].as_str().unwrap_or_default().to_string(),
            accepted,
            group_type_found: definition.is_some(),
        }))
    }
}
