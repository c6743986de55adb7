//! The discovery endpoints (RFC 7644 §4): `/ServiceProviderConfig`, `/ResourceTypes` and `/Schemas`.
//! Authentik parses the first strictly and falls back to "no PATCH, no filter" when it cannot
//! (docs/src/upstream/scim.md §4); Okta and Entra ID read the others.

use serde_json::{json, Value};

use super::patch::MAX_OPERATIONS;
use super::resource::{GROUP_SCHEMA, LIST_SCHEMA, USER_SCHEMA};

/// The most resources one list answers, whatever `count` asks.
pub const MAX_RESULTS: i64 = 200;
/// The largest body read (the 1 MiB).
pub const MAX_PAYLOAD: usize = 1024 * 1024;

const SPC_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

pub fn service_provider_config(base: &str) -> Value {
    json!({
        "schemas": [SPC_SCHEMA],
        "documentationUri": "https://datatracker.ietf.org/doc/html/rfc7644",
        "patch": {"supported": true},
        // Authentik takes maxOperations as its PATCH chunk size even without /Bulk (docs/src/upstream/scim.md §4).
        "bulk": {"supported": false, "maxOperations": MAX_OPERATIONS, "maxPayloadSize": MAX_PAYLOAD},
        "filter": {"supported": true, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": false},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "Authentication with the bridge's SCIM_TOKEN as a bearer token",
            "specUri": "https://www.rfc-editor.org/info/rfc6750",
            "primary": true
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig")}
    })
}

pub fn resource_type(base: &str, name: &str) -> Option<Value> {
    let (endpoint, schema, description) = match name {
        "User" => ("/Users", USER_SCHEMA, "People"),
        "Group" => ("/Groups", GROUP_SCHEMA, "Groups of people"),
        _ => return None,
    };
    Some(json!({
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": name,
        "name": name,
        "endpoint": endpoint,
        "description": description,
        "schema": schema,
        "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/{name}")}
    }))
}

pub fn resource_types(base: &str) -> Value {
    list(
        ["User", "Group"]
            .iter()
            .filter_map(|n| resource_type(base, n))
            .collect(),
    )
}

fn attribute(name: &str, kind: &str, required: bool, case_exact: bool, uniqueness: &str) -> Value {
    json!({
        "name": name, "type": kind, "multiValued": false, "description": name,
        "required": required, "caseExact": case_exact, "mutability": "readWrite",
        "returned": "default", "uniqueness": uniqueness
    })
}

fn complex(name: &str, multi: bool, sub: Vec<Value>) -> Value {
    json!({
        "name": name, "type": "complex", "multiValued": multi, "description": name,
        "required": false, "mutability": "readWrite", "returned": "default",
        "uniqueness": "none", "subAttributes": sub
    })
}

pub fn schema(base: &str, id: &str) -> Option<Value> {
    let text = |n: &str| attribute(n, "string", false, false, "none");
    let (name, attributes) = if id.eq_ignore_ascii_case(USER_SCHEMA) {
        (
            "User",
            vec![
                attribute("userName", "string", true, false, "server"),
                complex(
                    "name",
                    false,
                    vec![
                        text("formatted"),
                        text("familyName"),
                        text("givenName"),
                        text("middleName"),
                        text("honorificPrefix"),
                        text("honorificSuffix"),
                    ],
                ),
                text("displayName"),
                text("nickName"),
                text("title"),
                text("preferredLanguage"),
                text("locale"),
                text("timezone"),
                attribute("active", "boolean", false, false, "none"),
                complex(
                    "emails",
                    true,
                    vec![
                        text("value"),
                        text("display"),
                        text("type"),
                        attribute("primary", "boolean", false, false, "none"),
                    ],
                ),
            ],
        )
    } else if id.eq_ignore_ascii_case(GROUP_SCHEMA) {
        (
            "Group",
            vec![
                attribute("displayName", "string", true, false, "none"),
                json!({
                    "name": "members", "type": "complex", "multiValued": true, "description": "members",
                    "required": false, "mutability": "readWrite", "returned": "default", "uniqueness": "none",
                    "subAttributes": [
                        {"name": "value", "type": "string", "multiValued": false, "description": "the member's id",
                         "required": false, "caseExact": true, "mutability": "immutable", "returned": "default", "uniqueness": "none"},
                        {"name": "$ref", "type": "reference", "referenceTypes": ["User"], "multiValued": false,
                         "description": "the member's URI", "required": false, "caseExact": true,
                         "mutability": "immutable", "returned": "default", "uniqueness": "none"},
                        {"name": "type", "type": "string", "multiValued": false, "description": "User: groups hold people only",
                         "required": false, "caseExact": false, "canonicalValues": ["User"],
                         "mutability": "immutable", "returned": "default", "uniqueness": "none"}
                    ]
                }),
            ],
        )
    } else {
        return None;
    };
    let id = if name == "User" {
        USER_SCHEMA
    } else {
        GROUP_SCHEMA
    };
    Some(json!({
        "schemas": [SCHEMA_SCHEMA],
        "id": id,
        "name": name,
        "description": name,
        "attributes": attributes,
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{id}")}
    }))
}

pub fn schemas(base: &str) -> Value {
    list(
        [USER_SCHEMA, GROUP_SCHEMA]
            .iter()
            .filter_map(|id| schema(base, id))
            .collect(),
    )
}

/// A ListResponse of every item, in one page.
pub fn list(items: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": items.len(),
        "startIndex": 1,
        "itemsPerPage": items.len(),
        "Resources": items,
    })
}
