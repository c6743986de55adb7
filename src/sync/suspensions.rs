//! Whom the bridge suspended. A person re-activated in Authentik is activated in Outline again only if the
//! bridge suspended them; a suspension made by hand stays. Outline cannot answer "who suspended this
//! account": its audit log (`events.list {auditLog: true}`) is refused to every key on a self-hosted server,
//! and the activity events it does list leave suspensions out (docs/upstream/outline.md §6.8). So the bridge
//! keeps its own record.
//!
//! With `STATE_DIR` the record is a small JSON file there. `serve` and a `reconcile` run from the CLI may
//! share it, so every change takes an exclusive lock on a companion file, reads the record as it is on
//! disk, applies only its own change, and writes the whole record next to it before renaming it into place:
//! no process overwrites another's entries, and a crash leaves the old record or the new one. Reads go to
//! the file too. Without `STATE_DIR` the record lives in memory, and after a restart everyone the bridge had
//! suspended counts as suspended by hand: re-activating them in Authentik leaves them suspended until an
//! admin activates them in Outline. The bridge never activates anyone wrongly either way.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::domain::OutlineUserId;

pub struct SuspensionRecord {
    path: Option<PathBuf>,
    /// The record itself without `STATE_DIR`; with it, only a guard that keeps this process's own changes
    /// in order (the file lock orders them with other processes).
    ids: Mutex<BTreeSet<OutlineUserId>>,
}

#[derive(Serialize, Deserialize, Default)]
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

    /// The record kept at `path`; a file that does not exist yet is an empty record. A file that cannot be
    /// read or parsed stops the start-up: going on without it would forget whom to activate.
    pub fn open(path: &Path) -> Result<SuspensionRecord, RecordError> {
        read_file(path).map_err(|message| RecordError {
            path: path.display().to_string(),
            message,
        })?;
        Ok(SuspensionRecord {
            path: Some(path.to_path_buf()),
            ids: Mutex::new(BTreeSet::new()),
        })
    }

    /// Rewrites the record under its lock, so that `serve` finds a directory it cannot write to at start-up,
    /// not at the first suspension. `reconcile --dry-run` and `check` never write.
    pub fn check_writable(&self) -> Result<(), RecordError> {
        match &self.path {
            Some(path) => change_file(path, |_| true).map_err(|message| RecordError {
                path: path.display().to_string(),
                message,
            }),
            None => Ok(()),
        }
    }

    /// The record as it is now, read once for a whole plan. An unreadable file reads as empty: "not by the
    /// bridge", which only ever leaves someone suspended.
    pub async fn snapshot(&self) -> BTreeSet<OutlineUserId> {
        let ids = self.ids.lock().await;
        let Some(path) = &self.path else {
            return ids.clone();
        };
        let path = path.clone();
        match tokio::task::spawn_blocking(move || read_file(&path)).await {
            Ok(Ok(file)) => file.suspended_by_bridge,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot read the record in STATE_DIR; treating suspended accounts as suspended by hand");
                BTreeSet::new()
            }
            Err(e) => {
                tracing::error!(error = %e, "reading the record in STATE_DIR did not finish");
                BTreeSet::new()
            }
        }
    }

    /// Records a suspension the bridge made (or may have made: see the caller). A failed write is logged:
    /// the account then only stays suspended when the person is re-activated.
    pub async fn insert(&self, id: &OutlineUserId) {
        let id = id.clone();
        self.change(move |ids| ids.insert(id)).await
    }

    /// Forgets an account: activated by the bridge, or found active (an admin activated it by hand, so a
    /// later suspension is theirs until the bridge makes one).
    pub async fn remove(&self, id: &OutlineUserId) {
        let id = id.clone();
        self.change(move |ids| ids.remove(&id)).await
    }

    async fn change(
        &self,
        edit: impl FnOnce(&mut BTreeSet<OutlineUserId>) -> bool + Send + 'static,
    ) {
        let mut ids = self.ids.lock().await;
        let Some(path) = &self.path else {
            edit(&mut ids);
            return;
        };
        let path = path.clone();
        match tokio::task::spawn_blocking(move || change_file(&path, edit)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "could not update the record in STATE_DIR; a person re-activated in Authentik may stay suspended")
            }
            Err(e) => {
                tracing::error!(error = %e, "updating the record in STATE_DIR did not finish")
            }
        }
    }
}

fn read_file(path: &Path) -> Result<RecordFile, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice::<RecordFile>(&bytes)
            .map_err(|e| format!("not a record the bridge wrote: {e}")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RecordFile::default()),
        Err(e) => Err(e.to_string()),
    }
}

/// Under an exclusive lock on `<record>.lock`: reads the record as it is on disk, applies `edit`, and when
/// it changed anything writes the whole record to a file of this process's own, flushed, then renamed over
/// the old one.
fn change_file(
    path: &Path,
    edit: impl FnOnce(&mut BTreeSet<OutlineUserId>) -> bool,
) -> Result<(), String> {
    // flock needs only a readable file: one another user created (a CLI run as root) still serves.
    let lock_path = with_suffix(path, ".lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .or_else(|_| File::open(&lock_path))
        .map_err(|e| format!("cannot be locked: {e}"))?;
    lock.lock().map_err(|e| format!("cannot be locked: {e}"))?;
    let mut file = read_file(path)?;
    if !edit(&mut file.suspended_by_bridge) && path.exists() {
        return Ok(());
    }
    let body = serde_json::to_vec_pretty(&file).map_err(|e| e.to_string())?;
    let tmp = with_suffix(path, &format!(".{}.tmp", std::process::id()));
    let written = (|| {
        let mut out = File::create(&tmp)?;
        out.write_all(&body)?;
        out.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself reaches the disk with the directory's own flush (best effort: not every
        // filesystem lets a directory be opened for it).
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(dir) = File::open(dir) {
                let _ = dir.sync_all();
            }
        }
        Ok::<(), std::io::Error>(())
    })();
    written.map_err(|e| format!("cannot be written: {e}"))
    // The lock is released when `lock` is dropped.
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> OutlineUserId {
        OutlineUserId::new(format!("00000000-0000-4000-8000-{n:012}"))
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bridge-record-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir.join(SuspensionRecord::FILE_NAME)
    }

    #[tokio::test]
    async fn the_record_survives_a_restart_and_refuses_a_foreign_file() {
        let path = scratch("restart");
        let record = SuspensionRecord::open(&path).expect("a missing file is an empty record");
        record.insert(&id(1)).await;
        record.insert(&id(2)).await;
        record.remove(&id(1)).await;
        drop(record);

        let again = SuspensionRecord::open(&path).expect("reopens");
        assert!(!again.snapshot().await.contains(&id(1)));
        assert!(again.snapshot().await.contains(&id(2)));

        std::fs::write(&path, b"{\"something\": \"else\"}").expect("write");
        let err = SuspensionRecord::open(&path)
            .err()
            .expect("a file the bridge did not write is refused");
        assert!(err.to_string().contains("STATE_DIR"), "{err}");
    }

    /// `serve` and a CLI `reconcile` on one STATE_DIR: neither loses the other's entries.
    #[tokio::test]
    async fn two_processes_sharing_the_record_keep_each_others_entries() {
        let path = scratch("shared");
        let serve = SuspensionRecord::open(&path).expect("opens");
        let cli = SuspensionRecord::open(&path).expect("opens");
        serve.insert(&id(1)).await;
        cli.insert(&id(2)).await;
        serve.insert(&id(3)).await;
        cli.remove(&id(3)).await;
        for r in [&serve, &cli] {
            let ids = r.snapshot().await;
            assert!(ids.contains(&id(1)) && ids.contains(&id(2)));
            assert!(!ids.contains(&id(3)));
        }
        let ids: Vec<OutlineUserId> = (10..40).map(id).collect();
        let in_parallel: Vec<_> = ids
            .iter()
            .enumerate()
            .map(|(n, i)| {
                if n % 2 == 0 {
                    serve.insert(i)
                } else {
                    cli.insert(i)
                }
            })
            .collect();
        futures::future::join_all(in_parallel).await;
        assert_eq!(serve.snapshot().await.len(), 32, "every entry of both kept");
    }
}
