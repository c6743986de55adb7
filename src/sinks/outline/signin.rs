//! Outline's signed webhooks (docs/src/upstream/outline.md §2.1–§2.3).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::configuration::Secret;
use crate::domain::OutlineUserId;
use crate::reason::one_line;

/// Outline defines no freshness window (docs/src/upstream/outline.md §2.1), so the bridge picks one: a captured delivery replayed more
/// than five minutes later is refused.
pub const SIGNATURE_TOLERANCE: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("missing Outline-Signature header")]
    Missing,
    #[error("malformed Outline-Signature header: {0}")]
    Malformed(&'static str),
    #[error("signature does not match the body")]
    Mismatch,
    #[error("signature timestamp is outside the 5 minute window")]
    Stale,
}

/// `Outline-Signature: t=<unix ms>,s=<hex HMAC-SHA256>`.
#[derive(Debug, PartialEq, Eq)]
pub struct SignatureHeader {
    pub timestamp_ms: u64,
    pub signature: Vec<u8>,
}

pub fn parse_signature_header(value: &str) -> Result<SignatureHeader, SignatureError> {
    let mut timestamp = None;
    let mut signature = None;
    for part in value.split(',') {
        let (key, val) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed("expected t=...,s=..."))?;
        match key {
            "t" if timestamp.is_none() => {
                timestamp = Some(
                    val.parse::<u64>()
                        .map_err(|_| SignatureError::Malformed("t is not a number"))?,
                )
            }
            "s" if signature.is_none() => {
                if val.len() != 64 {
                    return Err(SignatureError::Malformed("s is not a SHA-256 hex digest"));
                }
                signature =
                    Some(hex::decode(val).map_err(|_| SignatureError::Malformed("s is not hex"))?)
            }
            "t" | "s" => return Err(SignatureError::Malformed("repeated field")),
            _ => return Err(SignatureError::Malformed("unknown field")),
        }
    }
    match (timestamp, signature) {
        (Some(timestamp_ms), Some(signature)) => Ok(SignatureHeader {
            timestamp_ms,
            signature,
        }),
        _ => Err(SignatureError::Malformed("expected t=...,s=...")),
    }
}

/// Verifies the HMAC over `"<t>.<raw body>"` in constant time (the `hmac` crate's `verify_slice`), then
/// the freshness of `t`, which is in milliseconds (docs/src/upstream/outline.md §2.1). The bytes are the ones received, never
/// re-serialized JSON.
pub fn verify_outline_signature(
    secret: &Secret,
    header: Option<&str>,
    body: &[u8],
    now: SystemTime,
) -> Result<(), SignatureError> {
    let header = parse_signature_header(header.ok_or(SignatureError::Missing)?)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .map_err(|_| SignatureError::Mismatch)?;
    mac.update(header.timestamp_ms.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&header.signature)
        .map_err(|_| SignatureError::Mismatch)?;

    let now_ms = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let skew = now_ms.abs_diff(u128::from(header.timestamp_ms));
    if skew > SIGNATURE_TOLERANCE.as_millis() {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

/// A delivery as far as the bridge reads it. The payload has no email (docs/src/upstream/outline.md §2.3), only the user's id.
#[derive(Debug, PartialEq, Eq)]
pub struct OutlineDelivery {
    pub event: String,
    pub user_id: Option<OutlineUserId>,
}

pub const SIGNIN_EVENT: &str = "users.signin";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    #[error("body is not valid JSON: {0}")]
    Json(String),
    #[error("{0}")]
    Shape(&'static str),
}

pub fn parse_outline_delivery(body: &[u8]) -> Result<OutlineDelivery, PayloadError> {
    #[derive(Deserialize)]
    struct Raw {
        event: String,
        #[serde(default)]
        payload: Option<RawPayload>,
    }
    #[derive(Deserialize)]
    struct RawPayload {
        #[serde(default)]
        id: Option<serde_json::Value>,
    }
    let raw: Raw =
        serde_json::from_slice(body).map_err(|e| PayloadError::Json(one_line(&e.to_string())))?;
    let user_id = match raw.payload.and_then(|p| p.id) {
        Some(serde_json::Value::String(id)) if !id.is_empty() && id.len() <= 64 => {
            Some(OutlineUserId::new(id))
        }
        Some(_) => return Err(PayloadError::Shape("payload.id is not a user id")),
        None => None,
    };
    if raw.event == SIGNIN_EVENT && user_id.is_none() {
        return Err(PayloadError::Shape(
            "users.signin delivery has no payload.id",
        ));
    }
    Ok(OutlineDelivery {
        event: raw.event,
        user_id,
    })
}

/// Larger Outline bodies are refused before they are read to the end. A `users.signin` is about a kilobyte;
/// the limit leaves room for the other events a subscription may carry.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VECTOR_HEADER: &str =
        "t=1724340000000,s=c8b8b84d55906fd23ba7453b835377b98095ed9d2ac270144a2d6108d89514c4";
    const VECTOR_BODY: &[u8] = br#"{"id":"d1","event":"users.signin"}"#;

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn verifies_the_contract_test_vector() {
        let secret = Secret::new("ol_whs_testsecret");
        assert_eq!(
            upstream_fakes::outline_signature("ol_whs_testsecret", 1724340000000, VECTOR_BODY),
            VECTOR_HEADER
        );
        assert_eq!(
            verify_outline_signature(&secret, Some(VECTOR_HEADER), VECTOR_BODY, at(1724340000000)),
            Ok(())
        );
    }

    #[test]
    fn rejects_every_bad_signature() {
        let secret = Secret::new("ol_whs_testsecret");
        let now = at(1724340000000);
        assert_eq!(
            verify_outline_signature(&secret, None, VECTOR_BODY, now),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_outline_signature(&Secret::new("other"), Some(VECTOR_HEADER), VECTOR_BODY, now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_outline_signature(&secret, Some(VECTOR_HEADER), b"{}", now),
            Err(SignatureError::Mismatch)
        );
        assert!(matches!(
            verify_outline_signature(&secret, Some("garbage"), VECTOR_BODY, now),
            Err(SignatureError::Malformed(_))
        ));
        let late = at(1724340000000 + 5 * 60 * 1000 + 1);
        assert_eq!(
            verify_outline_signature(&secret, Some(VECTOR_HEADER), VECTOR_BODY, late),
            Err(SignatureError::Stale)
        );
        let early = at(1724340000000 - 5 * 60 * 1000 - 1);
        assert_eq!(
            verify_outline_signature(&secret, Some(VECTOR_HEADER), VECTOR_BODY, early),
            Err(SignatureError::Stale)
        );
    }

    #[test]
    fn parses_a_signin_delivery_without_email() {
        let body = br#"{"id":"d","actorId":"u1","webhookSubscriptionId":"s","createdAt":"x","event":"users.signin","payload":{"id":"u1","model":{"id":"u1","name":"Jane"}}}"#;
        let d = parse_outline_delivery(body).expect("parses");
        assert_eq!(d.user_id, Some(OutlineUserId::new("u1")));
        assert!(parse_outline_delivery(b"{").is_err());
        assert!(parse_outline_delivery(br#"{"event":"users.signin","payload":{}}"#).is_err());
        assert_eq!(
            parse_outline_delivery(br#"{"event":"groups.create"}"#)
                .expect("ok")
                .event,
            "groups.create"
        );
    }

    proptest! {
        #[test]
        fn header_parser_never_panics(s in ".{0,200}") {
            let _ = parse_signature_header(&s);
        }

        #[test]
        fn verifier_never_panics(header in "[ts=,0-9a-f]{0,150}", body in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = verify_outline_signature(&Secret::new("k"), Some(&header), &body, SystemTime::now());
        }

        #[test]
        fn body_parser_never_panics(body in prop::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse_outline_delivery(&body);
        }

        #[test]
        fn json_shaped_bodies_never_panic(event in ".{0,20}", id in prop::option::of(".{0,80}"), n in any::<i64>()) {
            let body = serde_json::json!({"event": event, "payload": {"id": id, "n": n}}).to_string();
            let _ = parse_outline_delivery(body.as_bytes());
        }

        #[test]
        fn signed_bodies_verify(body in prop::collection::vec(any::<u8>(), 0..300), t in 1_000_000_000_000u64..2_000_000_000_000u64) {
            let header = upstream_fakes::outline_signature("secret", t, &body);
            prop_assert_eq!(verify_outline_signature(&Secret::new("secret"), Some(&header), &body, at(t)), Ok(()));
        }
    }
}
