//! The embedded store in `STATE_DIR`: one SQLite file (`bridge.db`) through sqlx, migrated at start.
//!
//! Everything outside this folder talks to it through [`Store`] and [`StoreWrite`], never through SQL, so a
//! PostgreSQL backend for several replicas (sqlx speaks both) is a change inside this folder.
//!
//! Durability: the journal is a write-ahead log with `synchronous=NORMAL`. A transaction that committed is in
//! the log before the answer goes out, so it survives the process being killed (`kill -9`, an OOM kill, a
//! panic) at any moment, and one that did not commit leaves nothing behind: SQLite's WAL guarantees both. The
//! log is synced to disk at each checkpoint rather than at each commit, so only a power cut or a kernel crash
//! can roll back the last commits (never to a half-written state). That is the trade SQLite documents for
//! WAL mode; a sync per commit would cost every SCIM request a disk flush (docs/src/benchmarks.md, SCIM
//! intake). The identity provider's next full sync re-sends memberships in any case.
//!
//! Writers: one at a time in this process, on a connection of their own (not the readers' pool: taking and
//! giving back a pooled connection cost each write as much as its statements), queued in order on an async
//! lock, then `BEGIN IMMEDIATE`, so a second process (a CLI `reconcile`) queues on the database lock instead of
//! failing half-way through an upgrade from reader to writer; SQLite's busy handler waits for it, up to
//! `BUSY_TIMEOUT`.

pub mod document;
pub mod remembered;
pub mod scim;
pub mod state;
pub mod time;

pub use document::{RecordError, StateDocument};
pub use remembered::Remembered;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use std::sync::Arc;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, SqlitePool};
use tokio::sync::{Mutex, OwnedMutexGuard};

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
/// everything in it is copied, taking the writers' turn so that no request waits on it. Ends when the pool is
/// closed.
async fn checkpoints(pool: SqlitePool, writer: Arc<Mutex<WriterConn>>) {
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
            let mut turn = writer.lock().await;
            roll_back(&mut turn).await;
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_all(&mut turn.conn)
                .await
            {
                tracing::debug!(error = %e, "store log not cut back");
            }
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
    #[error("the store holds a row it cannot read: {0}")]
    Corrupt(String),
}

/// The open store. Cloning shares the pool and the writers' lock.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    path: PathBuf,
    /// The writers' connection: writers in this process take turns on it, in order, instead of polling
    /// SQLite's lock.
    writer: Arc<Mutex<WriterConn>>,
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
        let conn = options.connect().await.map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        let writer = Arc::new(Mutex::new(WriterConn { conn, open: false }));
        tokio::spawn(checkpoints(pool.clone(), writer.clone()));
        Ok(Store { pool, path, writer })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A write transaction that holds the database's write lock from its first statement, and this
    /// process's writers' turn until it commits or is dropped.
    pub async fn begin_write(&self) -> Result<StoreWrite, StoreError> {
        let mut turn = self.writer.clone().lock_owned().await;
        roll_back(&mut turn).await;
        // Marked open before `BEGIN` is sent: sqlx's worker runs a statement even when the future that sent
        // it is dropped (a request cancelled while waiting for another process's lock), and whatever `BEGIN`
        // did is then rolled back by the dropped write below.
        turn.open = true;
        let mut write = StoreWrite {
            tx: WriterTurn(turn),
            committed: false,
        };
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *write.tx)
            .await?;
        Ok(write)
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// The writers' connection, and whether a transaction is open on it (one dropped without a commit, until it
/// is rolled back).
struct WriterConn {
    conn: SqliteConnection,
    open: bool,
}

/// Ends a transaction a writer may have left open (dropped without committing, or cancelled mid-statement).
/// SQLite may have ended it already (a `COMMIT` that ran after its caller went away, an I/O error): "no
/// transaction is active" is the expected answer then. Any other failure leaves the transaction to the next
/// `BEGIN`, which then fails and is dropped, and so rolled back again.
async fn roll_back(turn: &mut WriterConn) {
    if !turn.open {
        return;
    }
    turn.open = false;
    if let Err(e) = sqlx::query("ROLLBACK").execute(&mut turn.conn).await {
        if !e.to_string().contains("no transaction is active") {
            tracing::warn!(error = %e, "a store transaction could not be rolled back");
        }
    }
}

/// The writers' turn: the connection, for this transaction's statements.
struct WriterTurn(OwnedMutexGuard<WriterConn>);

impl std::ops::Deref for WriterTurn {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.0.conn
    }
}

impl std::ops::DerefMut for WriterTurn {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.0.conn
    }
}

/// One transaction's writes (a SCIM request, a change to the bridge's state). Dropped without
/// [`StoreWrite::commit`], it rolls back: nothing half-done stays.
pub struct StoreWrite {
    tx: WriterTurn,
    committed: bool,
}

impl StoreWrite {
    /// A failed `COMMIT` leaves the transaction to the drop, which rolls it back.
    pub async fn commit(mut self) -> Result<(), StoreError> {
        sqlx::query("COMMIT").execute(&mut *self.tx).await?;
        self.tx.0.open = false;
        self.committed = true;
        Ok(())
    }
}

/// A transaction dropped half-way (an error, a request cancelled) is rolled back at once, off the dropping
/// task, so that it never holds SQLite's write lock against another process; the next writer here waits for it.
impl Drop for StoreWrite {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        let writer = OwnedMutexGuard::mutex(&self.tx.0).clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { roll_back(&mut *writer.lock().await).await });
        }
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

    /// After reads of every kind, nothing holds a snapshot: a checkpoint copies the whole log.
    #[tokio::test]
    async fn reads_leave_nothing_open_and_a_checkpoint_copies_everything() {
        let dir = std::env::temp_dir().join(format!("store-checkpoint-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let store = Store::open(&dir).await.expect("opens");
        for i in 0..50 {
            let mut tx = store.begin_write().await.expect("begins");
            tx.insert_user(&format!("id{i}"), &fields(&format!("u{i}")), "now")
                .await
                .expect("inserts");
            tx.commit().await.expect("commits");
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

    /// A write dropped half-way leaves nothing, and does not keep another process from writing.
    #[tokio::test]
    async fn a_dropped_write_rolls_back_and_frees_the_lock() {
        let dir = std::env::temp_dir().join(format!("store-drop-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let store = Store::open(&dir).await.expect("opens");
        let other = Store::open(&dir).await.expect("a second process opens");
        let mut tx = store.begin_write().await.expect("begins");
        tx.insert_user("half", &fields("half"), "now")
            .await
            .expect("inserts");
        drop(tx);
        let started = std::time::Instant::now();
        let mut tx = other.begin_write().await.expect("the other process writes");
        assert!(
            started.elapsed() < BUSY_TIMEOUT / 2,
            "not held until a timeout"
        );
        tx.insert_user("whole", &fields("whole"), "now")
            .await
            .expect("inserts");
        tx.commit().await.expect("commits");
        assert!(store.user("half").await.expect("reads").is_none());
        assert!(store.user("whole").await.expect("reads").is_some());
        let mut tx = store
            .begin_write()
            .await
            .expect("this process writes again");
        tx.insert_user("again", &fields("again"), "now")
            .await
            .expect("inserts");
        tx.commit().await.expect("commits");
    }

    /// A `COMMIT` that ran after its caller went away (sqlx runs a statement sent by a dropped future): the
    /// drop's rollback finds no transaction, and the next writer goes on; what was committed stays.
    #[tokio::test]
    async fn a_commit_whose_caller_went_away_does_not_wedge_the_writers() {
        let dir = std::env::temp_dir().join(format!("store-wedge-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let store = Store::open(&dir).await.expect("opens");
        let mut tx = store.begin_write().await.expect("begins");
        tx.insert_user("kept", &fields("kept"), "now")
            .await
            .expect("inserts");
        sqlx::query("COMMIT")
            .execute(&mut *tx.tx)
            .await
            .expect("commits behind the writer's back");
        drop(tx);
        for name in ["next", "and-next"] {
            let mut tx = store.begin_write().await.expect("the writers go on");
            tx.insert_user(name, &fields(name), "now")
                .await
                .expect("inserts");
            tx.commit().await.expect("commits");
        }
        for name in ["kept", "next", "and-next"] {
            assert!(store.user(name).await.expect("reads").is_some(), "{name}");
        }
    }

    /// A log that a burst made large is cut back by the timer once it is copied.
    #[tokio::test]
    async fn a_large_log_is_cut_back() {
        let dir = std::env::temp_dir().join(format!("store-truncate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
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
            let mut tx = store.begin_write().await.expect("begins");
            let mut f = fields(&format!("u{i}"));
            f.body = format!("{{\"pad\": \"{big}\"}}");
            tx.insert_user(&format!("id{i}"), &f, "now")
                .await
                .expect("inserts");
            tx.commit().await.expect("commits");
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
