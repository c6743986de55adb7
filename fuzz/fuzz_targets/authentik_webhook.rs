//! Authentik's notification transport: the `Authorization` header (first line), the `?token=` value
//! (second line) and the body (the rest), as `/webhooks/authentik` sees them (docs/src/upstream/authentik.md §2.7, §12).
#![no_main]

use authentik_bridge::configuration::Secret;
use authentik_bridge::source::webhook::{parse_authentik_change, verify_webhook_token};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == b'\n');
    let header = parts.next().and_then(|h| std::str::from_utf8(h).ok());
    let query = parts.next().and_then(|q| std::str::from_utf8(q).ok());
    let body = parts.next().unwrap_or_default();
    let expected = Secret::new("akwh_fuzz_expected_token");
    let accepted = verify_webhook_token(&expected, header, query).is_ok();
    if accepted {
        let presented = [header.unwrap_or(""), query.unwrap_or("")];
        assert!(presented
            .iter()
            .any(|p| p.contains("akwh_fuzz_expected_token")));
    }
    let _ = parse_authentik_change(body);
    let _ = parse_authentik_change(data);
});
