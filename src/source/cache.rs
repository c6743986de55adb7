//! The snapshot caches (moka). Each has a TTL, and the webhook for its target invalidates it before the job
//! is queued, so a job never acts on data older than the last event for its target.
//!
//! Outline memberships are deliberately not cached: Outline sends the bridge no membership events, and a stale
//! "not a member" would make the bridge call `groups.add_user` for an existing member, which demotes a group
//! admin (docs/src/upstream/outline.md §6.3). Memberships are read fresh right before any write.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use moka::notification::RemovalCause;

use crate::domain::{GroupSnapshot, GroupSummary};
use crate::metrics::Metrics;
use crate::source::identities::IdentityMap;

/// Authentik group snapshots themselves are not cached: a group job reads its group fresh (see
/// `SnapshotReader::fresh_group`), so only the catalog of group summaries and what members' emails were are
/// kept.
pub struct SnapshotCaches {
    pub catalog: Cache<(), Arc<Vec<GroupSummary>>>,
    /// Who each person is: their emails, and their accounts in the sinks.
    pub identities: IdentityMap,
    pub metrics: Arc<Metrics>,
}

pub fn build<K, V>(
    name: &'static str,
    capacity: u64,
    ttl: Duration,
    metrics: &Arc<Metrics>,
) -> Cache<K, V>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    let m = metrics.clone();
    Cache::builder()
        .name(name)
        .max_capacity(capacity)
        .time_to_live(ttl)
        .eviction_listener(move |_k, _v, cause| {
            if cause != RemovalCause::Replaced {
                m.cache_evictions.with_label_values(&[name]).inc();
            }
        })
        .build()
}

impl SnapshotCaches {
    pub fn new(ttl: Duration, identities: IdentityMap, metrics: Arc<Metrics>) -> SnapshotCaches {
        SnapshotCaches {
            catalog: build("authentik_catalog", 1, ttl, &metrics),
            identities,
            metrics,
        }
    }

    /// Remembers the emails of a group's members, for a later deletion event, which carries none.
    pub fn remember_members(&self, group: &GroupSnapshot) {
        for m in &group.members {
            if let Some(email) = &m.email {
                self.identities.remember(m.pk, email);
            }
        }
    }

    /// Every cache, emptied: a reconcile reads everything fresh.
    pub fn invalidate_all(&self) {
        self.catalog.invalidate_all();
    }
}

/// Looks `key` up, loading it on a miss; a failed load is not cached. Hits and misses are counted.
pub async fn get_or_load<K, V, E, F>(
    metrics: &Metrics,
    cache: &Cache<K, V>,
    key: K,
    load: F,
) -> Result<V, E>
where
    K: std::hash::Hash + Eq + Send + Sync + Clone + 'static,
    V: Clone + Send + Sync + 'static,
    F: Future<Output = Result<V, E>>,
{
    let name = cache.name().unwrap_or("cache").to_string();
    if let Some(v) = cache.get(&key).await {
        metrics
            .cache_requests
            .with_label_values(&[&name, "hit"])
            .inc();
        return Ok(v);
    }
    metrics
        .cache_requests
        .with_label_values(&[&name, "miss"])
        .inc();
    let v = load.await?;
    cache.insert(key, v.clone()).await;
    Ok(v)
}
