//! Reasons meant for people: a log line, a 4xx answer, a CLI message. Upstream error bodies and parser
//! errors can be long or multi-line (an HTML error page, a serde path), so every reason is cut to its first
//! line and 200 characters before anyone sees it.

/// The first line of `text`, at most 200 characters.
pub fn one_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect()
}
