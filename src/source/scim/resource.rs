//! Users and groups as SCIM bodies (RFC 7643 §4): what the bridge reads from them, and the answers it
//! renders. The body the identity provider sent is kept whole and echoed back, because Authentik compares
//! its next write with the last answer and re-sends anything that differs (docs/src/upstream/scim.md §9).

use serde_json::{Map, Value};

use super::error::ScimError;
use crate::domain::Email;

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// Attributes the server assigns: never stored from a request, always rendered from the row.
const SERVER_OWNED: &[&str] = &["id", "meta"];

/// What the bridge reads from a user body.
#[derive(Debug, Clone, PartialEq)]
pub struct UserBody {
    pub user_name: String,
    pub external_id: Option<String>,
    /// The name an invitation shows.
    pub display_name: Option<String>,
    pub email: Option<Email>,
    pub active: bool,
    /// The body to keep: as sent, less `id` and `meta`, with `active` as a boolean.
    pub kept: Map<String, Value>,
}

/// What the bridge reads from a group body. `members` is `None` when the body has no `members` key.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupBody {
    pub display_name: String,
    pub external_id: Option<String>,
    pub members: Option<Vec<String>>,
    /// The body to keep: as sent, less `id`, `meta` and `members`.
    pub kept: Map<String, Value>,
}

/// The object a body must be.
pub fn object(body: Value, what: &str) -> Result<Map<String, Value>, ScimError> {
    match body {
        Value::Object(map) => Ok(map),
        other => Err(ScimError::invalid_syntax(format!(
            "a {what} must be a JSON object, not {}",
            kind(&other)
        ))),
    }
}

pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The value of `key`, compared without case as RFC 7643 §2.1 wants attribute names to be.
pub fn get<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// Removes `key` whatever its case; returns what it held.
pub fn take(map: &mut Map<String, Value>, key: &str) -> Option<Value> {
    let found = map.keys().find(|k| k.eq_ignore_ascii_case(key)).cloned()?;
    map.remove(&found)
}

fn optional_string(map: &Map<String, Value>, key: &str) -> Result<Option<String>, ScimError> {
    match get(map, key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(ScimError::invalid_value(format!(
            "{key} must be a string, not {}",
            kind(other)
        ))),
    }
}

fn required_string(map: &Map<String, Value>, key: &str, what: &str) -> Result<String, ScimError> {
    match optional_string(map, key)? {
        Some(s) if !s.trim().is_empty() => Ok(s),
        _ => Err(ScimError::invalid_value(format!("a {what} needs a {key}"))),
    }
}

/// A boolean, or Entra ID's `"True"` / `"False"` in any case (docs/src/upstream/scim.md §13.2).
pub fn boolean(value: &Value, key: &str) -> Result<bool, ScimError> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        other => Err(ScimError::invalid_value(format!(
            "{key} must be true or false, not {}",
            kind(other)
        ))),
    }
}

impl UserBody {
    pub fn parse(mut map: Map<String, Value>) -> Result<UserBody, ScimError> {
        for key in SERVER_OWNED {
            take(&mut map, key);
        }
        let user_name = required_string(&map, "userName", "user")?;
        let external_id = optional_string(&map, "externalId")?;
        // Absent means active (RFC 7643 leaves it optional); a value present is kept as a boolean.
        let active = match take(&mut map, "active") {
            None | Some(Value::Null) => true,
            Some(v) => {
                let active = boolean(&v, "active")?;
                map.insert("active".into(), Value::Bool(active));
                active
            }
        };
        let email = primary_email(&map, &user_name)?;
        let display_name = display_name(&map)?;
        Ok(UserBody {
            user_name,
            external_id,
            display_name,
            email,
            active,
            kept: map,
        })
    }
}

/// The person's email: the primary `emails[].value`, else the first, else `userName` when it is an address.
fn primary_email(map: &Map<String, Value>, user_name: &str) -> Result<Option<Email>, ScimError> {
    let entries = match get(map, "emails") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(entries)) => entries.iter().collect(),
        Some(other) => {
            return Err(ScimError::invalid_value(format!(
                "emails must be an array, not {}",
                kind(other)
            )))
        }
    };
    let mut values = Vec::new();
    for entry in entries {
        let Value::Object(entry) = entry else {
            return Err(ScimError::invalid_value("each of emails must be an object"));
        };
        let value = optional_string(entry, "value")?;
        let primary = match get(entry, "primary") {
            None | Some(Value::Null) => false,
            Some(v) => boolean(v, "emails.primary")?,
        };
        // An address that is not one is passed over, not refused: the person is still provisioned, and is
        // matched by another address or not at all.
        if let Some(email) = value.as_deref().and_then(Email::parse) {
            values.push((primary, email));
        }
    }
    let chosen = values
        .iter()
        .find(|(primary, _)| *primary)
        .or(values.first())
        .map(|(_, email)| email.clone());
    Ok(chosen.or_else(|| Email::parse(user_name)))
}

/// `displayName`, else `name.formatted`, else given and family names, trimmed (Authentik sends a family
/// name of one space for a one-word name).
fn display_name(map: &Map<String, Value>) -> Result<Option<String>, ScimError> {
    let trimmed = |s: String| {
        let t = s.trim().to_string();
        (!t.is_empty()).then_some(t)
    };
    if let Some(name) = optional_string(map, "displayName")?.and_then(trimmed) {
        return Ok(Some(name));
    }
    let name = match get(map, "name") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(name)) => name,
        Some(other) => {
            return Err(ScimError::invalid_value(format!(
                "name must be an object, not {}",
                kind(other)
            )))
        }
    };
    if let Some(formatted) = optional_string(name, "formatted")?.and_then(trimmed) {
        return Ok(Some(formatted));
    }
    let given = optional_string(name, "givenName")?.unwrap_or_default();
    let family = optional_string(name, "familyName")?.unwrap_or_default();
    Ok(trimmed(format!("{} {}", given.trim(), family.trim())))
}

impl GroupBody {
    pub fn parse(mut map: Map<String, Value>) -> Result<GroupBody, ScimError> {
        for key in SERVER_OWNED {
            take(&mut map, key);
        }
        let members = match take(&mut map, "members") {
            None | Some(Value::Null) => None,
            Some(value) => Some(member_ids(&value)?),
        };
        let display_name = required_string(&map, "displayName", "group")?;
        let external_id = optional_string(&map, "externalId")?;
        Ok(GroupBody {
            display_name,
            external_id,
            members,
            kept: map,
        })
    }
}

/// The ids in a `members` value: a list of `{"value": id}` (`display`, `$ref` and `type` are ignored).
pub fn member_ids(value: &Value) -> Result<Vec<String>, ScimError> {
    let items: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        // A single member object, as some clients send it.
        Value::Object(_) => vec![value],
        other => {
            return Err(ScimError::invalid_value(format!(
                "members must be a list of {{\"value\": id}}, not {}",
                kind(other)
            )))
        }
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::Object(member) => match get(member, "value") {
                Some(Value::String(id)) if !id.is_empty() => Ok(id.clone()),
                _ => Err(ScimError::invalid_value(
                    "each member needs a \"value\" holding a user's id",
                )),
            },
            other => Err(ScimError::invalid_value(format!(
                "each member must be an object, not {}",
                kind(other)
            ))),
        })
        .collect()
}

/// `meta` as RFC 7643 §3.1 describes it.
pub struct Meta<'a> {
    pub resource_type: &'static str,
    pub created: &'a str,
    pub modified: &'a str,
    pub location: String,
    pub version: i64,
}

/// A stored body rendered as an answer: `id`, `meta`, and `schemas` when the request had none.
pub fn render(
    kept: &Map<String, Value>,
    schema: &str,
    id: &str,
    meta: Meta<'_>,
) -> Map<String, Value> {
    let mut out = kept.clone();
    if get(&out, "schemas").is_none() {
        out.insert("schemas".into(), Value::Array(vec![schema.into()]));
    }
    out.insert("id".into(), Value::String(id.into()));
    out.insert(
        "meta".into(),
        serde_json::json!({
            "resourceType": meta.resource_type,
            "created": meta.created,
            "lastModified": meta.modified,
            "location": meta.location,
            "version": format!("W/\"{}\"", meta.version),
        }),
    );
    out
}

/// Which attributes an answer carries (RFC 7644 §3.4.2.5): `attributes` keeps only those named (and `id`,
/// `schemas`, which are always returned), `excludedAttributes` drops those named. Names compare without case,
/// may carry the core schema's URN, and may name a sub-attribute (`name.givenName`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projection {
    pub attributes: Vec<String>,
    pub excluded: Vec<String>,
}

/// Attributes every answer carries, whatever was asked.
const ALWAYS: &[&str] = &["id", "schemas"];

fn bare(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    for prefix in [USER_SCHEMA, GROUP_SCHEMA] {
        let prefix = format!("{}:", prefix.to_ascii_lowercase());
        if let Some(rest) = lower.strip_prefix(&prefix) {
            return rest.to_string();
        }
    }
    lower
}

impl Projection {
    /// Reads the two comma-separated lists.
    pub fn parse(attributes: Option<&str>, excluded: Option<&str>) -> Projection {
        let split = |v: Option<&str>| -> Vec<String> {
            v.map(|v| v.split(',').map(bare).filter(|a| !a.is_empty()).collect())
                .unwrap_or_default()
        };
        Projection {
            attributes: split(attributes),
            excluded: split(excluded),
        }
    }

    /// Whether the answer leaves out `name` (a top-level attribute) entirely.
    pub fn leaves_out(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        if self.excluded.contains(&name) {
            return true;
        }
        !self.attributes.is_empty()
            && !self
                .attributes
                .iter()
                .any(|a| a == &name || a.split('.').next() == Some(name.as_str()))
    }

    pub fn apply(&self, resource: &mut Map<String, Value>) {
        if !self.attributes.is_empty() {
            resource.retain(|key, value| {
                let key = key.to_ascii_lowercase();
                if ALWAYS.contains(&key.as_str()) || self.attributes.contains(&key) {
                    return true;
                }
                let subs: Vec<&str> = self
                    .attributes
                    .iter()
                    .filter_map(|a| a.strip_prefix(&format!("{key}.")))
                    .collect();
                if subs.is_empty() {
                    return false;
                }
                keep_subs(value, &subs);
                true
            });
        }
        for name in &self.excluded {
            if ALWAYS.contains(&name.as_str()) {
                continue;
            }
            match name.split_once('.') {
                None => {
                    take(resource, name);
                }
                Some((attr, sub)) => {
                    let key = resource
                        .keys()
                        .find(|k| k.eq_ignore_ascii_case(attr))
                        .cloned();
                    if let Some(value) = key.and_then(|k| resource.get_mut(&k)) {
                        drop_sub(value, sub);
                    }
                }
            }
        }
    }
}

/// Keeps only the named sub-attributes, in an object or in each object of a list.
fn keep_subs(value: &mut Value, subs: &[&str]) {
    match value {
        Value::Object(map) => map.retain(|k, _| subs.iter().any(|s| k.eq_ignore_ascii_case(s))),
        Value::Array(items) => items.iter_mut().for_each(|i| keep_subs(i, subs)),
        _ => {}
    }
}

fn drop_sub(value: &mut Value, sub: &str) {
    match value {
        Value::Object(map) => {
            take(map, sub);
        }
        Value::Array(items) => items.iter_mut().for_each(|i| drop_sub(i, sub)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(v: Value) -> Result<UserBody, ScimError> {
        UserBody::parse(object(v, "user")?)
    }

    #[test]
    fn authentiks_user_body() {
        let u = user(json!({"userName": "bob", "id": "x", "meta": {},
            "name": {"formatted": "Bob ", "familyName": " ", "givenName": "Bob"},
            "displayName": "Bob", "active": true,
            "emails": [{"value": "Bob@Example.com", "type": "other", "primary": true}],
            "schemas": [USER_SCHEMA], "externalId": "abc"}))
        .expect("parses");
        assert_eq!(u.email, Email::parse("bob@example.com"));
        assert_eq!(u.display_name.as_deref(), Some("Bob"));
        assert!(u.active && !u.kept.contains_key("id") && !u.kept.contains_key("meta"));
        assert_eq!(
            u.kept["name"]["familyName"], " ",
            "kept as sent, for the echo"
        );
    }

    #[test]
    fn email_choice_and_entra_booleans() {
        let u = user(json!({"userName": "a@x.org", "active": "False",
            "emails": [{"value": "one@x.org"}, {"value": "two@x.org", "primary": "True"}]}))
        .expect("parses");
        assert_eq!(u.email, Email::parse("two@x.org"));
        assert!(!u.active);
        assert_eq!(u.kept["active"], false);
        let u = user(json!({"userName": "a@x.org"})).expect("parses");
        assert_eq!(u.email, Email::parse("a@x.org"), "from userName");
        let u = user(
            json!({"userName": "a", "emails": [{"value": "not an address"}, {"value": "b@x.org"}]}),
        )
        .expect("parses");
        assert_eq!(u.email, Email::parse("b@x.org"), "the address that is one");
        assert!(user(json!({"userName": "plain"}))
            .expect("parses")
            .email
            .is_none());
    }

    #[test]
    fn wrong_types_are_refused() {
        for bad in [
            json!([]),
            json!({"active": true}),
            json!({"userName": 5}),
            json!({"userName": "a", "active": "maybe"}),
            json!({"userName": "a", "emails": "a@b.c"}),
            json!({"userName": "a", "emails": [{"value": 5}]}),
            json!({"userName": "a", "name": "A"}),
        ] {
            let e = user(bad.clone()).expect_err(&bad.to_string());
            assert_eq!(e.status, 400, "{bad}");
        }
    }

    #[test]
    fn group_bodies() {
        let g = GroupBody::parse(
            object(json!({"displayName": "team", "externalId": "u", "members": [{"value": "a", "display": "A"}]}), "group")
                .expect("object"),
        )
        .expect("parses");
        assert_eq!(g.members, Some(vec!["a".to_string()]));
        assert!(!g.kept.contains_key("members"));
        let g = GroupBody::parse(object(json!({"displayName": "t"}), "group").expect("object"))
            .expect("parses");
        assert_eq!(g.members, None);
        assert!(GroupBody::parse(
            object(
                json!({"displayName": "t", "members": [{"id": "a"}]}),
                "group"
            )
            .expect("object")
        )
        .is_err());
        assert!(
            GroupBody::parse(object(json!({"displayName": ""}), "group").expect("object")).is_err()
        );
    }

    #[test]
    fn projections() {
        let full = || {
            json!({"id": "1", "schemas": [USER_SCHEMA], "userName": "u", "name": {"givenName": "G", "familyName": "F"},
                "emails": [{"value": "a@b.c", "type": "work"}], "meta": {}})
            .as_object()
            .cloned()
            .unwrap_or_default()
        };
        let mut only = full();
        Projection::parse(Some("userName,name.givenName"), None).apply(&mut only);
        assert_eq!(
            Value::Object(only),
            json!({"id": "1", "schemas": [USER_SCHEMA], "userName": "u", "name": {"givenName": "G"}})
        );
        let mut less = full();
        Projection::parse(
            None,
            Some("urn:ietf:params:scim:schemas:core:2.0:User:name,emails.type,id"),
        )
        .apply(&mut less);
        assert!(less.get("name").is_none() && less.contains_key("id"));
        assert_eq!(less["emails"], json!([{"value": "a@b.c"}]));
        assert!(Projection::parse(None, Some("Members")).leaves_out("members"));
        assert!(Projection::parse(Some("displayName"), None).leaves_out("members"));
        assert!(!Projection::parse(Some("members.value"), None).leaves_out("members"));
    }

    proptest::proptest! {
        /// No JSON body makes the user or group parser panic.
        #[test]
        fn never_panics(text in ".{0,300}") {
            if let Ok(value) = serde_json::from_str::<Value>(&text) {
                let _ = object(value.clone(), "user").and_then(UserBody::parse);
                let _ = object(value, "group").and_then(GroupBody::parse);
            }
        }
    }
}
