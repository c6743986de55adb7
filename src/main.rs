use std::process::ExitCode;

use clap::Parser;

use authentik_bridge::app::cli::{self, Cli, Command};
use authentik_bridge::app::telemetry::init_subscriber;

fn main() -> ExitCode {
    let args = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let command = args.command.as_ref().unwrap_or(&Command::Serve);
        if let Command::Healthcheck { url } = command {
            return cli::healthcheck(url).await;
        }
        #[cfg(feature = "demo")]
        if let Command::Demo = command {
            return authentik_bridge::app::demo::run().await;
        }
        let settings = match cli::load_settings(&args) {
            Ok(s) => s,
            Err(code) => return code,
        };
        match command {
            Command::Serve => {
                init_subscriber(settings.debug, settings.log_format, std::io::stdout, &[]);
                cli::serve(settings).await
            }
            Command::Check => cli::check(settings).await,
            Command::Reconcile {
                dry_run,
                json,
                force,
            } => {
                init_subscriber(
                    settings.debug,
                    settings.log_format,
                    authentik_bridge::app::telemetry::StderrAroundProgress,
                    // The report explains each guard that held something back, once.
                    &[authentik_bridge::domain::held::GUARD_LOG],
                );
                cli::reconcile(settings, *dry_run, *json, *force).await
            }
            #[cfg(feature = "demo")]
            Command::Demo => ExitCode::SUCCESS,
            Command::Healthcheck { .. } => ExitCode::SUCCESS,
        }
    })
}
