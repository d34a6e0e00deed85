//! An orb's stdout and stderr, copied line by line into its own log file.
//!
//! Lines are rebuilt across reads (a line split between two reads stays one
//! line), capped in length, and handed to one writer through a bounded queue.
//! When the writer falls behind, lines are dropped and counted instead of
//! stalling the orb on a full pipe or growing memory; the count is written to
//! the file when the writer catches up. Orb output never enters the server log.
//! [`LogReopen::request`] (SIGHUP) makes every writer reopen its path before
//! its next line, so logrotate can rename the file without `copytruncate`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Longest line kept; the rest of a longer line is cut.
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// Lines waiting for the writer before new ones are dropped.
const QUEUE_LINES: usize = 1024;

/// The reopen generation the orb log writers of one launcher watch.
#[derive(Debug, Clone)]
pub struct LogReopen(Arc<watch::Sender<u64>>);

impl Default for LogReopen {
    fn default() -> Self {
        Self(Arc::new(watch::channel(0).0))
    }
}

impl LogReopen {
    /// Makes every orb log writer reopen its file before its next line (SIGHUP).
    pub fn request(&self) {
        self.0.send_modify(|generation| *generation += 1);
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

async fn open_log(path: &std::path::Path) -> std::io::Result<tokio::fs::File> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    tokio::fs::OpenOptions::new().create(true).append(true).open(path).await
}

/// Starts copying `stdout` and `stderr` into `path` (appending).
/// The returned task ends when both streams have closed and every kept line is written.
pub fn spawn_output_capture(
    stdout: impl AsyncRead + Unpin + Send + 'static,
    stderr: impl AsyncRead + Unpin + Send + 'static,
    path: PathBuf,
    reopen: &LogReopen,
) -> JoinHandle<()> {
    let (tx, rx) = mpsc::channel(QUEUE_LINES);
    let dropped = Arc::new(AtomicU64::new(0));
    tokio::spawn(read_lines(stdout, tx.clone(), dropped.clone()));
    tokio::spawn(read_lines(stderr, tx, dropped.clone()));
    tokio::spawn(write_lines(rx, path, dropped, reopen.subscribe()))
}

/// Splits `stream` into lines and queues them; never waits on the writer.
async fn read_lines(mut stream: impl AsyncRead + Unpin, tx: mpsc::Sender<Vec<u8>>, dropped: Arc<AtomicU64>) {
    let mut chunk = vec![0u8; 8192];
    let mut line: Vec<u8> = Vec::new();
    let mut cut = false;
    let queue = |line: Vec<u8>| {
        if tx.try_send(line).is_err() {
            dropped.fetch_add(1, Ordering::Relaxed);
        }
    };
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for piece in chunk[..n].split_inclusive(|b| *b == b'\n') {
            let ends_line = piece.last() == Some(&b'\n');
            let body = if ends_line { &piece[..piece.len() - 1] } else { piece };
            if !cut {
                let room = MAX_LINE_BYTES.saturating_sub(line.len());
                line.extend_from_slice(&body[..body.len().min(room)]);
                if body.len() > room {
                    line.extend_from_slice(" …[line truncated]".as_bytes());
                    cut = true;
                }
            }
            if ends_line {
                line.push(b'\n');
                queue(std::mem::take(&mut line));
                cut = false;
            }
        }
    }
    if !line.is_empty() {
        line.push(b'\n');
        queue(line);
    }
}

/// Appends queued lines to the file; reports drops as they are noticed.
async fn write_lines(
    mut rx: mpsc::Receiver<Vec<u8>>,
    path: PathBuf,
    dropped: Arc<AtomicU64>,
    mut generation: watch::Receiver<u64>,
) {
    generation.mark_unchanged();
    let mut file = match open_log(&path).await {
        Ok(file) => Some(file),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot open orb log; its output is discarded");
            None
        }
    };
    let mut reported = 0;
    while let Some(line) = rx.recv().await {
        if generation.has_changed().unwrap_or(false) {
            generation.mark_unchanged();
            if let Some(mut old) = file.take() {
                let _ = old.flush().await;
            }
            match open_log(&path).await {
                Ok(fresh) => file = Some(fresh),
                Err(error) => tracing::warn!(path = %path.display(), %error, "cannot reopen orb log"),
            }
        }
        let Some(out) = file.as_mut() else { continue };
        let lost = dropped.load(Ordering::Relaxed);
        if lost > reported {
            let note = format!(
                "[cpu-server: {} orb output lines dropped: log writer behind]\n",
                lost - reported
            );
            reported = lost;
            let _ = out.write_all(note.as_bytes()).await;
        }
        if out.write_all(&line).await.is_err() {
            file = None;
        }
    }
    if let Some(mut out) = file {
        let _ = out.flush().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_split_across_reads_stay_whole_and_long_lines_are_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("orb-r.log");
        let (mut out_w, out_r) = tokio::io::duplex(64);
        let (err_w, err_r) = tokio::io::duplex(64);
        let task = spawn_output_capture(out_r, err_r, path.clone(), &LogReopen::default());
        out_w.write_all(b"hello ").await.expect("write");
        out_w.write_all(b"world\nsecond").await.expect("write");
        out_w.write_all(b" line\n").await.expect("write");
        let long = vec![b'x'; MAX_LINE_BYTES * 2];
        out_w.write_all(&long).await.expect("write");
        out_w.write_all(b"\nafter\n").await.expect("write");
        drop(out_w);
        drop(err_w);
        tokio::time::timeout(std::time::Duration::from_secs(5), task)
            .await
            .expect("done")
            .expect("join");
        let text = std::fs::read_to_string(&path).expect("log");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "hello world");
        assert_eq!(lines[1], "second line");
        assert!(lines[2].ends_with("…[line truncated]"));
        assert!(lines[2].len() < MAX_LINE_BYTES + 64);
        assert_eq!(lines[3], "after");
    }
}
