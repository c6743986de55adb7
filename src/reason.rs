//! Reasons meant for people: a log line, a 4xx answer, a CLI message; and warnings logged once per key. Upstream error bodies and parser
//! errors can be long or multi-line (an HTML error page, a serde path), so every reason is cut to its first
//! line and 200 characters before anyone sees it.

use std::collections::HashSet;
use std::sync::Mutex;

/// The first line of `text`, at most 200 characters.
pub fn one_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect()
}

/// Logs a warning the first time a key is seen; the set is emptied when it grows large, so a warning comes
/// back at most once per that many distinct keys.
#[derive(Default)]
pub struct WarnOnce {
    seen: Mutex<HashSet<String>>,
}

const WARN_ONCE_CAPACITY: usize = 10_000;

impl WarnOnce {
    pub fn first(&self, key: String) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= WARN_ONCE_CAPACITY {
            seen.clear();
        }
        seen.insert(key)
    }
}

/// `1 group`, `2 groups`: a count a person reads.
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
