//! The filters the bridge answers: one `eq` comparison (RFC 7644 §3.4.2.2), which is what Authentik, Okta and
//! Entra ID send to find a resource before or after creating it. Anything else is refused with
//! `invalidFilter`, never answered with a wrong list.

use super::error::ScimError;

/// The attributes a filter may compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterAttr {
    Id,
    UserName,
    ExternalId,
    DisplayName,
    /// `emails.value`, and Entra ID's `emails[type eq "work"].value` (the type is not kept apart here).
    EmailValue,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EqFilter {
    pub attr: FilterAttr,
    pub value: String,
}

/// The longest filter read; a longer one is refused before parsing.
const MAX_FILTER_LEN: usize = 1024;

const CORE_PREFIXES: &[&str] = &[
    "urn:ietf:params:scim:schemas:core:2.0:user:",
    "urn:ietf:params:scim:schemas:core:2.0:group:",
];

/// Parses `attrPath eq "value"`. Attribute names and the operator are compared without case (RFC 7644
/// §3.4.2.2); the value is a JSON string, or a bare number or boolean.
pub fn parse(filter: &str) -> Result<EqFilter, ScimError> {
    if filter.len() > MAX_FILTER_LEN {
        return Err(ScimError::invalid_filter(format!(
            "the filter is longer than {MAX_FILTER_LEN} characters"
        )));
    }
    let unsupported = || {
        ScimError::invalid_filter(format!(
            "unsupported filter {filter:?}: only `ATTRIBUTE eq \"value\"` on userName, externalId, displayName, emails.value or id is answered"
        ))
    };
    let text = filter.trim();
    let (path, rest) = split_path(text).ok_or_else(unsupported)?;
    let rest = rest.trim_start();
    let (op, value) = rest
        .split_once(char::is_whitespace)
        .ok_or_else(unsupported)?;
    if !op.eq_ignore_ascii_case("eq") {
        return Err(unsupported());
    }
    let value = parse_value(value.trim()).ok_or_else(unsupported)?;
    let mut path = path.to_ascii_lowercase();
    for prefix in CORE_PREFIXES {
        if let Some(stripped) = path.strip_prefix(prefix) {
            path = stripped.to_string();
        }
    }
    let attr = match path.as_str() {
        "id" => FilterAttr::Id,
        "username" => FilterAttr::UserName,
        "externalid" => FilterAttr::ExternalId,
        "displayname" => FilterAttr::DisplayName,
        "emails.value" | "emails" => FilterAttr::EmailValue,
        p if is_typed_email_value(p) => FilterAttr::EmailValue,
        _ => return Err(unsupported()),
    };
    Ok(EqFilter { attr, value })
}

/// The attribute path: up to the first space outside brackets and quotes.
fn split_path(text: &str) -> Option<(&str, &str)> {
    let mut depth = 0usize;
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '[' if !quoted => depth += 1,
            ']' if !quoted => depth = depth.checked_sub(1)?,
            c if c.is_whitespace() && depth == 0 && !quoted => {
                return Some((&text[..i], &text[i..]));
            }
            _ => {}
        }
    }
    None
}

/// `emails[type eq "work"].value`, as Entra ID sends it.
fn is_typed_email_value(path: &str) -> bool {
    let Some(inner) = path
        .strip_prefix("emails[")
        .and_then(|p| p.strip_suffix("].value"))
    else {
        return false;
    };
    let mut parts = inner.split_whitespace();
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some("type"), Some("eq"), Some(v), None) if v.starts_with('"') && v.ends_with('"') && v.len() >= 2
    )
}

/// A JSON string (with its escapes), or a bare number or boolean, as text.
fn parse_value(text: &str) -> Option<String> {
    if text.starts_with('"') {
        return match serde_json::from_str::<serde_json::Value>(text).ok()? {
            serde_json::Value::String(s) => Some(s),
            _ => None,
        };
    }
    if text == "true" || text == "false" || text.parse::<f64>().is_ok() {
        return Some(text.to_string());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forms_the_big_providers_send() {
        let f = parse(r#"userName eq "alice""#).expect("parses");
        assert_eq!((f.attr, f.value.as_str()), (FilterAttr::UserName, "alice"));
        let f = parse(r#"USERNAME Eq "Bob Smith""#).expect("case");
        assert_eq!(
            (f.attr, f.value.as_str()),
            (FilterAttr::UserName, "Bob Smith")
        );
        let f = parse(r#"emails[type eq "work"].value eq "a@b.c""#).expect("entra");
        assert_eq!(f.attr, FilterAttr::EmailValue);
        let f =
            parse(r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "x""#).expect("urn");
        assert_eq!(f.attr, FilterAttr::UserName);
        let f = parse(r#"displayName eq "say \"hi\"""#).expect("escapes");
        assert_eq!(f.value, "say \"hi\"");
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            r#"userName co "a""#,
            r#"userName eq "a" and active eq true"#,
            r#"title eq "x""#,
            "userName eq",
            r#"userName eq "unterminated"#,
            "",
            r#"emails[type eq "work" or primary eq true].value eq "x""#,
        ] {
            let e = parse(bad).expect_err(bad);
            assert_eq!(
                (e.status, e.scim_type),
                (400, Some("invalidFilter")),
                "{bad}"
            );
        }
    }

    proptest::proptest! {
        /// No filter text makes the parser panic; it parses or says why not.
        #[test]
        fn never_panics(text in ".{0,200}") {
            let _ = parse(&text);
        }

        /// Any string value survives the round trip through JSON quoting.
        #[test]
        fn quoted_values_round_trip(value in ".{0,60}") {
            let quoted = serde_json::to_string(&value).expect("a string quotes");
            let f = parse(&format!("externalId eq {quoted}")).expect("parses");
            proptest::prop_assert_eq!(f.value, value);
        }
    }
}
