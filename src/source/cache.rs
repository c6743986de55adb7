//! The snapshot caches (moka). Each has a TTL, and the webhook for its target invalidates it before the job
//! is queued, so a job never acts on data older than the last event for its target.
//!
//! Outline memberships are deliberately not cached: Outline sends the bridge no membership events, and a stale
//! "not a member" would make the bridge call `groups.add_user` for an existing member, which demotes a group
//! admin (docs/src/upstream/outline.md §6.3). Memberships are read fresh right before any write.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moka::future::Cache;
use moka::notification::RemovalCause;

use crate::domain::{AuthentikUserId, Email, GroupSnapshot, GroupSummary};
use crate::metrics::Metrics;

/// What each Authentik user's email is, and what it was before it last changed.
///
/// A deletion event carries the user's pk and display name but no email (docs/src/upstream/authentik.md §4.4,
/// §12), so the email is remembered from every read that shows it. And Outline keeps a changed email's old
/// address until the person signs in again (docs/src/upstream/outline.md §6.7): they are matched by the previous
/// address meanwhile, so a changed email costs nobody their groups or their group admin role.
///
/// It lives in memory only. After a restart a deletion whose email was not seen again asks for a pass, and a
/// person whose email changed leaves their groups at the next event or pass, and is back in them at their
/// next sign-in. A plain map: 100k users cost about 10 MB here, where a TTL cache cost several times that.
/// Past [`EMAIL_MEMORY_CAP`] users it is emptied and fills again from the next reads.
#[derive(Default)]
pub struct EmailMemory {
    by_user: Mutex<HashMap<AuthentikUserId, RememberedEmail>>,
}

struct RememberedEmail {
    now: Email,
    before: Option<Email>,
}

pub const EMAIL_MEMORY_CAP: usize = 1_000_000;

impl EmailMemory {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AuthentikUserId, RememberedEmail>> {
        self.by_user.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes the email seen for a user; a different one than before becomes the previous email.
    pub fn remember(&self, pk: AuthentikUserId, email: &Email) {
        let mut by_user = self.lock();
        if by_user.len() >= EMAIL_MEMORY_CAP && !by_user.contains_key(&pk) {
            by_user.clear();
        }
        match by_user.get_mut(&pk) {
            Some(known) if &known.now == email => {}
            Some(known) => {
                known.before = Some(std::mem::replace(&mut known.now, email.clone()));
            }
            None => {
                by_user.insert(
                    pk,
                    RememberedEmail {
                        now: email.clone(),
                        before: None,
                    },
                );
            }
        }
    }

    /// The last email seen for an Authentik user.
    pub fn current(&self, pk: AuthentikUserId) -> Option<Email> {
        self.lock().get(&pk).map(|e| e.now.clone())
    }

    /// The email the user had before the last one seen.
    pub fn previous(&self, pk: AuthentikUserId) -> Option<Email> {
        self.lock().get(&pk).and_then(|e| e.before.clone())
    }
}

/// Authentik group snapshots themselves are not cached: a group job reads its group fresh (see
/// `SnapshotReader::fresh_group`), so only the catalog of group summaries and what members' emails were are
/// kept.
pub struct SnapshotCaches {
    pub catalog: Cache<(), Arc<Vec<GroupSummary>>>,
    /// What each Authentik user's email is, and was.
    pub emails: EmailMemory,
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
    pub fn new(ttl: Duration, metrics: Arc<Metrics>) -> SnapshotCaches {
        SnapshotCaches {
            catalog: build("authentik_catalog", 1, ttl, &metrics),
            emails: EmailMemory::default(),
            metrics,
        }
    }

    /// Remembers the emails of a group's members, for a later deletion event, which carries none.
    pub fn remember_members(&self, group: &GroupSnapshot) {
        for m in &group.members {
            if let Some(email) = &m.email {
                self.emails.remember(m.pk, email);
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
