//! A small JSON document the bridge must not forget, kept in `STATE_DIR` and shared safely between `serve` and
//! a `reconcile` run from the CLI; in memory without `STATE_DIR`.
//!
//! Every change takes an exclusive lock on a companion file, reads the document as it is on disk, applies only
//! its own edit, and writes the whole document to a file of this process's own before renaming it into place:
//! no process overwrites another's entries, and a crash (even `kill -9`) leaves the old document or the new
//! one, never half of each. Reads go to the file too, so each process sees the other's changes.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::Mutex;

#[derive(Debug, thiserror::Error)]
#[error("STATE_DIR {path}: {message}")]
pub struct RecordError {
    path: String,
    message: String,
}

pub struct StateFile<T> {
    path: Option<PathBuf>,
    /// The document itself without `STATE_DIR`; with it, only a guard that keeps this process's own changes in
    /// order (the file lock orders them with other processes).
    memory: Mutex<T>,
}

impl<T> StateFile<T>
where
    T: Serialize + DeserializeOwned + Default + Clone + Send + 'static,
{
    pub fn in_memory() -> StateFile<T> {
        StateFile {
            path: None,
            memory: Mutex::new(T::default()),
        }
    }

    /// The document kept at `path`; a file that does not exist yet is an empty document. A file that cannot
    /// be read or parsed stops the start-up: going on without it would forget what it holds.
    pub fn open(path: &Path) -> Result<StateFile<T>, RecordError> {
        read_file::<T>(path).map_err(|message| error(path, message))?;
        Ok(StateFile {
            path: Some(path.to_path_buf()),
            memory: Mutex::new(T::default()),
        })
    }

    pub fn is_persistent(&self) -> bool {
        self.path.is_some()
    }

    /// Rewrites the document under its lock, so that `serve` finds a directory it cannot write to at
    /// start-up, not at the first change. `reconcile --dry-run` and `check` never write.
    pub fn check_writable(&self) -> Result<(), RecordError> {
        match &self.path {
            Some(path) => change_file::<T, ()>(path, |_| ((), true)).map_err(|m| error(path, m)),
            None => Ok(()),
        }
    }

    /// The document as it is now. An unreadable file is an error for the caller to weigh.
    pub async fn read(&self) -> Result<T, RecordError> {
        let memory = self.memory.lock().await;
        let Some(path) = &self.path else {
            return Ok(memory.clone());
        };
        let path = path.clone();
        match tokio::task::spawn_blocking({
            let path = path.clone();
            move || read_file::<T>(&path)
        })
        .await
        {
            Ok(result) => result.map_err(|m| error(&path, m)),
            Err(e) => Err(error(&path, e.to_string())),
        }
    }

    /// Applies `edit` to the document as it is now, and keeps the result when `edit` says it changed
    /// anything. Returns what `edit` returned.
    pub async fn change<R: Send + 'static>(
        &self,
        edit: impl FnOnce(&mut T) -> (R, bool) + Send + 'static,
    ) -> Result<R, RecordError> {
        let mut memory = self.memory.lock().await;
        let Some(path) = &self.path else {
            return Ok(edit(&mut memory).0);
        };
        let path = path.clone();
        match tokio::task::spawn_blocking({
            let path = path.clone();
            move || change_file(&path, edit)
        })
        .await
        {
            Ok(result) => result.map_err(|m| error(&path, m)),
            Err(e) => Err(error(&path, e.to_string())),
        }
    }
}

fn error(path: &Path, message: String) -> RecordError {
    RecordError {
        path: path.display().to_string(),
        message,
    }
}

fn read_file<T: DeserializeOwned + Default>(path: &Path) -> Result<T, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice::<T>(&bytes)
            .map_err(|e| format!("not a record the bridge wrote: {e}")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(e.to_string()),
    }
}

/// Under an exclusive lock on `<file>.lock`: reads the document as it is on disk, applies `edit`, and when it
/// changed anything writes the whole document to a file of this process's own, flushed, then renamed over the
/// old one.
fn change_file<T, R>(path: &Path, edit: impl FnOnce(&mut T) -> (R, bool)) -> Result<R, String>
where
    T: Serialize + DeserializeOwned + Default,
{
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
    let mut doc = read_file::<T>(path)?;
    let (result, changed) = edit(&mut doc);
    if !changed && path.exists() {
        return Ok(result);
    }
    let body = serde_json::to_vec_pretty(&doc).map_err(|e| e.to_string())?;
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
    written.map_err(|e| format!("cannot be written: {e}"))?;
    Ok(result)
    // The lock is released when `lock` is dropped.
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}
