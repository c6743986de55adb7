//! A stateful fake of the OpenFGA v1.18 HTTP API (`docs/src/upstream/openfga.md`).
//!
//! It answers the calls the OpenFGA sink makes the way the real server does; the section numbers
//! below are those of docs/src/upstream/openfga.md. The `{code, message}` error envelope with the status
//! mapping of §3.1 and the 400s of §3.2; the identifier rules of §5; atomic writes with
//! `on_duplicate` / `on_missing` (§2.2, §4); every Read filter of §2.3 with opaque continuation
//! tokens; the model calls of §2.4; GetStore's 404 (§2.6); preshared-key authentication (§2.7); the
//! response headers of §2.1. Unset message fields come out as `null` and unknown request fields are
//! ignored, as grpc-gateway's default marshaler does (§2.1).
//!
//! Deliberate simplifications, none of which the sink can observe through the calls it makes: Check
//! evaluates `this`, `computedUserset`, `tupleToUserset`, `union`, `intersection` and `difference`
//! over stored tuples, but ignores conditions and contextual tuples; model writes are only checked
//! for a schema version and at least one type; there is no OIDC, no changelog and no ListObjects /
//! ListUsers / Expand. Stores, models and tuples sit in separate tables keyed by store id with no
//! link between them, as in the SQL datastores: that is why a Read on an unknown store answers 200
//! with no tuples while GetStore answers 404 (docs/src/upstream/openfga.md §2.3, §2.6).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use rand::Rng;
use serde_json::{json, Map, Value};

use super::{new_uuid, parse_query};

/// Page sizes of Read, ListStores and ReadAuthorizationModels (docs/src/upstream/openfga.md §2.3).
const DEFAULT_PAGE_SIZE: usize = 50;
const MAX_PAGE_SIZE: usize = 100;
/// The proto limits on a continuation token (docs/src/upstream/openfga.md §2.3).
const MAX_TOKEN_BYTES: usize = 5120;
/// The proto limit on `user` (docs/src/upstream/openfga.md §5), counted in bytes.
const MAX_USER_BYTES: usize = 512;
/// How deep Check follows usersets before giving up (the server's default resolve depth is 25).
const MAX_CHECK_DEPTH: usize = 25;

const ULID_PATTERN: &str = "^[ABCDEFGHJKMNPQRSTVWXYZ0-9]{26}$";
/// The proto patterns, printed the way protoc-gen-validate quotes them in its messages.
const OBJECT_PATTERN: &str = "^[^\\\\s]{2,256}$";
const RELATION_PATTERN: &str = "^[^:#@\\\\s]{1,50}$";
const READ_USER_PATTERN: &str = "^[^\\\\s]{1,511}:[^\\\\s]{1,511}$";
/// Crockford base32, the ULID alphabet.
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The model of docs/src/upstream/openfga.md §6 (`type user`; `type group` with `define member:
/// [user]`), exactly as `fga model transform` prints it.
pub fn minimal_model() -> Value {
    json!({"schema_version":"1.1","type_definitions":[{"type":"user"},{"metadata":{"relations":{"member":{"directly_related_user_types":[{"type":"user"}]}}},"relations":{"member":{"this":{}}},"type":"group"}]})
}

/// Settings of a [`FakeOpenFga`].
#[derive(Clone, Debug)]
pub struct FakeOpenFgaOptions {
    /// The one preshared key the server accepts (`OPENFGA_AUTHN_PRESHARED_KEYS`); `None` is
    /// `authn.method: none`, where no header is needed (docs/src/upstream/openfga.md §2.7).
    pub preshared_key: Option<String>,
    /// `--max-tuples-per-write`: writes plus deletes allowed in one Write (docs/src/upstream/openfga.md
    /// §2.2).
    pub max_tuples_per_write: usize,
    /// `false` plays a server before v1.10: `on_duplicate` / `on_missing` are unknown fields,
    /// dropped silently, so a duplicate write or a missing delete always fails
    /// (docs/src/upstream/openfga.md §1).
    pub supports_on_duplicate: bool,
    /// Delay added before every answer.
    pub latency: Duration,
}

impl Default for FakeOpenFgaOptions {
    /// Key `fga-test-key`, the server's default limit of 100, a v1.10+ server, no latency.
    fn default() -> Self {
        FakeOpenFgaOptions {
            preshared_key: Some("fga-test-key".into()),
            max_tuples_per_write: 100,
            supports_on_duplicate: true,
            latency: Duration::ZERO,
        }
    }
}

/// One request the fake answered.
#[derive(Debug, Clone)]
pub struct FgaCall {
    /// `GET` or `POST` (or whatever was sent).
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// The JSON body of a POST (`null` if it was not JSON). For a GET, the query parameters as a
    /// JSON object of strings, so that `page_size` and `continuation_token` can be asserted too.
    pub body: Value,
    /// The status the fake answered.
    pub status: u16,
}

/// A stored tuple's value; the key is (object, relation, user).
#[derive(Clone, Debug)]
struct TupleRec {
    /// `null` or `{"name", "context"}`.
    condition: Value,
    at: SystemTime,
}

#[derive(Clone, Debug)]
struct StoreRec {
    name: String,
    created_at: SystemTime,
    updated_at: SystemTime,
}

#[derive(Clone, Debug)]
struct ModelRec {
    id: String,
    seq: u64,
    /// The model as the server returns it (`id` included).
    body: Value,
}

type TupleKey = (String, String, String);
/// A parsed key and the raw JSON object it came from (for its `condition`).
type RawKey = (TupleKey, Map<String, Value>);

struct State {
    token: Option<String>,
    max_tuples_per_write: usize,
    supports_on_duplicate: bool,
    default_store: String,
    stores: BTreeMap<String, StoreRec>,
    /// Per store id, oldest first.
    models: BTreeMap<String, Vec<ModelRec>>,
    /// Per store id, keyed by (object, relation, user): the order Read pages in.
    tuples: BTreeMap<String, BTreeMap<TupleKey, TupleRec>>,
    seq: u64,
    calls: Vec<FgaCall>,
    writes: Vec<Value>,
    latency: Duration,
    fail_remaining: usize,
    fail_status: u16,
    down: bool,
}

/// An error answer: the envelope of docs/src/upstream/openfga.md §3.1.
#[derive(Debug)]
struct FgaError {
    status: u16,
    code: &'static str,
    message: String,
}

impl FgaError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        FgaError {
            status,
            code,
            message: message.into(),
        }
    }
    fn validation(message: impl Into<String>) -> Self {
        Self::new(400, "validation_error", message)
    }
    /// A server-side tuple check: `Invalid tuple '<object#relation@user>'. Reason: …`
    /// (docs/src/upstream/openfga.md §3.2).
    fn invalid_tuple(key: &TupleKey, reason: &str) -> Self {
        Self::validation(format!(
            "Invalid tuple '{}'. Reason: {reason}",
            tuple_string(key)
        ))
    }
    /// A protoc-gen-validate failure; the server keeps only the last `caused by` part
    /// (docs/src/upstream/openfga.md §3.1).
    fn proto(field: &str, rule: &str) -> Self {
        Self::validation(format!("invalid {field}: {rule}"))
    }
    fn regex(field: &str, pattern: &str) -> Self {
        Self::proto(
            field,
            &format!("value does not match regex pattern \"{pattern}\""),
        )
    }
    fn latest_model_not_found(store: &str) -> Self {
        Self::new(
            400,
            "latest_authorization_model_not_found",
            format!("No authorization models found for store '{store}'"),
        )
    }
    fn model_not_found(id: &str) -> Self {
        Self::new(
            400,
            "authorization_model_not_found",
            format!("Authorization Model '{id}' not found"),
        )
    }
    fn bad_token() -> Self {
        Self::new(
            400,
            "invalid_continuation_token",
            "Invalid continuation token",
        )
    }
    fn page_size() -> Self {
        Self::new(
            400,
            "page_size_invalid",
            "page size must be between 1 and 100",
        )
    }
    /// grpc-gateway's answer for a path it has no route for (docs/src/upstream/openfga.md §3.2,
    /// *inferred*).
    fn undefined_endpoint() -> Self {
        Self::new(404, "undefined_endpoint", "Not Found")
    }
}

/// The envelope an injected fault answers with: the code the server's mapping gives that status
/// (docs/src/upstream/openfga.md §3.1). 502/503/504 never come from OpenFGA itself, only from a proxy
/// in front of it; they get `unavailable`, the closest code the server has.
fn fault(status: u16) -> FgaError {
    match status {
        400 => FgaError::validation("Generic validation error"),
        401 => FgaError::new(401, "unauthenticated", "unauthenticated"),
        404 => FgaError::undefined_endpoint(),
        409 => FgaError::new(
            409,
            "Aborted",
            "transactional write failed due to conflict: one or more tuples to write were inserted by another transaction",
        ),
        422 => FgaError::new(
            422,
            "throttled_timeout_error",
            "timeout due to throttling on complex request",
        ),
        502..=504 => FgaError::new(status, "unavailable", reason(status)),
        _ => FgaError::new(status, "internal_error", "Internal Server Error"),
    }
}

fn reason(status: u16) -> String {
    StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error")
        .to_string()
}

struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Value,
}

/// A fresh ULID: 48 bits of milliseconds, then 80 random bits, in Crockford base32
/// (docs/src/upstream/openfga.md §2.1).
fn new_ulid() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis();
    let random: u128 = rand::rng().random::<u128>() & ((1u128 << 80) - 1);
    let v = ((ms & ((1u128 << 48) - 1)) << 80) | random;
    (0..26)
        .map(|i| CROCKFORD[((v >> (125 - 5 * i)) & 31) as usize] as char)
        .collect()
}

fn is_ulid(s: &str) -> bool {
    s.len() == 26
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b.is_ascii_uppercase() && !b"ILOU".contains(&b)))
}

/// protojson's `Timestamp`: RFC 3339 in UTC with 0, 3, 6 or 9 fractional digits.
fn rfc3339(t: SystemTime) -> String {
    let micros_form = super::iso_micros(t);
    let nanos = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .subsec_nanos();
    let base = &micros_form[..19];
    if nanos == 0 {
        format!("{base}Z")
    } else if nanos % 1_000_000 == 0 {
        format!("{base}.{:03}Z", nanos / 1_000_000)
    } else if nanos % 1000 == 0 {
        format!("{base}.{:06}Z", nanos / 1000)
    } else {
        format!("{base}.{nanos:09}Z")
    }
}

/// `object#relation@user`, the form the server's messages print a tuple in
/// (docs/src/upstream/openfga.md §3.2).
fn tuple_string((object, relation, user): &TupleKey) -> String {
    format!("{object}#{relation}@{user}")
}

/// The fields of docs/src/upstream/openfga.md §3.2's duplicate and missing-tuple messages.
fn key_fields((object, relation, user): &TupleKey) -> String {
    format!("user: '{user}', relation: '{relation}', object: '{object}'")
}

/// Go RE2's `\s`: `[\t\n\f\r ]` (docs/src/upstream/openfga.md §5). A no-break space is not in it.
fn is_re2_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ')
}

/// `^[^\s]{min,max}$`, counted in characters.
fn no_space(s: &str, min: usize, max: usize) -> bool {
    let n = s.chars().count();
    (min..=max).contains(&n) && !s.chars().any(is_re2_space)
}

/// `^[^:#@\s]{1,50}$`: the relation pattern (docs/src/upstream/openfga.md §5).
fn valid_relation(s: &str) -> bool {
    no_space(s, 1, 50) && !s.contains([':', '#', '@'])
}

/// One identifier part after splitting: non-empty, no RE2 whitespace and no control characters.
/// Other Unicode spaces, such as U+00A0, are plain characters to OpenFGA (docs/src/upstream/openfga.md
/// §5).
fn plain_part(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| is_re2_space(c) || c.is_control())
}

/// `IsValidObject`: `type:id`, exactly one `:` not at the start, no `#` (docs/src/upstream/openfga.md
/// §5).
fn valid_object(s: &str) -> bool {
    match s.split_once(':') {
        Some((t, id)) => plain_part(t) && plain_part(id) && !id.contains(':') && !s.contains('#'),
        None => false,
    }
}

/// `IsValidUser`: `type:id`, `type:id#relation` or `type:*`, at most one `:` and one `#`
/// (docs/src/upstream/openfga.md §5).
fn valid_user(s: &str) -> bool {
    let (object, relation) = match s.split_once('#') {
        Some((o, r)) => (o, Some(r)),
        None => (s, None),
    };
    if let Some(r) = relation {
        if !valid_relation(r) {
            return false;
        }
    }
    match object.split_once(':') {
        Some((t, id)) => {
            plain_part(t)
                && plain_part(id)
                && !id.contains(':')
                && !(id == "*" && relation.is_some())
        }
        None => false,
    }
}

fn type_of(object: &str) -> &str {
    object.split_once(':').map_or("", |(t, _)| t)
}

fn str_field<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
    owner: &str,
) -> Result<&'a str, FgaError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(""),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(FgaError::validation(format!(
            "invalid value for string field {name} of {owner}"
        ))),
    }
}

/// A message field: absent and `null` are both "unset".
fn obj_field<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
    owner: &str,
) -> Result<Option<&'a Map<String, Value>>, FgaError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(FgaError::validation(format!(
            "invalid value for message field {name} of {owner}"
        ))),
    }
}

/// `page_size` from a body or a query string: 1..=100, 50 when absent (docs/src/upstream/openfga.md
/// §2.3).
fn page_size(v: Option<&Value>) -> Result<usize, FgaError> {
    let n = match v {
        None | Some(Value::Null) => return Ok(DEFAULT_PAGE_SIZE),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        Some(_) => None,
    };
    match n {
        Some(n) if (1..=MAX_PAGE_SIZE as i64).contains(&n) => Ok(n as usize),
        Some(_) => Err(FgaError::page_size()),
        None => Err(FgaError::validation(
            "invalid value for int32 field page_size",
        )),
    }
}

/// Opaque tokens: hex of `<kind>:<cursor>`, so they match `^$|^[A-Za-z0-9-_]+={0,2}$`
/// (docs/src/upstream/openfga.md §2.3).
fn encode_token(kind: &str, cursor: &str) -> String {
    hex::encode(format!("{kind}:{cursor}"))
}

/// The cursor inside a token of `kind`; `None` for an empty token.
fn decode_token(v: Option<&Value>, kind: &str) -> Result<Option<String>, FgaError> {
    let token = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s.is_empty() => return Ok(None),
        Some(Value::String(s)) if s.len() <= MAX_TOKEN_BYTES => s,
        Some(_) => return Err(FgaError::bad_token()),
    };
    let text = hex::decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(FgaError::bad_token)?;
    match text.split_once(':') {
        Some((k, cursor)) if k == kind => Ok(Some(cursor.to_string())),
        _ => Err(FgaError::bad_token()),
    }
}

/// `consistency`: one of the enum's names, or absent (docs/src/upstream/openfga.md §2.3).
fn check_consistency(body: &Map<String, Value>) -> Result<(), FgaError> {
    match body.get("consistency") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s))
            if ["UNSPECIFIED", "MINIMIZE_LATENCY", "HIGHER_CONSISTENCY"].contains(&s.as_str()) =>
        {
            Ok(())
        }
        Some(v) => Err(FgaError::validation(format!(
            "invalid value for enum field consistency: {v}"
        ))),
    }
}

/// The condition of a write key as the server stores and returns it: `null` or `{name, context}`.
fn condition_of(key: &Map<String, Value>) -> Result<Value, FgaError> {
    match obj_field(key, "condition", "TupleKey")? {
        None => Ok(Value::Null),
        Some(c) => {
            let name = str_field(c, "name", "RelationshipCondition")?;
            if name.is_empty() {
                return Err(FgaError::proto(
                    "RelationshipCondition.Name",
                    "value length must be at least 1 runes",
                ));
            }
            let context = match c.get("context") {
                None | Some(Value::Null) => Value::Null,
                Some(v @ Value::Object(_)) => v.clone(),
                Some(_) => {
                    return Err(FgaError::validation(
                        "invalid value for message field context",
                    ))
                }
            };
            Ok(json!({"name": name, "context": context}))
        }
    }
}

/// The proto rules of `TupleKey` / `TupleKeyWithoutCondition` (docs/src/upstream/openfga.md §5).
fn proto_tuple_key(key: &Map<String, Value>, owner: &str) -> Result<RawKey, FgaError> {
    let user = str_field(key, "user", owner)?;
    let relation = str_field(key, "relation", owner)?;
    let object = str_field(key, "object", owner)?;
    if user.len() > MAX_USER_BYTES {
        return Err(FgaError::proto(
            &format!("{owner}.User"),
            "value length must be at most 512 bytes",
        ));
    }
    if !valid_relation(relation) {
        return Err(FgaError::regex(
            &format!("{owner}.Relation"),
            RELATION_PATTERN,
        ));
    }
    if !no_space(object, 2, 256) {
        return Err(FgaError::regex(&format!("{owner}.Object"), OBJECT_PATTERN));
    }
    Ok((
        (object.to_string(), relation.to_string(), user.to_string()),
        key.clone(),
    ))
}

/// The `tuple_keys` of a `writes` or `deletes` block: at least one item (proto `min_items: 1`).
fn tuple_keys(
    block: &Map<String, Value>,
    owner: &str,
    key_owner: &str,
) -> Result<Vec<RawKey>, FgaError> {
    let items = match block.get("tuple_keys") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => {
            return Err(FgaError::validation(format!(
                "invalid value for repeated field tuple_keys of {owner}"
            )))
        }
    };
    if items.is_empty() {
        return Err(FgaError::proto(
            &format!("{owner}.TupleKeys"),
            "value must contain at least 1 item(s)",
        ));
    }
    items
        .iter()
        .map(|item| match item {
            Value::Object(m) => proto_tuple_key(m, key_owner),
            _ => Err(FgaError::validation(format!(
                "invalid value for message field tuple_keys of {owner}"
            ))),
        })
        .collect()
}

/// `on_duplicate` / `on_missing`: `""`, `"error"` or `"ignore"` (docs/src/upstream/openfga.md §2.2).
/// Returns whether to ignore.
fn ignore_option(
    block: &Map<String, Value>,
    field: &str,
    supported: bool,
) -> Result<bool, FgaError> {
    if !supported {
        // Before v1.10 the field is unknown, and unknown fields are dropped
        // (docs/src/upstream/openfga.md §1).
        return Ok(false);
    }
    match block.get(field) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::String(s)) if s.is_empty() || s == "error" => Ok(false),
        Some(Value::String(s)) if s == "ignore" => Ok(true),
        Some(Value::String(s)) => Err(FgaError::validation(format!("invalid {field} option: {s}"))),
        Some(v) => Err(FgaError::validation(format!("invalid {field} option: {v}"))),
    }
}

// ---- the model ------------------------------------------------------------------------------

/// A model's type definition.
fn type_def<'a>(model: &'a Value, ty: &str) -> Option<&'a Value> {
    model["type_definitions"]
        .as_array()?
        .iter()
        .find(|t| t["type"].as_str() == Some(ty))
}

/// The rewrite of `ty#relation`, if the relation is defined.
fn rewrite<'a>(model: &'a Value, ty: &str, relation: &str) -> Option<&'a Value> {
    type_def(model, ty)?["relations"]
        .get(relation)
        .filter(|r| !r.is_null())
}

/// Fills in what protojson emits for unset fields (docs/src/upstream/openfga.md §2.1): `relations: {}`
/// and `metadata: null` on a type, `module: ""` and `source_info: null` in metadata, `condition:
/// ""` on a type restriction and `conditions: {}` on the model.
fn normalize_model(id: &str, model: &Value) -> Value {
    let mut types = Vec::new();
    for t in model["type_definitions"].as_array().into_iter().flatten() {
        let mut t = t.as_object().cloned().unwrap_or_default();
        if t.get("relations").is_none_or(Value::is_null) {
            t.insert("relations".into(), json!({}));
        }
        let metadata = match t.get("metadata") {
            Some(Value::Object(m)) => {
                let mut m = m.clone();
                let mut rels = Map::new();
                for (name, r) in m
                    .get("relations")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                {
                    let mut r = r.as_object().cloned().unwrap_or_default();
                    let refs: Vec<Value> = r
                        .get("directly_related_user_types")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .map(|rr| {
                            let mut rr = rr.as_object().cloned().unwrap_or_default();
                            rr.entry("condition").or_insert(json!(""));
                            Value::Object(rr)
                        })
                        .collect();
                    r.insert("directly_related_user_types".into(), json!(refs));
                    r.entry("module").or_insert(json!(""));
                    r.entry("source_info").or_insert(Value::Null);
                    rels.insert(name.clone(), Value::Object(r));
                }
                m.insert("relations".into(), Value::Object(rels));
                m.entry("module").or_insert(json!(""));
                m.entry("source_info").or_insert(Value::Null);
                Value::Object(m)
            }
            _ => Value::Null,
        };
        t.insert("metadata".into(), metadata);
        types.push(Value::Object(t));
    }
    let conditions = match model.get("conditions") {
        Some(c @ Value::Object(_)) => c.clone(),
        _ => json!({}),
    };
    json!({
        "id": id,
        "schema_version": model["schema_version"].as_str().unwrap_or("1.1"),
        "type_definitions": types,
        "conditions": conditions,
    })
}

/// `ValidateTupleForWrite` (docs/src/upstream/openfga.md §3.2, §5): syntax, then the object's type and
/// relation, then the user's type restriction in
/// `metadata.relations.<rel>.directly_related_user_types`.
fn validate_write(model: &Value, key: &TupleKey, condition: &Value) -> Result<(), FgaError> {
    let (object, relation, user) = key;
    if !valid_user(user) {
        return Err(FgaError::invalid_tuple(
            key,
            "the 'user' field is malformed",
        ));
    }
    if !valid_object(object) {
        return Err(FgaError::invalid_tuple(
            key,
            "invalid 'object' field format",
        ));
    }
    if object.ends_with(":*") {
        return Err(FgaError::invalid_tuple(
            key,
            "the 'object' field cannot reference a typed wildcard",
        ));
    }
    let ty = type_of(object);
    if type_def(model, ty).is_none() {
        return Err(FgaError::invalid_tuple(
            key,
            &format!("type '{ty}' not found"),
        ));
    }
    if rewrite(model, ty, relation).is_none() {
        return Err(FgaError::invalid_tuple(
            key,
            &format!("relation '{ty}#{relation}' not found"),
        ));
    }
    if user == &format!("{object}#{relation}") {
        return Err(FgaError::invalid_tuple(
            key,
            "cannot write a tuple that is implicit",
        ));
    }
    let (user_object, user_relation) = match user.split_once('#') {
        Some((o, r)) => (o, Some(r)),
        None => (user.as_str(), None),
    };
    let user_type = type_of(user_object);
    let wildcard = user_object.ends_with(":*");
    if let Some(r) = user_relation {
        if type_def(model, user_type).is_none() {
            return Err(FgaError::invalid_tuple(
                key,
                &format!("type '{user_type}' not found"),
            ));
        }
        if rewrite(model, user_type, r).is_none() {
            return Err(FgaError::invalid_tuple(
                key,
                &format!("relation '{user_type}#{r}' not found"),
            ));
        }
    }
    let refs = type_def(model, ty).and_then(|t| {
        t["metadata"]["relations"][relation.as_str()]["directly_related_user_types"].as_array()
    });
    let wanted_condition = condition["name"].as_str().unwrap_or("");
    let allowed = refs.into_iter().flatten().any(|r| {
        r["type"].as_str() == Some(user_type)
            && r["relation"].as_str().filter(|s| !s.is_empty()) == user_relation
            && r.get("wildcard").is_some_and(|w| !w.is_null()) == wildcard
            && r["condition"].as_str().unwrap_or("") == wanted_condition
    });
    if !allowed {
        let reason = if wildcard {
            format!("the typed wildcard '{user_object}' is not an allowed type restriction for '{ty}#{relation}'")
        } else {
            let shown = match user_relation {
                Some(r) => format!("{user_type}#{r}"),
                None => user_type.to_string(),
            };
            let with = if wanted_condition.is_empty() {
                String::new()
            } else {
                format!(" with condition '{wanted_condition}'")
            };
            format!("type '{shown}'{with} is not an allowed type restriction for '{ty}#{relation}'")
        };
        return Err(FgaError::invalid_tuple(key, &reason));
    }
    Ok(())
}

/// Check over stored tuples, following the model's rewrites (docs/src/upstream/openfga.md §2.5).
/// Conditions are not evaluated.
fn check(
    model: &Value,
    tuples: &BTreeMap<TupleKey, TupleRec>,
    object: &str,
    relation: &str,
    user: &str,
    depth: usize,
) -> bool {
    if depth > MAX_CHECK_DEPTH {
        return false;
    }
    let Some(rw) = rewrite(model, type_of(object), relation) else {
        return false;
    };
    eval(model, tuples, rw, object, relation, user, depth)
}

fn eval(
    model: &Value,
    tuples: &BTreeMap<TupleKey, TupleRec>,
    rw: &Value,
    object: &str,
    relation: &str,
    user: &str,
    depth: usize,
) -> bool {
    fn on<'t>(
        tuples: &'t BTreeMap<TupleKey, TupleRec>,
        object: &'t str,
        rel: &'t str,
    ) -> impl Iterator<Item = &'t str> {
        tuples
            .keys()
            .filter(move |(o, r, _)| o == object && r == rel)
            .map(|(_, _, u)| u.as_str())
    }
    let mut any = false;
    if rw.get("this").is_some() {
        let user_type = type_of(user);
        any |= on(tuples, object, relation).any(|u| {
            u == user
                || (!user.contains('#') && u == format!("{user_type}:*"))
                || match u.split_once('#') {
                    Some((o, r)) => check(model, tuples, o, r, user, depth + 1),
                    None => false,
                }
        });
    }
    if let Some(r) = rw["computedUserset"]["relation"].as_str() {
        any |= check(model, tuples, object, r, user, depth + 1);
    }
    if let (Some(ts), Some(cr)) = (
        rw["tupleToUserset"]["tupleset"]["relation"].as_str(),
        rw["tupleToUserset"]["computedUserset"]["relation"].as_str(),
    ) {
        any |= on(tuples, object, ts)
            .filter(|u| !u.contains('#'))
            .any(|u| check(model, tuples, u, cr, user, depth + 1));
    }
    if let Some(children) = rw["union"]["child"].as_array() {
        any |= children
            .iter()
            .any(|c| eval(model, tuples, c, object, relation, user, depth + 1));
    }
    if let Some(children) = rw["intersection"]["child"].as_array() {
        any |= !children.is_empty()
            && children
                .iter()
                .all(|c| eval(model, tuples, c, object, relation, user, depth + 1));
    }
    if let (Some(base), Some(sub)) = (
        rw["difference"].get("base"),
        rw["difference"].get("subtract"),
    ) {
        any |= eval(model, tuples, base, object, relation, user, depth + 1)
            && !eval(model, tuples, sub, object, relation, user, depth + 1);
    }
    any
}

fn tuple_json(key: &TupleKey, rec: &TupleRec) -> Value {
    let (object, relation, user) = key;
    json!({
        "key": {"user": user, "relation": relation, "object": object, "condition": rec.condition},
        "timestamp": rfc3339(rec.at),
    })
}

// ---- the server -----------------------------------------------------------------------------

impl State {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn add_model(&mut self, store: &str, model: &Value) -> String {
        let id = new_ulid();
        let seq = self.next_seq();
        let body = normalize_model(&id, model);
        self.models
            .entry(store.to_string())
            .or_default()
            .push(ModelRec {
                id: id.clone(),
                seq,
                body,
            });
        id
    }

    /// The model a Write or Check uses: the one named, else the store's latest
    /// (docs/src/upstream/openfga.md §2.2).
    fn resolve_model(&self, store: &str, id: &str) -> Result<&ModelRec, FgaError> {
        let models = self.models.get(store).map(Vec::as_slice).unwrap_or(&[]);
        if id.is_empty() {
            models
                .last()
                .ok_or_else(|| FgaError::latest_model_not_found(store))
        } else {
            models
                .iter()
                .find(|m| m.id == id)
                .ok_or_else(|| FgaError::model_not_found(id))
        }
    }

    fn process(&mut self, req: &HttpRequest, raw: &[u8]) -> Reply {
        let method = req.method().as_str().to_string();
        let path = req.path().to_string();
        let query = parse_query(req.query_string());
        let parsed: Result<Value, String> = if method == "GET" {
            Ok(Value::Object(
                query
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            ))
        } else if raw.iter().all(|b| b.is_ascii_whitespace()) {
            Ok(Value::Object(Map::new()))
        } else {
            serde_json::from_slice(raw).map_err(|e| e.to_string())
        };
        let logged = parsed.clone().unwrap_or(Value::Null);
        let mut headers = vec![("X-Request-Id", new_uuid())];

        let result = if self.down {
            // A server whose datastore is gone answers every call, even `/healthz`, with its
            // generic internal error (docs/src/upstream/openfga.md §3.2, last rows).
            Err(FgaError::new(
                500,
                "internal_error",
                "Internal Server Error",
            ))
        } else if self.fail_remaining > 0 {
            self.fail_remaining -= 1;
            Err(fault(self.fail_status))
        } else {
            self.dispatch(req, &method, &path, parsed, &mut headers)
        };
        let (status, body) = match result {
            Ok((status, body)) => (status, body),
            Err(e) => (e.status, json!({"code": e.code, "message": e.message})),
        };
        if status == 200 && method == "POST" && op_of(&method, &path) == "write" {
            self.writes.push(logged.clone());
        }
        self.calls.push(FgaCall {
            method,
            path,
            body: logged,
            status,
        });
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Authentication, then the route (docs/src/upstream/openfga.md §2.7: `/healthz` needs no
    /// credential).
    fn dispatch(
        &mut self,
        req: &HttpRequest,
        method: &str,
        path: &str,
        parsed: Result<Value, String>,
        headers: &mut Vec<(&'static str, String)>,
    ) -> Result<(u16, Value), FgaError> {
        if path == "/healthz" && method == "GET" {
            return Ok((200, json!({"status": "SERVING"})));
        }
        if let Some(key) = &self.token {
            // grpc-middleware's `AuthFromMD(ctx, "bearer")`: no header, or another scheme, is a
            // missing bearer token; a wrong key is `unauthenticated` (docs/src/upstream/openfga.md
            // §2.7, §3.2).
            let presented = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, k)| k.trim().to_string());
            match presented {
                None => {
                    return Err(FgaError::new(
                        401,
                        "bearer_token_missing",
                        "missing bearer token",
                    ))
                }
                Some(k) if &k != key => {
                    return Err(FgaError::new(401, "unauthenticated", "unauthenticated"))
                }
                Some(_) => {}
            }
        }
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let route = match (method, segments.as_slice()) {
            ("GET", ["stores"]) => Route::ListStores,
            ("POST", ["stores"]) => Route::CreateStore,
            ("GET", ["stores", id]) => Route::GetStore(id),
            ("GET", ["stores", id, "authorization-models"]) => Route::ListModels(id),
            ("POST", ["stores", id, "authorization-models"]) => Route::WriteModel(id),
            ("GET", ["stores", id, "authorization-models", m]) => Route::GetModel(id, m),
            ("POST", ["stores", id, "write"]) => Route::Write(id),
            ("POST", ["stores", id, "read"]) => Route::Read(id),
            ("POST", ["stores", id, "check"]) => Route::Check(id),
            _ => return Err(FgaError::undefined_endpoint()),
        };
        let body = match parsed {
            Ok(Value::Object(m)) => m,
            Ok(_) => {
                return Err(FgaError::validation(
                    "proto: syntax error: unexpected token, expected an object",
                ))
            }
            Err(e) => return Err(FgaError::validation(format!("proto: syntax error: {e}"))),
        };
        let store_check = |id: &str, request: &str| -> Result<String, FgaError> {
            if is_ulid(id) {
                Ok(id.to_string())
            } else {
                Err(FgaError::regex(&format!("{request}.StoreId"), ULID_PATTERN))
            }
        };
        match route {
            Route::ListStores => self.list_stores(&body).map(|b| (200, b)),
            Route::CreateStore => self.create_store(&body).map(|b| (201, b)),
            Route::GetStore(id) => {
                let id = store_check(id, "GetStoreRequest")?;
                headers.push(("Openfga-Store-Id", id.clone()));
                self.get_store(&id).map(|b| (200, b))
            }
            Route::ListModels(id) => {
                let id = store_check(id, "ReadAuthorizationModelsRequest")?;
                headers.push(("Openfga-Store-Id", id.clone()));
                self.list_models(&id, &body).map(|b| (200, b))
            }
            Route::WriteModel(id) => {
                let id = store_check(id, "WriteAuthorizationModelRequest")?;
                headers.push(("Openfga-Store-Id", id.clone()));
                self.write_model(&id, &body).map(|b| (201, b))
            }
            Route::GetModel(id, m) => {
                let id = store_check(id, "ReadAuthorizationModelRequest")?;
                if !is_ulid(m) {
                    return Err(FgaError::regex(
                        "ReadAuthorizationModelRequest.Id",
                        ULID_PATTERN,
                    ));
                }
                headers.push(("Openfga-Store-Id", id.clone()));
                let model = self
                    .models
                    .get(&id)
                    .and_then(|ms| ms.iter().find(|x| x.id == m))
                    .ok_or_else(|| FgaError::model_not_found(m))?;
                Ok((200, json!({"authorization_model": model.body})))
            }
            Route::Write(id) => {
                let id = store_check(id, "WriteRequest")?;
                headers.push(("Openfga-Store-Id", id.clone()));
                self.write(&id, &body, headers).map(|b| (200, b))
            }
            Route::Read(id) => {
                let id = store_check(id, "ReadRequest")?;
                headers.push(("Openfga-Store-Id", id.clone()));
                self.read(&id, &body).map(|b| (200, b))
            }
            Route::Check(id) => {
                let id = store_check(id, "CheckRequest")?;
                headers.push(("Openfga-Store-Id", id.clone()));
                self.check_call(&id, &body, headers).map(|b| (200, b))
            }
        }
    }

    fn store_json(&self, id: &str, s: &StoreRec) -> Value {
        json!({
            "id": id,
            "name": s.name,
            "created_at": rfc3339(s.created_at),
            "updated_at": rfc3339(s.updated_at),
            "deleted_at": null,
        })
    }

    /// `GET /stores`: by id, `name` an exact match (docs/src/upstream/openfga.md §2.6).
    fn list_stores(&self, query: &Map<String, Value>) -> Result<Value, FgaError> {
        let size = page_size(query.get("page_size"))?;
        let after = decode_token(query.get("continuation_token"), "s")?;
        let name = str_field(query, "name", "ListStoresRequest")?;
        let mut page: Vec<(&String, &StoreRec)> = self
            .stores
            .iter()
            .filter(|(id, s)| {
                (name.is_empty() || s.name == name)
                    && after.as_deref().is_none_or(|a| id.as_str() > a)
            })
            .take(size + 1)
            .collect();
        let more = page.len() > size;
        page.truncate(size);
        let token = match (more, page.last()) {
            (true, Some((id, _))) => encode_token("s", id),
            _ => String::new(),
        };
        Ok(json!({
            "stores": page.iter().map(|(id, s)| self.store_json(id, s)).collect::<Vec<_>>(),
            "continuation_token": token,
        }))
    }

    /// `POST /stores`: 201 with the new store, which has no `deleted_at` (docs/src/upstream/openfga.md
    /// §2.6).
    fn create_store(&mut self, body: &Map<String, Value>) -> Result<Value, FgaError> {
        let name = str_field(body, "name", "CreateStoreRequest")?;
        if name.chars().count() < 3 || name.chars().count() > 64 {
            return Err(FgaError::proto(
                "CreateStoreRequest.Name",
                "value length must be between 3 and 64 runes, inclusive",
            ));
        }
        let id = new_ulid();
        let now = SystemTime::now();
        self.stores.insert(
            id.clone(),
            StoreRec {
                name: name.to_string(),
                created_at: now,
                updated_at: now,
            },
        );
        Ok(json!({"id": id, "name": name, "created_at": rfc3339(now), "updated_at": rfc3339(now)}))
    }

    /// `GET /stores/{id}`: the only call that reports a missing store (docs/src/upstream/openfga.md
    /// §2.6).
    fn get_store(&self, id: &str) -> Result<Value, FgaError> {
        let s = self
            .stores
            .get(id)
            .ok_or_else(|| FgaError::new(404, "store_id_not_found", "Store ID not found"))?;
        Ok(self.store_json(id, s))
    }

    /// `GET /stores/{id}/authorization-models`: newest first; an unknown store has none
    /// (docs/src/upstream/openfga.md §2.4).
    fn list_models(&self, store: &str, query: &Map<String, Value>) -> Result<Value, FgaError> {
        let size = page_size(query.get("page_size"))?;
        let before = match decode_token(query.get("continuation_token"), "m")? {
            Some(c) => Some(c.parse::<u64>().map_err(|_| FgaError::bad_token())?),
            None => None,
        };
        let mut page: Vec<&ModelRec> = self
            .models
            .get(store)
            .into_iter()
            .flatten()
            .rev()
            .filter(|m| before.is_none_or(|b| m.seq < b))
            .take(size + 1)
            .collect();
        let more = page.len() > size;
        page.truncate(size);
        let token = match (more, page.last()) {
            (true, Some(m)) => encode_token("m", &m.seq.to_string()),
            _ => String::new(),
        };
        Ok(json!({
            "authorization_models": page.iter().map(|m| m.body.clone()).collect::<Vec<_>>(),
            "continuation_token": token,
        }))
    }

    /// `POST /stores/{id}/authorization-models`: every write is a new, immutable model
    /// (docs/src/upstream/openfga.md §2.4).
    fn write_model(&mut self, store: &str, body: &Map<String, Value>) -> Result<Value, FgaError> {
        let types = body
            .get("type_definitions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if types.is_empty() {
            return Err(FgaError::proto(
                "WriteAuthorizationModelRequest.TypeDefinitions",
                "value must contain at least 1 item(s)",
            ));
        }
        let version = str_field(body, "schema_version", "WriteAuthorizationModelRequest")?;
        if !matches!(version, "1.1" | "1.2") {
            return Err(FgaError::new(
                400,
                "invalid_authorization_model",
                format!("invalid schema version '{version}'"),
            ));
        }
        let mut seen = BTreeSet::new();
        for t in &types {
            let name = t["type"].as_str().unwrap_or("");
            if name.is_empty() || !seen.insert(name.to_string()) {
                return Err(FgaError::new(
                    400,
                    "invalid_authorization_model",
                    format!("the type name of a type definition is missing or repeated: '{name}'"),
                ));
            }
        }
        let id = self.add_model(store, &Value::Object(body.clone()));
        Ok(json!({"authorization_model_id": id}))
    }

    /// `POST /stores/{id}/write` (docs/src/upstream/openfga.md §2.2, §3.2, §4): proto rules, model
    /// resolution, request validation, then every tuple checked against the store before anything
    /// is applied, deletes first.
    fn write(
        &mut self,
        store: &str,
        body: &Map<String, Value>,
        headers: &mut Vec<(&'static str, String)>,
    ) -> Result<Value, FgaError> {
        let model_id = str_field(body, "authorization_model_id", "WriteRequest")?;
        if !model_id.is_empty() && !is_ulid(model_id) {
            return Err(FgaError::regex(
                "WriteRequest.AuthorizationModelId",
                ULID_PATTERN,
            ));
        }
        let writes_block = obj_field(body, "writes", "WriteRequest")?;
        let deletes_block = obj_field(body, "deletes", "WriteRequest")?;
        let writes = match writes_block {
            Some(b) => tuple_keys(b, "WriteRequestWrites", "TupleKey")?,
            None => Vec::new(),
        };
        let deletes = match deletes_block {
            Some(b) => tuple_keys(b, "WriteRequestDeletes", "TupleKeyWithoutCondition")?,
            None => Vec::new(),
        };
        let mut write_conditions = Vec::with_capacity(writes.len());
        for (_, raw) in &writes {
            write_conditions.push(condition_of(raw)?);
        }

        // `pkg/server/write.go` resolves the model before anything else, even for deletes
        // (docs/src/upstream/openfga.md §2.2).
        let model = self.resolve_model(store, model_id)?;
        headers.push(("Openfga-Authorization-Model-Id", model.id.clone()));
        let model = model.body.clone();

        let supported = self.supports_on_duplicate;
        let ignore_duplicates = match writes_block {
            Some(b) => ignore_option(b, "on_duplicate", supported)?,
            None => false,
        };
        let ignore_missing = match deletes_block {
            Some(b) => ignore_option(b, "on_missing", supported)?,
            None => false,
        };
        if writes.is_empty() && deletes.is_empty() {
            return Err(FgaError::new(
                400,
                "invalid_write_input",
                "Invalid input. Make sure you provide at least one write, or at least one delete",
            ));
        }
        for ((key, _), condition) in writes.iter().zip(&write_conditions) {
            validate_write(&model, key, condition)?;
        }
        for (key, _) in &deletes {
            // A delete only checks the syntax of `user` (docs/src/upstream/openfga.md §2.2).
            if !valid_user(&key.2) {
                return Err(FgaError::invalid_tuple(
                    key,
                    "the 'user' field is malformed",
                ));
            }
        }
        let mut seen = BTreeSet::new();
        for (key, _) in deletes.iter().chain(&writes) {
            if !seen.insert(key.clone()) {
                return Err(FgaError::new(
                    400,
                    "cannot_allow_duplicate_tuples_in_one_request",
                    format!("duplicate tuple in write: {}", key_fields(key)),
                ));
            }
        }
        if writes.len() + deletes.len() > self.max_tuples_per_write {
            return Err(FgaError::new(
                400,
                "exceeded_entity_limit",
                format!(
                    "The number of write operations exceeds the allowed limit of {}",
                    self.max_tuples_per_write
                ),
            ));
        }

        // Check everything, then apply: one request is one transaction (docs/src/upstream/openfga.md
        // §4).
        const CAUSE: &str =
            "tuple to be written already existed or the tuple to be deleted did not exist";
        let existing = self.tuples.get(store);
        let mut to_delete = Vec::new();
        for (key, _) in &deletes {
            if existing.is_some_and(|t| t.contains_key(key)) {
                to_delete.push(key.clone());
            } else if !ignore_missing {
                return Err(FgaError::new(
                    400,
                    "write_failed_due_to_invalid_input",
                    format!(
                        "cannot delete a tuple which does not exist: {}: {CAUSE}",
                        key_fields(key)
                    ),
                ));
            }
        }
        let mut to_write = Vec::new();
        for ((key, _), condition) in writes.iter().zip(write_conditions) {
            match existing.and_then(|t| t.get(key)) {
                None => to_write.push((key.clone(), condition)),
                Some(old) if ignore_duplicates && old.condition == condition => {}
                Some(_) if ignore_duplicates => {
                    return Err(FgaError::new(
                        409,
                        "Aborted",
                        format!(
                            "transactional write failed due to conflict: attempted to write a tuple which already exists with a different condition: {}",
                            key_fields(key)
                        ),
                    ))
                }
                Some(_) => {
                    return Err(FgaError::new(
                        400,
                        "write_failed_due_to_invalid_input",
                        format!(
                            "cannot write a tuple which already exists: {}: {CAUSE}",
                            key_fields(key)
                        ),
                    ))
                }
            }
        }
        let now = SystemTime::now();
        let table = self.tuples.entry(store.to_string()).or_default();
        for key in to_delete {
            table.remove(&key);
        }
        for (key, condition) in to_write {
            table.insert(key, TupleRec { condition, at: now });
        }
        Ok(json!({}))
    }

    /// `POST /stores/{id}/read`: the filters of docs/src/upstream/openfga.md §2.3. No store or model
    /// lookup.
    fn read(&self, store: &str, body: &Map<String, Value>) -> Result<Value, FgaError> {
        let size = page_size(body.get("page_size"))?;
        check_consistency(body)?;
        let filter = match obj_field(body, "tuple_key", "ReadRequest")? {
            None => None,
            Some(tk) => {
                let user = str_field(tk, "user", "ReadRequestTupleKey")?;
                let relation = str_field(tk, "relation", "ReadRequestTupleKey")?;
                let object = str_field(tk, "object", "ReadRequestTupleKey")?;
                if !user.is_empty() {
                    let ok = user.len() <= MAX_USER_BYTES
                        && user
                            .split_once(':')
                            .is_some_and(|(a, b)| no_space(a, 1, 511) && no_space(b, 1, 511));
                    if !ok {
                        return Err(FgaError::regex(
                            "ReadRequestTupleKey.User",
                            READ_USER_PATTERN,
                        ));
                    }
                }
                if !relation.is_empty() && !valid_relation(relation) {
                    return Err(FgaError::regex(
                        "ReadRequestTupleKey.Relation",
                        RELATION_PATTERN,
                    ));
                }
                if !object.is_empty() && !no_space(object, 2, 256) {
                    return Err(FgaError::regex(
                        "ReadRequestTupleKey.Object",
                        OBJECT_PATTERN,
                    ));
                }
                let (ty, id) = match object.split_once(':') {
                    Some((t, i)) => (t, i),
                    None => ("", object),
                };
                if ty.is_empty() || (id.is_empty() && user.is_empty()) {
                    return Err(FgaError::validation(
                        "the 'tuple_key' field was provided but the object type field is required and both the object id and user cannot be empty",
                    ));
                }
                Some((
                    ty.to_string(),
                    id.to_string(),
                    relation.to_string(),
                    user.to_string(),
                ))
            }
        };
        let after: Option<TupleKey> = match decode_token(body.get("continuation_token"), "r")? {
            Some(c) => {
                let v: Value = serde_json::from_str(&c).map_err(|_| FgaError::bad_token())?;
                match v.as_array().map(Vec::as_slice) {
                    Some([Value::String(o), Value::String(r), Value::String(u)]) => {
                        Some((o.clone(), r.clone(), u.clone()))
                    }
                    _ => return Err(FgaError::bad_token()),
                }
            }
            None => None,
        };
        let matches = |(o, r, u): &TupleKey| match &filter {
            None => true,
            Some((ty, id, rel, user)) => {
                let (ot, oid) = o.split_once(':').unwrap_or(("", o));
                ot == ty
                    && (id.is_empty() || oid == id)
                    && (rel.is_empty() || r == rel)
                    && (user.is_empty() || u == user)
            }
        };
        // Tuples are keyed by object first, so a read of one object seeks to it instead of scanning the
        // store: a benchmark of a large store measures the bridge, not this fake.
        let exact_object = filter
            .as_ref()
            .filter(|(_, id, _, _)| !id.is_empty())
            .map(|(ty, id, _, _)| format!("{ty}:{id}"));
        let entries: Box<dyn Iterator<Item = (&TupleKey, &TupleRec)>> =
            match (self.tuples.get(store), exact_object.as_deref()) {
                (None, _) => Box::new(std::iter::empty()),
                (Some(all), Some(object)) => Box::new(
                    all.range((object.to_string(), String::new(), String::new())..)
                        .take_while(move |(k, _)| k.0 == object),
                ),
                (Some(all), None) => Box::new(all.iter()),
            };
        let mut page: Vec<(&TupleKey, &TupleRec)> = entries
            .filter(|(k, _)| after.as_ref().is_none_or(|a| *k > a) && matches(k))
            .take(size + 1)
            .collect();
        let more = page.len() > size;
        page.truncate(size);
        let token = match (more, page.last()) {
            (true, Some(((o, r, u), _))) => encode_token("r", &json!([o, r, u]).to_string()),
            _ => String::new(),
        };
        Ok(json!({
            "tuples": page.iter().map(|(k, rec)| tuple_json(k, rec)).collect::<Vec<_>>(),
            "continuation_token": token,
        }))
    }

    /// `POST /stores/{id}/check` (docs/src/upstream/openfga.md §2.5).
    fn check_call(
        &self,
        store: &str,
        body: &Map<String, Value>,
        headers: &mut Vec<(&'static str, String)>,
    ) -> Result<Value, FgaError> {
        check_consistency(body)?;
        let model_id = str_field(body, "authorization_model_id", "CheckRequest")?;
        if !model_id.is_empty() && !is_ulid(model_id) {
            return Err(FgaError::regex(
                "CheckRequest.AuthorizationModelId",
                ULID_PATTERN,
            ));
        }
        let tk = obj_field(body, "tuple_key", "CheckRequest")?
            .ok_or_else(|| FgaError::proto("CheckRequest.TupleKey", "value is required"))?;
        let (key, _) = proto_tuple_key(tk, "CheckRequestTupleKey")?;
        let model = self.resolve_model(store, model_id)?;
        headers.push(("Openfga-Authorization-Model-Id", model.id.clone()));
        let model = &model.body;
        let (object, relation, user) = &key;
        if !valid_user(user) {
            return Err(FgaError::invalid_tuple(
                &key,
                "the 'user' field is malformed",
            ));
        }
        if !valid_object(object) {
            return Err(FgaError::invalid_tuple(
                &key,
                "invalid 'object' field format",
            ));
        }
        let ty = type_of(object);
        if type_def(model, ty).is_none() {
            return Err(FgaError::invalid_tuple(
                &key,
                &format!("type '{ty}' not found"),
            ));
        }
        if rewrite(model, ty, relation).is_none() {
            return Err(FgaError::invalid_tuple(
                &key,
                &format!("relation '{ty}#{relation}' not found"),
            ));
        }
        if let Some((u, r)) = user.split_once('#') {
            let ut = type_of(u);
            if rewrite(model, ut, r).is_none() {
                return Err(FgaError::invalid_tuple(
                    &key,
                    &format!("relation '{ut}#{r}' not found"),
                ));
            }
        }
        let empty = BTreeMap::new();
        let tuples = self.tuples.get(store).unwrap_or(&empty);
        let allowed = check(model, tuples, object, relation, user, 0);
        Ok(json!({"allowed": allowed, "resolution": ""}))
    }
}

enum Route<'a> {
    ListStores,
    CreateStore,
    GetStore(&'a str),
    ListModels(&'a str),
    WriteModel(&'a str),
    GetModel(&'a str, &'a str),
    Write(&'a str),
    Read(&'a str),
    Check(&'a str),
}

/// The kind of call, for [`FakeOpenFga::count_calls`]: `write`, `read`, `check`, `store`
/// (GetStore), `stores` (ListStores), `create_store`, `models` (list), `model` (one),
/// `write_model`, `healthz`, else `other`.
fn op_of(method: &str, path: &str) -> &'static str {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        ("GET", ["healthz"]) => "healthz",
        ("GET", ["stores"]) => "stores",
        ("POST", ["stores"]) => "create_store",
        ("GET", ["stores", _]) => "store",
        ("GET", ["stores", _, "authorization-models"]) => "models",
        ("POST", ["stores", _, "authorization-models"]) => "write_model",
        ("GET", ["stores", _, "authorization-models", _]) => "model",
        ("POST", ["stores", _, "write"]) => "write",
        ("POST", ["stores", _, "read"]) => "read",
        ("POST", ["stores", _, "check"]) => "check",
        _ => "other",
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn handle(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Arc<Mutex<State>>>,
) -> HttpResponse {
    let latency = lock(&state).latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let reply = lock(&state).process(&req, &body);
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut builder = HttpResponse::build(status);
    for (name, value) in &reply.headers {
        builder.insert_header((*name, value.as_str()));
    }
    builder
        .content_type("application/json")
        .body(reply.body.to_string())
}

/// Stops the server when the last handle goes.
struct Running {
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
    handle: ServerHandle,
}

impl Drop for Running {
    fn drop(&mut self) {
        // `stop` sends its command eagerly; the returned future only waits for completion.
        drop(self.handle.stop(false));
    }
}

/// The fake OpenFGA server. Clones share one server; dropping the last one stops it.
#[derive(Clone)]
pub struct FakeOpenFga {
    inner: Arc<Running>,
}

impl FakeOpenFga {
    /// Binds `127.0.0.1:0` and spawns the server on the current tokio runtime, with one store named
    /// `bridge` whose latest model is the minimal one of docs/src/upstream/openfga.md §6.
    pub async fn start(opts: FakeOpenFgaOptions) -> io::Result<FakeOpenFga> {
        let now = SystemTime::now();
        let store = new_ulid();
        let mut state = State {
            token: opts.preshared_key,
            max_tuples_per_write: opts.max_tuples_per_write,
            supports_on_duplicate: opts.supports_on_duplicate,
            default_store: store.clone(),
            stores: BTreeMap::new(),
            models: BTreeMap::new(),
            tuples: BTreeMap::new(),
            seq: 0,
            calls: Vec::new(),
            writes: Vec::new(),
            latency: opts.latency,
            fail_remaining: 0,
            fail_status: 500,
            down: false,
        };
        state.stores.insert(
            store.clone(),
            StoreRec {
                name: "bridge".into(),
                created_at: now,
                updated_at: now,
            },
        );
        state.add_model(&store, &minimal_model());
        let state = Arc::new(Mutex::new(state));
        let data = web::Data::new(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(5 * 1024 * 1024))
                .default_service(web::to(handle))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .bind(("127.0.0.1", 0))?;
        let addr = server
            .addrs()
            .first()
            .copied()
            .ok_or_else(|| io::Error::other("fake OpenFGA bound no address"))?;
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(FakeOpenFga {
            inner: Arc::new(Running {
                state,
                addr,
                handle,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.inner.state)
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash; paths start at `/stores`
    /// (docs/src/upstream/openfga.md §2.1).
    pub fn url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    /// The preshared key, `""` when authentication is off.
    pub fn token(&self) -> String {
        self.lock().token.clone().unwrap_or_default()
    }

    /// The id of the `bridge` store every seeding and inspection method works on.
    pub fn store_id(&self) -> String {
        self.lock().default_store.clone()
    }

    /// The id of the `bridge` store's latest model.
    pub fn model_id(&self) -> String {
        let st = self.lock();
        st.models
            .get(&st.default_store)
            .and_then(|m| m.last())
            .map(|m| m.id.clone())
            .unwrap_or_default()
    }

    /// Adds a model to the `bridge` store, without validation; it becomes the latest. `model` is a
    /// `POST …/authorization-models` body (docs/src/upstream/openfga.md §6).
    pub fn write_model(&self, model: Value) -> String {
        let mut st = self.lock();
        let store = st.default_store.clone();
        st.add_model(&store, &model)
    }

    /// Seeds a tuple without any validation or call-log entry (no condition).
    pub fn add_tuple(&self, user: &str, relation: &str, object: &str) {
        let mut st = self.lock();
        let store = st.default_store.clone();
        st.tuples.entry(store).or_default().insert(
            (object.to_string(), relation.to_string(), user.to_string()),
            TupleRec {
                condition: Value::Null,
                at: SystemTime::now(),
            },
        );
    }

    /// Removes a tuple, as another writer would.
    pub fn remove_tuple(&self, user: &str, relation: &str, object: &str) {
        let mut st = self.lock();
        let store = st.default_store.clone();
        if let Some(t) = st.tuples.get_mut(&store) {
            t.remove(&(object.to_string(), relation.to_string(), user.to_string()));
        }
    }

    /// Every tuple of the `bridge` store as (user, relation, object).
    pub fn tuples(&self) -> BTreeSet<(String, String, String)> {
        let st = self.lock();
        st.tuples
            .get(&st.default_store)
            .into_iter()
            .flatten()
            .map(|((o, r, u), _)| (u.clone(), r.clone(), o.clone()))
            .collect()
    }

    /// The users stored directly on `object#relation` (usersets included as written, not expanded).
    pub fn users_of(&self, object: &str, relation: &str) -> BTreeSet<String> {
        let st = self.lock();
        st.tuples
            .get(&st.default_store)
            .into_iter()
            .flatten()
            .filter(|((o, r, _), _)| o == object && r == relation)
            .map(|((_, _, u), _)| u.clone())
            .collect()
    }

    /// Every request answered so far, oldest first.
    pub fn calls(&self) -> Vec<FgaCall> {
        self.lock().calls.clone()
    }

    /// Forgets the calls and the successful write bodies.
    pub fn clear_calls(&self) {
        let mut st = self.lock();
        st.calls.clear();
        st.writes.clear();
    }

    /// Requests of one kind, whatever their status: `write`, `read`, `check`, `store` (GetStore),
    /// `stores` (ListStores), `create_store`, `models` (list models), `model` (one model),
    /// `write_model`, `healthz`, `other`.
    pub fn count_calls(&self, op: &str) -> usize {
        self.lock()
            .calls
            .iter()
            .filter(|c| op_of(&c.method, &c.path) == op)
            .count()
    }

    /// The bodies of the Writes that answered 200, in order.
    pub fn writes(&self) -> Vec<Value> {
        self.lock().writes.clone()
    }

    // ---- faults --------------------------------------------------------------------------

    /// While down, every call, `/healthz` included, answers 500 `internal_error` "Internal Server
    /// Error": what the server itself sends when its datastore is unreachable
    /// (docs/src/upstream/openfga.md docs/src/upstream/openfga.md §3.2, §3.4: retry with back-off). A
    /// stopped server with nothing in front of it refuses the connection instead; drop the fake to
    /// get that.
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    /// The next `n` calls answer `status` with the envelope and code the server uses for it
    /// (docs/src/upstream/openfga.md §3.1): 400 `validation_error`, 401 `unauthenticated`, 404
    /// `undefined_endpoint`, 409 `Aborted`, 422 `throttled_timeout_error`, 502–504 `unavailable`
    /// (only a proxy sends those), anything else `internal_error`.
    pub fn fail_next(&self, n: usize, status: u16) {
        let mut st = self.lock();
        st.fail_remaining = n;
        st.fail_status = status;
    }

    /// Delay before every answer from now on.
    pub fn set_latency(&self, d: Duration) {
        self.lock().latency = d;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulids_use_crockford_and_sort_by_time() {
        let a = new_ulid();
        assert!(is_ulid(&a), "{a}");
        assert!(a.as_bytes()[0] <= b'7');
        assert!(!is_ulid("01G5JAVJ41T49E9TT3SKVS7X1"));
        assert!(!is_ulid("01G5JAVJ41T49E9TT3SKVS7X1U"));
        assert!(!is_ulid("01g5javj41t49e9tt3skvs7x1j"));
    }

    #[test]
    fn identifiers_follow_the_rules() {
        assert!(valid_object("group:eng"));
        assert!(valid_object("group:Ingeniería/Ops+QA(€)"));
        assert!(!valid_object("group:eng#ops"));
        assert!(!valid_object("group:eng:ops"));
        assert!(!valid_object(":eng"));
        assert!(!valid_object("group:"));
        assert!(valid_user("user:jane@example.com"));
        assert!(valid_user("group:eng#member"));
        assert!(valid_user("user:*"));
        assert!(!valid_user("user:ak:jane"));
        assert!(!valid_user("user:*#member"));
        assert!(!valid_user("jane"));
        assert!(no_space("group:a\u{a0}b", 2, 256));
        assert!(valid_object("group:a\u{a0}b"));
        assert!(!no_space("group:Site Admins", 2, 256));
    }

    #[test]
    fn timestamps_are_protojson() {
        let t = UNIX_EPOCH + Duration::from_secs(1_724_340_000);
        assert_eq!(rfc3339(t), "2024-08-22T15:20:00Z");
        assert_eq!(
            rfc3339(t + Duration::from_millis(5)),
            "2024-08-22T15:20:00.005Z"
        );
        assert_eq!(
            rfc3339(t + Duration::from_nanos(7)),
            "2024-08-22T15:20:00.000000007Z"
        );
    }

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let t = encode_token("r", "[\"a\",\"b\",\"c\"]");
        assert!(t.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(
            decode_token(Some(&json!(t)), "r").unwrap().as_deref(),
            Some("[\"a\",\"b\",\"c\"]")
        );
        assert!(decode_token(Some(&json!(t)), "m").is_err());
        assert!(decode_token(Some(&json!("zz")), "r").is_err());
        assert_eq!(decode_token(Some(&json!("")), "r").unwrap(), None);
    }
}
