//! Webhook intake: proving who sent a request, and parsing its body into a typed event. A handler gets a
//! verified, parsed value or a typed error; it never looks at raw bytes itself.

pub mod authentik;
pub mod outline;

/// Larger bodies are refused before they are read to the end. Real deliveries are a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
