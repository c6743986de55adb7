//! Webhook intake: proving who sent a request, and parsing its body into a typed event. A handler gets a
//! verified, parsed value or a typed error; it never looks at raw bytes itself.

pub mod authentik;
pub mod outline;

/// Larger Outline bodies are refused before they are read to the end. A `users.signin` is about a kilobyte;
/// the limit leaves room for the other events a subscription may carry.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Larger Authentik bodies are refused before they are read to the end, and before the token is checked.
/// The blueprint's document is a few hundred bytes, and Authentik's default body a few kilobytes.
pub const MAX_AUTHENTIK_BODY_BYTES: usize = 64 * 1024;
