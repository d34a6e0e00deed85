//! Tracing to stderr and, with `CPU_LOG_FILE`, to a file that SIGHUP reopens.
//!
//! Filtered by `RUST_LOG` (default `info`); `LOG_FORMAT` picks text or JSON.
//! Every formatted line reaches the file in one write under a lock, and
//! [`LogFile::reopen`] swaps the file under the same lock, so a rotation
//! (rename, then SIGHUP) neither loses nor duplicates a line.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::settings::LogsSettings;
use crate::settings::logs::LogFormat;

/// A log file opened for appending, reopened by path on demand. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LogFile {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

fn open_append(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

impl LogFile {
    /// Opens (creating) `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            path: path.to_path_buf(),
            file: Arc::new(Mutex::new(open_append(path)?)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, File> {
        self.file.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens the path again (after logrotate renamed the old file); lines
    /// written before go to the old file, lines after to the new one.
    pub fn reopen(&self) -> std::io::Result<()> {
        let fresh = open_append(&self.path)?;
        let mut file = self.lock();
        let _ = file.flush();
        *file = fresh;
        Ok(())
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// One write of a formatted line, under the file's lock.
#[derive(Debug)]
pub struct LogFileWriter<'a>(MutexGuard<'a, File>);

impl Write for LogFileWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.0.write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl<'a> MakeWriter<'a> for LogFile {
    type Writer = LogFileWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LogFileWriter(self.lock())
    }
}

/// Installs the global subscriber; the log file (if any) is returned for
/// SIGHUP reopens. A second call installs nothing.
pub fn init(settings: &LogsSettings) -> std::io::Result<Option<LogFile>> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let file = settings.file.as_deref().map(LogFile::open).transpose()?;
    let json = settings.format == LogFormat::Json;
    let stderr = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
            .boxed()
    };
    let to_file = file.clone().map(|file| {
        if json {
            tracing_subscriber::fmt::layer().json().with_writer(file).boxed()
        } else {
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_target(false)
                .with_writer(file)
                .boxed()
        }
    });
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(to_file)
        .try_init();
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopen_moves_later_lines_to_the_new_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("logs/cpu.log");
        let log = LogFile::open(&path).expect("open");
        log.make_writer().write_all(b"one\n").expect("write");
        std::fs::rename(&path, dir.path().join("cpu.log.1")).expect("rename");
        log.make_writer().write_all(b"two\n").expect("write");
        log.reopen().expect("reopen");
        log.make_writer().write_all(b"three\n").expect("write");
        let old = std::fs::read_to_string(dir.path().join("cpu.log.1")).expect("old");
        assert_eq!(old, "one\ntwo\n");
        assert_eq!(std::fs::read_to_string(&path).expect("new"), "three\n");
    }
}
