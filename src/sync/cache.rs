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
    OutlineUserId,
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
/// pk-to-email memory is kept longer than the snapshots it comes from. It lives in memory only: after a
/// restart, a deletion whose email was not seen again is handled by a reconcile, and a changed email's old
/// address is forgotten (see [`SnapshotCaches::previous_emails`]).
const USER_MEMORY_TTL: Duration = Duration::from_secs(24 * 3600);

pub struct SnapshotCaches {
    pub groups: Cache<AuthentikGroupId, Arc<GroupSnapshot>>,
    pub catalog: Cache<(), Arc<Vec<GroupSummary>>>,
    /// The last email seen for each Authentik user.
    pub emails: Cache<AuthentikUserId, Email>,
    /// The email a user had before the last one seen. Outline keeps the old address until the person signs
    /// in again (docs/upstream/outline.md §6.7), and it is matched by this one meanwhile, so a changed email
    /// costs nobody their groups or their group admin role. After a restart the old address is unknown: the
    /// person leaves their groups at the next event or pass and is back in them at their next sign-in.
    pub previous_emails: Cache<AuthentikUserId, Email>,
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
            emails: build(
                "authentik_user_emails",
                200_000,
                USER_MEMORY_TTL.max(ttl),
                &metrics,
            ),
            previous_emails: build(
                "authentik_previous_emails",
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
            if let Some(email) = &m.email {
                self.remember_email(m.pk, email).await;
            }
        }
        let group = Arc::new(group);
        self.groups
            .insert(group.summary.id.clone(), group.clone())
            .await;
        group
    }

    /// Notes the email seen for a user; a different one than before becomes the previous email.
    pub async fn remember_email(&self, pk: AuthentikUserId, email: &Email) {
        match self.emails.get(&pk).await {
            Some(known) if &known == email => {}
            Some(known) => {
                self.previous_emails.insert(pk, known).await;
                self.emails.insert(pk, email.clone()).await;
            }
            None => self.emails.insert(pk, email.clone()).await,
        }
    }

    /// The last email seen for an Authentik user.
    pub async fn remembered_email(&self, pk: AuthentikUserId) -> Option<Email> {
        self.emails.get(&pk).await
    }

    /// Every cache, emptied: a reconcile reads everything fresh.
    pub fn invalidate_all(&self) {
        self.groups.invalidate_all();
        self.catalog.invalidate_all();
        self.outline_groups.invalidate_all();
        self.outline_users.invalidate_all();
    }
}
