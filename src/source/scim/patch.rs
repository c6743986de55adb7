//! PATCH (RFC 7644 §3.5.2), applied to a copy of the resource: the request is refused whole if any operation
//! cannot be applied, and nothing is stored.
//!
//! Lenient where the big providers deviate (docs/src/upstream/scim.md §5.3, §13):
//! - op names without case (Entra ID's `Add`, `Remove`);
//! - no top-level `schemas` (Authentik's rename);
//! - `remove` of `members` with a `value` list removes only those members (Authentik, Entra ID);
//! - `members[value eq "id"]` removes one member (Okta);
//! - a no-path `replace` may carry the resource's own `id` and `schemas`, which are ignored;
//! - `"True"` / `"False"` strings for booleans (Entra ID), normalised when the body is read.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::error::ScimError;
use super::resource::{get, kind, member_ids, take, USER_SCHEMA};

/// Operations per request, at most: Authentik chunks by the advertised `bulk.maxOperations`.
pub const MAX_OPERATIONS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Remove,
    Replace,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PatchOp {
    pub op: OpKind,
    pub path: Option<String>,
    pub value: Option<Value>,
}

/// Reads a PatchOp message.
pub fn parse(body: Value) -> Result<Vec<PatchOp>, ScimError> {
    let Value::Object(map) = body else {
        return Err(ScimError::invalid_syntax(format!(
            "a PATCH body must be a JSON object, not {}",
            kind(&body)
        )));
    };
    let operations = match get(&map, "Operations") {
        Some(Value::Array(ops)) if !ops.is_empty() => ops,
        Some(Value::Array(_)) => {
            return Err(ScimError::invalid_value("Operations is empty"));
        }
        Some(other) => {
            return Err(ScimError::invalid_syntax(format!(
                "Operations must be an array, not {}",
                kind(other)
            )))
        }
        None => return Err(ScimError::invalid_syntax("a PATCH body needs Operations")),
    };
    if operations.len() > MAX_OPERATIONS {
        return Err(ScimError::invalid_value(format!(
            "more than {MAX_OPERATIONS} operations in one PATCH"
        )));
    }
    operations.iter().map(parse_op).collect()
}

fn parse_op(op: &Value) -> Result<PatchOp, ScimError> {
    let Value::Object(op) = op else {
        return Err(ScimError::invalid_syntax(
            "each operation must be an object",
        ));
    };
    let op_kind = match get(op, "op") {
        Some(Value::String(s)) if s.eq_ignore_ascii_case("add") => OpKind::Add,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("remove") => OpKind::Remove,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("replace") => OpKind::Replace,
        Some(other) => {
            return Err(ScimError::invalid_value(format!(
                "op must be add, remove or replace, not {other}"
            )))
        }
        None => return Err(ScimError::invalid_syntax("an operation needs op")),
    };
    let path = match get(op, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) if p.trim().is_empty() => None,
        Some(Value::String(p)) => Some(p.trim().to_string()),
        Some(other) => {
            return Err(ScimError::invalid_path(format!(
                "path must be a string, not {}",
                kind(other)
            )))
        }
    };
    let value = get(op, "value").cloned().filter(|v| !v.is_null());
    if op_kind != OpKind::Remove && value.is_none() {
        return Err(ScimError::invalid_value(format!(
            "{} needs a value",
            format!("{op_kind:?}").to_lowercase()
        )));
    }
    Ok(PatchOp {
        op: op_kind,
        path,
        value,
    })
}

/// A path as this server understands it: `attr`, `attr.sub`, `attr[key eq "v"]` or `attr[key eq "v"].sub`,
/// optionally behind a schema URN.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Path {
    /// The extension schema the attribute lives under, when not the core one.
    extension: Option<String>,
    attr: String,
    filter: Option<(String, String)>,
    sub: Option<String>,
}

fn parse_path(text: &str) -> Result<Path, ScimError> {
    let bad = || ScimError::invalid_path(format!("cannot apply the path {text:?}"));
    let (extension, rest) = split_urn(text);
    let (head, filter, tail) = match rest.find('[') {
        Some(open) => {
            let close = rest.rfind(']').ok_or_else(bad)?;
            if close < open {
                return Err(bad());
            }
            let inner = &rest[open + 1..close];
            (
                &rest[..open],
                Some(parse_value_filter(inner).ok_or_else(bad)?),
                &rest[close + 1..],
            )
        }
        None => (rest, None, ""),
    };
    let (attr, sub) = match (filter.is_some(), head.split_once('.')) {
        (false, Some((attr, sub))) => (attr, Some(sub)),
        _ => (head, None),
    };
    let sub = match (sub, tail.strip_prefix('.')) {
        (Some(s), _) => Some(s),
        (None, Some(s)) => Some(s),
        (None, None) if tail.is_empty() => None,
        _ => return Err(bad()),
    };
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$' || c == '-')
    };
    if !valid(attr) || sub.is_some_and(|s| !valid(s)) {
        return Err(bad());
    }
    Ok(Path {
        extension,
        attr: attr.to_string(),
        filter,
        sub: sub.map(str::to_string),
    })
}

/// `urn:...:User:manager` → (`Some(urn:...:User)`, `manager`); the core schemas' URNs are dropped.
fn split_urn(text: &str) -> (Option<String>, &str) {
    if !text.to_ascii_lowercase().starts_with("urn:") {
        return (None, text);
    }
    let head = text.split('[').next().unwrap_or(text);
    let Some(colon) = head.rfind(':') else {
        return (None, text);
    };
    let urn = &text[..colon];
    let rest = &text[colon + 1..];
    let core = urn.eq_ignore_ascii_case(USER_SCHEMA)
        || urn.eq_ignore_ascii_case(super::resource::GROUP_SCHEMA);
    (if core { None } else { Some(urn.to_string()) }, rest)
}

/// `key eq "value"` inside brackets.
fn parse_value_filter(inner: &str) -> Option<(String, String)> {
    let inner = inner.trim();
    let (key, rest) = inner.split_once(char::is_whitespace)?;
    let (op, value) = rest.trim_start().split_once(char::is_whitespace)?;
    if !op.eq_ignore_ascii_case("eq") {
        return None;
    }
    match serde_json::from_str::<Value>(value.trim()).ok()? {
        Value::String(v) => Some((key.to_string(), v)),
        Value::Bool(b) => Some((key.to_string(), b.to_string())),
        _ => None,
    }
}

/// A group as PATCH sees it: its kept attributes and its members' ids.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupPatchState {
    pub kept: Map<String, Value>,
    pub members: BTreeSet<String>,
}

/// The member ids a PATCH names, when it only adds and removes members by id (as Authentik, Okta and Entra ID
/// send membership changes): then each named member's state afterwards is the last operation's on it, whatever
/// it was before, and the group's other members need not be read. `None` when an operation replaces or
/// empties the member list, or cannot be applied (the full path reports why).
pub fn named_members(ops: &[PatchOp]) -> Option<BTreeSet<String>> {
    let mut named = BTreeSet::new();
    for op in ops {
        let value = op.value.as_ref();
        match &op.path {
            None => {
                let Some(Value::Object(map)) = value else {
                    return None;
                };
                if let Some((_, members)) =
                    map.iter().find(|(k, _)| k.eq_ignore_ascii_case("members"))
                {
                    if op.op == OpKind::Replace {
                        return None;
                    }
                    named.extend(member_ids(members).ok()?);
                }
            }
            Some(text) => {
                let path = parse_path(text).ok()?;
                if !path.attr.eq_ignore_ascii_case("members") {
                    continue;
                }
                match (op.op, &path.filter, value) {
                    (OpKind::Add | OpKind::Remove, None, Some(v)) => {
                        named.extend(member_ids(v).ok()?)
                    }
                    (OpKind::Remove, Some((key, id)), _) if key.eq_ignore_ascii_case("value") => {
                        named.insert(id.clone());
                    }
                    _ => return None,
                }
            }
        }
    }
    Some(named)
}

pub fn apply_group(
    state: &mut GroupPatchState,
    resource_id: &str,
    ops: &[PatchOp],
) -> Result<(), ScimError> {
    for op in ops {
        match &op.path {
            None => apply_group_object(state, resource_id, op)?,
            Some(text) => {
                let path = parse_path(text)?;
                if path.extension.is_some() {
                    return Err(ScimError::invalid_path(format!(
                        "cannot apply the path {text:?} to a group"
                    )));
                }
                apply_group_path(state, &path, text, op)?;
            }
        }
    }
    Ok(())
}

fn apply_group_object(
    state: &mut GroupPatchState,
    resource_id: &str,
    op: &PatchOp,
) -> Result<(), ScimError> {
    if op.op == OpKind::Remove {
        return Err(ScimError::no_target("a remove needs a path"));
    }
    let Some(Value::Object(value)) = &op.value else {
        return Err(ScimError::invalid_value(
            "an operation without a path needs an object as its value",
        ));
    };
    for (key, v) in value {
        match key.to_ascii_lowercase().as_str() {
            "id" => same_id(v, resource_id)?,
            "schemas" | "meta" => {}
            "members" => {
                let ids = member_ids(v)?;
                if op.op == OpKind::Replace {
                    state.members.clear();
                }
                state.members.extend(ids);
            }
            _ => set(&mut state.kept, key, v.clone()),
        }
    }
    Ok(())
}

fn apply_group_path(
    state: &mut GroupPatchState,
    path: &Path,
    text: &str,
    op: &PatchOp,
) -> Result<(), ScimError> {
    let attr = path.attr.to_ascii_lowercase();
    match (attr.as_str(), &path.filter, &path.sub) {
        ("members", None, None) => {
            let ids = op.value.as_ref().map(member_ids).transpose()?;
            match (op.op, ids) {
                (OpKind::Add, Some(ids)) => state.members.extend(ids),
                (OpKind::Replace, Some(ids)) => state.members = ids.into_iter().collect(),
                // Authentik and Entra ID name the members to remove in `value`; the RFC's reading would
                // empty the group on every removal (docs/src/upstream/scim.md §5.3).
                (OpKind::Remove, Some(ids)) => {
                    for id in ids {
                        state.members.remove(&id);
                    }
                }
                (OpKind::Remove, None) => state.members.clear(),
                (_, None) => return Err(ScimError::invalid_value("members needs a value")),
            }
        }
        ("members", Some((key, id)), None | Some(_)) if key.eq_ignore_ascii_case("value") => {
            match op.op {
                OpKind::Remove => {
                    state.members.remove(id);
                }
                OpKind::Replace => {
                    state.members.remove(id);
                    if let Some(value) = &op.value {
                        state.members.extend(member_ids(value)?);
                    }
                }
                OpKind::Add => {
                    return Err(ScimError::invalid_path(format!(
                        "cannot add to the filtered path {text:?}; add to members"
                    )))
                }
            }
        }
        ("displayname", None, None) => match (op.op, &op.value) {
            (OpKind::Remove, _) => {
                return Err(ScimError::mutability("displayName is required and cannot be removed"))
            }
            (_, Some(v @ Value::String(_))) => set(&mut state.kept, "displayName", v.clone()),
            (_, other) => {
                return Err(ScimError::invalid_value(format!(
                    "displayName must be a string, not {}",
                    other.as_ref().map_or("nothing", kind)
                )))
            }
        },
        ("externalid", None, None) => match (op.op, &op.value) {
            (OpKind::Remove, _) => {
                take(&mut state.kept, "externalId");
            }
            (_, Some(v @ Value::String(_))) => set(&mut state.kept, "externalId", v.clone()),
            (_, other) => {
                return Err(ScimError::invalid_value(format!(
                    "externalId must be a string, not {}",
                    other.as_ref().map_or("nothing", kind)
                )))
            }
        },
        _ => {
            return Err(ScimError::invalid_path(format!(
                "cannot apply the path {text:?} to a group (displayName, externalId and members can be patched)"
            )))
        }
    }
    Ok(())
}

/// The resource's own id may ride along in a value; any other id is a change the RFC forbids.
fn same_id(value: &Value, resource_id: &str) -> Result<(), ScimError> {
    match value {
        Value::String(id) if id == resource_id => Ok(()),
        _ => Err(ScimError::mutability(
            "id is assigned by the server and cannot change",
        )),
    }
}

/// Sets `key`, replacing it whatever its case.
fn set(map: &mut Map<String, Value>, key: &str, value: Value) {
    take(map, key);
    map.insert(key.to_string(), value);
}

/// Applies the operations to a user's kept body. The result is read again as a user body by the caller,
/// which checks every type.
pub fn apply_user(
    kept: &mut Map<String, Value>,
    resource_id: &str,
    ops: &[PatchOp],
) -> Result<(), ScimError> {
    for op in ops {
        match &op.path {
            None => {
                if op.op == OpKind::Remove {
                    return Err(ScimError::no_target("a remove needs a path"));
                }
                let Some(Value::Object(value)) = &op.value else {
                    return Err(ScimError::invalid_value(
                        "an operation without a path needs an object as its value",
                    ));
                };
                for (key, v) in value {
                    match key.to_ascii_lowercase().as_str() {
                        "id" => same_id(v, resource_id)?,
                        "schemas" | "meta" => {}
                        _ => {
                            let (extension, attr) = split_urn(key);
                            let target = container(kept, extension.as_deref())?;
                            put(target, attr, v.clone(), op.op);
                        }
                    }
                }
            }
            Some(text) => {
                let path = parse_path(text)?;
                if path.attr.eq_ignore_ascii_case("id") || path.attr.eq_ignore_ascii_case("meta") {
                    return Err(ScimError::mutability(format!("{text:?} cannot be changed")));
                }
                let target = container(kept, path.extension.as_deref())?;
                apply_user_path(target, &path, text, op)?;
            }
        }
    }
    Ok(())
}

/// The object an attribute lives in: the body, or the extension's object inside it.
fn container<'a>(
    kept: &'a mut Map<String, Value>,
    extension: Option<&str>,
) -> Result<&'a mut Map<String, Value>, ScimError> {
    let Some(urn) = extension else {
        return Ok(kept);
    };
    let key = kept
        .keys()
        .find(|k| k.eq_ignore_ascii_case(urn))
        .cloned()
        .unwrap_or_else(|| urn.to_string());
    let slot = kept.entry(key).or_insert_with(|| Value::Object(Map::new()));
    match slot {
        Value::Object(map) => Ok(map),
        other => Err(ScimError::invalid_value(format!(
            "{urn} holds {}, not an object",
            kind(other)
        ))),
    }
}

/// `add` appends to a list and merges into an object; `replace` sets.
fn put(map: &mut Map<String, Value>, attr: &str, value: Value, op: OpKind) {
    let existing = map.keys().find(|k| k.eq_ignore_ascii_case(attr)).cloned();
    match (op, existing.as_ref().and_then(|k| map.get_mut(k)), value) {
        (OpKind::Add, Some(Value::Array(items)), Value::Array(more)) => {
            for item in more {
                if !items.contains(&item) {
                    items.push(item);
                }
            }
        }
        (OpKind::Add, Some(Value::Object(inner)), Value::Object(more)) => {
            for (k, v) in more {
                set(inner, &k, v);
            }
        }
        (_, _, value) => set(map, existing.as_deref().unwrap_or(attr), value),
    }
}

fn apply_user_path(
    target: &mut Map<String, Value>,
    path: &Path,
    text: &str,
    op: &PatchOp,
) -> Result<(), ScimError> {
    let value = op.value.clone();
    match (&path.filter, &path.sub) {
        (None, None) => match (op.op, value) {
            (OpKind::Remove, _) => {
                take(target, &path.attr);
            }
            (kind, Some(v)) => put(target, &path.attr, v, kind),
            (_, None) => return Err(ScimError::invalid_value(format!("{text:?} needs a value"))),
        },
        (None, Some(sub)) => {
            let inner = match target
                .keys()
                .find(|k| k.eq_ignore_ascii_case(&path.attr))
                .cloned()
            {
                Some(key) => target.get_mut(&key),
                None => {
                    target.insert(path.attr.clone(), Value::Object(Map::new()));
                    target.get_mut(&path.attr)
                }
            };
            let Some(Value::Object(inner)) = inner else {
                return Err(ScimError::invalid_path(format!(
                    "{text:?}: {} is not an object",
                    path.attr
                )));
            };
            match (op.op, value) {
                (OpKind::Remove, _) => {
                    take(inner, sub);
                }
                (kind, Some(v)) => put(inner, sub, v, kind),
                (_, None) => {
                    return Err(ScimError::invalid_value(format!("{text:?} needs a value")))
                }
            }
        }
        (Some((key, wanted)), sub) => {
            let list_key = target
                .keys()
                .find(|k| k.eq_ignore_ascii_case(&path.attr))
                .cloned()
                .unwrap_or_else(|| path.attr.clone());
            let slot = target
                .entry(list_key)
                .or_insert_with(|| Value::Array(Vec::new()));
            let Value::Array(items) = slot else {
                return Err(ScimError::invalid_path(format!(
                    "{text:?}: {} is not a list",
                    path.attr
                )));
            };
            let matches = |item: &Value| match item {
                Value::Object(m) => match get(m, key) {
                    Some(Value::String(s)) => s.eq_ignore_ascii_case(wanted),
                    Some(Value::Bool(b)) => b.to_string() == *wanted,
                    _ => false,
                },
                _ => false,
            };
            match (op.op, sub, value) {
                (OpKind::Remove, None, _) => items.retain(|i| !matches(i)),
                (OpKind::Remove, Some(sub), _) => {
                    for item in items.iter_mut().filter(|i| matches(i)) {
                        if let Value::Object(m) = item {
                            take(m, sub);
                        }
                    }
                }
                (kind, sub, Some(v)) => {
                    let mut found = false;
                    for item in items.iter_mut().filter(|i| matches(i)) {
                        found = true;
                        if let Value::Object(m) = item {
                            match (sub, &v) {
                                (Some(sub), _) => put(m, sub, v.clone(), kind),
                                (None, Value::Object(fields)) => {
                                    for (k, fv) in fields {
                                        set(m, k, fv.clone());
                                    }
                                }
                                (None, _) => {
                                    return Err(ScimError::invalid_value(format!(
                                        "{text:?} needs an object as its value"
                                    )))
                                }
                            }
                        }
                    }
                    // Entra ID sets `emails[type eq "work"].value` on a user who has no work address yet.
                    if !found {
                        let mut item = Map::new();
                        item.insert(key.clone(), Value::String(wanted.clone()));
                        match (sub, v) {
                            (Some(sub), v) => {
                                item.insert(sub.clone(), v);
                            }
                            (None, Value::Object(fields)) => item.extend(fields),
                            (None, _) => {
                                return Err(ScimError::invalid_value(format!(
                                    "{text:?} needs an object as its value"
                                )))
                            }
                        }
                        items.push(Value::Object(item));
                    }
                }
                (_, _, None) => {
                    return Err(ScimError::invalid_value(format!("{text:?} needs a value")))
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn group(members: &[&str]) -> GroupPatchState {
        GroupPatchState {
            kept: json!({"displayName": "team", "externalId": "e"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            members: members.iter().map(|m| m.to_string()).collect(),
        }
    }

    fn ops(v: Value) -> Vec<PatchOp> {
        parse(v).expect("parses")
    }

    #[test]
    fn authentiks_member_ops_touch_only_the_named_members() {
        let mut g = group(&["a", "b"]);
        apply_group(&mut g, "g1", &ops(json!({"Operations": [{"op": "remove", "path": "members", "value": [{"value": "b"}]}]}))).expect("applies");
        assert_eq!(g.members, BTreeSet::from(["a".to_string()]));
        apply_group(&mut g, "g1", &ops(json!({"Operations": [{"op": "add", "path": "members", "value": [{"value": "a"}, {"value": "c"}]}]}))).expect("applies");
        assert_eq!(g.members.len(), 2, "adding an existing member is no error");
    }

    #[test]
    fn okta_and_entra_shapes() {
        let mut g = group(&["a", "b"]);
        apply_group(
            &mut g,
            "g1",
            &ops(json!({"Operations": [{"op": "Remove", "path": "members[value eq \"a\"]"}]})),
        )
        .expect("okta");
        assert_eq!(g.members, BTreeSet::from(["b".to_string()]));
        let mut u = json!({"userName": "x", "active": true})
            .as_object()
            .cloned()
            .unwrap_or_default();
        apply_user(
            &mut u,
            "u1",
            &ops(json!({"Operations": [{"op": "replace", "value": {"active": false}}]})),
        )
        .expect("okta deactivation");
        assert_eq!(u["active"], false);
        apply_user(
            &mut u,
            "u1",
            &ops(json!({"Operations": [{"op": "Replace", "path": "active", "value": "False"}]})),
        )
        .expect("entra");
        assert_eq!(u["active"], "False", "read as false by the user parser");
        apply_user(&mut u, "u1", &ops(json!({"Operations": [{"op": "Add", "path": "emails[type eq \"work\"].value", "value": "x@y.z"}]}))).expect("entra email");
        assert_eq!(u["emails"], json!([{"type": "work", "value": "x@y.z"}]));
        apply_user(&mut u, "u1", &ops(json!({"Operations": [{"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "n@y.z"}]}))).expect("entra email change");
        assert_eq!(u["emails"], json!([{"type": "work", "value": "n@y.z"}]));
        apply_user(&mut u, "u1", &ops(json!({"Operations": [{"op": "Replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": {"value": "m"}}]}))).expect("extension");
        assert_eq!(
            u["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["manager"]["value"],
            "m"
        );
        apply_user(
            &mut u,
            "u1",
            &ops(
                json!({"Operations": [{"op": "replace", "path": "name.givenName", "value": "G"}]}),
            ),
        )
        .expect("sub");
        assert_eq!(u["name"]["givenName"], "G");
    }

    #[test]
    fn authentiks_rename_carries_its_own_id_and_no_schemas() {
        let mut g = group(&["a"]);
        let rename = json!({"Operations": [{"op": "replace", "value": {"id": "g1", "displayName": "renamed",
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "externalId": "e"}}]});
        apply_group(&mut g, "g1", &ops(rename.clone())).expect("applies");
        let once = g.clone();
        apply_group(&mut g, "g1", &ops(rename)).expect("again");
        assert_eq!(g, once, "the same rename twice changes nothing more");
        assert_eq!(g.kept["displayName"], "renamed");
        assert_eq!(g.members.len(), 1, "members untouched");
        let e = apply_group(
            &mut g,
            "g1",
            &ops(json!({"Operations": [{"op": "replace", "value": {"id": "other"}}]})),
        )
        .expect_err("id");
        assert_eq!(e.scim_type, Some("mutability"));
    }

    #[test]
    fn what_cannot_be_applied_is_refused() {
        let mut g = group(&[]);
        for bad in [
            json!({"Operations": [{"op": "replace", "path": "title", "value": "x"}]}),
            json!({"Operations": [{"op": "add", "path": "members[value eq \"a\"]", "value": [{"value": "a"}]}]}),
            json!({"Operations": [{"op": "remove"}]}),
            json!({"Operations": [{"op": "move", "path": "members"}]}),
            json!({"Operations": [{"op": "add", "path": "members"}]}),
            json!({"Operations": [{"op": "replace", "path": "displayName", "value": 3}]}),
            json!({"Operations": [{"op": "remove", "path": "displayName"}]}),
            json!({"Operations": [{"op": "add", "path": "members[value co \"a\"]", "value": []}]}),
        ] {
            let result = parse(bad.clone()).and_then(|o| apply_group(&mut g, "g1", &o));
            assert_eq!(result.expect_err(&bad.to_string()).status, 400, "{bad}");
        }
        for bad in [
            json!({}),
            json!({"Operations": []}),
            json!([]),
            json!({"Operations": {}}),
        ] {
            assert!(parse(bad.clone()).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        /// No PATCH body makes parsing or applying panic.
        #[test]
        fn never_panics(path in ".{0,80}", op in "(add|remove|replace|Add|x)", value in ".{0,80}") {
            let value: Value = serde_json::from_str(&value).unwrap_or(Value::String(value));
            let body = json!({"Operations": [{"op": op, "path": path, "value": value}]});
            if let Ok(ops) = parse(body) {
                let _ = apply_group(&mut group(&["a"]), "g1", &ops);
                let mut user = json!({"userName": "x"}).as_object().cloned().unwrap_or_default();
                let _ = apply_user(&mut user, "u1", &ops);
            }
        }

        /// A PATCH that only adds and removes members by id, applied to the members it names (as the store
        /// reads them), changes the group exactly as it does applied to all of its members.
        #[test]
        fn naming_members_changes_the_group_as_the_whole_list_does(
            before in proptest::collection::btree_set("[a-e]", 0..5),
            steps in proptest::collection::vec(("(add|remove|removef|object)", proptest::collection::vec("[a-f]", 1..3)), 1..6),
        ) {
            let ops: Vec<Value> = steps
                .iter()
                .map(|(kind, ids)| {
                    let values: Vec<Value> = ids.iter().map(|id| json!({"value": id})).collect();
                    match kind.as_str() {
                        "removef" => json!({"op": "remove", "path": format!("members[value eq \"{}\"]", ids[0])}),
                        "object" => json!({"op": "add", "value": {"members": values}}),
                        op => json!({"op": op, "path": "members", "value": values}),
                    }
                })
                .collect();
            let ops = parse(json!({"Operations": ops})).expect("parses");
            let named = named_members(&ops).expect("only adds and removes by id");
            let ids: Vec<&str> = before.iter().map(String::as_str).collect();
            let mut whole = group(&ids);
            apply_group(&mut whole, "g1", &ops).expect("applies");
            let mut part = GroupPatchState { kept: Map::new(), members: named.clone() };
            apply_group(&mut part, "g1", &ops).expect("applies");
            // The named members' state comes from the part; everyone else keeps theirs.
            let mut merged: BTreeSet<String> =
                before.iter().filter(|m| !named.contains(*m)).cloned().collect();
            merged.extend(part.members);
            proptest::prop_assert_eq!(merged, whole.members);
        }
    }

    #[test]
    fn replacing_or_emptying_the_list_needs_every_member() {
        for op in [
            json!({"op": "replace", "path": "members", "value": [{"value": "a"}]}),
            json!({"op": "remove", "path": "members"}),
            json!({"op": "replace", "value": {"members": [{"value": "a"}]}}),
            json!({"op": "replace", "path": "members[value eq \"a\"]", "value": [{"value": "b"}]}),
        ] {
            let ops = parse(json!({"Operations": [op.clone()]})).expect("parses");
            assert_eq!(named_members(&ops), None, "{op}");
        }
    }
}
