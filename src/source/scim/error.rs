//! SCIM's error answer (RFC 7644 §3.12): `schemas`, `status` as a string, `scimType` where the RFC names one,
//! and a one-line `detail`.

use serde_json::{json, Value};

pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {}: {detail}", scim_type.unwrap_or("-"))]
pub struct ScimError {
    pub status: u16,
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

impl ScimError {
    fn new(status: u16, scim_type: Option<&'static str>, detail: impl Into<String>) -> ScimError {
        ScimError {
            status,
            scim_type,
            detail: detail.into(),
        }
    }

    /// The body is not JSON, or not the shape a SCIM message has.
    pub fn invalid_syntax(detail: impl Into<String>) -> ScimError {
        Self::new(400, Some("invalidSyntax"), detail)
    }
    /// A value of the wrong type, a required one missing, or a member nobody has.
    pub fn invalid_value(detail: impl Into<String>) -> ScimError {
        Self::new(400, Some("invalidValue"), detail)
    }
    pub fn invalid_filter(detail: impl Into<String>) -> ScimError {
        Self::new(400, Some("invalidFilter"), detail)
    }
    /// A PATCH path this server cannot apply.
    pub fn invalid_path(detail: impl Into<String>) -> ScimError {
        Self::new(400, Some("invalidPath"), detail)
    }
    pub fn no_target(detail: impl Into<String>) -> ScimError {
        Self::new(400, Some("noTarget"), detail)
    }
    pub fn mutability(detail: impl Into<String>) -> ScimError {
        Self::new(400, Some("mutability"), detail)
    }
    pub fn uniqueness(detail: impl Into<String>) -> ScimError {
        Self::new(409, Some("uniqueness"), detail)
    }
    pub fn not_found(detail: impl Into<String>) -> ScimError {
        Self::new(404, None, detail)
    }
    pub fn unauthorized(detail: impl Into<String>) -> ScimError {
        Self::new(401, None, detail)
    }
    pub fn too_large(limit: usize) -> ScimError {
        Self::new(413, None, format!("body larger than {limit} bytes"))
    }
    pub fn method_not_allowed(detail: impl Into<String>) -> ScimError {
        Self::new(405, None, detail)
    }
    pub fn unsupported_media(detail: impl Into<String>) -> ScimError {
        Self::new(415, None, detail)
    }
    pub fn not_implemented(detail: impl Into<String>) -> ScimError {
        Self::new(501, None, detail)
    }
    pub fn unavailable(detail: impl Into<String>) -> ScimError {
        Self::new(503, None, detail)
    }
    pub fn internal(detail: impl Into<String>) -> ScimError {
        Self::new(500, None, detail)
    }

    pub fn body(&self) -> Value {
        let mut body = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let (Some(t), Some(map)) = (self.scim_type, body.as_object_mut()) {
            map.insert("scimType".into(), Value::String(t.into()));
        }
        body
    }
}
