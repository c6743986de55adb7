//! The vendors' OpenAPI 3.0 specs and OpenFGA's Swagger 2.0 spec as JSON Schema validators, for
//! `tests/api/contract.rs` and `tests/api/contract_openfga.rs`.
//!
//! Each spec is parsed once per test binary (`OnceLock`; the Authentik one is 1.7 MB). A check
//! takes a response schema from the spec, converts it to JSON Schema 2020-12 (`nullable: true`
//! becomes a null-allowing type, `#/components/schemas/X` and Swagger's `#/definitions/X` become
//! `#/$defs/X`), embeds only the components it reaches, and validates a body with format checks on.
//! Swagger 2.0 keeps its components under `definitions` and a response's schema directly under
//! `responses.<status>.schema`; everything else the converter handles is common to both versions.
//!
//! Where a contract documents that the real server differs from its published spec, the test
//! passes a [`Patch`] that says so, with the section that documents it. In strict mode every
//! object schema with `properties` also rejects unknown keys, which catches misspelt field names
//! that the specs alone (no `additionalProperties: false`) would let through.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::{json, Map, Value};

/// A change to a spec component, applied before conversion.
pub enum Patch {
    /// Replace a component schema wholesale.
    Replace(&'static str, Value),
    /// Add properties (an object of property schemas) to a component.
    AddProps(&'static str, Value),
    /// Make these properties required.
    Require(&'static str, &'static [&'static str]),
    /// Mark one property `nullable: true`.
    Nullable(&'static str, &'static str),
}

pub struct Spec {
    name: &'static str,
    doc: Value,
}

static OUTLINE: OnceLock<Spec> = OnceLock::new();
static AUTHENTIK: OnceLock<Spec> = OnceLock::new();
static OPENFGA: OnceLock<Spec> = OnceLock::new();

/// The vendored specs (`tests/fixtures/upstream/`, with their sources and licences in its README).
fn contracts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upstream")
}

fn load(name: &'static str, file: &str) -> Spec {
    let path = contracts_dir().join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let yaml: serde_yaml::Value = serde_yaml::from_str(&text)
        .unwrap_or_else(|e| panic!("cannot parse {}: {e}", path.display()));
    Spec {
        name,
        doc: yaml_to_json(yaml),
    }
}

fn yaml_to_json(v: serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                json!(i)
            } else if let Some(u) = n.as_u64() {
                json!(u)
            } else {
                json!(n.as_f64().unwrap_or(0.0))
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(yaml_to_json).collect()),
        Y::Mapping(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    other => format!("{other:?}"),
                };
                out.insert(key, yaml_to_json(v));
            }
            Value::Object(out)
        }
        Y::Tagged(t) => yaml_to_json(t.value),
    }
}

/// A JSON spec, parsed as JSON.
fn load_json(name: &'static str, file: &str) -> Spec {
    let path = contracts_dir().join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let doc = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("cannot parse {}: {e}", path.display()));
    Spec { name, doc }
}

/// `tests/fixtures/upstream/outline-openapi.yml`.
pub fn outline() -> &'static Spec {
    OUTLINE.get_or_init(|| load("outline", "outline-openapi.yml"))
}

/// `tests/fixtures/upstream/authentik-openapi-2026.8.yml`.
pub fn authentik() -> &'static Spec {
    AUTHENTIK.get_or_init(|| load("authentik", "authentik-openapi-2026.8.yml"))
}

/// `tests/fixtures/upstream/openfga-openapi.json` (Swagger 2.0).
pub fn openfga() -> &'static Spec {
    OPENFGA.get_or_init(|| load_json("openfga", "openfga-openapi.json"))
}

const SCHEMA_PREFIX: &str = "#/components/schemas/";
/// Swagger 2.0's component references.
const DEFINITIONS_PREFIX: &str = "#/definitions/";

impl Spec {
    /// Swagger 2.0 (`"swagger": "2.0"`) rather than OpenAPI 3.
    fn is_swagger(&self) -> bool {
        self.doc.get("swagger").is_some()
    }

    /// The component schemas: `components.schemas`, or Swagger's `definitions`.
    fn schemas(&self) -> &Value {
        if self.is_swagger() {
            &self.doc["definitions"]
        } else {
            &self.doc["components"]["schemas"]
        }
    }

    /// The raw (OpenAPI) JSON schema of one response, following a `components/responses` `$ref`.
    pub fn response(&self, path: &str, method: &str, status: &str) -> Value {
        let mut resp = self.doc["paths"][path][method]["responses"][status].clone();
        if self.is_swagger() {
            let schema = resp["schema"].clone();
            assert!(
                !schema.is_null(),
                "{}: no schema for {method} {path} {status}",
                self.name
            );
            return schema;
        }
        if let Some(r) = resp.get("$ref").and_then(Value::as_str) {
            let name = r.trim_start_matches("#/components/responses/");
            resp = self.doc["components"]["responses"][name].clone();
        }
        let schema = resp["content"]["application/json"]["schema"].clone();
        assert!(
            !schema.is_null(),
            "{}: no JSON schema for {method} {path} {status}",
            self.name
        );
        schema
    }

    /// One raw component schema.
    pub fn component(&self, name: &str) -> Value {
        let c = self.schemas()[name].clone();
        assert!(!c.is_null(), "{}: no component {name}", self.name);
        c
    }

    /// Does the spec list this status for this operation?
    pub fn lists_status(&self, path: &str, method: &str, status: &str) -> bool {
        !self.doc["paths"][path][method]["responses"][status].is_null()
    }

    fn patched_component(&self, name: &str, patches: &[Patch]) -> Option<Value> {
        let mut c = self.schemas().get(name).cloned();
        for p in patches {
            match p {
                Patch::Replace(n, v) if *n == name => c = Some(v.clone()),
                Patch::AddProps(n, props) if *n == name => {
                    if let (Some(obj), Some(add)) = (
                        c.as_mut()
                            .and_then(|c| c.get_mut("properties"))
                            .and_then(Value::as_object_mut),
                        props.as_object(),
                    ) {
                        for (k, v) in add {
                            obj.insert(k.clone(), v.clone());
                        }
                    }
                }
                Patch::Require(n, fields) if *n == name => {
                    if let Some(obj) = c.as_mut().and_then(Value::as_object_mut) {
                        let mut req: BTreeSet<String> = obj
                            .get("required")
                            .and_then(Value::as_array)
                            .map(|a| {
                                a.iter()
                                    .filter_map(|v| v.as_str().map(String::from))
                                    .collect()
                            })
                            .unwrap_or_default();
                        req.extend(fields.iter().map(|f| f.to_string()));
                        obj.insert("required".into(), json!(req));
                    }
                }
                Patch::Nullable(n, prop) if *n == name => {
                    if let Some(p) = c
                        .as_mut()
                        .and_then(|c| c.get_mut("properties"))
                        .and_then(|p| p.get_mut(*prop))
                        .and_then(Value::as_object_mut)
                    {
                        p.insert("nullable".into(), json!(true));
                    }
                }
                _ => {}
            }
        }
        c
    }

    /// Errors from validating `body` against the raw schema `schema`, empty when it conforms.
    pub fn errors(
        &self,
        schema: &Value,
        body: &Value,
        patches: &[Patch],
        strict: bool,
    ) -> Vec<String> {
        let mut root = convert(schema, strict);
        let mut defs = Map::new();
        let mut todo: Vec<String> = refs_in(&root);
        while let Some(name) = todo.pop() {
            if defs.contains_key(&name) {
                continue;
            }
            let raw = self
                .patched_component(&name, patches)
                .unwrap_or_else(|| panic!("{}: unresolved $ref {name}", self.name));
            let converted = convert(&raw, strict);
            todo.extend(refs_in(&converted));
            defs.insert(name, converted);
        }
        match root.as_object_mut() {
            Some(obj) => {
                obj.insert("$defs".into(), Value::Object(defs));
            }
            None => root = json!({ "allOf": [root], "$defs": defs }),
        }
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("{}: schema does not compile: {e}\n{root:#}", self.name));
        validator
            .iter_errors(body)
            .map(|e| format!("{e} (at {})", e.instance_path))
            .collect()
    }

    /// Panics with every mismatch when `body` does not conform.
    pub fn assert_valid(
        &self,
        what: &str,
        schema: &Value,
        body: &Value,
        patches: &[Patch],
        strict: bool,
    ) {
        let errors = self.errors(schema, body, patches, strict);
        assert!(
            errors.is_empty(),
            "{} {what}: the answer does not match the spec:\n  {}\nbody: {body:#}",
            self.name,
            errors.join("\n  ")
        );
    }
}

/// Component names referenced by `$ref`s in a converted schema.
fn refs_in(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                    if let Some(name) = r.strip_prefix("#/$defs/") {
                        out.push(name.to_string());
                    }
                }
                for v in m.values() {
                    walk(v, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(v, &mut out);
    out
}

/// OpenAPI 3.0 (or Swagger 2.0) schema → JSON Schema 2020-12.
pub fn convert(v: &Value, strict: bool) -> Value {
    match v {
        Value::Array(items) => Value::Array(items.iter().map(|i| convert(i, strict)).collect()),
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, val) in m {
                match k.as_str() {
                    "nullable" => {}
                    // Literal values, not schemas.
                    "example" | "examples" | "default" | "enum" | "required" => {
                        out.insert(k.clone(), val.clone());
                    }
                    "$ref" => {
                        let r = val.as_str().unwrap_or("");
                        let r = match r
                            .strip_prefix(SCHEMA_PREFIX)
                            .or_else(|| r.strip_prefix(DEFINITIONS_PREFIX))
                        {
                            Some(name) => format!("#/$defs/{name}"),
                            None => r.to_string(),
                        };
                        out.insert(k.clone(), Value::String(r));
                    }
                    "properties" => {
                        let props = val
                            .as_object()
                            .map(|p| {
                                p.iter()
                                    .map(|(name, s)| (name.clone(), convert(s, strict)))
                                    .collect::<Map<_, _>>()
                            })
                            .unwrap_or_default();
                        out.insert(k.clone(), Value::Object(props));
                    }
                    _ => {
                        out.insert(k.clone(), convert(val, strict));
                    }
                }
            }
            if strict
                && out.contains_key("properties")
                && !out.contains_key("additionalProperties")
                && !["allOf", "anyOf", "oneOf", "$ref"]
                    .iter()
                    .any(|c| out.contains_key(*c))
            {
                out.insert("additionalProperties".into(), json!(false));
            }
            if m.get("nullable") == Some(&json!(true)) {
                if let Some(enum_values) = out.get_mut("enum").and_then(Value::as_array_mut) {
                    enum_values.push(Value::Null);
                }
                match out.get("type").cloned() {
                    Some(Value::String(t)) => {
                        out.insert("type".into(), json!([t, "null"]));
                    }
                    _ => {
                        return json!({ "anyOf": [Value::Object(out), { "type": "null" }] });
                    }
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}
