//! Configuration from an arbitrary environment: `NAME=value` lines (names matched loosely onto the real
//! settings, so the fuzzer reaches them), loaded, then built into the limiter, the engine and the queue.
#![no_main]

use std::collections::BTreeMap;
use std::sync::Arc;

use authentik_bridge::sinks::outline::limiter::OutlineLimiter;
use authentik_bridge::configuration::{Settings, SETTINGS};
use authentik_bridge::metrics::Metrics;
use authentik_bridge::app::startup::build_engine;
use authentik_bridge::runtime::JobQueue;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut env: BTreeMap<String, String> = BTreeMap::from(
        [
            ("AUTHENTIK_URL", "https://auth.example.com"),
            ("AUTHENTIK_TOKEN", "ak"),
            ("OUTLINE_URL", "https://docs.example.com"),
            ("OUTLINE_TOKEN", "ol"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    for line in text.lines() {
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        // A one-byte name picks a setting by index; anything else is taken as it is.
        let name = match name.as_bytes() {
            [b] => SETTINGS[usize::from(*b) % SETTINGS.len()].name.to_string(),
            _ => name.to_string(),
        };
        // *_FILE would read whatever path the input names; the property tests cover those with fixtures.
        if name.ends_with("_FILE") || name == "BRIDGE_CONFIG" {
            continue;
        }
        env.insert(name, value.to_string());
    }
    if let Ok(s) = Settings::load(None, &env) {
        let _ = OutlineLimiter::new(s.outline_rate_limit);
        let metrics = Arc::new(Metrics::new());
        if let Ok(engine) = build_engine(&s, metrics.clone()) {
            let sinks = engine.registered();
            let _ = JobQueue::new(sinks, s.queue_capacity, s.worker_concurrency, metrics);
        }
    }
});
