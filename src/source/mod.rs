//! Where changes come from: today Authentik. Its client, the reader with the caches that events keep
//! honest, and its webhook (verifying the transport's token and parsing the event). The runtime's intake
//! turns an accepted change into job keys.

pub mod cache;
pub mod client;
pub mod directory;
pub mod identities;
pub mod reader;
pub mod scim;
pub mod webhook;

pub use client::AuthentikClient;

/// What a write to a source changed: the changes for the runtime's intake, and the emails to remember first
/// (a deletion's, which the job can no longer read; a changed address's old one).
#[derive(Debug, Default)]
pub struct SourceChanges {
    pub changes: Vec<webhook::AuthentikChange>,
    pub emails: Vec<(crate::domain::AuthentikUserId, crate::domain::Email)>,
}
