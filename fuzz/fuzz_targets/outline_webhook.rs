//! Outline's webhook: the `Outline-Signature` header (first line of the input) and the body (the rest), as
//! `/sync` sees them: header parser, HMAC verifier, then the body parser (docs/src/upstream/outline.md §2.1–§2.3).
#![no_main]

use std::time::SystemTime;

use authentik_bridge::configuration::Secret;
use authentik_bridge::sinks::outline::signin::{
    parse_outline_delivery, parse_signature_header, verify_outline_signature,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (header, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    if let Ok(header) = std::str::from_utf8(header) {
        let _ = parse_signature_header(header);
        let secret = Secret::new("ol_whs_fuzz");
        // A guessed signature must never verify.
        assert!(verify_outline_signature(&secret, Some(header), body, SystemTime::now()).is_err());
    }
    let _ = parse_outline_delivery(body);
    let _ = parse_outline_delivery(data);
});
