//! The application around the bridge: the CLI, start-up and shutdown, the pass report a person reads, the
//! demo, and logging.

pub mod cli;
#[cfg(feature = "demo")]
pub mod demo;
pub mod report;
pub mod startup;
pub mod telemetry;
