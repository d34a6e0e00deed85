//! Running one Slurm command (`sbatch`, `squeue`, `scontrol`, `scancel`): async,
//! bounded by a timeout (the process is killed and reaped when it runs over), with
//! the environment it is given and an optional stdin. Never blocks a runtime thread.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Most bytes of a command's output kept for an error message.
const MAX_ERROR_TEXT: usize = 300;

/// Why a Slurm command gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlurmError {
    /// It could not be started (not installed, not in `PATH`).
    #[error("cannot run {program}: {reason}")]
    NotRun {
        /// The command.
        program: &'static str,
        /// Why.
        reason: String,
    },
    /// It ran over the timeout and was killed.
    #[error("{program} gave no answer within {ms} ms")]
    TimedOut {
        /// The command.
        program: &'static str,
        /// The bound.
        ms: u128,
    },
    /// It exited with a failure.
    #[error("{program} failed: {stderr}")]
    Failed {
        /// The command.
        program: &'static str,
        /// What it wrote on stderr (trimmed, bounded).
        stderr: String,
    },
}

impl SlurmError {
    /// Whether it looks like the controller is unreachable (worth retrying) rather than
    /// a refusal (bad partition, bad arguments).
    pub fn transient(&self) -> bool {
        match self {
            Self::TimedOut { .. } => true,
            Self::NotRun { .. } => false,
            Self::Failed { stderr, .. } => {
                let text = stderr.to_ascii_lowercase();
                [
                    "unable to contact",
                    "connection refused",
                    "socket timed out",
                    "timed out",
                    "try again",
                    "communication",
                    "not responding",
                ]
                .iter()
                .any(|needle| text.contains(needle))
            }
        }
    }
}

/// Runs `program args…` with exactly `env`, `stdin` written to it, bounded by `timeout`;
/// returns its stdout.
pub async fn run(
    program: &'static str,
    args: &[String],
    env: &[(String, String)],
    stdin: Option<&str>,
    timeout: Duration,
) -> Result<String, SlurmError> {
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| SlurmError::NotRun {
        program,
        reason: e.to_string(),
    })?;
    let input = stdin.map(str::to_owned);
    let mut pipe = child.stdin.take();
    let work = async move {
        if let (Some(pipe), Some(input)) = (pipe.as_mut(), input) {
            pipe.write_all(input.as_bytes()).await?;
        }
        drop(pipe);
        child.wait_with_output().await
    };
    let output = match tokio::time::timeout(timeout, work).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => {
            return Err(SlurmError::NotRun {
                program,
                reason: e.to_string(),
            });
        }
        // Dropping the future dropped the child: killed (kill_on_drop) and reaped by tokio.
        Err(_) => {
            return Err(SlurmError::TimedOut {
                program,
                ms: timeout.as_millis(),
            });
        }
    };
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let mut stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        if stderr.is_empty() {
            stderr = format!("exit status {}", output.status);
        }
        if stderr.len() > MAX_ERROR_TEXT {
            let cut = (0..=MAX_ERROR_TEXT)
                .rev()
                .find(|i| stderr.is_char_boundary(*i))
                .unwrap_or(0);
            stderr.truncate(cut);
        }
        Err(SlurmError::Failed { program, stderr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_failure_and_timeout() {
        let env = [("PATH".to_owned(), "/usr/bin:/bin".to_owned())];
        let out = run(
            "sh",
            &["-c".into(), "cat; echo $X".into()],
            &env,
            Some("in\n"),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(out.as_deref(), Ok("in\n\n"), "only the given environment");
        let failed = run(
            "sh",
            &[
                "-c".into(),
                "echo 'Unable to contact slurm controller' >&2; exit 1".into(),
            ],
            &env,
            None,
            Duration::from_secs(5),
        )
        .await;
        let error = failed.expect_err("fails");
        assert!(error.transient(), "{error}");
        let started = std::time::Instant::now();
        let slow = run("sleep", &["5".into()], &env, None, Duration::from_millis(200)).await;
        assert!(matches!(slow, Err(SlurmError::TimedOut { .. })), "{slow:?}");
        assert!(started.elapsed() < Duration::from_secs(3));
        let missing = run("no-such-slurm-command", &[], &env, None, Duration::from_secs(1)).await;
        assert!(matches!(missing, Err(SlurmError::NotRun { .. })));
    }
}
