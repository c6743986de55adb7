//! The small parsers: durations and booleans from settings, and `Retry-After` from Outline's 429s
//! (docs/src/upstream/outline.md §4.4: fractional seconds in v1.9.2, integers on main, or an HTTP date).
#![no_main]

use std::time::{Duration, SystemTime};

use authentik_bridge::clients::retry::parse_retry_after;
use authentik_bridge::configuration::{parse_bool, parse_seconds};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = parse_seconds("X", text) {
        assert!(d <= Duration::from_secs(1_000_000_000));
    }
    let _ = parse_bool("X", Some(text));
    if let Some(d) = parse_retry_after(text, SystemTime::now()) {
        if text.trim().parse::<f64>().is_ok() {
            assert!(d <= Duration::from_secs(86_400));
        }
    }
});
