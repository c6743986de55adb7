//! The embedded store in `STATE_DIR`: one SQLite file (`bridge.db`) through sqlx, migrated at start.
//!
//! Everything outside this folder talks to it through [`Store`] and [`scim::ScimWrite`], never through SQL, so a
//! PostgreSQL backend for several replicas (sqlx speaks both) is a change inside this folder.
//!
//! Durability: the journal is a write-ahead log with `synchronous=FULL`, so a transaction that committed
//! survives a `kill -9` and a power cut alike, and one that did not leaves nothing behind. Writers begin with
//! `BEGIN IMMEDIATE`, so two writers (the server and a CLI `reconcile`, or two SCIM requests) queue on the
//! database lock instead of failing half-way through an upgrade from reader to writer.

pub mod scim;
pub mod time;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

/// The file's name in `STATE_DIR`.
pub const FILE_NAME: &str = "bridge.db";

/// How long a writer waits for another process's transaction before it gives up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections: SQLite has one writer at a time, and reads in WAL mode do not wait for it.
const MAX_CONNECTIONS: u32 = 4;

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

/// The open store. Cloning shares the pool.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    path: PathBuf,
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
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
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
        Ok(Store { pool, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A write transaction that holds the database's write lock from its first statement.
    pub async fn begin_write(&self) -> Result<scim::ScimWrite, StoreError> {
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok(scim::ScimWrite::new(tx))
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}
