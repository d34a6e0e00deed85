//! cpu-server binary: reads settings (flags, environment, `.env`), sets up
//! logging, binds `CPU_HOST` and runs the server until SIGTERM/SIGINT.
//! A second signal exits at once.

use std::process::ExitCode;

use clap::Parser;
use cpu_server::settings::ServerArgs;
use cpu_server::shutdown::Signals;
use shared::settings::{DotEnv, EXIT_USAGE};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// Client-facing room server and OrbManager.
#[derive(Debug, Parser)]
#[command(name = "cpu-server", version, about)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let dotenv = match std::env::current_dir().and_then(|dir| DotEnv::load_from_dir(&dir)) {
        Ok(dotenv) => dotenv,
        Err(e) => {
            eprintln!("cannot read .env in the working directory: {e}");
            std::process::exit(EXIT_USAGE);
        }
    };
    let has_ai_key = std::env::var("OPENAI_API_KEY").is_ok_and(|v| !v.is_empty())
        || dotenv.get("OPENAI_API_KEY").is_some_and(|v| !v.is_empty());
    let settings = cli
        .server
        .validate(&dotenv, has_ai_key)
        .unwrap_or_else(|errors| errors.exit());
    cpu_server::logging::init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async move {
        let listen = settings.listen;
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("cannot listen on CPU_HOST={listen}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let mut signals = match Signals::install() {
            Ok(signals) => signals,
            Err(e) => {
                eprintln!("cannot install signal handlers: {e}");
                return ExitCode::FAILURE;
            }
        };
        // First signal: graceful stop. Second: every orb group SIGKILLed, exit 1.
        let (graceful, force) = (CancellationToken::new(), CancellationToken::new());
        let (graceful_tx, force_tx) = (graceful.clone(), force.clone());
        tokio::spawn(async move {
            let first = signals.recv().await;
            info!(signal = first, "shutting down (send it again to exit at once)");
            graceful_tx.cancel();
            let second = signals.recv().await;
            eprintln!("{second} during shutdown: killing every orb and exiting now");
            force_tx.cancel();
        });
        match cpu_server::run_until(listener, settings, graceful.cancelled_owned(), force.cancelled_owned()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                error!(error = format!("{e:#}"), "server failed");
                ExitCode::FAILURE
            }
        }
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}
