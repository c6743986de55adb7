//! The SCIM 2.0 source (RFC 7643, RFC 7644): an identity provider pushes users, groups and memberships, the
//! bridge keeps them in the store, and the sinks plan from the store through the same [`Directory`] as from
//! Authentik's API.
//!
//! `resource`, `filter` and `patch` are pure: they read and change bodies. `service` runs each request as
//! one store transaction and says which changes it made; `discovery` answers the three discovery endpoints;
//! `directory` is the store seen as a directory.
//!
//! [`Directory`]: crate::source::directory::Directory

pub mod directory;
pub mod discovery;
pub mod error;
pub mod filter;
pub mod patch;
pub mod resource;
pub mod service;

pub use error::ScimError;
pub use service::ScimService;
