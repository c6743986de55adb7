//! Each SCIM request as one store transaction. A request is read and checked whole before anything is
//! written, the answer comes after the commit, and the answer says which changes the sinks must follow: the
//! caller hands them to the runtime's intake, exactly as an Authentik event's.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::discovery::MAX_RESULTS;
use super::error::ScimError;
use super::filter::{self, FilterAttr};
use super::patch::{self, GroupPatchState};
use super::resource::{
    self, render, GroupBody, Meta, Projection, UserBody, GROUP_SCHEMA, LIST_SCHEMA, USER_SCHEMA,
};
use crate::domain::{AuthentikGroupId, AuthentikUserId, Email};
use crate::source::webhook::{AuthentikChange, ModelAction};
use crate::source::SourceChanges;
use crate::store::scim::{GroupColumn, GroupFields, GroupRow, UserColumn, UserFields, UserRow};
use crate::store::time::now_rfc3339;
use crate::store::{Store, StoreError, WriteTx};

/// A SCIM answer: its status, its body (none for 204), its `Location`, and what changed.
#[derive(Debug)]
pub struct ScimAnswer {
    pub status: u16,
    pub body: Option<Value>,
    pub location: Option<String>,
    pub changes: SourceChanges,
}

impl ScimAnswer {
    /// A 200 with a body that changed nothing.
    pub fn ok(body: Value) -> ScimAnswer {
        ScimAnswer {
            status: 200,
            body: Some(body),
            location: None,
            changes: SourceChanges::default(),
        }
    }
}

/// A list's query parameters (RFC 7644 §3.4.2).
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub filter: Option<String>,
    /// 1-based.
    pub start_index: Option<i64>,
    pub count: Option<i64>,
    /// `attributes` and `excludedAttributes` (Entra ID asks for groups without members).
    pub projection: Projection,
}

impl ListQuery {
    /// A `POST …/.search` body (RFC 7644 §3.4.3): the list parameters as JSON.
    pub fn from_search(body: Value) -> Result<ListQuery, ScimError> {
        let map = resource::object(body, "search request")?;
        let text = |key: &str| -> Result<Option<String>, ScimError> {
            match resource::get(&map, key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(ScimError::invalid_value(format!(
                    "{key} must be a string, not {}",
                    resource::kind(other)
                ))),
            }
        };
        let number = |key: &str| -> Result<Option<i64>, ScimError> {
            match resource::get(&map, key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => n
                    .as_i64()
                    .map(Some)
                    .ok_or_else(|| ScimError::invalid_value(format!("{key} must be an integer"))),
                Some(other) => Err(ScimError::invalid_value(format!(
                    "{key} must be an integer, not {}",
                    resource::kind(other)
                ))),
            }
        };
        let names = |key: &str| -> Result<Option<String>, ScimError> {
            match resource::get(&map, key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|i| {
                        i.as_str().map(str::to_string).ok_or_else(|| {
                            ScimError::invalid_value(format!("{key} must list strings"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(|v| Some(v.join(","))),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(ScimError::invalid_value(format!(
                    "{key} must be a list of names, not {}",
                    resource::kind(other)
                ))),
            }
        };
        Ok(ListQuery {
            filter: text("filter")?,
            start_index: number("startIndex")?,
            count: number("count")?,
            projection: Projection::parse(
                names("attributes")?.as_deref(),
                names("excludedAttributes")?.as_deref(),
            ),
        })
    }
}

#[derive(Clone)]
pub struct ScimService {
    store: Store,
}

/// A store failure inside a write: the answer a SCIM client gets for it.
impl From<StoreError> for ScimError {
    fn from(e: StoreError) -> ScimError {
        store_error(e)
    }
}

fn store_error(e: StoreError) -> ScimError {
    match e {
        StoreError::Taken { what } => ScimError::uniqueness(format!("{what} is already taken")),
        other => {
            tracing::error!(error = %other, "the SCIM store failed");
            ScimError::unavailable(format!("{other}; nothing was stored, try again"))
        }
    }
}

/// [`store_error`], with the request's own words for a key that is taken (`what` names the key).
fn taken_as(detail: impl FnOnce(&'static str) -> String) -> impl FnOnce(StoreError) -> ScimError {
    move |e| match e {
        StoreError::Taken { what } => ScimError::uniqueness(detail(what)),
        other => store_error(other),
    }
}

/// A fresh id for a resource: a random UUID, safe in a URL as Authentik puts it there unescaped.
fn new_id() -> String {
    let n: u128 = rand::random();
    let n = (n & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let h = format!("{n:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn user_fields(body: &UserBody) -> Result<UserFields, ScimError> {
    Ok(UserFields {
        user_name: body.user_name.clone(),
        external_id: body.external_id.clone(),
        display_name: body.display_name.clone(),
        email: body.email.as_ref().map(|e| e.as_str().to_string()),
        active: body.active,
        body: serde_json::to_string(&body.kept).map_err(|e| ScimError::internal(e.to_string()))?,
    })
}

fn group_fields(body: &GroupBody) -> Result<GroupFields, ScimError> {
    Ok(GroupFields {
        display_name: body.display_name.clone(),
        external_id: body.external_id.clone(),
        body: serde_json::to_string(&body.kept).map_err(|e| ScimError::internal(e.to_string()))?,
    })
}

fn kept(row_body: &str) -> Result<Map<String, Value>, ScimError> {
    match serde_json::from_str(row_body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(ScimError::internal("a stored body is not a JSON object")),
    }
}

fn user_change(row: &UserRow, action: ModelAction) -> AuthentikChange {
    AuthentikChange::User {
        event_pk: None,
        action,
        pk: AuthentikUserId(row.pk),
        name: row.user_name.clone(),
    }
}

fn group_change(row: &GroupRow, action: ModelAction) -> Result<AuthentikChange, ScimError> {
    Ok(AuthentikChange::Group {
        event_pk: None,
        action,
        id: link_key(&row.link_key)?,
        name: row.display_name.clone(),
    })
}

fn link_key(text: &str) -> Result<AuthentikGroupId, ScimError> {
    AuthentikGroupId::from_source_key(text)
        .ok_or_else(|| ScimError::internal(format!("a stored group key is not one: {text:?}")))
}

impl ScimService {
    pub fn new(store: Store) -> ScimService {
        ScimService { store }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn render_user(&self, base: &str, row: &UserRow) -> Result<Value, ScimError> {
        Ok(Value::Object(render(
            &kept(&row.body)?,
            USER_SCHEMA,
            &row.id,
            Meta {
                resource_type: "User",
                created: &row.created,
                modified: &row.modified,
                location: format!("{base}/Users/{}", row.id),
                version: row.version,
            },
        )))
    }

    fn render_group(
        &self,
        base: &str,
        row: &GroupRow,
        members: Option<&[String]>,
    ) -> Result<Value, ScimError> {
        let mut out = render(
            &kept(&row.body)?,
            GROUP_SCHEMA,
            &row.id,
            Meta {
                resource_type: "Group",
                created: &row.created,
                modified: &row.modified,
                location: format!("{base}/Groups/{}", row.id),
                version: row.version,
            },
        );
        // Always present, even empty, unless excluded: Authentik adds no member to a group whose answer
        // lacks the key (docs/src/upstream/scim.md §10).
        if let Some(members) = members {
            let list = members
                .iter()
                .map(|id| serde_json::json!({"value": id, "$ref": format!("{base}/Users/{id}"), "type": "User"}))
                .collect();
            out.insert("members".into(), Value::Array(list));
        }
        Ok(Value::Object(out))
    }

    // ---- Users ----

    pub async fn create_user(&self, base: &str, body: Value) -> Result<ScimAnswer, ScimError> {
        let parsed = UserBody::parse(resource::object(body, "user")?)?;
        let fields = user_fields(&parsed)?;
        let user_name = parsed.user_name;
        let row = self
            .store
            .write(move |tx| {
                tx.insert_user(&new_id(), &fields, &now_rfc3339())
                    .map_err(taken_as(|_| {
                        format!("userName {user_name:?} is already taken")
                    }))
            })
            .await?;
        Ok(ScimAnswer {
            status: 201,
            location: Some(format!("{base}/Users/{}", row.id)),
            body: Some(self.render_user(base, &row)?),
            // Nothing to queue: a new SCIM user is in no group yet, and the PATCHes that add them are group
            // jobs. A user job here would plan the person against every group they are in by the time it
            // runs: during an identity provider's full sync, which sends every user before any group, that
            // is one job per person repeating the group jobs' work. Their account (role, suspension)
            // follows at their first group change or the next pass.
            changes: SourceChanges::default(),
        })
    }

    pub async fn get_user(
        &self,
        base: &str,
        id: &str,
        projection: &Projection,
    ) -> Result<ScimAnswer, ScimError> {
        let row = self
            .store
            .user(id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| not_found("User", id))?;
        Ok(ScimAnswer::ok(projected(
            self.render_user(base, &row)?,
            projection,
        )))
    }

    pub async fn list_users(&self, base: &str, query: &ListQuery) -> Result<ScimAnswer, ScimError> {
        let filter = match &query.filter {
            Some(text) => {
                let f = filter::parse(text)?;
                let column = match f.attr {
                    FilterAttr::Id => (UserColumn::Id, f.value),
                    FilterAttr::UserName => (UserColumn::UserNameKey, f.value.to_lowercase()),
                    FilterAttr::ExternalId => (UserColumn::ExternalId, f.value),
                    FilterAttr::EmailValue => (UserColumn::EmailKey, f.value.to_lowercase()),
                    FilterAttr::DisplayName => (UserColumn::DisplayName, f.value),
                };
                Some(column)
            }
            None => None,
        };
        let (offset, limit, start) = page_of(query);
        let page = self
            .store
            .users(
                filter.as_ref().map(|(c, v)| (*c, v.as_str())),
                offset,
                limit,
            )
            .await
            .map_err(store_error)?;
        let items = page
            .rows
            .iter()
            .map(|row| Ok(projected(self.render_user(base, row)?, &query.projection)))
            .collect::<Result<Vec<_>, ScimError>>()?;
        Ok(ScimAnswer::ok(list_response(items, page.total, start)))
    }

    pub async fn replace_user(
        &self,
        base: &str,
        id: &str,
        body: Value,
    ) -> Result<ScimAnswer, ScimError> {
        let map = resource::object(body, "user")?;
        if let Some(Value::String(sent)) = resource::get(&map, "id") {
            if sent != id {
                return Err(ScimError::mutability("the body's id is not the resource's"));
            }
        }
        let parsed = UserBody::parse(map)?;
        self.write_user(base, id, move |_| Ok(parsed)).await
    }

    pub async fn patch_user(
        &self,
        base: &str,
        id: &str,
        body: Value,
    ) -> Result<ScimAnswer, ScimError> {
        let ops = patch::parse(body)?;
        self.write_user(base, id, move |row| {
            let mut kept = kept(&row.body)?;
            patch::apply_user(&mut kept, &row.id, &ops)?;
            UserBody::parse(kept)
        })
        .await
    }

    /// Reads the user, makes their new body from the old row, and writes it if anything changed.
    async fn write_user(
        &self,
        base: &str,
        id: &str,
        make: impl FnOnce(&UserRow) -> Result<UserBody, ScimError> + Send + 'static,
    ) -> Result<ScimAnswer, ScimError> {
        let id = id.to_string();
        let (old, row) = self
            .store
            .write(move |tx| {
                let old = tx.user(&id)?.ok_or_else(|| not_found("User", &id))?;
                let parsed = make(&old)?;
                let fields = user_fields(&parsed)?;
                let unchanged = fields.body == old.body
                    && fields.user_name == old.user_name
                    && fields.email == old.email
                    && fields.active == old.active;
                if unchanged {
                    return Ok((old, None));
                }
                let row = tx
                    .update_user(old.pk, &fields, &now_rfc3339())
                    .map_err(taken_as(|_| {
                        format!("userName {:?} is already taken", parsed.user_name)
                    }))?;
                Ok::<_, ScimError>((old, Some(row)))
            })
            .await?;
        let Some(row) = row else {
            return Ok(ScimAnswer::ok(self.render_user(base, &old)?));
        };
        // The address they had: Outline keeps it until they sign in again, and they are found by it meanwhile.
        let emails = remembered(&old);
        Ok(ScimAnswer {
            changes: SourceChanges {
                changes: vec![user_change(&row, ModelAction::Updated)],
                emails,
            },
            ..ScimAnswer::ok(self.render_user(base, &row)?)
        })
    }

    pub async fn delete_user(&self, id: &str) -> Result<ScimAnswer, ScimError> {
        let id = id.to_string();
        let old = self
            .store
            .write(move |tx| {
                let old = tx.user(&id)?.ok_or_else(|| not_found("User", &id))?;
                tx.delete_user(old.pk)?;
                Ok::<_, ScimError>(old)
            })
            .await?;
        Ok(ScimAnswer {
            status: 204,
            body: None,
            location: None,
            // A deletion is followed by its email, which the user job needs and can no longer read.
            changes: SourceChanges {
                changes: vec![user_change(&old, ModelAction::Deleted)],
                emails: remembered(&old),
            },
        })
    }

    // ---- Groups ----

    /// The people with these ids, by id; any id nobody has refuses the whole request.
    fn member_keys(
        tx: &WriteTx<'_>,
        ids: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, i64>, ScimError> {
        let wanted: Vec<String> = ids.iter().cloned().collect();
        let found: BTreeMap<String, i64> = tx
            .users_by_ids(&wanted)?
            .into_iter()
            .map(|m| (m.id, m.pk))
            .collect();
        keys_of(ids, &found)
    }

    pub async fn create_group(&self, base: &str, body: Value) -> Result<ScimAnswer, ScimError> {
        let parsed = GroupBody::parse(resource::object(body, "group")?)?;
        let fields = group_fields(&parsed)?;
        let id = new_id();
        // The link key: the identity provider's externalId when it sends one (Authentik sends its group
        // UUID, which the webhook mode already wrote into Outline), else the SCIM id.
        let key = parsed
            .external_id
            .as_deref()
            .and_then(AuthentikGroupId::from_source_key)
            .unwrap_or_else(|| {
                AuthentikGroupId::from_source_key(&id).unwrap_or_else(|| unreachable_key(&id))
            });
        let members: BTreeSet<String> = parsed
            .members
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let display_name = parsed.display_name;
        let (row, keys) = self
            .store
            .write(move |tx| {
                let keys = Self::member_keys(tx, &members)?;
                let row = tx
                    .insert_group(&id, key.as_str(), &fields, &now_rfc3339())
                    .map_err(taken_as(|what| {
                        let value = if what == "displayName" {
                            display_name.as_str()
                        } else {
                            key.as_str()
                        };
                        format!("a group with this {what} exists already ({value:?})")
                    }))?;
                let pks: Vec<i64> = keys.values().copied().collect();
                tx.change_members(&row.id, &pks, &[])?;
                Ok::<_, ScimError>((row, keys))
            })
            .await?;
        let ids: Vec<String> = keys.keys().cloned().collect();
        Ok(ScimAnswer {
            status: 201,
            location: Some(format!("{base}/Groups/{}", row.id)),
            body: Some(self.render_group(base, &row, Some(&ids))?),
            changes: SourceChanges {
                changes: vec![group_change(&row, ModelAction::Created)?],
                emails: Vec::new(),
            },
        })
    }

    pub async fn get_group(
        &self,
        base: &str,
        id: &str,
        projection: &Projection,
    ) -> Result<ScimAnswer, ScimError> {
        let row = self
            .store
            .group(id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| not_found("Group", id))?;
        let members = self
            .member_ids(&row, projection.leaves_out("members"))
            .await?;
        Ok(ScimAnswer::ok(projected(
            self.render_group(base, &row, members.as_deref())?,
            projection,
        )))
    }

    async fn member_ids(
        &self,
        row: &GroupRow,
        exclude: bool,
    ) -> Result<Option<Vec<String>>, ScimError> {
        if exclude {
            return Ok(None);
        }
        let members = self.store.members(&row.id).await.map_err(store_error)?;
        Ok(Some(members.into_iter().map(|m| m.id).collect()))
    }

    pub async fn list_groups(
        &self,
        base: &str,
        query: &ListQuery,
    ) -> Result<ScimAnswer, ScimError> {
        let filter = match &query.filter {
            Some(text) => {
                let f = filter::parse(text)?;
                Some(match f.attr {
                    FilterAttr::Id => (GroupColumn::Id, f.value),
                    FilterAttr::DisplayName => {
                        (GroupColumn::DisplayNameKey, f.value.to_lowercase())
                    }
                    FilterAttr::ExternalId => (GroupColumn::ExternalId, f.value),
                    FilterAttr::UserName | FilterAttr::EmailValue => {
                        return Err(ScimError::invalid_filter(
                            "groups are filtered by displayName, externalId or id",
                        ))
                    }
                })
            }
            None => None,
        };
        let (offset, limit, start) = page_of(query);
        let page = self
            .store
            .groups(
                filter.as_ref().map(|(c, v)| (*c, v.as_str())),
                offset,
                limit,
            )
            .await
            .map_err(store_error)?;
        let mut items = Vec::with_capacity(page.rows.len());
        for row in &page.rows {
            let members = self
                .member_ids(row, query.projection.leaves_out("members"))
                .await?;
            items.push(projected(
                self.render_group(base, row, members.as_deref())?,
                &query.projection,
            ));
        }
        Ok(ScimAnswer::ok(list_response(items, page.total, start)))
    }

    pub async fn replace_group(
        &self,
        base: &str,
        id: &str,
        body: Value,
    ) -> Result<ScimAnswer, ScimError> {
        let map = resource::object(body, "group")?;
        if let Some(Value::String(sent)) = resource::get(&map, "id") {
            if sent != id {
                return Err(ScimError::mutability("the body's id is not the resource's"));
            }
        }
        let parsed = GroupBody::parse(map)?;
        self.write_group(base, id, MemberScope::All, move |_, _| {
            // A PUT replaces the whole group: no `members` means none (Authentik leaves the key out of an
            // empty group, docs/src/upstream/scim.md §5.2).
            let members = parsed
                .members
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect();
            Ok(GroupPatchState {
                kept: parsed.kept.clone(),
                members,
            })
        })
        .await
    }

    /// A PATCH answers 204 without a body, as RFC 7644 §3.5.2 allows and Okta and Entra ID expect for groups:
    /// the answer of a large group would be its whole member list, for a change of one.
    pub async fn patch_group(
        &self,
        base: &str,
        id: &str,
        body: Value,
    ) -> Result<ScimAnswer, ScimError> {
        let ops = patch::parse(body)?;
        let scope = match patch::named_members(&ops) {
            Some(named) => MemberScope::Named(named),
            None => MemberScope::All,
        };
        let written = self
            .write_group(base, id, scope, move |row, members| {
                let mut state = GroupPatchState {
                    kept: kept(&row.body)?,
                    members,
                };
                patch::apply_group(&mut state, &row.id, &ops)?;
                Ok(state)
            })
            .await?;
        Ok(ScimAnswer {
            status: 204,
            body: None,
            ..written
        })
    }

    /// Reads the group and the members in scope, makes the new state, checks it whole, and writes what
    /// changed.
    async fn write_group(
        &self,
        base: &str,
        id: &str,
        scope: MemberScope,
        make: impl FnOnce(&GroupRow, BTreeSet<String>) -> Result<GroupPatchState, ScimError>
            + Send
            + 'static,
    ) -> Result<ScimAnswer, ScimError> {
        let id = id.to_string();
        let written = self
            .store
            .write(move |tx| change_group(tx, &id, scope, make))
            .await?;
        let ids: Vec<String> = written.members.into_iter().collect();
        let body = self.render_group(base, &written.row, Some(&ids))?;
        if !written.changed {
            return Ok(ScimAnswer::ok(body));
        }
        Ok(ScimAnswer {
            changes: SourceChanges {
                changes: vec![group_change(&written.row, ModelAction::Updated)?],
                emails: Vec::new(),
            },
            ..ScimAnswer::ok(body)
        })
    }

    pub async fn delete_group(&self, id: &str) -> Result<ScimAnswer, ScimError> {
        let id = id.to_string();
        let old = self
            .store
            .write(move |tx| {
                let old = tx.group(&id)?.ok_or_else(|| not_found("Group", &id))?;
                tx.delete_group(&old.id)?;
                Ok::<_, ScimError>(old)
            })
            .await?;
        Ok(ScimAnswer {
            status: 204,
            body: None,
            location: None,
            changes: SourceChanges {
                changes: vec![group_change(&old, ModelAction::Deleted)?],
                emails: Vec::new(),
            },
        })
    }
}

/// A group after a write: its row, its members in the scope read (all of them, or those the PATCH named), and
/// whether anything changed.
struct GroupWritten {
    row: GroupRow,
    members: BTreeSet<String>,
    changed: bool,
}

/// One group write on the writer's thread: the group and the members in scope, the new state `make` gives,
/// checked whole, and the rows that changed.
fn change_group(
    tx: &WriteTx<'_>,
    id: &str,
    scope: MemberScope,
    make: impl FnOnce(&GroupRow, BTreeSet<String>) -> Result<GroupPatchState, ScimError>,
) -> Result<GroupWritten, ScimError> {
    let old = tx.group(id)?.ok_or_else(|| not_found("Group", id))?;
    // Before: the members in scope, and (for named members) which of the named are people at all.
    let (old_members, named_people, start) = match scope {
        MemberScope::All => {
            let members: BTreeMap<String, i64> = tx
                .members(&old.id)?
                .into_iter()
                .map(|m| (m.id, m.pk))
                .collect();
            let start = members.keys().cloned().collect();
            (members, None, start)
        }
        MemberScope::Named(named) => {
            let ids: Vec<String> = named.iter().cloned().collect();
            let rows = tx.named_members(&old.id, &ids)?;
            let members = rows
                .iter()
                .filter(|(_, member)| *member)
                .map(|(m, _)| (m.id.clone(), m.pk))
                .collect();
            let people = rows.into_iter().map(|(m, _)| (m.id, m.pk)).collect();
            (members, Some(people), named)
        }
    };
    let state = make(&old, start)?;
    let parsed = GroupBody::parse(state.kept)?;
    let fields = group_fields(&parsed)?;
    let added: BTreeSet<String> = state
        .members
        .iter()
        .filter(|m| !old_members.contains_key(*m))
        .cloned()
        .collect();
    let new_keys = match &named_people {
        Some(people) => keys_of(&added, people)?,
        None => ScimService::member_keys(tx, &added)?,
    };
    let removed: Vec<i64> = old_members
        .iter()
        .filter(|(m, _)| !state.members.contains(*m))
        .map(|(_, pk)| *pk)
        .collect();
    let attributes_same = fields.body == old.body && fields.display_name == old.display_name;
    if attributes_same && new_keys.is_empty() && removed.is_empty() {
        return Ok(GroupWritten {
            members: old_members.into_keys().collect(),
            row: old,
            changed: false,
        });
    }
    let row = if attributes_same {
        old
    } else {
        tx.update_group(&old.id, &fields, &now_rfc3339())
            .map_err(taken_as(|_| {
                format!("a group named {:?} exists already", parsed.display_name)
            }))?
    };
    let add: Vec<i64> = new_keys.values().copied().collect();
    tx.change_members(&row.id, &add, &removed)?;
    Ok(GroupWritten {
        row,
        members: state.members,
        changed: true,
    })
}

/// The keys of `ids` among the people `found`; any id nobody has refuses the whole request.
fn keys_of(
    ids: &BTreeSet<String>,
    found: &BTreeMap<String, i64>,
) -> Result<BTreeMap<String, i64>, ScimError> {
    let unknown: Vec<&str> = ids
        .iter()
        .filter(|id| !found.contains_key(*id))
        .map(String::as_str)
        .take(5)
        .collect();
    if !unknown.is_empty() {
        return Err(ScimError::invalid_value(format!(
            "no user has the member id {}; nothing was changed",
            unknown.join(", ")
        )));
    }
    Ok(ids
        .iter()
        .filter_map(|id| found.get(id).map(|pk| (id.clone(), *pk)))
        .collect())
}

/// Which members a group write starts from.
enum MemberScope {
    /// Every member: a PUT, or a PATCH that replaces or empties the list.
    All,
    /// Only the members a PATCH names (`patch::named_members`).
    Named(BTreeSet<String>),
}

/// A generated id always makes a key; this is never reached.
fn unreachable_key(id: &str) -> AuthentikGroupId {
    AuthentikGroupId::parse(id).unwrap_or_else(|| unreachable!("a generated id is a UUID: {id}"))
}

fn remembered(row: &UserRow) -> Vec<(AuthentikUserId, Email)> {
    row.email
        .as_deref()
        .and_then(Email::parse)
        .map(|e| vec![(AuthentikUserId(row.pk), e)])
        .unwrap_or_default()
}

fn projected(mut resource: Value, projection: &Projection) -> Value {
    if let Value::Object(map) = &mut resource {
        projection.apply(map);
    }
    resource
}

fn not_found(what: &str, id: &str) -> ScimError {
    ScimError::not_found(format!("no {what} has the id {id:?}"))
}

/// (offset, limit, startIndex) of a list query: `startIndex` below 1 is 1, `count` is kept within 0 and
/// the advertised `maxResults` (RFC 7644 §3.4.2.4).
fn page_of(query: &ListQuery) -> (i64, i64, i64) {
    let start = query.start_index.unwrap_or(1).max(1);
    let count = query.count.unwrap_or(MAX_RESULTS).clamp(0, MAX_RESULTS);
    (start - 1, count, start)
}

fn list_response(items: Vec<Value>, total: i64, start: i64) -> Value {
    serde_json::json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": items.len(),
        "Resources": items,
    })
}
