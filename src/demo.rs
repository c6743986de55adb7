//! `authentik-bridge demo`: the story, played against the simulated upstreams.

use std::process::ExitCode;

pub async fn run() -> ExitCode {
    eprintln!("demo: not built yet");
    ExitCode::FAILURE
}
