//! Operator commands of the `cpu-server` binary: `orbs …` and `upgrade` through
//! the running server's admin API, and `check`, a doctor for the setup.
//!
//! The CLI finds the server at `ADMIN_HOST` if set, else `CPU_HOST`, and
//! authenticates with `ADMIN_TOKEN` if set, else the token file the server
//! wrote (`STATE_DIR/admin-token`).
//!
//! # Layout
//! - [`client`]: a small HTTP/1.1 client with timeouts.
//! - [`orbs`]: the `orbs` subcommands.
//! - [`table`]: the readable orb table.
//! - [`logs`]: printing and following an orb's log file.
//! - [`check`]: the doctor.
//! - [`handover_check`]: `check --handover`, the new binary's side of an upgrade's preflight.
//! - [`upgrade`]: `upgrade`, the in-place upgrade of the running server.

pub mod check;
pub mod client;
pub mod handover_check;
pub mod logs;
pub mod orbs;
pub mod table;
pub mod upgrade;

use std::process::ExitCode;

use clap::Subcommand;

use crate::settings::Settings;
use client::AdminClient;
pub use orbs::OrbsCommand;

/// A subcommand; without one the binary serves.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Orbs of the running server (through its admin API).
    Orbs {
        /// What to do.
        #[command(subcommand)]
        command: OrbsCommand,
    },
    /// Checks settings, the orb program, log directories, ports and `ulimit -n`;
    /// prints each problem with its fix and exits non-zero if there is any.
    Check {
        /// Instead: check that this binary can take over from a running server
        /// whose handover document is in this file (`-`: stdin), as an
        /// upgrade's preflight does.
        #[arg(long, value_name = "FILE")]
        handover: Option<std::path::PathBuf>,
    },
    /// Replaces the running server's program in place with the binary now at
    /// its installed path (same pid, listening sockets kept), after that binary
    /// passed a preflight; waits until the new one serves. Same as SIGUSR2.
    /// Rooms, their sockets and their orbs survive it (orbs alive, same
    /// processes or Slurm jobs; idle warm ones are replaced).
    Upgrade {
        /// Stop the orbs instead of handing them over: each room gets a new one.
        #[arg(long)]
        restart_orbs: bool,
    },
}

/// The admin API client for `settings`: address and token.
pub fn admin_client(settings: &Settings) -> Result<AdminClient, String> {
    let addr = settings.admin.host.unwrap_or(settings.listen);
    let addr: std::net::SocketAddr = crate::loopback_host(addr)
        .parse()
        .map_err(|e| format!("bad admin address {addr}: {e}"))?;
    let token = match &settings.admin.token {
        Some(token) => token.clone(),
        None => crate::state_file::read(&settings.admin.token_file()).map_err(|e| e.to_string())?,
    };
    Ok(AdminClient::new(addr, token))
}

/// Runs `command` and returns the process exit code.
pub fn run(command: Command, settings: &Settings) -> ExitCode {
    match command {
        Command::Check { handover: Some(source) } => handover_check::run(&source, settings),
        Command::Check { handover: None } => {
            if check::report(&check::findings(settings)) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Orbs { command } => block_on(orbs::run(command, settings)),
        Command::Upgrade { restart_orbs } => block_on(upgrade::run(settings, restart_orbs)),
    }
}

/// Runs a client command on a small runtime: exit 0, or 1 with its error.
fn block_on(command: impl Future<Output = Result<(), String>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
