//! The SCIM tables: users, groups and memberships, as rows. What a SCIM request means is the source's
//! (`source/scim/`); this file only reads and writes rows, in one transaction per request.

use sqlx::{Row, Sqlite};

use super::writer::is_unique_violation;
use super::{Store, StoreError, WriteTx};

// Single rows are read with `fetch_all`, never `fetch_optional`: a statement left before its last step keeps
// its read snapshot open on a pooled connection, and no checkpoint can copy the log past it.

/// A user as stored. `body` is the JSON the identity provider sent, without `id` and `meta`.
#[derive(Debug, Clone)]
pub struct UserRow {
    pub pk: i64,
    pub id: String,
    pub user_name: String,
    pub external_id: Option<String>,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub active: bool,
    pub body: String,
    pub created: String,
    pub modified: String,
    pub version: i64,
}

/// A user's fields as a request sets them; the store adds the key, the times and the version.
#[derive(Debug, Clone)]
pub struct UserFields {
    pub user_name: String,
    pub external_id: Option<String>,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub active: bool,
    pub body: String,
}

/// A group as stored, without its members.
#[derive(Debug, Clone)]
pub struct GroupRow {
    pub id: String,
    pub link_key: String,
    pub display_name: String,
    pub external_id: Option<String>,
    pub body: String,
    pub created: String,
    pub modified: String,
    pub version: i64,
}

#[derive(Debug, Clone)]
pub struct GroupFields {
    pub display_name: String,
    pub external_id: Option<String>,
    pub body: String,
}

/// One member of a group: the person's key and SCIM id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MemberRow {
    pub pk: i64,
    pub id: String,
}

/// Which column an `eq` filter compares; the `*Key` columns hold the value folded to lower case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserColumn {
    Id,
    UserNameKey,
    ExternalId,
    EmailKey,
    DisplayName,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupColumn {
    Id,
    DisplayNameKey,
    ExternalId,
}

impl UserColumn {
    fn sql(self) -> &'static str {
        match self {
            UserColumn::Id => "id",
            UserColumn::UserNameKey => "user_name_key",
            UserColumn::ExternalId => "external_id",
            UserColumn::EmailKey => "email_key",
            UserColumn::DisplayName => "display_name",
        }
    }
}

impl GroupColumn {
    fn sql(self) -> &'static str {
        match self {
            GroupColumn::Id => "id",
            GroupColumn::DisplayNameKey => "display_name_key",
            GroupColumn::ExternalId => "external_id",
        }
    }
}

/// A page of a list: the rows asked for, and how many match in all.
#[derive(Debug)]
pub struct Page<T> {
    pub rows: Vec<T>,
    pub total: i64,
}

const USER_COLUMNS: &str =
    "pk, id, user_name, external_id, display_name, email, active, body, created, modified, version";
const GROUP_COLUMNS: &str =
    "id, link_key, display_name, external_id, body, created, modified, version";

/// A row as either driver gives it: sqlx's for reads on the pool, rusqlite's for the writer's thread, so that
/// one function makes each kind of row.
trait Columns {
    fn int(&self, name: &str) -> Result<i64, StoreError>;
    fn text(&self, name: &str) -> Result<String, StoreError>;
    fn maybe_text(&self, name: &str) -> Result<Option<String>, StoreError>;
}

impl Columns for sqlx::sqlite::SqliteRow {
    fn int(&self, name: &str) -> Result<i64, StoreError> {
        Ok(self.try_get(name)?)
    }
    fn text(&self, name: &str) -> Result<String, StoreError> {
        Ok(self.try_get(name)?)
    }
    fn maybe_text(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(name)?)
    }
}

impl Columns for rusqlite::Row<'_> {
    fn int(&self, name: &str) -> Result<i64, StoreError> {
        Ok(self.get(name)?)
    }
    fn text(&self, name: &str) -> Result<String, StoreError> {
        Ok(self.get(name)?)
    }
    fn maybe_text(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self.get(name)?)
    }
}

fn user_row(row: &impl Columns) -> Result<UserRow, StoreError> {
    Ok(UserRow {
        pk: row.int("pk")?,
        id: row.text("id")?,
        user_name: row.text("user_name")?,
        external_id: row.maybe_text("external_id")?,
        display_name: row.maybe_text("display_name")?,
        email: row.maybe_text("email")?,
        active: row.int("active")? != 0,
        body: row.text("body")?,
        created: row.text("created")?,
        modified: row.text("modified")?,
        version: row.int("version")?,
    })
}

fn group_row(row: &impl Columns) -> Result<GroupRow, StoreError> {
    Ok(GroupRow {
        id: row.text("id")?,
        link_key: row.text("link_key")?,
        display_name: row.text("display_name")?,
        external_id: row.maybe_text("external_id")?,
        body: row.text("body")?,
        created: row.text("created")?,
        modified: row.text("modified")?,
        version: row.int("version")?,
    })
}

fn member_row(row: &impl Columns) -> Result<MemberRow, StoreError> {
    Ok(MemberRow {
        pk: row.int("pk")?,
        id: row.text("id")?,
    })
}

const MEMBERS_SQL: &str = "SELECT u.pk, u.id FROM scim_members m JOIN scim_users u ON u.pk = m.user_pk WHERE m.group_id = ? ORDER BY u.pk";

/// A unique index refused the row: the key it names is taken.
fn taken(e: rusqlite::Error, what: &'static str) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::Taken { what }
    } else {
        e.into()
    }
}

fn fold(value: &str) -> String {
    value.to_lowercase()
}

/// `?, ?, …`: one mark for each of `n` values.
fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// Ids per statement, well under SQLite's limit on parameters.
const IDS_PER_STATEMENT: usize = 500;

/// One SCIM request's writes, on the writer's thread.
impl WriteTx<'_> {
    pub fn insert_user(
        &self,
        id: &str,
        fields: &UserFields,
        now: &str,
    ) -> Result<UserRow, StoreError> {
        let sql = format!(
            "INSERT INTO scim_users (id, user_name, user_name_key, external_id, display_name, email, email_key, active, body, created, modified, version)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1) RETURNING {USER_COLUMNS}"
        );
        let params = rusqlite::params![
            id,
            fields.user_name,
            fold(&fields.user_name),
            fields.external_id,
            fields.display_name,
            fields.email,
            fields.email.as_deref().map(fold),
            fields.active,
            fields.body,
            now,
            now,
        ];
        self.returned(&sql, params, "userName", |row| user_row(row))
    }

    pub fn user(&self, id: &str) -> Result<Option<UserRow>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM scim_users WHERE id = ?");
        self.first(&sql, [id], |row| user_row(row))
    }

    pub fn update_user(
        &self,
        pk: i64,
        fields: &UserFields,
        now: &str,
    ) -> Result<UserRow, StoreError> {
        let sql = format!(
            "UPDATE scim_users SET user_name = ?, user_name_key = ?, external_id = ?, display_name = ?, email = ?, email_key = ?, active = ?, body = ?, modified = ?, version = version + 1
             WHERE pk = ? RETURNING {USER_COLUMNS}"
        );
        let params = rusqlite::params![
            fields.user_name,
            fold(&fields.user_name),
            fields.external_id,
            fields.display_name,
            fields.email,
            fields.email.as_deref().map(fold),
            fields.active,
            fields.body,
            now,
            pk,
        ];
        self.returned(&sql, params, "userName", |row| user_row(row))
    }

    /// Deletes a user and, with them, their memberships.
    pub fn delete_user(&self, pk: i64) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM scim_users WHERE pk = ?")?
            .execute([pk])?;
        Ok(())
    }

    /// The people with these SCIM ids, by id; ids nobody has are left out.
    pub fn users_by_ids(&self, ids: &[String]) -> Result<Vec<MemberRow>, StoreError> {
        let mut found = Vec::new();
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            let sql = format!(
                "SELECT pk, id FROM scim_users WHERE id IN ({})",
                marks(chunk.len())
            );
            found.extend(self.rows(&sql, rusqlite::params_from_iter(chunk), |row| {
                member_row(row)
            })?);
        }
        Ok(found)
    }

    pub fn insert_group(
        &self,
        id: &str,
        link_key: &str,
        fields: &GroupFields,
        now: &str,
    ) -> Result<GroupRow, StoreError> {
        let key_taken = self.first(
            "SELECT 1 AS one FROM scim_groups WHERE link_key = ?",
            [link_key],
            |row| row.int("one"),
        )?;
        if key_taken.is_some() {
            return Err(StoreError::Taken { what: "externalId" });
        }
        let sql = format!(
            "INSERT INTO scim_groups (id, link_key, display_name, display_name_key, external_id, body, created, modified, version)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1) RETURNING {GROUP_COLUMNS}"
        );
        let params = rusqlite::params![
            id,
            link_key,
            fields.display_name,
            fold(&fields.display_name),
            fields.external_id,
            fields.body,
            now,
            now,
        ];
        self.returned(&sql, params, "displayName", |row| group_row(row))
    }

    pub fn group(&self, id: &str) -> Result<Option<GroupRow>, StoreError> {
        let sql = format!("SELECT {GROUP_COLUMNS} FROM scim_groups WHERE id = ?");
        self.first(&sql, [id], |row| group_row(row))
    }

    pub fn update_group(
        &self,
        id: &str,
        fields: &GroupFields,
        now: &str,
    ) -> Result<GroupRow, StoreError> {
        let sql = format!(
            "UPDATE scim_groups SET display_name = ?, display_name_key = ?, external_id = ?, body = ?, modified = ?, version = version + 1
             WHERE id = ? RETURNING {GROUP_COLUMNS}"
        );
        let params = rusqlite::params![
            fields.display_name,
            fold(&fields.display_name),
            fields.external_id,
            fields.body,
            now,
            id,
        ];
        self.returned(&sql, params, "displayName", |row| group_row(row))
    }

    pub fn delete_group(&self, id: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM scim_groups WHERE id = ?")?
            .execute([id])?;
        Ok(())
    }

    pub fn members(&self, group_id: &str) -> Result<Vec<MemberRow>, StoreError> {
        self.rows(MEMBERS_SQL, [group_id], |row| member_row(row))
    }

    /// Adds and removes members; adding a member twice or removing an absent one is no error.
    pub fn change_members(
        &self,
        group_id: &str,
        add: &[i64],
        remove: &[i64],
    ) -> Result<(), StoreError> {
        let mut adding = self.conn.prepare_cached(
            "INSERT OR IGNORE INTO scim_members (group_id, user_pk) VALUES (?, ?)",
        )?;
        for pk in add {
            adding.execute(rusqlite::params![group_id, pk])?;
        }
        let mut removing = self
            .conn
            .prepare_cached("DELETE FROM scim_members WHERE group_id = ? AND user_pk = ?")?;
        for pk in remove {
            removing.execute(rusqlite::params![group_id, pk])?;
        }
        Ok(())
    }

    /// The users with these ids, and whether each is a member of the group: what a PATCH that names its
    /// members needs, without the group's other members.
    pub fn named_members(
        &self,
        group_id: &str,
        ids: &[String],
    ) -> Result<Vec<(MemberRow, bool)>, StoreError> {
        let mut found = Vec::new();
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            let sql = format!(
                "SELECT u.pk, u.id, EXISTS (SELECT 1 FROM scim_members m WHERE m.group_id = ? AND m.user_pk = u.pk) AS member
                 FROM scim_users u WHERE u.id IN ({})",
                marks(chunk.len())
            );
            let params = std::iter::once(group_id).chain(chunk.iter().map(String::as_str));
            found.extend(self.rows(&sql, rusqlite::params_from_iter(params), |row| {
                Ok((member_row(row)?, row.int("member")? != 0))
            })?);
        }
        Ok(found)
    }

    /// The one row an `INSERT` or `UPDATE … RETURNING` gives; a unique key already taken is `what`'s.
    fn returned<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        what: &'static str,
        read: impl Fn(&rusqlite::Row<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut statement = self.conn.prepare_cached(sql)?;
        let mut rows = statement.query(params).map_err(|e| taken(e, what))?;
        match rows.next().map_err(|e| taken(e, what))? {
            Some(row) => read(row),
            None => Err(StoreError::Corrupt(format!("no row came back from: {sql}"))),
        }
    }
}

/// The row of `table` whose `column` is `value`, if any. Read to the end (`fetch_all`): see the top of this file.
async fn one<'e, E, T>(
    executor: E,
    table: &str,
    columns: &str,
    column: &str,
    value: &str,
    read: fn(&sqlx::sqlite::SqliteRow) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError>
where
    E: sqlx::Executor<'e, Database = Sqlite>,
{
    let sql = format!("SELECT {columns} FROM {table} WHERE {column} = ? LIMIT 1");
    let rows = sqlx::query(&sql).bind(value).fetch_all(executor).await?;
    rows.first().map(read).transpose()
}

/// A page of `table` in `order`, `offset` skipped and at most `limit` given, filtered by `column = value`
/// when a filter is given; and how many rows match in all.
#[allow(clippy::too_many_arguments)]
async fn page<T>(
    pool: &sqlx::SqlitePool,
    table: &str,
    columns: &str,
    order: &str,
    filter: Option<(&str, &str)>,
    offset: i64,
    limit: i64,
    read: fn(&sqlx::sqlite::SqliteRow) -> Result<T, StoreError>,
) -> Result<Page<T>, StoreError> {
    let clause = filter
        .map(|(column, _)| format!("WHERE {column} = ?"))
        .unwrap_or_default();
    let count_sql = format!("SELECT COUNT(*) FROM {table} {clause}");
    let list_sql =
        format!("SELECT {columns} FROM {table} {clause} ORDER BY {order} LIMIT ? OFFSET ?");
    let mut count = sqlx::query_scalar::<_, i64>(&count_sql);
    let mut list = sqlx::query(&list_sql);
    if let Some((_, value)) = filter {
        count = count.bind(value);
        list = list.bind(value);
    }
    let total = count.fetch_all(pool).await?.first().copied().unwrap_or(0);
    let rows = list.bind(limit).bind(offset).fetch_all(pool).await?;
    Ok(Page {
        rows: rows.iter().map(read).collect::<Result<_, _>>()?,
        total,
    })
}

async fn members<'e, E>(executor: E, group_id: &str) -> Result<Vec<MemberRow>, StoreError>
where
    E: sqlx::Executor<'e, Database = Sqlite>,
{
    let rows = sqlx::query(MEMBERS_SQL)
        .bind(group_id)
        .fetch_all(executor)
        .await?;
    rows.iter().map(member_row).collect()
}

/// Reads outside a write: the SCIM lists and look-ups, and the directory the sinks plan from.
impl Store {
    pub async fn user(&self, id: &str) -> Result<Option<UserRow>, StoreError> {
        self.find_user(UserColumn::Id, id).await
    }

    pub async fn find_user(
        &self,
        column: UserColumn,
        value: &str,
    ) -> Result<Option<UserRow>, StoreError> {
        one(
            self.pool(),
            "scim_users",
            USER_COLUMNS,
            column.sql(),
            value,
            user_row,
        )
        .await
    }

    pub async fn user_by_pk(&self, pk: i64) -> Result<Option<UserRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM scim_users WHERE pk = ?"
        ))
        .bind(pk)
        .fetch_all(self.pool())
        .await?;
        row.first().map(user_row).transpose()
    }

    /// Users in key order, `offset` skipped and at most `limit` given; with a filter, only those whose
    /// column equals `value` (already folded for a `*Key` column).
    pub async fn users(
        &self,
        filter: Option<(UserColumn, &str)>,
        offset: i64,
        limit: i64,
    ) -> Result<Page<UserRow>, StoreError> {
        let filter = filter.map(|(c, v)| (c.sql(), v));
        page(
            self.pool(),
            "scim_users",
            USER_COLUMNS,
            "pk",
            filter,
            offset,
            limit,
            user_row,
        )
        .await
    }

    pub async fn group(&self, id: &str) -> Result<Option<GroupRow>, StoreError> {
        one(
            self.pool(),
            "scim_groups",
            GROUP_COLUMNS,
            "id",
            id,
            group_row,
        )
        .await
    }

    pub async fn group_by_link_key(&self, link_key: &str) -> Result<Option<GroupRow>, StoreError> {
        one(
            self.pool(),
            "scim_groups",
            GROUP_COLUMNS,
            "link_key",
            link_key,
            group_row,
        )
        .await
    }

    /// Groups by display name, paged and filtered as [`Store::users`].
    pub async fn groups(
        &self,
        filter: Option<(GroupColumn, &str)>,
        offset: i64,
        limit: i64,
    ) -> Result<Page<GroupRow>, StoreError> {
        let filter = filter.map(|(c, v)| (c.sql(), v));
        let order = "display_name_key";
        page(
            self.pool(),
            "scim_groups",
            GROUP_COLUMNS,
            order,
            filter,
            offset,
            limit,
            group_row,
        )
        .await
    }

    pub async fn members(&self, group_id: &str) -> Result<Vec<MemberRow>, StoreError> {
        members(self.pool(), group_id).await
    }

    /// A group's members as users, in key order.
    pub async fn member_users(&self, group_id: &str) -> Result<Vec<UserRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM scim_members m JOIN scim_users u ON u.pk = m.user_pk WHERE m.group_id = ? ORDER BY u.pk",
            USER_COLUMNS.split(", ").map(|c| format!("u.{c}")).collect::<Vec<_>>().join(", ")
        ))
        .bind(group_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(user_row).collect()
    }

    /// Every user, in key order.
    pub async fn all_users(&self) -> Result<Vec<UserRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM scim_users ORDER BY pk"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(user_row).collect()
    }

    /// Every group, by display name.
    pub async fn all_groups(&self) -> Result<Vec<GroupRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {GROUP_COLUMNS} FROM scim_groups ORDER BY display_name_key"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(group_row).collect()
    }

    /// Every membership, as (group id, user key), read in one statement so that it is one moment's.
    pub async fn all_memberships(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows =
            sqlx::query("SELECT group_id, user_pk FROM scim_members ORDER BY group_id, user_pk")
                .fetch_all(self.pool())
                .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("group_id")?, row.try_get("user_pk")?)))
            .collect()
    }

    /// The groups a user is in, by link key.
    pub async fn groups_of(&self, pk: i64) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT g.link_key FROM scim_members m JOIN scim_groups g ON g.id = m.group_id WHERE m.user_pk = ? ORDER BY g.link_key",
        )
        .bind(pk)
        .fetch_all(self.pool())
        .await?)
    }

    /// Users whose email, folded, is `email_key`.
    pub async fn users_with_email(&self, email_key: &str) -> Result<Vec<UserRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM scim_users WHERE email_key = ? ORDER BY pk"
        ))
        .bind(email_key)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(user_row).collect()
    }
}
