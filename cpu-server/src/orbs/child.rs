//! The orb process as its driver waits for it: a child this program image
//! spawned (tokio's [`Child`]), or one a previous image spawned and handed over
//! across an upgrade's `execve` (still our child: same pid), which tokio knows
//! nothing of and which is waited for by pid, on every SIGCHLD and at least
//! every [`ADOPTED_POLL`].

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::process::Child;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// Longest wait between two checks of an adopted child (SIGCHLD wakes it sooner).
pub const ADOPTED_POLL: Duration = Duration::from_secs(1);

/// An orb process, however it became ours.
#[derive(Debug)]
pub enum OrbChild {
    /// Spawned by this image.
    Spawned(Child),
    /// Spawned by a previous image.
    Adopted {
        /// Its pid.
        pid: Pid,
        /// SIGCHLD, when it could be listened to.
        sigchld: Option<Signal>,
    },
}

impl OrbChild {
    /// A child a previous image spawned.
    pub fn adopted(pid: u32) -> Self {
        Self::Adopted {
            pid: Pid::from_raw(pid as i32),
            sigchld: signal(SignalKind::child()).ok(),
        }
    }

    /// Waits for the process to exit and reaps it: (exit code, signal). Cancel-safe.
    pub async fn wait(&mut self) -> (Option<i32>, Option<i32>) {
        use std::os::unix::process::ExitStatusExt;
        match self {
            Self::Spawned(child) => match child.wait().await {
                Ok(status) => (status.code(), status.signal()),
                Err(_) => (None, None),
            },
            Self::Adopted { pid, sigchld } => loop {
                match waitpid(*pid, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(_, code)) => return (Some(code), None),
                    Ok(WaitStatus::Signaled(_, signal, _)) => return (None, Some(signal as i32)),
                    Err(Errno::EINTR) => continue,
                    // Not (or no longer) our child: nothing more will be learnt of it.
                    Err(_) => return (None, None),
                    Ok(_) => {}
                }
                match sigchld {
                    Some(sigchld) => {
                        let _ = tokio::time::timeout(ADOPTED_POLL, sigchld.recv()).await;
                    }
                    None => tokio::time::sleep(ADOPTED_POLL).await,
                }
            },
        }
    }

    /// The process is handed over to the next image: dropping this handle must
    /// not kill it (tokio's `kill_on_drop`), nor may this image reap it.
    pub fn let_go(self) {
        if let Self::Spawned(child) = self {
            std::mem::forget(child);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rule: an adopted child's exit is seen by pid (code and signal), and the
    /// zombie is reaped.
    #[tokio::test]
    async fn an_adopted_child_is_waited_for_by_pid() {
        let exits = std::process::Command::new("sh")
            .args(["-c", "sleep 0.2; exit 7"])
            .spawn()
            .expect("spawn");
        let mut child = OrbChild::adopted(exits.id());
        let waited = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        assert_eq!(waited.expect("exit seen before the poll bound"), (Some(7), None));
        let killed = std::process::Command::new("sleep").arg("30").spawn().expect("spawn");
        let pid = killed.id();
        let mut child = OrbChild::adopted(pid);
        nix::sys::signal::kill(Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL).expect("kill");
        let waited = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        assert_eq!(waited.expect("exit seen"), (None, Some(9)));
        assert_eq!(
            waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG)),
            Err(Errno::ECHILD),
            "reaped"
        );
        drop((exits, killed));
    }
}
