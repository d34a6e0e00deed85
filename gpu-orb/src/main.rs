//! `gpu-orb` binary: parse settings, set up logging, run one orb.

use clap::Parser;
use clap::error::ErrorKind;
use gpu_orb::cli::Cli;
use gpu_orb::session::RUNTIME_SHUTDOWN;
use gpu_orb::settings::Settings;
use gpu_orb::{exit, logging};
use shared::settings::DotEnv;

fn main() {
    // A second install (none here) would only fail harmlessly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => e.exit(),
        Err(e) => {
            let _ = e.print();
            std::process::exit(exit::USAGE);
        }
    };
    let cwd = std::env::current_dir().unwrap_or_else(|_| ".".into());
    let dotenv = DotEnv::load_from_dir(&cwd).unwrap_or_else(|e| {
        eprintln!("cannot read {}/.env: {e}", cwd.display());
        std::process::exit(exit::USAGE)
    });
    let settings = Settings::resolve(cli, &dotenv, &|name| std::env::var(name).ok()).unwrap_or_else(|e| e.exit());
    let channel = match shared::ipc::channel_from_env() {
        None => None,
        Some(Ok(stream)) => Some(stream),
        Some(Err(e)) => {
            eprintln!("invalid settings: {e}");
            std::process::exit(exit::USAGE);
        }
    };
    if settings.warm && channel.is_none() && settings.link_url.is_none() {
        eprintln!(
            "invalid settings: --warm needs the manager channel (NODE_CHANNEL_FD or ORB_LINK_URL): run it under cpu-server"
        );
        std::process::exit(exit::USAGE);
    }
    // Under cpu-server, stderr already goes into ORB_LOG_DIR/orb-<room>.log:
    // writing the file here too would log every line twice.
    let supervised = std::env::var_os("ORB_SUPERVISED").is_some();
    let file_dir = if supervised { None } else { settings.log_dir.as_deref() };
    let guard = logging::init(&settings.room, file_dir);
    let code = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => {
            let code = runtime.block_on(gpu_orb::run(settings, channel));
            // Dropping the runtime would wait for every blocking thread, e.g. a
            // DNS lookup that never returns: the exit would overrun its bound.
            runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
            code
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            exit::INTERNAL
        }
    };
    // Flush the log file before leaving.
    drop(guard);
    std::process::exit(code);
}
