//! The bridge's own memory: rows of one table, `remembered`, each under a kind (the suspension record, the
//! identity map, …) and a key. What a kind holds is its owner's business; this file only reads and writes rows.

use super::{Store, StoreError, WriteTx};

impl Store {
    /// Every row of one kind, as `(key, value)`.
    pub async fn remembered(&self, kind: &str) -> Result<Vec<(String, String)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT key, value FROM remembered WHERE kind = ? ORDER BY key")
                .bind(kind)
                .fetch_all(self.pool())
                .await?,
        )
    }

    /// One row's value.
    pub async fn remembered_one(
        &self,
        kind: &str,
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT value FROM remembered WHERE kind = ? AND key = ?")
                .bind(kind)
                .bind(key)
                .fetch_all(self.pool())
                .await?;
        Ok(rows.into_iter().next().map(|(v,)| v))
    }
}

/// The bridge's rows written on the writer's thread, each change inside its caller's one write.
impl WriteTx<'_> {
    /// One row's value, read inside the write (so that an edit of it is one step).
    pub fn remembered_one(&self, kind: &str, key: &str) -> Result<Option<String>, StoreError> {
        self.first(
            "SELECT value FROM remembered WHERE kind = ? AND key = ?",
            [kind, key],
            |row| Ok(row.get(0)?),
        )
    }

    pub fn remember(&self, kind: &str, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO remembered (kind, key, value) VALUES (?, ?, ?)
                 ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value",
            )?
            .execute([kind, key, value])?;
        Ok(())
    }

    pub fn forget(&self, kind: &str, key: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM remembered WHERE kind = ? AND key = ?")?
            .execute([kind, key])?;
        Ok(())
    }

    /// Writes many rows of one kind: `Some(value)` keeps it, `None` forgets the key.
    pub fn remember_many(
        &self,
        kind: &str,
        rows: &[(String, Option<String>)],
    ) -> Result<(), StoreError> {
        for (key, value) in rows {
            match value {
                Some(value) => self.remember(kind, key, value)?,
                None => self.forget(kind, key)?,
            }
        }
        Ok(())
    }
}
