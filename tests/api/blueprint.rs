//! Checks of the importable Authentik blueprint, `authentik-blueprints/outline-bridge.yaml`.
//!
//! The file is read with `serde_yaml`, its blueprint tags are resolved into plain values the way
//! Authentik's importer would (docs/src/upstream/authentik.md §6.3), and the result is validated against Authentik's
//! own blueprint JSON schema (docs/src/upstream/authentik.md §6.6). The schema cannot catch the rules that decide whether webhooks
//! arrive at all (stale keys, `app` on matchers, fan-out), so those are asserted one by one.
//! The mapping expressions are then run by `tests/support/run_mapping.py` (python3, standard
//! library only), which evaluates them as Authentik does and prints the JSON a webhook would carry.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as Json;
use serde_yaml::value::{Tag, TaggedValue};
use serde_yaml::{Mapping, Value as Yaml};

const BLUEPRINT: &str = "authentik-blueprints/outline-bridge.yaml";
const SCHEMA: &str = "tests/fixtures/upstream/authentik-blueprint-schema-2026.5.json";
const RUN_MAPPING: &str = "tests/support/run_mapping.py";
const DEFAULT_BRIDGE_URL: &str = "http://authentik-bridge:8430/webhooks/authentik";
const TOKEN_ENV: &str = "AUTHENTIK_WEBHOOK_TOKEN";

fn manifest_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The blueprint as written, tags still in place.
fn raw_blueprint() -> Yaml {
    let path = manifest_path(BLUEPRINT);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{BLUEPRINT} is not YAML: {e}"))
}

fn entries(blueprint: &Yaml) -> &[Yaml] {
    blueprint["entries"]
        .as_sequence()
        .map(Vec::as_slice)
        .expect("`entries` must be a list")
}

fn entries_of<'a>(blueprint: &'a Yaml, model: &'a str) -> impl Iterator<Item = &'a Yaml> + 'a {
    entries(blueprint)
        .iter()
        .filter(move |entry| entry["model"].as_str() == Some(model))
}

fn single_entry<'a>(blueprint: &'a Yaml, model: &str) -> &'a Yaml {
    let found: Vec<&Yaml> = entries(blueprint)
        .iter()
        .filter(|entry| entry["model"].as_str() == Some(model))
        .collect();
    assert_eq!(found.len(), 1, "expected exactly one {model} entry");
    found[0]
}

fn entry_id(entry: &Yaml) -> Option<&str> {
    entry["id"].as_str()
}

/// `Some(argument)` when `value` is `!<tag> argument`.
fn tagged<'a>(value: &'a Yaml, tag: &str) -> Option<&'a Yaml> {
    match value {
        Yaml::Tagged(t) if t.tag == tag => Some(&t.value),
        _ => None,
    }
}

/// The id named by a `!KeyOf id` value.
fn key_of(value: &Yaml) -> Option<&str> {
    tagged(value, "KeyOf").and_then(Yaml::as_str)
}

// ------------------------------------------------------------------ resolving blueprint tags

/// What the importer would see after resolving tags, with the database lookups stubbed out:
/// `!KeyOf` and `!Find` become stable placeholder uuids (docs/src/upstream/authentik.md §6.3).
struct TagResolver<'a> {
    context: &'a Mapping,
    env: &'a BTreeMap<&'a str, &'a str>,
    /// Ids of the entries already processed: `!KeyOf` may only point backwards (docs/src/upstream/authentik.md §6.2).
    earlier_ids: BTreeSet<String>,
}

impl TagResolver<'_> {
    fn resolve(&self, value: &Yaml) -> Result<Yaml, String> {
        match value {
            Yaml::Tagged(t) => self.resolve_tag(t),
            Yaml::Sequence(items) => items
                .iter()
                .map(|v| self.resolve(v))
                .collect::<Result<Vec<Yaml>, String>>()
                .map(Yaml::Sequence),
            Yaml::Mapping(map) => map
                .iter()
                .map(|(k, v)| Ok((self.resolve(k)?, self.resolve(v)?)))
                .collect::<Result<Mapping, String>>()
                .map(Yaml::Mapping),
            plain => Ok(plain.clone()),
        }
    }

    fn resolve_tag(&self, t: &TaggedValue) -> Result<Yaml, String> {
        let tag = t.tag.to_string();
        let name = tag.trim_start_matches('!');
        match name {
            "KeyOf" => {
                let id = t.value.as_str().ok_or("!KeyOf takes an entry id")?;
                if !self.earlier_ids.contains(id) {
                    return Err(format!("!KeyOf {id}: no earlier entry has this id"));
                }
                Ok(Yaml::String(placeholder_uuid(id)))
            }
            "Find" | "FindObject" => Ok(Yaml::String(placeholder_uuid(&format!("{:?}", t.value)))),
            "Env" | "File" => {
                let (key, default) = key_and_default(&t.value)?;
                // `!Env`: the variable when set and non-empty, else the default. `!File`: the
                // file is never there at test time, so its default.
                Ok(match (name, self.env.get(key.as_str())) {
                    ("Env", Some(v)) if !v.is_empty() => Yaml::String((*v).to_owned()),
                    _ => self.resolve(&default)?,
                })
            }
            "Context" => {
                let (key, default) = key_and_default(&t.value)?;
                match self.context.get(key.as_str()) {
                    Some(v) => self.resolve(v),
                    None => self.resolve(&default),
                }
            }
            "Format" => {
                let items = t.value.as_sequence().ok_or("!Format takes a list")?;
                let (format, args) = items.split_first().ok_or("!Format needs a format string")?;
                let format = format
                    .as_str()
                    .ok_or("!Format's first item must be a string")?;
                let args = args
                    .iter()
                    .map(|a| self.resolve(a))
                    .collect::<Result<Vec<_>, _>>()?;
                percent_format(format, &args).map(Yaml::String)
            }
            other => Err(format!(
                "tag !{other} is not resolved by this test yet: teach TagResolver about it"
            )),
        }
    }
}

/// `!Tag key` or `!Tag [key, default]` (docs/src/upstream/authentik.md §6.3: the default form is a sequence).
fn key_and_default(value: &Yaml) -> Result<(String, Yaml), String> {
    match value {
        Yaml::String(key) => Ok((key.clone(), Yaml::Null)),
        Yaml::Sequence(items) if items.len() == 2 => {
            let key = items[0].as_str().ok_or("the key must be a string")?;
            Ok((key.to_owned(), items[1].clone()))
        }
        other => Err(format!("expected `key` or `[key, default]`, got {other:?}")),
    }
}

/// A uuid that is stable for a name, so the schema's `format: uuid` checks pass.
fn placeholder_uuid(name: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        (h >> 4) & 0xfff,
        h & 0xffff_ffff_ffff
    )
}

/// Python's `%` operator for the conversions a blueprint uses: `%s`, `%r`, `%d` and `%%`
/// (`!Format` is Python `%` formatting, docs/src/upstream/authentik.md §6.3).
fn percent_format(format: &str, args: &[Yaml]) -> Result<String, String> {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let conversion = chars.next().ok_or("!Format string ends in `%`")?;
        if conversion == '%' {
            out.push('%');
            continue;
        }
        let arg = args
            .next()
            .ok_or("!Format has fewer arguments than conversions")?;
        match (conversion, arg) {
            ('s', Yaml::String(s)) => out.push_str(s),
            ('r', Yaml::String(s)) => out.push_str(&python_str_repr(s)),
            ('s' | 'r' | 'd', Yaml::Number(n)) => out.push_str(&n.to_string()),
            ('s' | 'r', Yaml::Bool(b)) => out.push_str(if *b { "True" } else { "False" }),
            ('s' | 'r', Yaml::Null) => out.push_str("None"),
            (c, a) => return Err(format!("!Format: `%{c}` with {a:?} is not supported here")),
        }
    }
    if args.next().is_some() {
        return Err("!Format: not all arguments converted".to_owned());
    }
    Ok(out)
}

/// `repr()` of a Python str: the quoting `%r` puts around a token in the header mapping.
fn python_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::from(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// The blueprint with every tag replaced by the value the importer would use.
fn resolved_blueprint(raw: &Yaml, env: &BTreeMap<&str, &str>) -> Yaml {
    let empty = Mapping::new();
    let context = raw["context"].as_mapping().unwrap_or(&empty);
    let mut resolver = TagResolver {
        context,
        env,
        earlier_ids: BTreeSet::new(),
    };
    let mut blueprint = raw.clone();
    let mut out_entries = Vec::new();
    for entry in entries(raw) {
        let r = resolver
            .resolve(entry)
            .unwrap_or_else(|e| panic!("entry {:?}: {e}", entry_id(entry)));
        out_entries.push(r);
        if let Some(id) = entry_id(entry) {
            resolver.earlier_ids.insert(id.to_owned());
        }
    }
    blueprint["entries"] = Yaml::Sequence(out_entries);
    blueprint
}

fn test_env() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([(TOKEN_ENV, "test-token-123")])
}

// ------------------------------------------------------------------ schema

/// Authentik's blueprint schema (docs/src/upstream/authentik.md §6.6). 2026.5 keeps its definitions under `$defs`
/// while declaring draft-07, whose keyword is `definitions`, and strict validators cannot follow
/// `#/$defs/...` (goauthentik/authentik#24248). The definitions are moved to `definitions` and the references
/// rewritten: the form 2026.8 ships (goauthentik/authentik#24981), so either file gives the same schema. (jsonschema
/// 0.33 happens to follow `#/$defs/...` as a plain JSON pointer too; the rewrite keeps the test
/// independent of that leniency.)
fn blueprint_schema() -> Json {
    let path = manifest_path(SCHEMA);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut schema: Json = serde_json::from_str(&text).expect("the schema is not JSON");
    if let Some(object) = schema.as_object_mut() {
        if let Some(defs) = object.remove("$defs") {
            object.insert("definitions".to_owned(), defs);
        }
    }
    rewrite_refs(&mut schema);
    schema
}

fn rewrite_refs(value: &mut Json) {
    match value {
        Json::Object(map) => {
            for (key, v) in map.iter_mut() {
                match v {
                    Json::String(s) if key == "$ref" && s.starts_with("#/$defs/") => {
                        *s = s.replacen("#/$defs/", "#/definitions/", 1);
                    }
                    _ => rewrite_refs(v),
                }
            }
        }
        Json::Array(items) => items.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

#[test]
fn blueprint_file_name_ends_in_yaml() {
    // Authentik discovers `**/*.yaml` only; a `.yml` file is silently never applied (docs/src/upstream/authentik.md §6.4).
    let path = manifest_path(BLUEPRINT);
    assert_eq!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml"),
        "{BLUEPRINT} must end in .yaml"
    );
    assert!(path.is_file(), "{BLUEPRINT} is missing");
    assert!(
        !path.with_extension("yml").exists(),
        "a stray .yml copy would never be discovered"
    );
}

#[test]
fn blueprint_validates_against_authentik_schema() {
    let resolved = resolved_blueprint(&raw_blueprint(), &test_env());
    let instance = serde_json::to_value(&resolved).expect("resolved blueprint is not JSON-like");
    let validator = jsonschema::draft7::options()
        .should_validate_formats(true)
        .build(&blueprint_schema())
        .expect("Authentik's blueprint schema does not compile");
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(errors.is_empty(), "schema errors:\n{}", errors.join("\n"));
}

#[test]
fn schema_check_rejects_a_broken_blueprint() {
    // The validator must be able to fail: an unknown transport mode is a schema error.
    let mut resolved = resolved_blueprint(&raw_blueprint(), &test_env());
    let transport = resolved["entries"]
        .as_sequence_mut()
        .and_then(|es| {
            es.iter_mut()
                .find(|e| e["model"].as_str() == Some("authentik_events.notificationtransport"))
        })
        .expect("no transport entry");
    transport["attrs"]["mode"] = Yaml::String("carrier-pigeon".to_owned());
    let instance = serde_json::to_value(&resolved).expect("resolved blueprint is not JSON-like");
    let validator = jsonschema::draft7::options()
        .should_validate_formats(true)
        .build(&blueprint_schema())
        .expect("Authentik's blueprint schema does not compile");
    assert!(!validator.is_valid(&instance));
}

// ------------------------------------------------------------------ structure

#[test]
fn blueprint_header_and_context() {
    let raw = raw_blueprint();
    assert_eq!(
        raw["version"].as_u64(),
        Some(1),
        "only version 1 is applied (docs/src/upstream/authentik.md §6.1)"
    );
    assert!(raw["metadata"]["name"]
        .as_str()
        .is_some_and(|n| !n.is_empty()));
    assert!(
        raw["metadata"]["labels"]["blueprints.goauthentik.io/description"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );
    // The bridge's URL comes from the environment of the process that applies the blueprint, with the
    // Compose service as the default, so nobody edits the YAML; an instance's context still wins.
    let bridge_url = tagged(&raw["context"]["bridge_url"], "Env")
        .and_then(Yaml::as_sequence)
        .expect("context bridge_url is `!Env [AUTHENTIK_BRIDGE_URL, default]`");
    assert_eq!(bridge_url[0].as_str(), Some("AUTHENTIK_BRIDGE_URL"));
    assert_eq!(bridge_url[1].as_str(), Some(DEFAULT_BRIDGE_URL));
    let url_of = |env: &BTreeMap<&str, &str>| {
        let resolved = resolved_blueprint(&raw, env);
        single_entry(&resolved, "authentik_events.notificationtransport")["attrs"]["webhook_url"]
            .as_str()
            .map(str::to_owned)
    };
    assert_eq!(url_of(&test_env()).as_deref(), Some(DEFAULT_BRIDGE_URL));
    let mut env = test_env();
    env.insert(
        "AUTHENTIK_BRIDGE_URL",
        "https://bridge.example.com/webhooks/authentik",
    );
    assert_eq!(
        url_of(&env).as_deref(),
        Some("https://bridge.example.com/webhooks/authentik")
    );
}

#[test]
fn entry_ids_are_unique_and_key_of_points_backwards() {
    let raw = raw_blueprint();
    let ids: Vec<&str> = entries(&raw).iter().filter_map(entry_id).collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "duplicate entry ids: {ids:?}");
    // Panics on a forward or dangling !KeyOf: entries are applied in order (docs/src/upstream/authentik.md §6.2).
    let resolved = resolved_blueprint(&raw, &test_env());
    assert_eq!(entries(&resolved).len(), entries(&raw).len());
}

#[test]
fn transport_sends_once_through_both_mappings() {
    let raw = raw_blueprint();
    let transport = single_entry(&raw, "authentik_events.notificationtransport");
    let attrs = &transport["attrs"];
    assert_eq!(attrs["mode"].as_str(), Some("webhook"));
    // One POST per event instead of one per recipient (docs/src/upstream/authentik.md §5.4).
    assert_eq!(attrs["send_once"].as_bool(), Some(true));
    assert_eq!(
        tagged(&attrs["webhook_url"], "Context").and_then(Yaml::as_str),
        Some("bridge_url"),
        "webhook_url must be `!Context bridge_url`"
    );
    let mapping_ids: BTreeSet<&str> =
        entries_of(&raw, "authentik_events.notificationwebhookmapping")
            .filter_map(entry_id)
            .collect();
    for field in ["webhook_mapping_body", "webhook_mapping_headers"] {
        let target = key_of(&attrs[field]).unwrap_or_else(|| panic!("{field} must be !KeyOf"));
        assert!(
            mapping_ids.contains(target),
            "{field} points to {target}, not a mapping"
        );
    }
    assert_ne!(
        key_of(&attrs["webhook_mapping_body"]),
        key_of(&attrs["webhook_mapping_headers"])
    );
}

#[test]
fn header_mapping_takes_the_token_from_env_at_apply_time() {
    let raw = raw_blueprint();
    let transport = single_entry(&raw, "authentik_events.notificationtransport");
    let headers_id = key_of(&transport["attrs"]["webhook_mapping_headers"]).expect("!KeyOf");
    let mapping = entries_of(&raw, "authentik_events.notificationwebhookmapping")
        .find(|e| entry_id(e) == Some(headers_id))
        .expect("header mapping entry");
    let expression = &mapping["attrs"]["expression"];
    let format = tagged(expression, "Format").and_then(Yaml::as_sequence);
    let env_arg = format
        .into_iter()
        .flatten()
        .find_map(|arg| tagged(arg, "Env"))
        .expect("the header mapping must be `!Format [..., !Env [AUTHENTIK_WEBHOOK_TOKEN, ...]]`");
    let (name, _) = key_and_default(env_arg).expect("!Env argument");
    assert_eq!(name, TOKEN_ENV);

    // The token ends up inside the stored expression (docs/src/upstream/authentik.md §12), quoted as a Python literal.
    let env = BTreeMap::from([(TOKEN_ENV, "s3cr'et\\")]);
    let resolved = resolved_blueprint(&raw, &env);
    let stored = entries(&resolved)
        .iter()
        .zip(entries(&raw))
        .find(|(_, r)| entry_id(r) == Some(headers_id))
        .and_then(|(e, _)| e["attrs"]["expression"].as_str())
        .expect("resolved header expression");
    assert!(
        stored.contains(r#""s3cr'et\\""#),
        "token not embedded: {stored}"
    );
    assert!(stored.contains("\"Bearer \""), "no Bearer prefix: {stored}");
}

#[test]
fn event_matchers_set_action_and_never_app() {
    let raw = raw_blueprint();
    let mut seen = BTreeSet::new();
    for policy in entries_of(&raw, "authentik_policies_event_matcher.eventmatcherpolicy") {
        let attrs = policy["attrs"].as_mapping().expect("policy attrs");
        let id = entry_id(policy).unwrap_or("?");
        // Without `action` the serializer fails with KeyError (docs/src/upstream/authentik.md §5.1).
        let action = attrs.get("action").and_then(Yaml::as_str);
        assert!(action.is_some(), "policy {id} has no action");
        // Model events have app `authentik.events.middleware`, never a valid `app` choice (docs/src/upstream/authentik.md §5.1).
        assert!(!attrs.contains_key("app"), "policy {id} sets app");
        let model = attrs.get("model").and_then(Yaml::as_str);
        seen.insert((action.map(str::to_owned), model.map(str::to_owned)));
    }
    let mut wanted = BTreeSet::new();
    for action in ["model_created", "model_updated", "model_deleted"] {
        for model in ["authentik_core.group", "authentik_core.user"] {
            wanted.insert((Some(action.to_owned()), Some(model.to_owned())));
        }
    }
    assert_eq!(seen, wanted);
}

#[test]
fn rule_sends_to_the_event_user_through_the_transport() {
    let raw = raw_blueprint();
    let rule = single_entry(&raw, "authentik_events.notificationrule");
    let attrs = rule["attrs"].as_mapping().expect("rule attrs");
    // Without a recipient nothing is sent at all (docs/src/upstream/authentik.md §5.4).
    assert_eq!(
        attrs.get("destination_event_user").and_then(Yaml::as_bool),
        Some(true)
    );
    // `group` is the pre-2025.8 name, silently ignored now (docs/src/upstream/authentik.md §5.2, §6.7).
    assert!(
        !attrs.contains_key("group"),
        "stale `group:` key on the rule"
    );
    assert_eq!(attrs.get("severity").and_then(Yaml::as_str), Some("notice"));
    let transport = single_entry(&raw, "authentik_events.notificationtransport");
    let transports: Vec<Option<&str>> = attrs
        .get("transports")
        .and_then(Yaml::as_sequence)
        .expect("rule transports")
        .iter()
        .map(key_of)
        .collect();
    assert_eq!(transports, vec![entry_id(transport)]);
}

#[test]
fn every_binding_ties_one_policy_to_the_rule() {
    let raw = raw_blueprint();
    let rule_id =
        entry_id(single_entry(&raw, "authentik_events.notificationrule")).expect("rule id");
    let policy_ids: BTreeSet<&str> =
        entries_of(&raw, "authentik_policies_event_matcher.eventmatcherpolicy")
            .filter_map(entry_id)
            .collect();
    let mut bound = BTreeSet::new();
    let mut orders = BTreeSet::new();
    for binding in entries_of(&raw, "authentik_policies.policybinding") {
        let ids = &binding["identifiers"];
        let field = |name: &str| {
            if ids.get(name).is_some() {
                &ids[name]
            } else {
                &binding["attrs"][name]
            }
        };
        // `!KeyOf` on a binding yields the rule's pbm_uuid (docs/src/upstream/authentik.md §5.3).
        assert_eq!(key_of(field("target")), Some(rule_id), "binding target");
        let policy = key_of(field("policy")).expect("binding policy must be !KeyOf");
        assert!(
            policy_ids.contains(policy),
            "binding to unknown policy {policy}"
        );
        assert!(bound.insert(policy), "policy {policy} bound twice");
        let order = field("order").as_i64().expect("binding order");
        assert!(orders.insert(order), "order {order} used twice");
    }
    assert_eq!(bound, policy_ids, "every policy needs a binding");
}

// ------------------------------------------------------------------ the mappings, evaluated

/// Runs `tests/support/run_mapping.py` with `args` and returns the JSON it printed: what Authentik
/// would POST (body mapping) or add as headers (header mapping) for that event shape.
/// `token` sets `AUTHENTIK_WEBHOOK_TOKEN` for the script (`None` unsets it).
fn run_mapping(args: &[&str], token: Option<&str>) -> Json {
    let mut cmd = Command::new("python3");
    cmd.arg(manifest_path(RUN_MAPPING)).args(args);
    match token {
        Some(t) => cmd.env(TOKEN_ENV, t),
        None => cmd.env_remove(TOKEN_ENV),
    };
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 {RUN_MAPPING}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "run_mapping.py {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("run_mapping.py {args:?} printed no JSON ({e}): {stdout}"))
}

fn is_dashed_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups.iter().all(|g| {
            g.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        })
}

fn is_hex32(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The fields every v1 document has, whatever the event (DESIGN.md "body mapping document").
fn assert_v1_envelope(doc: &Json, action: &str, app: &str) {
    assert_eq!(doc["schema"], "authentik-bridge/v1", "{doc}");
    let pk = doc["event_pk"].as_str().unwrap_or_default();
    assert!(
        is_dashed_uuid(pk),
        "event_pk must be str(uuid), dashed: {doc}"
    );
    assert_eq!(doc["action"], action, "{doc}");
    assert_eq!(doc["app"], app, "{doc}");
    let created = doc["created"].as_str().unwrap_or_default();
    assert!(
        created.starts_with("2026-10-21T12:34:56") && created.ends_with('Z'),
        "created must be ISO 8601 UTC: {doc}"
    );
}

#[test]
fn body_mapping_group_update_without_diff() {
    let doc = run_mapping(&["group-updated"], None);
    assert_v1_envelope(&doc, "model_updated", "authentik.events.middleware");
    let model = &doc["model"];
    assert_eq!(model["app"], "authentik_core");
    assert_eq!(model["model_name"], "group");
    assert!(
        model["pk"].as_str().is_some_and(is_hex32),
        "group pk is 32-hex: {doc}"
    );
    assert_eq!(model["name"], "wiki-editors");
    assert!(
        doc.get("diff").is_none(),
        "no diff key without a licence: {doc}"
    );
}

#[test]
fn body_mapping_group_update_with_diff() {
    let doc = run_mapping(&["group-updated", "--with-diff"], None);
    assert_v1_envelope(&doc, "model_updated", "authentik.events.middleware");
    assert_eq!(doc["diff"], serde_json::json!({"users": {"add": [42]}}));
}

#[test]
fn body_mapping_user_update() {
    let doc = run_mapping(&["user-updated"], None);
    assert_v1_envelope(&doc, "model_updated", "authentik.events.middleware");
    assert_eq!(doc["model"]["model_name"], "user");
    assert!(doc["model"]["pk"].is_u64(), "user pk is an integer: {doc}");
    assert!(doc.get("diff").is_none(), "{doc}");

    let doc = run_mapping(&["user-updated", "--with-diff"], None);
    assert_eq!(doc["diff"]["is_active"]["new_value"], false, "{doc}");
}

#[test]
fn body_mapping_user_delete() {
    let doc = run_mapping(&["user-deleted"], None);
    assert_v1_envelope(&doc, "model_deleted", "authentik.events.middleware");
    assert_eq!(doc["model"]["model_name"], "user");
    assert_eq!(doc["model"]["pk"], 42);
    assert!(doc.get("diff").is_none(), "{doc}");
}

#[test]
fn body_mapping_group_create_and_delete() {
    for (shape, action) in [
        ("group-created", "model_created"),
        ("group-deleted", "model_deleted"),
    ] {
        let doc = run_mapping(&[shape], None);
        assert_v1_envelope(&doc, action, "authentik.events.middleware");
        assert!(doc["model"]["pk"].as_str().is_some_and(is_hex32), "{doc}");
    }
}

#[test]
fn body_mapping_test_button_event_has_null_model() {
    let doc = run_mapping(&["test"], None);
    assert_v1_envelope(
        &doc,
        "custom_notification_test",
        "authentik.events.api.notification_transports",
    );
    assert!(
        doc["model"].is_null(),
        "the Test event has no model (docs/src/upstream/authentik.md §3.5): {doc}"
    );
    assert!(doc.get("diff").is_none(), "{doc}");
}

#[test]
fn body_mapping_survives_a_missing_event() {
    let doc = run_mapping(&["no-event"], None);
    assert_eq!(doc["schema"], "authentik-bridge/v1");
    assert!(doc["event_pk"].is_null() && doc["model"].is_null(), "{doc}");
}

#[test]
fn header_mapping_sends_the_bearer_token() {
    let headers = run_mapping(
        &["group-updated", "--mapping", "headers"],
        Some("test-token-123"),
    );
    assert_eq!(
        headers,
        serde_json::json!({"Authorization": "Bearer test-token-123"})
    );
    // Unset at apply time: no header, so only a `?token=` in the URL can authenticate.
    let headers = run_mapping(&["group-updated", "--mapping", "headers"], None);
    assert_eq!(headers, serde_json::json!({}));
}

#[test]
fn placeholder_uuids_and_python_repr_are_well_formed() {
    assert!(is_dashed_uuid(&placeholder_uuid("authentik-bridge-rule")));
    assert_eq!(python_str_repr("a'b"), r#""a'b""#);
    assert_eq!(python_str_repr("a\"b'c"), r#"'a"b\'c'"#);
    assert_eq!(
        percent_format(
            "x = %r; %d%%",
            &[Yaml::String("t".into()), Yaml::Number(5.into())]
        ),
        Ok("x = 't'; 5%".to_owned())
    );
    let unused = Tag::new("Unused");
    assert!(TagResolver {
        context: &Mapping::new(),
        env: &BTreeMap::new(),
        earlier_ids: BTreeSet::new(),
    }
    .resolve(&Yaml::Tagged(Box::new(TaggedValue {
        tag: unused,
        value: Yaml::Null
    })))
    .is_err());
}
