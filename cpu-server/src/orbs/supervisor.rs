//! One task per orb process: it owns the child, its IPC channel and its timers.
//!
//! The manager drives it through [`Control`] and hears from it through
//! [`Report`]s tagged with the process generation, so a late report of an old
//! process can never be mistaken for its replacement's. The task ends only
//! after the process has been reaped and its whole process group killed; its
//! last report is always [`ReportKind::Exited`].

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use shared::ipc::{IpcCodec, IpcEvent, ManagerToOrb, OrbMetrics, OrbToManager, ShutdownGraceful};
use tokio::net::UnixStream;
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::codec::Framed;
use tracing::{Instrument, debug, info, info_span, warn};

use super::record::ExitRecord;

/// Orders from the manager to one orb task.
#[derive(Debug, Clone)]
pub enum Control {
    /// Graceful stop: `shutdown_graceful`, then SIGTERM, then SIGKILL to the group.
    Stop {
        /// Reason sent to the orb and recorded.
        reason: String,
    },
    /// SIGKILL to the group now (e.g. `memory_limit`, `system_shutdown` second signal).
    Kill {
        /// Reason recorded.
        reason: String,
    },
    /// The orb's WebSocket showed life (counts as a heartbeat).
    Activity,
    /// The orb said on its WebSocket that it is ending, with this reason.
    AnnouncedEnd {
        /// Its reason.
        reason: String,
    },
    /// Forward a message to the orb over IPC.
    Send(ManagerToOrb),
}

/// What an orb task tells the manager.
#[derive(Debug)]
pub struct Report {
    /// The room.
    pub room: String,
    /// Which process of the room (increases with each spawn).
    pub generation: u64,
    /// Its pid.
    pub pid: u32,
    /// What happened.
    pub kind: ReportKind,
}

/// The events of one orb process.
#[derive(Debug)]
pub enum ReportKind {
    /// The spawner thread's answer to a launch: the started process, or why not.
    Spawned(Result<super::process_spawn::SpawnedProcess, String>),
    /// `orb_ready` arrived.
    Ready,
    /// An IPC heartbeat, with its delay (timestamp → arrival).
    Heartbeat {
        /// Metrics the orb sent.
        metrics: OrbMetrics,
        /// Its delay in ms.
        delay_ms: Option<f64>,
    },
    /// The orb reported an error.
    Error {
        /// Its text.
        error: String,
        /// It asks for a restart.
        critical: bool,
    },
    /// A session summary to pass on.
    Summary(serde_json::Value),
    /// No heartbeat for the unresponsive timeout; the orb is being killed.
    Unresponsive,
    /// The process exited, was reaped, and its group was killed.
    Exited {
        /// How it ended.
        exit: ExitRecord,
        /// How long it ran.
        ran_for: Duration,
    },
}

/// Timing of one orb task.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Time to `orb_ready`.
    pub ready_timeout: Duration,
    /// Silence that makes it unresponsive.
    pub unresponsive_timeout: Duration,
    /// Longest life (enforced here too: old orbs may not); `None`: no limit.
    pub max_lifetime: Option<Duration>,
    /// `shutdown_graceful` → SIGTERM.
    pub stop_grace: Duration,
    /// SIGTERM → SIGKILL.
    pub kill_grace: Duration,
}

/// Where a stop is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopPhase {
    Running,
    /// `shutdown_graceful` sent; SIGTERM at the deadline.
    AskedToStop,
    /// SIGTERM sent; SIGKILL at the deadline.
    Terminated,
    /// SIGKILL sent; waiting for the exit.
    Killed,
}

/// One orb process under supervision.
pub struct OrbTask {
    /// The room.
    pub room: String,
    /// The process generation.
    pub generation: u64,
    /// The process.
    pub child: Child,
    /// Its pid (= its process group).
    pub pid: u32,
    /// The manager's end of the IPC channel.
    pub ipc: UnixStream,
    /// Timers.
    pub timing: Timing,
    /// Orders.
    pub control: mpsc::Receiver<Control>,
    /// Reports.
    pub reports: mpsc::Sender<Report>,
}

impl OrbTask {
    /// Spawns the task on the runtime.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        let span = info_span!("orb", room = %self.room, pid = self.pid, generation = self.generation);
        tokio::spawn(self.run().instrument(span))
    }

    async fn run(self) {
        let OrbTask {
            room,
            generation,
            mut child,
            pid,
            ipc,
            timing,
            mut control,
            reports,
        } = self;
        let this = Reporter {
            room,
            generation,
            pid,
            timing,
            reports,
        };
        let started = Instant::now();
        let mut ipc = Framed::new(
            ipc,
            IpcCodec::<OrbToManager, ManagerToOrb>::new(shared::ipc::DEFAULT_MAX_LINE_BYTES),
        );
        let mut ipc_open = true;
        let mut ready = false;
        let mut last_heard = started;
        let mut phase = StopPhase::Running;
        let mut phase_deadline = started;
        // Why we are ending it (a stop asked for, or a failure we detected).
        let mut ending: Option<(String, bool)> = None;
        // What the orb itself said about its end.
        let mut announced: Option<String> = None;
        let lifetime_end = this.timing.max_lifetime.map(|life| started + life);
        let status = loop {
            let watchdog = if ready {
                last_heard + this.timing.unresponsive_timeout
            } else {
                started + this.timing.ready_timeout
            };
            tokio::select! {
                status = child.wait() => break status,
                event = ipc.next(), if ipc_open => match event {
                    Some(Ok(IpcEvent::Message(message))) => {
                        last_heard = Instant::now();
                        match message {
                            OrbToManager::OrbReady(_) => {
                                if !ready {
                                    ready = true;
                                    this.report(ReportKind::Ready).await;
                                }
                            }
                            OrbToManager::OrbHeartbeat(beat) => {
                                let delay_ms = now_ms().checked_sub(beat.timestamp).map(|d| d as f64);
                                this.report(ReportKind::Heartbeat { metrics: beat.metrics, delay_ms }).await;
                            }
                            OrbToManager::OrbError(error) => {
                                warn!(error = %error.error, critical = error.critical, "orb reported an error");
                                let critical = error.critical;
                                this.report(ReportKind::Error { error: error.error, critical }).await;
                                if critical && phase == StopPhase::Running {
                                    ending = Some(("orb_error".to_owned(), false));
                                    phase = this.begin_stop(&mut ipc, ipc_open, "restart");
                                    phase_deadline = Instant::now() + this.timing.stop_grace;
                                }
                            }
                            OrbToManager::SessionSummary(summary) => {
                                this.report(ReportKind::Summary(summary.summary)).await;
                            }
                            OrbToManager::OrbShutdown(shutdown) => {
                                debug!(reason = %shutdown.reason, "orb announced shutdown");
                                announced = Some(shutdown.reason);
                            }
                        }
                    }
                    Some(Ok(IpcEvent::Unknown { type_name, .. })) => {
                        last_heard = Instant::now();
                        debug!(%type_name, "ignored unknown IPC message");
                    }
                    Some(Ok(IpcEvent::Invalid(error))) => warn!(%error, "ignored invalid IPC line"),
                    Some(Err(error)) => {
                        warn!(%error, "IPC channel failed");
                        ipc_open = false;
                    }
                    None => {
                        debug!("orb closed its IPC channel");
                        ipc_open = false;
                    }
                },
                control = control.recv() => match control {
                    Some(Control::Stop { reason }) => {
                        if phase == StopPhase::Running {
                            info!(%reason, "stopping orb");
                            ending.get_or_insert((reason.clone(), true));
                            phase = this.begin_stop(&mut ipc, ipc_open, &reason);
                            phase_deadline = Instant::now() + this.timing.stop_grace;
                        }
                    }
                    Some(Control::Kill { reason }) => {
                        let normal = reason == "system_shutdown" || reason == "manual_termination";
                        ending.get_or_insert((reason, normal));
                        this.signal_group(Signal::SIGKILL);
                        phase = StopPhase::Killed;
                    }
                    Some(Control::Activity) => last_heard = Instant::now(),
                    Some(Control::AnnouncedEnd { reason }) => announced = Some(reason),
                    Some(Control::Send(message)) => {
                        if ipc_open && send_ipc(&mut ipc, message).await.is_err() {
                            ipc_open = false;
                        }
                    }
                    // The manager is gone: nothing may outlive it.
                    None => {
                        if phase != StopPhase::Killed {
                            ending.get_or_insert(("system_shutdown".to_owned(), true));
                            this.signal_group(Signal::SIGKILL);
                            phase = StopPhase::Killed;
                        }
                    }
                },
                _ = sleep_until(watchdog), if phase == StopPhase::Running => {
                    if ready {
                        warn!(silent_ms = last_heard.elapsed().as_millis() as u64, "orb unresponsive; killing it");
                        ending = Some(("unresponsive".to_owned(), false));
                        this.report(ReportKind::Unresponsive).await;
                    } else {
                        warn!("orb sent no orb_ready in time; killing it");
                        ending = Some(("ready_timeout".to_owned(), false));
                    }
                    this.signal_group(Signal::SIGKILL);
                    phase = StopPhase::Killed;
                }
                _ = sleep_until_some(lifetime_end), if phase == StopPhase::Running => {
                    info!("orb reached MAX_ORB_LIFETIME");
                    ending = Some(("max_lifetime".to_owned(), true));
                    phase = this.begin_stop(&mut ipc, ipc_open, "max_lifetime");
                    phase_deadline = Instant::now() + this.timing.stop_grace;
                }
                _ = sleep_until(phase_deadline), if matches!(phase, StopPhase::AskedToStop | StopPhase::Terminated) => {
                    if phase == StopPhase::AskedToStop {
                        info!("grace over; SIGTERM to the orb's group");
                        this.signal_group(Signal::SIGTERM);
                        // A stopped process only handles SIGTERM once continued.
                        this.signal_group(Signal::SIGCONT);
                        phase = StopPhase::Terminated;
                        phase_deadline = Instant::now() + this.timing.kill_grace;
                    } else {
                        warn!("orb ignored SIGTERM; SIGKILL to its group");
                        this.signal_group(Signal::SIGKILL);
                        phase = StopPhase::Killed;
                    }
                }
            }
        };
        // The leader is reaped; anything left in its group goes too.
        this.signal_group(Signal::SIGKILL);
        // What it wrote just before exiting may still be unread: its last word
        // (`orb_shutdown`) decides how the exit counts. Bounded: EOF comes as
        // soon as the group is gone.
        if ipc_open && announced.is_none() {
            announced = last_announcement(&mut ipc).await;
        }
        let exit = classify(status, ending, announced);
        info!(code = ?exit.code, signal = ?exit.signal, reason = %exit.reason, normal = exit.normal, "orb exited");
        this.report(ReportKind::Exited {
            exit,
            ran_for: started.elapsed(),
        })
        .await;
    }
}

/// The parts of an orb task its helpers need.
struct Reporter {
    room: String,
    generation: u64,
    pid: u32,
    timing: Timing,
    reports: mpsc::Sender<Report>,
}

impl Reporter {
    /// Sends `shutdown_graceful` if the channel is open; SIGTERM at once otherwise.
    fn begin_stop(
        &self,
        ipc: &mut Framed<UnixStream, IpcCodec<OrbToManager, ManagerToOrb>>,
        ipc_open: bool,
        reason: &str,
    ) -> StopPhase {
        let message = ManagerToOrb::ShutdownGraceful(ShutdownGraceful {
            reason: reason.to_owned(),
            timeout: self.timing.stop_grace.as_millis() as u64,
            extra: Default::default(),
        });
        // A full socket buffer must not hold up the stop: queue and flush
        // opportunistically, the deadlines do the rest.
        let sent = ipc_open && ipc.start_send_unpin(message).is_ok() && flush_now(ipc);
        if sent {
            StopPhase::AskedToStop
        } else {
            self.signal_group(Signal::SIGTERM);
            self.signal_group(Signal::SIGCONT);
            StopPhase::Terminated
        }
    }

    fn signal_group(&self, signal: Signal) {
        // ESRCH (already gone) is success.
        let _ = killpg(Pid::from_raw(self.pid as i32), signal);
    }

    async fn report(&self, kind: ReportKind) {
        let report = Report {
            room: self.room.clone(),
            generation: self.generation,
            pid: self.pid,
            kind,
        };
        let _ = self.reports.send(report).await;
    }
}

/// Reads what is left on the channel of an exited orb (at most 100 ms, 64
/// lines) and returns the reason of an `orb_shutdown` among it.
async fn last_announcement(ipc: &mut Framed<UnixStream, IpcCodec<OrbToManager, ManagerToOrb>>) -> Option<String> {
    let mut announced = None;
    let read = async {
        for _ in 0..64 {
            match ipc.next().await {
                Some(Ok(IpcEvent::Message(OrbToManager::OrbShutdown(shutdown)))) => announced = Some(shutdown.reason),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(100), read).await;
    announced
}

/// Sleeps until `deadline`, or forever when there is none.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Flushes without waiting: true when the bytes were handed to the socket.
fn flush_now(ipc: &mut Framed<UnixStream, IpcCodec<OrbToManager, ManagerToOrb>>) -> bool {
    let waker = futures_util::task::noop_waker_ref();
    let mut cx = std::task::Context::from_waker(waker);
    matches!(ipc.poll_flush_unpin(&mut cx), std::task::Poll::Ready(Ok(())))
}

async fn send_ipc(
    ipc: &mut Framed<UnixStream, IpcCodec<OrbToManager, ManagerToOrb>>,
    message: ManagerToOrb,
) -> Result<(), ()> {
    match tokio::time::timeout(Duration::from_secs(1), ipc.send(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => {
            warn!(%error, "IPC send failed");
            Err(())
        }
        Err(_) => {
            warn!("IPC send timed out: orb not reading its channel");
            Ok(())
        }
    }
}

/// Decides how an exit counts.
fn classify(
    status: std::io::Result<std::process::ExitStatus>,
    ending: Option<(String, bool)>,
    announced: Option<String>,
) -> ExitRecord {
    use std::os::unix::process::ExitStatusExt;
    let (code, signal) = match &status {
        Ok(s) => (s.code(), s.signal()),
        Err(_) => (None, None),
    };
    let success = code == Some(0);
    let (reason, normal) = match (ending, announced) {
        (Some((reason, normal)), _) => (reason, normal),
        (None, Some(reason)) if success => (reason, true),
        (None, None) if success => ("exited".to_owned(), true),
        (None, Some(reason)) => (format!("crash after {reason}"), false),
        (None, None) => ("crash".to_owned(), false),
    };
    ExitRecord {
        code,
        signal,
        reason,
        normal,
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    #[test]
    fn requested_stop_is_normal_whatever_the_status() {
        let exit = classify(
            Ok(ExitStatus::from_raw(9)),
            Some(("manual_termination".into(), true)),
            None,
        );
        assert!(exit.normal);
        assert_eq!(exit.signal, Some(9));
        assert_eq!(exit.reason, "manual_termination");
    }

    #[test]
    fn detected_failure_is_not_normal() {
        let exit = classify(Ok(ExitStatus::from_raw(9)), Some(("unresponsive".into(), false)), None);
        assert!(!exit.normal);
        assert_eq!(exit.reason, "unresponsive");
    }

    #[test]
    fn clean_exit_with_announced_reason_is_normal() {
        let exit = classify(Ok(ExitStatus::from_raw(0)), None, Some("session_complete".into()));
        assert!(exit.normal);
        assert_eq!(exit.reason, "session_complete");
    }

    #[test]
    fn nonzero_exit_unasked_is_a_crash() {
        let exit = classify(Ok(ExitStatus::from_raw(1 << 8)), None, None);
        assert_eq!(exit.code, Some(1));
        assert!(!exit.normal);
        assert_eq!(exit.reason, "crash");
    }
}
