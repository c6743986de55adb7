//! Authentik's notification-transport webhooks (docs/src/upstream/authentik.md §2–§4).
//!
//! Authentik signs nothing (docs/src/upstream/authentik.md §2.6), so the request is authenticated by a shared bearer token that the
//! blueprint's header mapping sends, or by `?token=` for versions before 2025.4, which have no header
//! mappings (docs/src/upstream/authentik.md §2.1, §2.7). The body is the small versioned document the blueprint's body mapping returns.

use serde::Deserialize;

use crate::configuration::Secret;
use crate::domain::{AuthentikGroupId, AuthentikUserId};
use crate::reason::one_line;

pub const SCHEMA_V1: &str = "authentik-bridge/v1";
const TEST_ACTION: &str = "custom_notification_test";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("missing bearer token (Authorization header or ?token=)")]
    Missing,
    #[error("wrong bearer token")]
    Wrong,
}

/// Compares SHA-256 digests in constant time, so neither the content nor the length of the token leaks
/// through timing.
pub fn verify_webhook_token(
    expected: &Secret,
    authorization: Option<&str>,
    query_token: Option<&str>,
) -> Result<(), TokenError> {
    let presented = authorization
        .and_then(|h| {
            let (scheme, value) = h.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| value.trim())
        })
        .or(query_token)
        .filter(|t| !t.is_empty())
        .ok_or(TokenError::Missing)?;
    if expected.matches(presented) {
        Ok(())
    } else {
        Err(TokenError::Wrong)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelAction {
    Created,
    Updated,
    Deleted,
}

impl ModelAction {
    fn parse(action: &str) -> Option<ModelAction> {
        match action {
            "model_created" => Some(ModelAction::Created),
            "model_updated" => Some(ModelAction::Updated),
            "model_deleted" => Some(ModelAction::Deleted),
            _ => None,
        }
    }
}

/// What arrived on `/webhooks/authentik`, parsed once at the edge. `event_pk` is `str(event.pk)`: the
/// idempotency key of Authentik's retries and fan-out (docs/src/upstream/authentik.md §11); a notification without
/// an event has none, and is not deduplicated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthentikChange {
    /// A group was created, edited (renamed, members changed on the group side) or deleted.
    Group {
        event_pk: Option<String>,
        action: ModelAction,
        id: AuthentikGroupId,
        name: String,
    },
    /// A user was created, edited (groups, activation, email) or deleted.
    User {
        event_pk: Option<String>,
        action: ModelAction,
        pk: AuthentikUserId,
        name: String,
    },
    /// The transport's Test button (docs/src/upstream/authentik.md §3.5): acknowledged, nothing else.
    Test,
    /// Authentik's default body, sent when the transport has no body mapping (docs/src/upstream/authentik.md §2.2).
    /// It names no usable target, so the bridge answers it with a debounced full reconcile.
    DefaultBody,
    /// Any other event (another model, another action, no event at all): accepted and ignored, since
    /// refusing it would only make Authentik retry it five times.
    Ignored { event_pk: Option<String> },
}

impl AuthentikChange {
    pub fn event_pk(&self) -> Option<&str> {
        match self {
            AuthentikChange::Group { event_pk, .. }
            | AuthentikChange::User { event_pk, .. }
            | AuthentikChange::Ignored { event_pk } => event_pk.as_deref(),
            AuthentikChange::Test | AuthentikChange::DefaultBody => None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    #[error("body is not valid JSON: {0}")]
    Json(String),
    #[error("unknown schema {0:?}; this bridge understands {SCHEMA_V1:?} (update the blueprint or the bridge)")]
    UnknownSchema(String),
    #[error("{0}")]
    Shape(String),
}

#[derive(Deserialize)]
struct RawDocument {
    schema: Option<String>,
    event_pk: Option<String>,
    action: Option<String>,
    model: Option<RawModel>,
    // Default-body keys (docs/src/upstream/authentik.md §2.2).
    body: Option<serde_json::Value>,
    severity: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawModel {
    app: Option<String>,
    model_name: Option<String>,
    pk: Option<serde_json::Value>,
    name: Option<serde_json::Value>,
}

pub fn parse_authentik_change(body: &[u8]) -> Result<AuthentikChange, PayloadError> {
    let raw: RawDocument =
        serde_json::from_slice(body).map_err(|e| PayloadError::Json(one_line(&e.to_string())))?;
    let Some(schema) = raw.schema else {
        if raw.body.is_some() && raw.severity.is_some() {
            return Ok(AuthentikChange::DefaultBody);
        }
        return Err(PayloadError::Shape(
            "no \"schema\" field: not an authentik-bridge document".into(),
        ));
    };
    if schema != SCHEMA_V1 {
        return Err(PayloadError::UnknownSchema(one_line(&schema)));
    }
    // A notification without an event (the mapping then sends nulls) has no action.
    let action = raw.action.unwrap_or_default();
    if action == TEST_ACTION {
        return Ok(AuthentikChange::Test);
    }
    let event_pk = match raw.event_pk {
        Some(p) if p.is_empty() || p.len() > 64 => {
            return Err(PayloadError::Shape("invalid \"event_pk\"".into()))
        }
        other => other,
    };
    let target = raw.model.map(parse_target).transpose()?.flatten();
    Ok(match (ModelAction::parse(&action), target) {
        (Some(action), Some(Target::Group { id, name })) => AuthentikChange::Group {
            event_pk,
            action,
            id,
            name,
        },
        (Some(action), Some(Target::User { pk, name })) => AuthentikChange::User {
            event_pk,
            action,
            pk,
            name,
        },
        _ => AuthentikChange::Ignored { event_pk },
    })
}

enum Target {
    Group { id: AuthentikGroupId, name: String },
    User { pk: AuthentikUserId, name: String },
}

/// The group or user an event is about, from `context.model` (docs/src/upstream/authentik.md §4.2); `None` for
/// any other model.
fn parse_target(model: RawModel) -> Result<Option<Target>, PayloadError> {
    let app = model.app.unwrap_or_default();
    let model_name = model.model_name.unwrap_or_default();
    let name = match model.name {
        Some(serde_json::Value::String(s)) => s,
        Some(other) => other.to_string(),
        None => String::new(),
    };
    if app != "authentik_core" {
        return Ok(None);
    }
    match model_name.as_str() {
        // Groups carry a 32-hex pk (docs/src/upstream/authentik.md §4.2).
        "group" => {
            let pk = model
                .pk
                .as_ref()
                .and_then(|v| v.as_str())
                .and_then(AuthentikGroupId::parse);
            let id =
                pk.ok_or_else(|| PayloadError::Shape("group model without a uuid pk".into()))?;
            Ok(Some(Target::Group { id, name }))
        }
        // Users carry an integer pk (docs/src/upstream/authentik.md §4.2).
        "user" => {
            let pk = match model.pk {
                Some(serde_json::Value::Number(n)) => n.as_i64(),
                Some(serde_json::Value::String(s)) => s.parse().ok(),
                _ => None,
            };
            let pk =
                pk.ok_or_else(|| PayloadError::Shape("user model without an integer pk".into()))?;
            Ok(Some(Target::User {
                pk: AuthentikUserId(pk),
                name,
            }))
        }
        _ => Ok(None),
    }
}

/// Larger Authentik bodies are refused before they are read to the end, and before the token is checked.
/// The blueprint's document is a few hundred bytes, and Authentik's default body a few kilobytes.
pub const MAX_AUTHENTIK_BODY_BYTES: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tokens_come_from_the_header_or_the_query() {
        let secret = Secret::new("s3cret");
        assert_eq!(
            verify_webhook_token(&secret, Some("Bearer s3cret"), None),
            Ok(())
        );
        assert_eq!(
            verify_webhook_token(&secret, Some("bearer s3cret"), None),
            Ok(())
        );
        assert_eq!(verify_webhook_token(&secret, None, Some("s3cret")), Ok(()));
        assert_eq!(
            verify_webhook_token(&secret, Some("Bearer nope"), None),
            Err(TokenError::Wrong)
        );
        assert_eq!(
            verify_webhook_token(&secret, None, None),
            Err(TokenError::Missing)
        );
        assert_eq!(
            verify_webhook_token(&secret, Some("Basic abc"), None),
            Err(TokenError::Missing)
        );
    }

    #[test]
    fn parses_the_v1_document_for_groups_and_users() {
        let group = br#"{"schema": "authentik-bridge/v1", "event_pk": "0e9e0c2b-5a1f-4c3e-9a77-2f0d9c1e4b21", "action": "model_updated", "app": "authentik.events.middleware", "created": "2026-10-21T12:34:56.789012Z", "model": {"pk": "3b9f1d6e0c8e4a0f9d7b5c3a1e2f4d6c", "app": "authentik_core", "name": "wiki-editors", "model_name": "group"}}"#;
        let change = parse_authentik_change(group).expect("parses");
        assert!(
            matches!(change, AuthentikChange::Group { action: ModelAction::Updated, ref name, ref event_pk, .. }
                if name == "wiki-editors" && event_pk.as_deref() == Some("0e9e0c2b-5a1f-4c3e-9a77-2f0d9c1e4b21"))
        );

        let user = br#"{"schema": "authentik-bridge/v1", "event_pk": "x", "action": "model_deleted", "model": {"app": "authentik_core", "model_name": "user", "pk": 42, "name": "Jane"}}"#;
        assert_eq!(
            parse_authentik_change(user),
            Ok(AuthentikChange::User {
                event_pk: Some("x".into()),
                action: ModelAction::Deleted,
                pk: AuthentikUserId(42),
                name: "Jane".into()
            })
        );
        let other = br#"{"schema": "authentik-bridge/v1", "event_pk": "y", "action": "login", "model": null}"#;
        assert_eq!(
            parse_authentik_change(other),
            Ok(AuthentikChange::Ignored {
                event_pk: Some("y".into())
            })
        );
    }

    #[test]
    fn recognises_the_test_button_and_the_default_body() {
        let test = br#"{"schema": "authentik-bridge/v1", "event_pk": "x", "action": "custom_notification_test", "model": null}"#;
        assert_eq!(parse_authentik_change(test), Ok(AuthentikChange::Test));
        let default = br#"{"body": "model_updated: {...}", "severity": "notice", "user_email": "a@b", "user_username": "a"}"#;
        assert_eq!(
            parse_authentik_change(default),
            Ok(AuthentikChange::DefaultBody)
        );
    }

    #[test]
    fn rejects_unknown_schemas_and_garbage() {
        assert!(matches!(
            parse_authentik_change(br#"{"schema": "authentik-bridge/v9", "action": "x"}"#),
            Err(PayloadError::UnknownSchema(_))
        ));
        assert!(matches!(
            parse_authentik_change(b"not json"),
            Err(PayloadError::Json(_))
        ));
        assert!(matches!(
            parse_authentik_change(br#"{"hello": 1}"#),
            Err(PayloadError::Shape(_))
        ));
        let bad_pk = br#"{"schema": "authentik-bridge/v1", "event_pk": "x", "action": "model_updated", "model": {"app": "authentik_core", "model_name": "group", "pk": 7}}"#;
        assert!(matches!(
            parse_authentik_change(bad_pk),
            Err(PayloadError::Shape(_))
        ));
    }

    proptest! {
        #[test]
        fn parser_never_panics(body in prop::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse_authentik_change(&body);
        }

        #[test]
        fn structured_documents_never_panic(
            schema in prop::option::of(prop_oneof![Just("authentik-bridge/v1".to_string()), ".{0,10}"]),
            action in ".{0,20}", app in ".{0,20}", model_name in ".{0,10}",
            pk in prop_oneof![any::<i64>().prop_map(serde_json::Value::from), ".{0,40}".prop_map(serde_json::Value::from), Just(serde_json::Value::Null)],
        ) {
            let doc = serde_json::json!({"schema": schema, "event_pk": "e", "action": action, "model": {"app": app, "model_name": model_name, "pk": pk, "name": 3}});
            let _ = parse_authentik_change(doc.to_string().as_bytes());
        }

        #[test]
        fn token_check_never_panics(h in prop::option::of(".{0,80}"), q in prop::option::of(".{0,40}")) {
            let _ = verify_webhook_token(&Secret::new("t"), h.as_deref(), q.as_deref());
        }
    }
}
