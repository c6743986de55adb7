//! Whom the bridge suspended. A person re-activated in Authentik is activated in Outline again only if the
//! bridge suspended them; a suspension made by hand stays. Outline cannot answer "who suspended this
//! account": its audit log (`events.list {auditLog: true}`) is refused to every key on a self-hosted server,
//! and the activity events it does list leave suspensions out (docs/src/upstream/outline.md §6.8). So the bridge
//! keeps its own record.
//!
//! The record also keeps the suspension guard's state: the suspensions made in the last hour
//! (`MAX_SUSPENSIONS`, one allowance for pushes, passes and the CLI) and whom the guard held back.
//!
//! With `STATE_DIR` the record is a document in the store there, shared safely by `serve` and a `reconcile` run
//! from the CLI (`store/document.rs`). Without it the record lives in memory, and after a restart everyone the bridge
//! had suspended counts as suspended by hand: re-activating them in Authentik leaves them suspended until an
//! admin activates them in Outline. The bridge never activates anyone wrongly either way. The hour's
//! allowance and the held list then start afresh too.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::domain::OutlineUserId;
use crate::sinks::outline::invite_window::{UnixMs, WindowLog, WindowRule};
use crate::store::{RecordError, StateDocument, Store};

pub struct SuspensionRecord {
    file: StateDocument<RecordFile>,
}

#[derive(Serialize, Deserialize, Default, Clone)]
struct RecordFile {
    /// Outline user ids the bridge suspended and has not activated since.
    suspended_by_bridge: BTreeSet<OutlineUserId>,
    /// Outline user ids the suspension guard held back: they wait for `reconcile --force`, whatever the hour
    /// allows later, and leave when they no longer need suspending.
    #[serde(default)]
    held_by_guard: BTreeSet<OutlineUserId>,
    /// The suspensions made without `--force` in the last hour, by pushes and passes alike (`MAX_SUSPENSIONS`).
    #[serde(default)]
    suspensions: WindowLog,
}

/// The record as read once for a whole plan.
#[derive(Debug, Clone, Default)]
pub struct RecordSnapshot {
    pub suspended_by_bridge: BTreeSet<OutlineUserId>,
    pub held_by_guard: BTreeSet<OutlineUserId>,
}

impl SuspensionRecord {
    /// The record's name in the store, and the JSON file an earlier version kept it in.
    pub const NAME: &'static str = "suspended-by-bridge";
    pub const FILE_NAME: &'static str = "suspended-by-bridge.json";

    pub fn in_memory() -> SuspensionRecord {
        SuspensionRecord {
            file: StateDocument::in_memory(),
        }
    }

    /// The record kept in `store` (empty at first), with the file of an earlier version in `dir` imported. A
    /// record that cannot be read stops the start-up: going on without it would forget whom to activate.
    pub async fn open(
        store: &Store,
        dir: &Path,
        import: bool,
    ) -> Result<SuspensionRecord, RecordError> {
        Ok(SuspensionRecord {
            file: StateDocument::open(store, Self::NAME, &dir.join(Self::FILE_NAME), import)
                .await?,
        })
    }

    /// The JSON file of an earlier version in `dir`, read into memory.
    pub fn from_file(dir: &Path) -> Result<SuspensionRecord, RecordError> {
        Ok(SuspensionRecord {
            file: StateDocument::from_file(&dir.join(Self::FILE_NAME))?,
        })
    }

    pub fn is_persistent(&self) -> bool {
        self.file.is_persistent()
    }

    pub async fn check_writable(&self) -> Result<(), RecordError> {
        self.file.check_writable().await
    }

    /// The record as it is now, read once for a whole plan. An unreadable file reads as empty: "not by the
    /// bridge", which only ever leaves someone suspended.
    pub async fn snapshot(&self) -> RecordSnapshot {
        match self.file.read().await {
            Ok(f) => RecordSnapshot {
                suspended_by_bridge: f.suspended_by_bridge,
                held_by_guard: f.held_by_guard,
            },
            Err(e) => {
                tracing::error!(error = %e, "cannot read the record in STATE_DIR; treating suspended accounts as suspended by hand");
                RecordSnapshot::default()
            }
        }
    }

    /// Records a suspension the bridge made (or may have made: see the caller). A failed write is logged:
    /// the account then only stays suspended when the person is re-activated.
    pub async fn insert(&self, id: &OutlineUserId) {
        let id = id.clone();
        self.change(move |f| {
            let held = f.held_by_guard.remove(&id);
            f.suspended_by_bridge.insert(id) | held
        })
        .await
    }

    /// Forgets an account: activated by the bridge, or found active (an admin activated it by hand, so a
    /// later suspension is theirs until the bridge makes one).
    pub async fn remove(&self, id: &OutlineUserId) {
        let id = id.clone();
        self.change(move |f| f.suspended_by_bridge.remove(&id))
            .await
    }

    /// Takes one suspension from the hour's allowance, shared by pushes, passes and the CLI. `None` when the
    /// allowance is spent, or when the record cannot be written: a suspension the record cannot count is not
    /// made.
    pub async fn take_allowance(&self, rule: WindowRule, now: UnixMs) -> Option<UnixMs> {
        let taken = self
            .file
            .change(move |f| {
                let taken = f.suspensions.take(rule, now);
                (taken, taken)
            })
            .await;
        match taken {
            Ok(true) => Some(now),
            Ok(false) => None,
            Err(e) => {
                tracing::error!(error = %e, "cannot count a suspension in STATE_DIR; it is held back");
                None
            }
        }
    }

    /// Gives back what `take_allowance` took, for a suspension Outline refused.
    pub async fn give_back(&self, at: UnixMs) {
        let _ = self
            .file
            .change(move |f| {
                f.suspensions.give_back(at);
                ((), true)
            })
            .await;
    }

    /// What the hour's allowance has left, for a dry run.
    pub async fn allowance_left(&self, rule: WindowRule, now: UnixMs) -> usize {
        match self.file.read().await {
            Ok(mut f) => f.suspensions.available(rule, now),
            Err(_) => 0,
        }
    }

    /// Adds the accounts the guard held back and drops those that no longer need suspending (`settled`),
    /// and returns how many are held now. On an unwritable record, the held ones count as still held.
    pub async fn hold(&self, held: Vec<OutlineUserId>, settled: Vec<OutlineUserId>) -> usize {
        let count = held.len();
        let result = self
            .file
            .change(move |f| {
                let before = f.held_by_guard.clone();
                for id in &settled {
                    f.held_by_guard.remove(id);
                }
                f.held_by_guard.extend(held);
                let changed = f.held_by_guard != before;
                (f.held_by_guard.len(), changed)
            })
            .await;
        match result {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "could not update the record in STATE_DIR");
                count
            }
        }
    }

    async fn change(&self, edit: impl FnOnce(&mut RecordFile) -> bool + Send + 'static) {
        if let Err(e) = self.file.change(move |f| ((), edit(f))).await {
            tracing::error!(error = %e, "could not update the record in STATE_DIR; a person re-activated in Authentik may stay suspended");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn id(n: u32) -> OutlineUserId {
        OutlineUserId::new(format!("00000000-0000-4000-8000-{n:012}"))
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bridge-record-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    async fn open(dir: &Path) -> Result<SuspensionRecord, RecordError> {
        let store = Store::open(dir).await.expect("store");
        SuspensionRecord::open(&store, dir, true).await
    }

    #[tokio::test]
    async fn the_record_survives_a_restart() {
        let dir = scratch("restart");
        let record = open(&dir).await.expect("a new store is an empty record");
        record.insert(&id(1)).await;
        record.insert(&id(2)).await;
        record.remove(&id(1)).await;
        drop(record);

        let again = open(&dir).await.expect("reopens");
        assert!(!again.snapshot().await.suspended_by_bridge.contains(&id(1)));
        assert!(again.snapshot().await.suspended_by_bridge.contains(&id(2)));
    }

    /// The JSON file of an earlier version is imported once and renamed; one the bridge did not write stops
    /// the start-up and stays where it is.
    #[tokio::test]
    async fn an_earlier_versions_file_is_imported_once_and_a_foreign_one_refused() {
        let dir = scratch("import");
        let file = dir.join(SuspensionRecord::FILE_NAME);
        std::fs::write(
            &file,
            format!(
                "{{\"suspended_by_bridge\": [\"{}\"], \"held_by_guard\": [\"{}\"]}}",
                id(1),
                id(2)
            ),
        )
        .expect("write");
        let record = open(&dir).await.expect("imports");
        let snap = record.snapshot().await;
        assert!(snap.suspended_by_bridge.contains(&id(1)) && snap.held_by_guard.contains(&id(2)));
        assert!(!file.exists() && dir.join("suspended-by-bridge.json.imported").exists());
        record.remove(&id(1)).await;
        drop(record);

        // A file put back (an old version started once more) never overwrites what the store has learned since.
        std::fs::copy(dir.join("suspended-by-bridge.json.imported"), &file).expect("copy");
        let again = open(&dir).await.expect("reopens");
        assert!(!again.snapshot().await.suspended_by_bridge.contains(&id(1)));
        assert!(!file.exists());

        let dir = scratch("foreign");
        let file = dir.join(SuspensionRecord::FILE_NAME);
        std::fs::write(&file, b"{\"suspended_by_bridge\": 3}").expect("write");
        let err = open(&dir)
            .await
            .err()
            .expect("a file the bridge did not write is refused");
        assert!(err.to_string().contains("STATE_DIR"), "{err}");
        assert!(file.exists(), "left for the operator to look at");
    }

    /// `serve` and a CLI `reconcile` on one STATE_DIR (two stores, as two processes open it): neither loses the
    /// other's entries.
    #[tokio::test]
    async fn two_processes_sharing_the_record_keep_each_others_entries() {
        let dir = scratch("shared");
        let serve = open(&dir).await.expect("opens");
        let cli = open(&dir).await.expect("opens");
        serve.insert(&id(1)).await;
        cli.insert(&id(2)).await;
        serve.insert(&id(3)).await;
        cli.remove(&id(3)).await;
        for r in [&serve, &cli] {
            let ids = r.snapshot().await.suspended_by_bridge;
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
        assert_eq!(
            serve.snapshot().await.suspended_by_bridge.len(),
            32,
            "every entry of both kept"
        );
    }
}
