//! cpu-server binary: reads settings (flags, environment, `.env`), sets up
//! logging, binds `CPU_HOST` and runs the server until SIGTERM/SIGINT.
//! A second signal exits at once; SIGHUP reopens every log file.
//! SIGUSR2 upgrades it in place (as `cpu-server upgrade` does): when the upgrade
//! is committed, the server drains and this binary's `main` ends by replacing
//! the program image; a new image started so takes over the listeners first.
//! With a subcommand (`orbs …`, `check`, `upgrade`) it is the operator CLI instead.
//! Either way the process is made non-dumpable first (`PR_SET_DUMPABLE 0`).

use std::process::ExitCode;

use clap::Parser;
use cpu_server::logging::{FileLog, LogFile};
use cpu_server::settings::ServerArgs;
use cpu_server::upgrade::inherit::{TakenOver, take_over_from_env};
use cpu_server::upgrade::preflight::Installed;
use cpu_server::{Ending, Start, UpgradeStart};
use shared::settings::{DotEnv, EXIT_USAGE};
use shared::signals::Signals;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use tracing_appender::non_blocking::ErrorCounter;

/// Client-facing room server and OrbManager.
#[derive(Debug, Parser)]
#[command(name = "cpu-server", version, about)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    command: Option<cpu_server::cli::Command>,
}

fn main() -> ExitCode {
    // Read while /proc/self is still ours to open, before anything else.
    cpu_server::build_id::init();
    // What an upgrade runs again: the path as it is now, before an install replaces the file.
    let installed = Installed::of_this_process();
    // Not dumpable: /proc/<pid>/environ, mem, fd... become root's, so an orb
    // (even one running as our own user) cannot read the secrets in our
    // environment or memory, nor ptrace us. Before anything reads a secret.
    if let Err(error) = nix::sys::prctl::set_dumpable(false) {
        eprintln!("cannot make cpu-server non-dumpable (PR_SET_DUMPABLE): {error}");
    }
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
    let settings = match cli.server.validate(&dotenv, has_ai_key) {
        Ok(settings) => settings,
        Err(errors) if matches!(cli.command, Some(cpu_server::cli::Command::Check { handover: None })) => {
            println!("PROBLEM  {errors}");
            return ExitCode::FAILURE;
        }
        Err(errors) => errors.exit(),
    };
    if let Some(command) = cli.command {
        return cpu_server::cli::run(command, &settings);
    }
    // An upgrade in place: the previous image left its listeners open for us.
    let taken = match take_over_from_env() {
        None => None,
        Some(Ok(taken)) => Some(taken),
        Some(Err(e)) => {
            eprintln!(
                "cannot take over from the previous program image (upgrade): {e}; exiting so that the service is restarted"
            );
            return ExitCode::FAILURE;
        }
    };
    let file_log = match cpu_server::logging::init(&settings.logs) {
        Ok(file) => file,
        Err(e) => {
            // Serving matters more than the file: stderr (the journal) still gets every line.
            let path = settings.logs.file.as_deref().unwrap_or(std::path::Path::new("-"));
            eprintln!(
                "cannot open CPU_LOG_FILE={}: {e}; logging to stderr only (fix the directory's owner, or set CPU_LOG_FILE)",
                path.display()
            );
            let stderr_only = cpu_server::settings::LogsSettings {
                file: None,
                ..settings.logs.clone()
            };
            cpu_server::logging::init(&stderr_only).ok().flatten()
        }
    };
    // The file's writer thread must outlive every log line: its guard stays
    // here and is finished after the runtime stopped, writing out the queue.
    let (log_file, log_guard) = match file_log {
        Some(FileLog { file, guard }) => (Some(file.clone()), Some((guard, file))),
        None => (None, None),
    };
    let dropped = log_guard.as_ref().map(|(guard, _)| guard.counter());
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Every orb is forked on this thread, and the image is replaced from it (see
    // `orbs::spawner`); the server runs on a thread of its own.
    let (spawner, spawn_jobs) = cpu_server::orbs::spawner::Spawner::channel(settings.orbs.max_concurrent);
    let stopper = spawner.clone();
    let handle = runtime.handle().clone();
    let server = std::thread::Builder::new().name("server".to_owned()).spawn(move || {
        let ending = runtime.block_on(async move {
            let listen = settings.listen;
            let (listener, admin, inherited) = match taken {
                Some(TakenOver { public, admin, carried }) => {
                    let adopt = |l: std::net::TcpListener| tokio::net::TcpListener::from_std(l);
                    match (adopt(public), admin.map(adopt).transpose()) {
                        (Ok(public), Ok(admin)) => (public, admin, Some(carried)),
                        (Err(e), _) | (_, Err(e)) => {
                            eprintln!("cannot serve the handed-over listeners: {e}");
                            return Err(ExitCode::FAILURE);
                        }
                    }
                }
                None => match tokio::net::TcpListener::bind(listen).await {
                    Ok(listener) => (listener, None, None),
                    Err(e) => {
                        eprintln!("cannot listen on CPU_HOST={listen}: {e}");
                        return Err(ExitCode::FAILURE);
                    }
                },
            };
            let mut signals = match Signals::install() {
                Ok(signals) => signals,
                Err(e) => {
                    eprintln!("cannot install signal handlers: {e}");
                    return Err(ExitCode::FAILURE);
                }
            };
            if let Err(e) = reopen_logs_on_sighup(log_file, dropped) {
                eprintln!("cannot install the SIGHUP handler: {e}");
                return Err(ExitCode::FAILURE);
            }
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
            let start = Start {
                public: listener,
                admin,
                upgrade: installed.map(|installed| UpgradeStart {
                    installed,
                    carried: inherited,
                    spawner,
                }),
            };
            match cpu_server::serve_until(start, settings, graceful.cancelled_owned(), force.cancelled_owned()).await {
                Ok(ending) => Ok(ending),
                Err(e) => {
                    error!(error = format!("{e:#}"), "server failed");
                    Err(ExitCode::FAILURE)
                }
            }
        });
        if let Ok(Ending::Upgrade(exec)) = &ending {
            info!(binary = %exec.installed.path.display(), "replacing the program image");
        }
        runtime.shutdown_timeout(std::time::Duration::from_secs(1));
        stopper.stop();
        ending
    });
    let server = match server {
        Ok(server) => server,
        Err(e) => {
            eprintln!("cannot start the server thread: {e}");
            return ExitCode::FAILURE;
        }
    };
    spawn_jobs.run_here(&handle);
    let ending = server.join().unwrap_or(Err(ExitCode::FAILURE));
    if let Some((guard, file)) = log_guard {
        guard.finish(file.path());
    }
    match ending {
        Ok(Ending::Stopped) => ExitCode::SUCCESS,
        Err(code) => code,
        Ok(Ending::Upgrade(exec)) => {
            let path = exec.installed.path.display().to_string();
            let error = exec.run();
            // The drain is done and the listeners are still open in this process:
            // exiting closes them, and systemd restarts the service.
            eprintln!(
                "cannot replace the program image with {path}: {error}; exiting so that the service is restarted"
            );
            ExitCode::FAILURE
        }
    }
}

/// SIGHUP (logrotate's postrotate) reopens the cpu log (the orb logs: see
/// `cpu_server::run_until`), and says how many lines the cpu log's full queue
/// dropped so far, if any.
fn reopen_logs_on_sighup(log_file: Option<LogFile>, dropped: Option<ErrorCounter>) -> std::io::Result<()> {
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            if let Some(file) = &log_file
                && let Err(e) = file.reopen()
            {
                error!(path = %file.path().display(), error = %e, "SIGHUP: cannot reopen the log file; still writing the old one");
            }
            info!("SIGHUP: log files reopened");
            if let Some(dropped) = dropped.as_ref().map(ErrorCounter::dropped_lines).filter(|n| *n > 0) {
                warn!(
                    dropped,
                    "lines dropped for CPU_LOG_FILE since start: its writer fell behind (stderr has them)"
                );
            }
        }
    });
    Ok(())
}
