//! Where changes come from: today Authentik. Its client, the reader with the caches that events keep
//! honest, and its webhook (verifying the transport's token and parsing the event). The runtime's intake
//! turns an accepted change into job keys.

pub mod cache;
pub mod client;
pub mod reader;
pub mod webhook;

pub use client::AuthentikClient;
