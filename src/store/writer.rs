//! The store's one writer: a thread of its own holding a SQLite connection, which runs the writes every task
//! queues and commits those that arrived together in one transaction.
//!
//! Why not sqlx for writes: sqlx drives a SQLite connection from a worker thread, one message and one
//! wake-up per statement (about 30 µs each here), and a SCIM request is three to six statements. Eight
//! clients' requests then queued behind each other's round trips, and a request's p99 was 14 times
//! `/healthz`'s (docs/src/benchmarks.md, SCIM intake). Here a write is a closure run on the connection's own
//! thread, so its statements cost what SQLite costs. The writes that arrive while one batch runs go into
//! the next (group commit), each inside a savepoint of its own: one that fails leaves nothing behind and the
//! others stand. Nobody is answered before the commit. A write cannot be cancelled half-way, since it is
//! not a future: it runs to its end, or not at all.
//!
//! Reads stay on sqlx's pool; in WAL mode they never wait for this thread.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use super::StoreError;

/// At most this many writes in one transaction, so that one batch never holds the lock for long.
const MAX_BATCH: usize = 64;

/// What runs on the writer's thread.
enum Job {
    /// A write, given the batch's transaction (or `None` when it could not begin); what it returns is called
    /// with the batch's commit.
    Write(Work),
    /// Cuts the write-ahead log back to nothing, between batches, so that no writer waits on it.
    CutBackLog,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A write's statements, given the batch's transaction (`None`: it could not begin).
type Work = Box<dyn FnOnce(Option<&mut Transaction<'_>>) -> Reply + Send>;

/// Answers a write's caller once its batch has committed (or failed to).
type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;

/// The queue to the writer's thread. The thread ends when the last handle is dropped.
#[derive(Clone)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Opens the writers' connection to `path` (already created and migrated) and starts its thread.
    pub(super) fn start(path: &Path, busy_timeout: Duration) -> Result<Writer, BoxError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(busy_timeout)?;
        // Per connection, as the pool's (see `Store::open`): the same durability, cascading deletes, and
        // checkpoints left to the timer.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA foreign_keys = ON;
             PRAGMA wal_autocheckpoint = 0;
             PRAGMA journal_size_limit = 16777216;",
        )?;
        let (jobs, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run(conn, queue))?;
        Ok(Writer { jobs })
    }

    /// Runs `work` in the next batch, inside a savepoint, and answers after the batch's commit: `work`'s
    /// own result if it committed, else the commit's error. A failed `work` is rolled back to its savepoint.
    pub(super) async fn write<T, E>(
        &self,
        work: impl FnOnce(&WriteTx<'_>) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel::<Result<T, E>>();
        let job = move |tx: Option<&mut Transaction<'_>>| -> Reply {
            // A write that panics is undone (its savepoint rolls back as it unwinds) and answered with an
            // error; the thread, and everyone else's writes, go on.
            let outcome = tx.map(|tx| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| in_savepoint(tx, work)))
                    .unwrap_or_else(|_| {
                        Err(E::from(StoreError::Write(
                            "the write panicked; nothing of it was kept".into(),
                        )))
                    })
            });
            Box::new(move |committed: Result<(), String>| {
                let result = match (committed, outcome) {
                    (Ok(()), Some(outcome)) => outcome,
                    (Err(e), _) => Err(E::from(StoreError::Write(e))),
                    (Ok(()), None) => Err(E::from(StoreError::Write("not run".into()))),
                };
                let _ = answer.send(result);
            })
        };
        self.jobs
            .send(Job::Write(Box::new(job)))
            .map_err(|_| E::from(StoreError::Write("the writer has stopped".into())))?;
        answered
            .await
            .map_err(|_| E::from(StoreError::Write("the writer has stopped".into())))?
    }

    /// Asks the thread to cut the log back between two batches.
    pub(super) fn cut_back_log(&self) {
        let _ = self.jobs.send(Job::CutBackLog);
    }
}

/// `work` inside a savepoint of the batch's transaction: kept if it succeeds, undone if it fails (or if the
/// savepoint itself cannot be taken).
fn in_savepoint<T, E: From<StoreError>>(
    tx: &mut Transaction<'_>,
    work: impl FnOnce(&WriteTx<'_>) -> Result<T, E>,
) -> Result<T, E> {
    let savepoint = tx.savepoint().map_err(|e| E::from(e.into()))?;
    let outcome = work(&WriteTx { conn: &savepoint });
    match outcome {
        Ok(value) => {
            savepoint.commit().map_err(|e| E::from(e.into()))?;
            Ok(value)
        }
        // Dropping the savepoint rolls it back.
        Err(e) => Err(e),
    }
}

/// The thread: takes what is queued, up to `MAX_BATCH`, runs it in one `BEGIN IMMEDIATE` transaction, commits,
/// and answers everyone in it.
fn run(mut conn: Connection, queue: mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut writes = Vec::with_capacity(batch.len());
        let mut cut_back = false;
        for job in batch {
            match job {
                Job::Write(work) => writes.push(work),
                Job::CutBackLog => cut_back = true,
            }
        }
        if !writes.is_empty() {
            commit_batch(&mut conn, writes);
        }
        if cut_back {
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
                tracing::debug!(error = %e, "store log not cut back");
            }
        }
    }
}

fn commit_batch(conn: &mut Connection, writes: Vec<Work>) {
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let message = e.to_string();
            for work in writes {
                work(None)(Err(message.clone()));
            }
            return;
        }
    };
    let replies: Vec<Reply> = writes.into_iter().map(|work| work(Some(&mut tx))).collect();
    // A failed commit is rolled back when `commit` drops the transaction.
    let committed = tx.commit().map_err(|e| e.to_string());
    for reply in replies {
        reply(committed.clone());
    }
}

/// One write's statements, inside its savepoint. The store's files add the statements (`scim.rs`,
/// `state.rs`); nothing outside this folder sees SQL.
pub struct WriteTx<'a> {
    pub(super) conn: &'a Connection,
}

impl WriteTx<'_> {
    /// The rows `sql` gives for `params`, each made by `read`.
    pub(super) fn rows<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        read: impl Fn(&rusqlite::Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut statement = self.conn.prepare_cached(sql)?;
        let mut rows = statement.query(params)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(read(row)?);
        }
        Ok(out)
    }

    /// The first row `sql` gives, if any.
    pub(super) fn first<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        read: impl Fn(&rusqlite::Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let mut statement = self.conn.prepare_cached(sql)?;
        let mut rows = statement.query(params)?;
        rows.next()?.map(read).transpose()
    }
}

/// Whether SQLite refused a row because a unique index already holds its key.
pub(super) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}
