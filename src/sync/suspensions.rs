//! Whom the bridge suspended. A person re-activated in Authentik is activated in Outline again only if the
//! bridge suspended them; a suspension made by hand stays. Outline cannot answer "who suspended this
//! account": its audit log (`events.list {auditLog: true}`) is refused to every key on a self-hosted server,
//! and the activity events it does list leave suspensions out (docs/upstream/outline.md §6.8). So the bridge
//! keeps its own record.
//!
//! With `STATE_DIR` the record is a small JSON file there, rewritten whole on each change (a temporary file, then
//! a rename), so a restart keeps it. Without it the record lives in memory, and after a restart everyone the
//! bridge had suspended counts as suspended by hand: re-activating them in Authentik leaves them suspended
//! until an admin activates them in Outline. The bridge never activates anyone wrongly either way.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::domain::OutlineUserId;

pub struct SuspensionRecord {
    path: Option<PathBuf>,
    /// Held while the file is written, so two changes never race to rename an older snapshot last.
    ids: Mutex<BTreeSet<OutlineUserId>>,
}

#[derive(Serialize, Deserialize)]
struct RecordFile {
    /// Outline user ids the bridge suspended and has not activated since.
    suspended_by_bridge: BTreeSet<OutlineUserId>,
}

#[derive(Debug, thiserror::Error)]
#[error("STATE_DIR {path}: {message}")]
pub struct RecordError {
    path: String,
    message: String,
}

impl SuspensionRecord {
    /// The record's name in `STATE_DIR`.
    pub const FILE_NAME: &'static str = "suspended-by-bridge.json";

    pub fn in_memory() -> SuspensionRecord {
        SuspensionRecord {
            path: None,
            ids: Mutex::new(BTreeSet::new()),
        }
    }

    /// Reads the record from `path`; a file that does not exist yet is an empty record. A file that cannot
    /// be read or parsed stops the start-up: going on without it would forget whom to activate.
    pub fn open(path: &Path) -> Result<SuspensionRecord, RecordError> {
        let error = |message: String| RecordError {
            path: path.display().to_string(),
            message,
        };
        let ids = match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice::<RecordFile>(&bytes)
                    .map_err(|e| error(format!("not a record the bridge wrote: {e}")))?
                    .suspended_by_bridge
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => return Err(error(e.to_string())),
        };
        Ok(SuspensionRecord {
            path: Some(path.to_path_buf()),
            ids: Mutex::new(ids),
        })
    }

    pub fn is_durable(&self) -> bool {
        self.path.is_some()
    }

    /// Writes the record as it stands, so that `serve` finds a directory it cannot write to at start-up, not
    /// at the first suspension. `reconcile --dry-run` and `check` never write.
    pub fn check_writable(&self) -> Result<(), RecordError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        // Taken at start-up, before any job: a lock held by a job means a write is under way anyway.
        let Ok(ids) = self.ids.try_lock() else {
            return Ok(());
        };
        write_atomically(path, &ids).map_err(|e| RecordError {
            path: path.display().to_string(),
            message: format!("cannot be written: {e}"),
        })
    }

    pub async fn contains(&self, id: &OutlineUserId) -> bool {
        self.ids.lock().await.contains(id)
    }

    pub async fn count(&self) -> usize {
        self.ids.lock().await.len()
    }

    /// Records a suspension the bridge made. A failed write keeps the entry in memory and is logged: until a
    /// restart nothing is lost, and after one the account only stays suspended.
    pub async fn insert(&self, id: &OutlineUserId) {
        self.change(|ids| ids.insert(id.clone())).await
    }

    /// Forgets an account: activated by the bridge, or found active (an admin activated it by hand, so a
    /// later suspension is theirs until the bridge makes one).
    pub async fn remove(&self, id: &OutlineUserId) {
        self.change(|ids| ids.remove(id)).await
    }

    async fn change(&self, edit: impl FnOnce(&mut BTreeSet<OutlineUserId>) -> bool) {
        let mut ids = self.ids.lock().await;
        if !edit(&mut ids) {
            return;
        }
        let Some(path) = &self.path else { return };
        let (path, snapshot) = (path.clone(), ids.clone());
        let written = tokio::task::spawn_blocking(move || write_atomically(&path, &snapshot)).await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "could not write the record in STATE_DIR; whom the bridge suspended is kept in memory only until the next restart")
            }
            Err(e) => tracing::error!(error = %e, "writing the record in STATE_DIR did not finish"),
        }
    }
}

/// Writes the whole record next to its final place, flushes it, then renames it over the old one: a crash
/// leaves either the old record or the new one, never half of one.
fn write_atomically(path: &Path, ids: &BTreeSet<OutlineUserId>) -> std::io::Result<()> {
    let body = serde_json::to_vec_pretty(&RecordFile {
        suspended_by_bridge: ids.clone(),
    })?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&body)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> OutlineUserId {
        OutlineUserId::new(format!("00000000-0000-4000-8000-{n:012}"))
    }

    #[tokio::test]
    async fn the_record_survives_a_restart_and_refuses_a_foreign_file() {
        let dir = std::env::temp_dir().join(format!("bridge-record-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("state.json");
        let _ = std::fs::remove_file(&path);

        let record = SuspensionRecord::open(&path).expect("a missing file is an empty record");
        record.insert(&id(1)).await;
        record.insert(&id(2)).await;
        record.remove(&id(1)).await;
        drop(record);

        let again = SuspensionRecord::open(&path).expect("reopens");
        assert!(!again.contains(&id(1)).await);
        assert!(again.contains(&id(2)).await);

        std::fs::write(&path, b"{\"something\": \"else\"}").expect("write");
        let err = SuspensionRecord::open(&path)
            .err()
            .expect("a file the bridge did not write is refused");
        assert!(err.to_string().contains("STATE_DIR"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
