//! The snapshot caches (moka). Each has a TTL, and the webhook for its target invalidates it before the job
//! is queued, so a job never acts on data older than the last event for its target.
//!
//! Outline memberships are deliberately not cached: Outline sends the bridge no membership events, and a stale
//! "not a member" would make the bridge call `groups.add_user` for an existing member, which demotes a group
//! admin (docs/upstream/outline.md §6.3). Memberships are read fresh right before any write.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use moka::notification::RemovalCause;

use crate::domain::{
    AuthentikGroupId, AuthentikUserId, Email, GroupSnapshot, GroupSummary, OutlineGroup,
    OutlineUserId, UserSnapshot,
};
use crate::metrics::Metrics;

/// Outline's users by folded email, with the count and the newest user when it was read, so that one
/// cheap call tells whether anyone has joined since.
pub struct OutlineUserIndex {
    pub by_email: BTreeMap<String, OutlineUserId>,
    pub total: u64,
    pub newest: Option<OutlineUserId>,
}

/// A deletion event carries the user's pk and display name but no email (docs/upstream/authentik.md §4.4, §12), so the
/// pk-to-email memory is kept longer than the snapshots it comes from.
const USER_MEMORY_TTL: Duration = Duration::from_secs(24 * 3600);

pub struct SnapshotCaches {
    pub groups: Cache<AuthentikGroupId, Arc<GroupSnapshot>>,
    pub catalog: Cache<(), Arc<Vec<GroupSummary>>>,
    pub users: Cache<AuthentikUserId, Arc<UserSnapshot>>,
    pub outline_groups: Cache<(), Arc<Vec<OutlineGroup>>>,
    pub outline_users: Cache<(), Arc<OutlineUserIndex>>,
    metrics: Arc<Metrics>,
}

fn build<K, V>(
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
    pub fn new(ttl: Duration, metrics: Arc<Metrics>) -> SnapshotCaches {
        SnapshotCaches {
            groups: build("authentik_groups", 10_000, ttl, &metrics),
            catalog: build("authentik_catalog", 1, ttl, &metrics),
            users: build(
                "authentik_users",
                200_000,
                USER_MEMORY_TTL.max(ttl),
                &metrics,
            ),
            outline_groups: build("outline_groups", 1, ttl, &metrics),
            outline_users: build("outline_users", 1, ttl, &metrics),
            metrics,
        }
    }

    /// Looks `key` up, loading it on a miss; a failed load is not cached. Hits and misses are counted.
    pub async fn get_or_load<K, V, E, F>(
        &self,
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
            self.metrics
                .cache_requests
                .with_label_values(&[&name, "hit"])
                .inc();
            return Ok(v);
        }
        self.metrics
            .cache_requests
            .with_label_values(&[&name, "miss"])
            .inc();
        let v = load.await?;
        cache.insert(key, v.clone()).await;
        Ok(v)
    }

    /// Caches a group snapshot, and remembers its members' emails for a later deletion event, which carries
    /// none.
    pub async fn store_group(&self, group: GroupSnapshot) -> Arc<GroupSnapshot> {
        for m in &group.members {
            if let (Some(email), None) = (&m.email, self.users.get(&m.pk).await) {
                let remembered = UserSnapshot {
                    pk: m.pk,
                    email: Some(email.clone()),
                    is_active: m.is_active,
                    groups: Vec::new(),
                };
                self.users.insert(m.pk, Arc::new(remembered)).await;
            }
        }
        let group = Arc::new(group);
        self.groups
            .insert(group.summary.id.clone(), group.clone())
            .await;
        group
    }

    /// The last email seen for an Authentik user, from user snapshots or group member lists.
    pub async fn remembered_email(&self, pk: AuthentikUserId) -> Option<Email> {
        if let Some(u) = self.users.get(&pk).await {
            if let Some(e) = &u.email {
                return Some(e.clone());
            }
        }
        self.groups.iter().find_map(|(_, g)| {
            g.members
                .iter()
                .find(|m| m.pk == pk)
                .and_then(|m| m.email.clone())
        })
    }

    /// Every cache, emptied: a reconcile reads everything fresh.
    pub fn invalidate_all(&self) {
        self.groups.invalidate_all();
        self.catalog.invalidate_all();
        self.outline_groups.invalidate_all();
        self.outline_users.invalidate_all();
    }
}
