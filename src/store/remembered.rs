//! A keyed memory the bridge must not forget (the identity map, the OpenFGA objects it wrote, the invitations
//! Outline refused): held in memory for look-ups on the jobs' paths, and kept in the store in `STATE_DIR`.
//!
//! Changes are noted at once and written by [`Remembered::save`], one transaction for all of them, which the
//! owner calls where what it learned must be kept (the end of a job, a pass's step). A `kill -9` loses only
//! what was learned since the last save, which the next read of the same data learns again; it never leaves
//! half a save. Without `STATE_DIR` it is memory only.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Store, StoreError};

pub struct Remembered<K, V> {
    kind: &'static str,
    store: Option<Store>,
    entries: Mutex<HashMap<K, V>>,
    /// Keys changed since the last save.
    pending: Mutex<HashSet<K>>,
    /// One save at a time, so that a later save's values are never overwritten by an earlier one's.
    saving: tokio::sync::Mutex<()>,
    /// Set for `reconcile --dry-run` and `check`: they learn, but write nothing.
    frozen: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<K, V> Remembered<K, V>
where
    K: Serialize + DeserializeOwned + Eq + Hash + Clone,
    V: Serialize + DeserializeOwned + Clone + PartialEq,
{
    pub fn in_memory(kind: &'static str) -> Remembered<K, V> {
        Remembered {
            kind,
            store: None,
            entries: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashSet::new()),
            saving: tokio::sync::Mutex::new(()),
            frozen: AtomicBool::new(false),
        }
    }

    /// Everything of `kind` the store holds. A row this version cannot read stops the start-up, as a
    /// document does: going on without it would forget what it holds.
    pub async fn open(store: &Store, kind: &'static str) -> Result<Remembered<K, V>, StoreError> {
        Ok(Remembered {
            store: Some(store.clone()),
            entries: Mutex::new(read_all(store, kind).await?),
            ..Remembered::in_memory(kind)
        })
    }

    /// Takes in what another process (a CLI `reconcile` beside `serve`) wrote since this one read the store:
    /// every entry this process has not changed since its last save becomes the store's.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let stored = read_all::<K, V>(store, self.kind).await?;
        let pending = lock(&self.pending);
        let mut entries = lock(&self.entries);
        entries.retain(|k, _| pending.contains(k) || stored.contains_key(k));
        for (k, v) in stored {
            if !pending.contains(&k) {
                entries.insert(k, v);
            }
        }
        Ok(())
    }

    pub fn is_persistent(&self) -> bool {
        self.store.is_some()
    }

    /// Keeps later changes in memory only.
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::Relaxed);
    }

    pub fn get(&self, key: &K) -> Option<V> {
        lock(&self.entries).get(key).cloned()
    }

    pub fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every entry, copied out.
    pub fn entries(&self) -> Vec<(K, V)> {
        lock(&self.entries)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Edits one entry (`None`: absent; set it to `None` to forget it); a change is noted for the next save.
    pub fn update<R>(&self, key: &K, edit: impl FnOnce(&mut Option<V>) -> R) -> R {
        let mut entries = lock(&self.entries);
        let mut value = entries.get(key).cloned();
        let before = value.clone();
        let result = edit(&mut value);
        if value != before {
            match value {
                Some(v) => entries.insert(key.clone(), v),
                None => entries.remove(key),
            };
            drop(entries);
            if self.store.is_some() {
                lock(&self.pending).insert(key.clone());
            }
        }
        result
    }

    pub fn insert(&self, key: &K, value: V) {
        self.update(key, |v| *v = Some(value));
    }

    pub fn remove(&self, key: &K) {
        self.update(key, |v| *v = None);
    }

    /// Writes every change noted since the last save in one transaction. On failure the changes stay noted
    /// for the next save.
    pub async fn save(&self) -> Result<(), StoreError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        if self.frozen.load(Ordering::Relaxed) {
            return Ok(());
        }
        let _turn = self.saving.lock().await;
        let keys: Vec<K> = lock(&self.pending).drain().collect();
        if keys.is_empty() {
            return Ok(());
        }
        let rows = {
            let entries = lock(&self.entries);
            let mut rows = Vec::with_capacity(keys.len());
            for key in &keys {
                rows.push((json(key), entries.get(key).map(json)));
            }
            rows
        };
        let kind = self.kind;
        let written = store.write(move |tx| tx.remember_many(kind, &rows)).await;
        if written.is_err() {
            lock(&self.pending).extend(keys);
        }
        written
    }
}

/// Every row of `kind`, parsed.
async fn read_all<K, V>(store: &Store, kind: &str) -> Result<HashMap<K, V>, StoreError>
where
    K: DeserializeOwned + Eq + Hash,
    V: DeserializeOwned,
{
    let mut entries = HashMap::new();
    for (key, value) in store.remembered(kind).await? {
        let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("{kind} {key}: {e}"));
        entries.insert(
            serde_json::from_str(&key).map_err(corrupt)?,
            serde_json::from_str(&value).map_err(corrupt)?,
        );
    }
    Ok(entries)
}

/// These types serialise to JSON without fail (plain structs, strings and numbers).
fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
