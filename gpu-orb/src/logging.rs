//! Tracing to stderr (captured by the manager) and, with `ORB_LOG_DIR`, also
//! to `ORB_LOG_DIR/orb-<room>.log` through a non-blocking writer.
//!
//! `RUST_LOG` selects what is logged (default `info`). The room and session
//! appear on every line through the root span opened in [`crate::run`].

use std::io::IsTerminal;
use std::path::Path;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, fmt};

/// Keeps the file writer alive; dropping it flushes the log file.
#[must_use = "dropping the guard stops file logging"]
pub struct LogGuard {
    _file: Option<WorkerGuard>,
}

/// Installs the global subscriber. A log directory that cannot be used is
/// reported on stderr and the orb carries on with stderr only.
pub fn init(room: &str, log_dir: Option<&Path>) -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let stderr = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let mut file_error = None;
    let (file, guard) = match log_dir.map(|dir| open(dir, room)) {
        Some(Ok(appender)) => {
            let (writer, guard) = tracing_appender::non_blocking(appender);
            let layer = fmt::layer().with_writer(writer).with_ansi(false).with_target(false);
            (Some(layer.boxed()), Some(guard))
        }
        Some(Err(e)) => {
            file_error = Some(e);
            (None, None)
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(file)
        .init();
    if let Some(error) = file_error {
        tracing::warn!(%error, "ORB_LOG_DIR is not usable; logging to stderr only");
    }
    LogGuard { _file: guard }
}

fn open(dir: &Path, room: &str) -> Result<RollingFileAppender, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    RollingFileAppender::builder()
        .rotation(Rotation::NEVER)
        .filename_prefix(format!("orb-{room}.log"))
        .build(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))
}
