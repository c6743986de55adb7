//! The bridge's own memory: rows of one table, `remembered`, each under a kind (the suspension record, the
//! identity map, …) and a key. What a kind holds is its owner's business; this file only reads and writes rows.

use super::{Store, StoreError, StoreWrite};

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

impl StoreWrite {
    /// One row's value, read inside the transaction (so that an edit of it is one step).
    pub async fn remembered_one(
        &mut self,
        kind: &str,
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT value FROM remembered WHERE kind = ? AND key = ?")
                .bind(kind)
                .bind(key)
                .fetch_all(&mut *self.tx)
                .await?;
        Ok(rows.into_iter().next().map(|(v,)| v))
    }

    pub async fn remember(&mut self, kind: &str, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO remembered (kind, key, value) VALUES (?, ?, ?)
             ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value",
        )
        .bind(kind)
        .bind(key)
        .bind(value)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    pub async fn forget(&mut self, kind: &str, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM remembered WHERE kind = ? AND key = ?")
            .bind(kind)
            .bind(key)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }
}

/// Rows per statement: 3 parameters each, well under SQLite's limit on parameters.
const ROWS_PER_STATEMENT: usize = 300;

impl StoreWrite {
    /// Writes many rows of one kind: `Some(value)` keeps it, `None` forgets the key.
    pub async fn remember_many(
        &mut self,
        kind: &str,
        rows: &[(String, Option<String>)],
    ) -> Result<(), StoreError> {
        let (kept, gone): (Vec<_>, Vec<_>) = rows.iter().partition(|(_, v)| v.is_some());
        for chunk in kept.chunks(ROWS_PER_STATEMENT) {
            let mut q = sqlx::QueryBuilder::new("INSERT INTO remembered (kind, key, value) ");
            q.push_values(chunk, |mut b, (key, value)| {
                b.push_bind(kind)
                    .push_bind(key.as_str())
                    .push_bind(value.as_deref().unwrap_or_default());
            });
            q.push(" ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value");
            q.build().execute(&mut *self.tx).await?;
        }
        for (key, _) in gone {
            self.forget(kind, key).await?;
        }
        Ok(())
    }
}
