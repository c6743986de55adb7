//! Identity newtypes, parsed once at the edge.
//!
//! Emails and group names compare case-insensitively by construction: Outline stores an SSO email with the
//! IdP's case and matches names with `ILIKE` (docs/src/upstream/outline.md §6.1, §6.7), while Authentik's filters are exact.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use serde::{Deserialize, Serialize, Serializer};

/// An email address as written, compared and hashed case-insensitively. Shared, not copied: a pass over
/// 100k users holds each address in several sets at once, and a clone is two reference counts.
#[derive(Clone)]
pub struct Email {
    written: Arc<str>,
    folded: Arc<str>,
}

impl Email {
    /// Anything with an `@` between non-empty parts; the upstreams validated it already, so this only keeps
    /// blanks and placeholders out of the join.
    pub fn parse(value: &str) -> Option<Email> {
        let value = value.trim();
        let (local, domain) = value.split_once('@')?;
        if local.is_empty() || domain.is_empty() || value.chars().any(char::is_whitespace) {
            return None;
        }
        let written: Arc<str> = Arc::from(value);
        let lower = value.to_lowercase();
        let folded = if lower == value {
            written.clone()
        } else {
            Arc::from(lower)
        };
        Some(Email { written, folded })
    }
    pub fn as_str(&self) -> &str {
        &self.written
    }
    pub fn folded(&self) -> &str {
        &self.folded
    }
}

impl PartialEq for Email {
    fn eq(&self, other: &Self) -> bool {
        self.folded == other.folded
    }
}
impl Eq for Email {}
impl Hash for Email {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.folded.hash(state)
    }
}
impl PartialOrd for Email {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Email {
    fn cmp(&self, other: &Self) -> Ordering {
        self.folded.cmp(&other.folded)
    }
}
impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.written)
    }
}
impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}
impl Serialize for Email {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.written)
    }
}

impl<'de> Deserialize<'de> for Email {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Email, D::Error> {
        let text = String::deserialize(d)?;
        Email::parse(&text).ok_or_else(|| serde::de::Error::custom("not an email address"))
    }
}

/// A group name as written; equal to another when Outline would call them the same name (case-insensitive).
#[derive(Clone, Serialize)]
#[serde(transparent)]
pub struct GroupName(String);

impl GroupName {
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The key two names share when Outline's `ILIKE` uniqueness check would treat them as one.
    pub fn folded(&self) -> String {
        self.0.to_lowercase()
    }
}
impl PartialEq for GroupName {
    fn eq(&self, other: &Self) -> bool {
        self.folded() == other.folded()
    }
}
impl Eq for GroupName {}
impl fmt::Debug for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}
impl fmt::Display for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An Authentik group's primary key, a UUID. Events carry it as 32 hex digits, the API as a dashed UUID
/// (docs/src/upstream/authentik.md §4.2, §7.3); both parse to the same value, shown dashed, which is also what the bridge
/// writes into Outline's `externalId`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AuthentikGroupId(String);

impl AuthentikGroupId {
    pub fn parse(value: &str) -> Option<AuthentikGroupId> {
        let hex: String = value.trim().chars().filter(|c| *c != '-').collect();
        if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        let dashes = value.trim().chars().filter(|c| *c == '-').count();
        if dashes != 0 && dashes != 4 {
            return None;
        }
        let h = hex.to_ascii_lowercase();
        Some(AuthentikGroupId(format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )))
    }
    /// A group key from a source other than Authentik's API (a SCIM group's `externalId` or id): a UUID is
    /// normalised as Authentik's are, so a move from webhooks to SCIM keeps every link; any other id is kept
    /// as sent.
    pub fn from_source_key(value: &str) -> Option<AuthentikGroupId> {
        if let Some(id) = Self::parse(value) {
            return Some(id);
        }
        let value = value.trim();
        (!value.is_empty() && value.len() <= 255 && !value.chars().any(char::is_control))
            .then(|| AuthentikGroupId(value.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl fmt::Debug for AuthentikGroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Display for AuthentikGroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl Serialize for AuthentikGroupId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}
impl<'de> Deserialize<'de> for AuthentikGroupId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        AuthentikGroupId::from_source_key(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("not a group key: {s:?}")))
    }
}

/// An Authentik user's primary key: an integer (docs/src/upstream/authentik.md §7.4).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AuthentikUserId(pub i64);

impl fmt::Display for AuthentikUserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

macro_rules! outline_id {
    ($name:ident, $what:literal) => {
        #[doc = concat!("An Outline ", $what, " id (a UUID string, kept as Outline wrote it). Shared, not")]
        #[doc = "copied, as the plans of a large pass hold each id many times."]
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Arc<str>);

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                Self(Arc::from(id.into()))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

outline_id!(OutlineUserId, "user");
outline_id!(OutlineGroupId, "group");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_compare_without_case() {
        let a = Email::parse("Jane.Doe@Corp.com").expect("valid");
        let b = Email::parse("jane.doe@corp.com").expect("valid");
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "Jane.Doe@Corp.com");
        assert!(Email::parse("").is_none());
        assert!(Email::parse("no-at-sign").is_none());
        assert!(Email::parse("a b@c").is_none());
    }

    #[test]
    fn group_ids_parse_from_hex_and_dashed_forms() {
        let hex = AuthentikGroupId::parse("3B9F1D6E0C8E4A0F9D7B5C3A1E2F4D6C").expect("hex");
        let dashed =
            AuthentikGroupId::parse("3b9f1d6e-0c8e-4a0f-9d7b-5c3a1e2f4d6c").expect("dashed");
        assert_eq!(hex, dashed);
        assert_eq!(hex.as_str(), "3b9f1d6e-0c8e-4a0f-9d7b-5c3a1e2f4d6c");
        assert!(AuthentikGroupId::parse("not-a-uuid").is_none());
        assert!(AuthentikGroupId::parse("3b9f1d6e0c8e4a0f9d7b5c3a1e2f4d6").is_none());
    }

    #[test]
    fn group_names_are_one_name_in_any_case() {
        assert_eq!(GroupName::new("Docs"), GroupName::new("docs"));
        assert_ne!(GroupName::new("Docs"), GroupName::new("Docs2"));
    }
}
