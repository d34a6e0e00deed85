//! The preflight: before the running server replaces its program image, it
//! runs the new binary as `cpu-server [its own arguments] check --handover -`
//! with the server's environment and working directory (what the new image
//! would inherit) and the handover document on stdin. The new binary must
//! accept its settings, read the document and answer `build_id=<id>`; anything
//! else (it cannot be executed, refuses its settings with exit 64, cannot read
//! the format, hangs) is the reason the upgrade is refused, and the running
//! server carries on unchanged.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::handover::HANDOVER_FD_ENV;

/// Longest a preflight may take.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Output of the check kept per stream (the reason quotes its end).
const MAX_OUTPUT: u64 = 64 * 1024;

/// Characters of the check's output quoted in a refusal.
const QUOTED: usize = 1500;

/// The program the server was started as, and how: what an upgrade runs again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// The executable's path as it was at start-up (an upgrade runs whatever is there now).
    pub path: PathBuf,
    /// The arguments after the program name.
    pub args: Vec<OsString>,
}

impl Installed {
    /// This process's program and arguments; `None` if its path is unknown.
    /// Call at start-up, before an install could replace the file.
    pub fn of_this_process() -> Option<Self> {
        let path = std::env::current_exe().ok()?;
        Some(Self {
            path,
            args: std::env::args_os().skip(1).collect(),
        })
    }
}

/// What a passed preflight learnt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passed {
    /// The new binary's build id (as it reported it).
    pub build_id: String,
}

/// Runs the check of `installed` with `document`; `Err` is the reason to refuse.
pub async fn run(installed: &Installed, document: &[u8], timeout: Duration) -> Result<Passed, String> {
    let path = installed.path.display().to_string();
    let mut child = Command::new(&installed.path)
        .args(&installed.args)
        .args(["check", "--handover", "-"])
        .env_remove(HANDOVER_FD_ENV)
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run the new binary {path}: {e}"))?;
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let exchange = async {
        let feed = async {
            if let Some(mut stdin) = stdin {
                // A binary that exits without reading gets EPIPE here: its exit status tells why.
                let _ = stdin.write_all(document).await;
            }
        };
        let ((), out, err, status) = tokio::join!(feed, bounded(stdout), bounded(stderr), child.wait());
        (out, err, status)
    };
    let (out, err, status) = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("the new binary's check did not answer within {} s", timeout.as_secs()))?;
    let status = status.map_err(|e| format!("cannot wait for the new binary's check: {e}"))?;
    judge(status.code(), &out, &err)
}

/// The decision on a finished check: exit 0 and a `build_id=` line pass.
pub fn judge(code: Option<i32>, stdout: &str, stderr: &str) -> Result<Passed, String> {
    let said = quote(stdout, stderr);
    match code {
        Some(0) => stdout
            .lines()
            .find_map(|line| line.trim().strip_prefix("build_id="))
            .filter(|id| !id.is_empty())
            .map(|id| Passed {
                build_id: id.to_owned(),
            })
            .ok_or_else(|| {
                format!("the new binary's check passed but reported no build id (is it a cpu-server?): {said}")
            }),
        Some(64) => Err(format!("the new binary refuses its settings (exit 64): {said}")),
        Some(code) => Err(format!("the new binary's check failed (exit {code}): {said}")),
        None => Err(format!("the new binary's check was killed by a signal: {said}")),
    }
}

/// Whether a refusal is a check that could not read the document's format
/// (exit 65 with the format message): a binary of an older release.
pub fn unreadable_format(reason: &str) -> bool {
    reason.contains("(exit 65)") && reason.contains("is not readable by this binary")
}

/// The end of what the check said, stderr first, on one line.
fn quote(stdout: &str, stderr: &str) -> String {
    let text = [stderr.trim(), stdout.trim()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
        .replace('\n', " / ");
    if text.is_empty() {
        return "(it said nothing)".to_owned();
    }
    let chars: Vec<char> = text.chars().collect();
    let start = chars.len().saturating_sub(QUOTED);
    let tail: String = chars[start..].iter().collect();
    if start > 0 { format!("…{tail}") } else { tail }
}

async fn bounded(stream: Option<impl AsyncRead + Unpin>) -> String {
    let mut bytes = Vec::new();
    if let Some(stream) = stream {
        let _ = stream.take(MAX_OUTPUT).read_to_end(&mut bytes).await;
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_zero_with_a_build_id_passes_and_everything_else_says_why() {
        assert_eq!(
            judge(Some(0), "handover: format 1 readable\nbuild_id=abc123\n", ""),
            Ok(Passed {
                build_id: "abc123".to_owned()
            })
        );
        let no_id = judge(Some(0), "all fine", "").expect_err("no build id");
        assert!(no_id.contains("no build id") && no_id.contains("all fine"), "{no_id}");
        let settings = judge(Some(64), "", "RELAY_THREADS=abc: not a number\n").expect_err("64");
        assert!(
            settings.contains("refuses its settings") && settings.contains("RELAY_THREADS=abc"),
            "{settings}"
        );
        let format = judge(Some(65), "", "handover format 1 is not readable").expect_err("65");
        assert!(
            format.contains("exit 65") && format.contains("not readable"),
            "{format}"
        );
        assert!(judge(None, "", "").expect_err("signal").contains("(it said nothing)"));
    }

    #[test]
    fn a_long_answer_is_quoted_by_its_end() {
        let long = format!("{}the end", "x".repeat(5000));
        let reason = judge(Some(1), "", &long).expect_err("fails");
        assert!(reason.ends_with("the end") && reason.contains('…'), "{reason}");
        assert!(reason.len() < 2000);
    }

    #[tokio::test]
    async fn programs_that_cannot_run_or_hang_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().expect("dir");
        let text = dir.path().join("not-executable");
        std::fs::write(&text, "not a program").expect("write");
        let installed = |path: PathBuf| Installed { path, args: Vec::new() };
        let reason = run(&installed(text), b"{}", TIMEOUT).await.expect_err("not executable");
        assert!(
            reason.contains("cannot run the new binary") && reason.contains("ermission denied"),
            "{reason}"
        );
        let reason = run(&installed(dir.path().join("missing")), b"{}", TIMEOUT)
            .await
            .expect_err("missing");
        assert!(reason.contains("No such file"), "{reason}");
        let sh = |script: &str| Installed {
            path: PathBuf::from("/bin/sh"),
            args: vec!["-c".into(), script.into(), "sh".into()],
        };
        let hang = run(&sh("exec sleep 5"), b"{}", Duration::from_millis(300))
            .await
            .expect_err("hangs");
        assert!(hang.contains("did not answer"), "{hang}");
        // The document reaches its stdin, and the arguments end with the check's.
        let echo = sh(r#"test "$*" = "check --handover -" && test "$(cat)" = '{"format":1}' && echo build_id=feed"#);
        assert_eq!(
            run(&echo, br#"{"format":1}"#, TIMEOUT).await,
            Ok(Passed {
                build_id: "feed".to_owned()
            })
        );
    }
}
