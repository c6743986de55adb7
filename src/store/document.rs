//! A small JSON document the bridge must not forget (the suspension record, an hour's window, the applied
//! `ROLE_MAP`): a row of the store in `STATE_DIR`, shared safely between `serve` and a `reconcile` run from the
//! CLI; in memory without `STATE_DIR`.
//!
//! Every change is one write transaction: it reads the document as it is in the database, applies only its own
//! edit, and writes it back before committing. SQLite lets one process write at a time, so neither process
//! overwrites the other's entries, and a crash (even `kill -9`) leaves the old document or the new one.
//!
//! Before the store, each document was a JSON file in `STATE_DIR`. [`StateDocument::open`] imports such a file
//! once, then renames it (`<name>.imported`), so an upgrade forgets nothing.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::Mutex;

use super::{Store, StoreError};

/// The store's kind for documents; each document's key is its name.
const KIND: &str = "document";

#[derive(Debug, thiserror::Error)]
#[error("STATE_DIR {path}: {message}")]
pub struct RecordError {
    path: String,
    message: String,
}

impl RecordError {
    pub fn new(path: &Path, message: String) -> RecordError {
        error(path, message)
    }
}

pub struct StateDocument<T> {
    /// The store and the document's name in it, or nothing without `STATE_DIR`.
    kept: Option<(Store, &'static str)>,
    /// The document itself without `STATE_DIR`; with it, only a guard that keeps this process's own changes in
    /// order (the database orders them with other processes).
    memory: Mutex<T>,
}

impl<T> StateDocument<T>
where
    T: Serialize + DeserializeOwned + Default + Clone + Send + 'static,
{
    pub fn in_memory() -> StateDocument<T> {
        StateDocument {
            kept: None,
            memory: Mutex::new(T::default()),
        }
    }

    /// The document `name` in `store`. A JSON file `legacy` left by an earlier version is imported first
    /// (unless the store has the document already: an import that crashed before the rename), then renamed.
    /// A document or file that cannot be read stops the start-up: going on without it would forget what it holds.
    ///
    /// Without `import` (a look: `check`, a dry run) nothing is written: a file the store has not taken in yet
    /// is read into memory instead, so the look sees what `serve` will.
    pub async fn open(
        store: &Store,
        name: &'static str,
        legacy: &Path,
        import: bool,
    ) -> Result<StateDocument<T>, RecordError> {
        let doc = StateDocument {
            kept: Some((store.clone(), name)),
            memory: Mutex::new(T::default()),
        };
        if import {
            doc.import(legacy).await?;
        } else if legacy.exists() {
            let stored = store
                .remembered_one(KIND, name)
                .await
                .map_err(|e| error(store.path(), e.to_string()))?;
            if stored.is_none() {
                return Self::from_file(legacy);
            }
        }
        doc.read().await?;
        Ok(doc)
    }

    /// The JSON file of an earlier version, read into memory (an empty document when there is none).
    pub fn from_file(legacy: &Path) -> Result<StateDocument<T>, RecordError> {
        let doc = match std::fs::read(legacy) {
            Ok(body) => parse(&body).map_err(|m| error(legacy, m))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => T::default(),
            Err(e) => return Err(error(legacy, e.to_string())),
        };
        Ok(StateDocument {
            kept: None,
            memory: Mutex::new(doc),
        })
    }

    async fn import(&self, legacy: &Path) -> Result<(), RecordError> {
        let Some((store, name)) = &self.kept else {
            return Ok(());
        };
        let body = match std::fs::read(legacy) {
            Ok(body) => body,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(error(legacy, e.to_string())),
        };
        let doc: T = parse(&body).map_err(|m| error(legacy, m))?;
        let text = serde_json::to_string(&doc).map_err(|e| error(legacy, e.to_string()))?;
        let fail = |e: StoreError| error(store.path(), e.to_string());
        let key: &'static str = name;
        let already = store
            .write(move |tx| {
                let already = tx.remembered_one(KIND, key)?.is_some();
                if !already {
                    tx.remember(KIND, key, &text)?;
                }
                Ok::<_, StoreError>(already)
            })
            .await
            .map_err(fail)?;
        let renamed = with_suffix(legacy, ".imported");
        std::fs::rename(legacy, &renamed)
            .map_err(|e| error(legacy, format!("imported, but cannot be renamed: {e}")))?;
        if already {
            tracing::info!(file = %legacy.display(), renamed = %renamed.display(), "the store had this file's document already; the file is renamed");
        } else {
            tracing::info!(file = %legacy.display(), renamed = %renamed.display(), store = %store.path().display(), "imported into the store; the file is renamed");
        }
        Ok(())
    }

    pub fn is_persistent(&self) -> bool {
        self.kept.is_some()
    }

    /// Takes a write turn and commits it, so that `serve` finds a store it cannot write to at start-up, not at
    /// the first change. `reconcile --dry-run` and `check` never write.
    pub async fn check_writable(&self) -> Result<(), RecordError> {
        let Some((store, _)) = &self.kept else {
            return Ok(());
        };
        let fail = |e: StoreError| error(store.path(), e.to_string());
        let opened_at = format!("\"{}\"", super::time::now_rfc3339());
        store
            .write(move |tx| tx.remember("bridge", "opened_at", &opened_at))
            .await
            .map_err(fail)
    }

    /// The document as it is now. An unreadable one is an error for the caller to weigh.
    pub async fn read(&self) -> Result<T, RecordError> {
        let memory = self.memory.lock().await;
        let Some((store, name)) = &self.kept else {
            return Ok(memory.clone());
        };
        let fail = |m: String| error(store.path(), format!("{name}: {m}"));
        let body = store
            .remembered_one(KIND, name)
            .await
            .map_err(|e| fail(e.to_string()))?;
        match body {
            Some(body) => parse(body.as_bytes()).map_err(fail),
            None => Ok(T::default()),
        }
    }

    /// Applies `edit` to the document as it is now, and keeps the result when `edit` says it changed
    /// anything. Returns what `edit` returned.
    pub async fn change<R: Send + 'static>(
        &self,
        edit: impl FnOnce(&mut T) -> (R, bool) + Send + 'static,
    ) -> Result<R, RecordError> {
        let mut memory = self.memory.lock().await;
        let Some((store, name)) = &self.kept else {
            return Ok(edit(&mut memory).0);
        };
        let fail = |m: String| error(store.path(), format!("{name}: {m}"));
        let key: &'static str = name;
        let written = store
            .write(move |tx| {
                let mut doc = match tx.remembered_one(KIND, key)? {
                    Some(body) => parse(body.as_bytes()).map_err(Edit::Unreadable)?,
                    None => T::default(),
                };
                let (result, changed) = edit(&mut doc);
                if changed {
                    let text =
                        serde_json::to_string(&doc).map_err(|e| Edit::Unreadable(e.to_string()))?;
                    tx.remember(KIND, key, &text)?;
                }
                Ok::<_, Edit>(result)
            })
            .await;
        written.map_err(|e| match e {
            Edit::Unreadable(m) => fail(m),
            Edit::Store(e) => fail(e.to_string()),
        })
    }
}

/// Why an edit on the writer's thread failed: the stored document, or the store.
enum Edit {
    Unreadable(String),
    Store(StoreError),
}

impl From<StoreError> for Edit {
    fn from(e: StoreError) -> Edit {
        Edit::Store(e)
    }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice::<T>(body).map_err(|e| format!("not a record the bridge wrote: {e}"))
}

fn error(path: &Path, message: String) -> RecordError {
    RecordError {
        path: path.display().to_string(),
        message,
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}
