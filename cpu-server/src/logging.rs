//! Tracing to stderr and, with `CPU_LOG_FILE`, to a file that SIGHUP reopens.
//!
//! Filtered by `RUST_LOG` (default `info`); `LOG_FORMAT` picks text or JSON.
//! Stderr is written in place. The file is written off the async workers by
//! tracing-appender's non-blocking writer: each formatted line is queued (at
//! most [`FILE_QUEUE_LINES`]) and one background thread appends it in one
//! write. The queue is lossy: when the disk falls that far behind, further
//! lines are dropped for the file (never for stderr) rather than stalling the
//! server; [`FileGuard::dropped_lines`] counts them, SIGHUP logs the count and
//! the exit prints it. [`LogFile::reopen`] swaps the file under the writer's
//! lock, so a rotation (rename, then SIGHUP) neither loses nor duplicates a
//! line; a line still queued at the reopen lands in the new file. Keep the
//! [`FileGuard`] alive until the process ends: dropping it writes out what is
//! queued (bounded by tracing-appender at about 1 s).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::settings::LogsSettings;
use crate::settings::logs::LogFormat;

/// Lines queued for the log file before further ones are dropped (counted).
pub const FILE_QUEUE_LINES: usize = 128_000;

/// A log file opened for appending, reopened by path on demand. Cheap to
/// clone; every clone writes to (and reopens) the same file.
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

/// Each write goes whole to the current file, under its lock.
impl Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.lock().write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.lock().write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.lock().flush()
    }
}

/// Keeps the file's writer thread running; dropping it writes out the queue.
#[derive(Debug)]
pub struct FileGuard {
    dropped: ErrorCounter,
    _worker: WorkerGuard,
}

impl FileGuard {
    /// Lines dropped for the file so far because its queue was full.
    pub fn dropped_lines(&self) -> usize {
        self.dropped.dropped_lines()
    }

    /// A handle that reads the same count (for the SIGHUP task).
    pub fn counter(&self) -> ErrorCounter {
        self.dropped.clone()
    }

    /// Writes out every queued line, then says on stderr how many were
    /// dropped, if any. Call it last: nothing reaches the file afterwards.
    pub fn finish(self, path: &Path) {
        let dropped = self.dropped_lines();
        drop(self);
        if dropped > 0 {
            eprintln!(
                "{dropped} log lines were dropped for {} (its writer fell behind; stderr has them)",
                path.display()
            );
        }
    }
}

/// The non-blocking writer of `file` and the guard of its thread.
pub fn non_blocking(file: LogFile) -> (NonBlocking, FileGuard) {
    let (writer, worker) = NonBlockingBuilder::default()
        .buffered_lines_limit(FILE_QUEUE_LINES)
        .lossy(true)
        .thread_name("cpu-log-file")
        .finish(file);
    let dropped = writer.error_counter();
    (
        writer,
        FileGuard {
            dropped,
            _worker: worker,
        },
    )
}

/// The log file of the server and the guard of its writer.
#[derive(Debug)]
pub struct FileLog {
    /// The file, for SIGHUP reopens.
    pub file: LogFile,
    /// Keep it until the process ends, then [`FileGuard::finish`] it.
    pub guard: FileGuard,
}

/// Installs the global subscriber; the log file (if any) is returned for
/// SIGHUP reopens, with the guard of its writer. A second call installs nothing.
pub fn init(settings: &LogsSettings) -> std::io::Result<Option<FileLog>> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let file = settings.file.as_deref().map(LogFile::open).transpose()?;
    let (writer, file) = match file {
        Some(file) => {
            let (writer, guard) = non_blocking(file.clone());
            (Some(writer), Some(FileLog { file, guard }))
        }
        None => (None, None),
    };
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
    let to_file = writer.map(|writer| {
        if json {
            tracing_subscriber::fmt::layer().json().with_writer(writer).boxed()
        } else {
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_target(false)
                .with_writer(writer)
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
        let mut log = LogFile::open(&path).expect("open");
        log.write_all(b"one\n").expect("write");
        std::fs::rename(&path, dir.path().join("cpu.log.1")).expect("rename");
        log.write_all(b"two\n").expect("write");
        log.clone().reopen().expect("reopen");
        log.write_all(b"three\n").expect("write");
        let old = std::fs::read_to_string(dir.path().join("cpu.log.1")).expect("old");
        assert_eq!(old, "one\ntwo\n");
        assert_eq!(std::fs::read_to_string(&path).expect("new"), "three\n");
    }

    /// Rule: a line handed to the non-blocking writer just before exit is in
    /// the file once the guard is finished, across a reopen too.
    #[test]
    fn finishing_the_guard_writes_out_every_queued_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cpu.log");
        let file = LogFile::open(&path).expect("open");
        let (mut writer, guard) = non_blocking(file.clone());
        for i in 0..1000 {
            writer.write_all(format!("line {i}\n").as_bytes()).expect("queue");
        }
        file.reopen().expect("reopen");
        writer.write_all(b"last line\n").expect("queue");
        assert_eq!(guard.dropped_lines(), 0);
        guard.finish(&path);
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.lines().count(), 1001, "no line lost or duplicated");
        assert!(text.ends_with("line 999\nlast line\n"), "{text}");
    }
}
