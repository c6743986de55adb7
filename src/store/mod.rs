//! The embedded store in `STATE_DIR`: one SQLite file (`bridge.db`), migrated at start by sqlx.
//!
//! Everything outside this folder talks to it through [`Store`] and [`WriteTx`], never through SQL, so a
//! PostgreSQL backend for several replicas is a change inside this folder: sqlx's reads speak both, and the
//! writer would run the same closures on a PostgreSQL connection.
//!
//! Durability: the journal is a write-ahead log with `synchronous=NORMAL`. A transaction that committed is in
//! the log before the answer goes out, so it survives the process being killed (`kill -9`, an OOM kill, a
//! panic) at any moment, and one that did not commit leaves nothing behind: SQLite's WAL guarantees both. The
//! log is synced to disk at each checkpoint rather than at each commit, so only a power cut or a kernel crash
//! can roll back the last commits (never to a half-written state). That is the trade SQLite documents for
//! WAL mode; a sync per commit would cost every SCIM request a disk flush (docs/src/benchmarks.md, SCIM
//! intake). The identity provider's next full sync re-sends memberships in any case.
//!
//! Writers: one thread with a SQLite connection of its own (`writer.rs`) runs every write of this process,
//! committing the writes that arrive together in one `BEGIN IMMEDIATE` transaction, each in its own savepoint.
//! A second process (a CLI `reconcile`) queues on the database lock; SQLite's busy handler waits for it, up to
//! `BUSY_TIMEOUT`. Reads go through sqlx's pool and, in WAL mode, never wait for the writer.

pub mod document;
pub mod remembered;
pub mod scim;
pub mod state;
pub mod time;
mod writer;

pub use document::{RecordError, StateDocument};
pub use remembered::Remembered;
pub use writer::WriteTx;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use writer::Writer;

/// The file's name in `STATE_DIR`.
pub const FILE_NAME: &str = "bridge.db";

/// How long a writer waits for another process's transaction before it gives up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections: SQLite has one writer at a time, and reads in WAL mode do not wait for it.
const MAX_CONNECTIONS: u32 = 4;

/// How often the write-ahead log is copied back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Log frames (4 KiB each) past which a log fully copied is cut back to nothing.
const TRUNCATE_FRAMES: i64 = 4096;

/// Copies the log into the database now and then, off the requests' path: a checkpoint syncs the disk, and
/// SQLite's own would run inside whichever commit crossed its threshold. `PASSIVE` never blocks a writer or a
/// reader; what it cannot copy now waits for the next turn. A log that a burst made large is cut back once
/// everything in it is copied, by the writer's thread between two batches, so that no request waits on it.
/// Ends when the pool is closed.
async fn checkpoints(pool: SqlitePool, writer: Writer) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !pool.is_closed() {
        tick.tick().await;
        let copied: Result<Vec<(i64, i64, i64)>, _> =
            sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                .fetch_all(&pool)
                .await;
        let (busy, log, done) = match copied.as_deref() {
            Ok([row]) => *row,
            Ok(_) => continue,
            Err(e) => {
                tracing::debug!(error = %e, "store checkpoint skipped");
                continue;
            }
        };
        if busy == 0 && log >= TRUNCATE_FRAMES && done == log {
            writer.cut_back_log();
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store {path} cannot be opened: {source}")]
    Open { path: PathBuf, source: sqlx::Error },
    #[error("the store {path} cannot be migrated: {source}")]
    Migrate {
        path: PathBuf,
        source: sqlx::migrate::MigrateError,
    },
    /// A unique key is already taken (`what` names it, e.g. `userName`).
    #[error("{what} is already taken")]
    Taken { what: &'static str },
    #[error("the store failed: {0}")]
    Database(#[from] sqlx::Error),
    /// A write failed on the writer's connection, or its batch did not commit.
    #[error("the store failed to write: {0}")]
    Write(String),
    #[error("the store holds a row it cannot read: {0}")]
    Corrupt(String),
}

/// The open store. Cloning shares the pool and the writer.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    path: PathBuf,
    writer: Writer,
}

impl Store {
    /// Opens (creating it if needed) `dir/bridge.db` and runs the migrations that have not run yet.
    pub async fn open(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join(FILE_NAME);
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })?
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            // Checkpoints run on a timer of their own (below), never inside a request's commit.
            .pragma("wal_autocheckpoint", "0")
            // A log that grew under a burst is cut back to this size once a checkpoint has emptied it.
            .pragma("journal_size_limit", "16777216");
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options.clone())
            .await
            .map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate {
                path: path.clone(),
                source,
            })?;
        let writer = Writer::start(&path, BUSY_TIMEOUT).map_err(|e| StoreError::Open {
            path: path.clone(),
            source: sqlx::Error::Configuration(e),
        })?;
        tokio::spawn(checkpoints(pool.clone(), writer.clone()));
        Ok(Store { pool, path, writer })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `work` as one write: inside a savepoint of the writer's next transaction, answered once that has
    /// committed. A failed `work` leaves nothing behind, and its error is what the caller gets.
    pub async fn write<T, E>(
        &self,
        work: impl FnOnce(&WriteTx<'_>) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.writer.write(work).await
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        StoreError::Write(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::scim::UserFields;

    fn fields(name: &str) -> UserFields {
        UserFields {
            user_name: name.into(),
            external_id: None,
            display_name: None,
            email: None,
            active: true,
            body: "{}".into(),
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    async fn insert(store: &Store, id: &str, name: &str) -> Result<(), StoreError> {
        let (id, f) = (id.to_string(), fields(name));
        store
            .write(move |tx| tx.insert_user(&id, &f, "now").map(drop))
            .await
    }

    /// After reads of every kind, nothing holds a snapshot: a checkpoint copies the whole log.
    #[tokio::test]
    async fn reads_leave_nothing_open_and_a_checkpoint_copies_everything() {
        let store = Store::open(&scratch("checkpoint")).await.expect("opens");
        for i in 0..50 {
            insert(&store, &format!("id{i}"), &format!("u{i}"))
                .await
                .expect("inserts");
            store.user(&format!("id{i}")).await.expect("reads");
            store.user_by_pk(i + 1).await.expect("reads");
            store.users(None, 0, 10).await.expect("lists");
            store.all_users().await.expect("all");
        }
        let (busy, log, copied): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(store.pool())
            .await
            .expect("row");
        assert_eq!((busy, copied), (0, log), "a reader holds an old snapshot");
    }

    /// Writes sent together share a transaction, each in its own savepoint: one that fails leaves nothing
    /// of itself, and the others in its batch stand.
    #[tokio::test]
    async fn a_failed_write_leaves_nothing_and_the_rest_of_its_batch_stands() {
        let store = Store::open(&scratch("batch")).await.expect("opens");
        let writes = (0..20).map(|i| {
            let store = store.clone();
            async move {
                let (id, f) = (format!("id{i}"), fields(&format!("u{i}")));
                store
                    .write(move |tx| {
                        tx.insert_user(&id, &f, "now")?;
                        if i % 5 == 0 {
                            // Half-way through its own work: the row above must go too.
                            return Err(StoreError::Corrupt(format!("refused {i}")));
                        }
                        Ok(())
                    })
                    .await
            }
        });
        let results = futures::future::join_all(writes).await;
        for (i, result) in results.iter().enumerate() {
            assert_eq!(result.is_ok(), i % 5 != 0, "write {i}: {result:?}");
            let stored = store.user(&format!("id{i}")).await.expect("reads");
            assert_eq!(stored.is_some(), i % 5 != 0, "row {i}");
        }
        // A unique key taken inside a batch is the caller's error, not the batch's.
        let again = insert(&store, "other", "u1").await;
        assert!(
            matches!(again, Err(StoreError::Taken { what: "userName" })),
            "{again:?}"
        );
    }

    /// A write that panics is undone and answered with an error; the writer goes on with the others.
    #[tokio::test]
    async fn a_write_that_panics_is_undone_and_the_writer_goes_on() {
        let store = Store::open(&scratch("panic")).await.expect("opens");
        let f = fields("doomed");
        let panicked = store
            .write(move |tx| -> Result<(), StoreError> {
                tx.insert_user("doomed", &f, "now")?;
                panic!("a bug in a write");
            })
            .await;
        assert!(
            matches!(panicked, Err(StoreError::Write(_))),
            "{panicked:?}"
        );
        assert!(store.user("doomed").await.expect("reads").is_none());
        insert(&store, "after", "after")
            .await
            .expect("the writer goes on");
        assert!(store.user("after").await.expect("reads").is_some());
    }

    /// A write whose caller went away (a request cancelled) still runs whole or not at all, and the writer
    /// goes on; another process can write between this process's batches.
    #[tokio::test]
    async fn a_write_whose_caller_went_away_is_whole_and_the_writer_goes_on() {
        let dir = scratch("cancel");
        let store = Store::open(&dir).await.expect("opens");
        let other = Store::open(&dir).await.expect("a second process opens");
        let cancelled = store.clone();
        let write = tokio::spawn(async move { insert(&cancelled, "gone", "gone").await });
        write.abort();
        let _ = write.await;
        for (store, name) in [(&other, "whole"), (&store, "next"), (&other, "and-next")] {
            insert(store, name, name).await.expect("the writers go on");
        }
        for name in ["whole", "next", "and-next"] {
            assert!(store.user(name).await.expect("reads").is_some(), "{name}");
        }
        if let Some(row) = store.user("gone").await.expect("reads") {
            assert_eq!(row.user_name, "gone", "a write is whole");
        }
    }

    /// A log that a burst made large is cut back by the timer once it is copied.
    #[tokio::test]
    async fn a_large_log_is_cut_back() {
        let dir = scratch("truncate");
        let store = Store::open(&dir).await.expect("opens");
        // A reader holds its snapshot through the burst, so no checkpoint can copy the log past it and the log
        // grows whatever the timer does meanwhile; it lets go once the burst is over.
        let mut reader = store.pool().acquire().await.expect("a connection");
        sqlx::query("BEGIN")
            .execute(&mut *reader)
            .await
            .expect("begins");
        let _: Vec<(i64,)> = sqlx::query_as("SELECT count(*) FROM scim_users")
            .fetch_all(&mut *reader)
            .await
            .expect("reads");
        let big = "x".repeat(3000);
        for i in 0..3000 {
            let mut f = fields(&format!("u{i}"));
            f.body = format!("{{\"pad\": \"{big}\"}}");
            let id = format!("id{i}");
            store
                .write(move |tx| tx.insert_user(&id, &f, "now").map(drop))
                .await
                .expect("inserts");
        }
        let wal = dir.join(format!("{FILE_NAME}-wal"));
        let size = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        assert!(
            size() > (TRUNCATE_FRAMES as u64) * 4096,
            "the burst grew the log: {}",
            size()
        );
        sqlx::query("COMMIT")
            .execute(&mut *reader)
            .await
            .expect("ends");
        drop(reader);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while size() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the log was not cut back: {}",
                size()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
