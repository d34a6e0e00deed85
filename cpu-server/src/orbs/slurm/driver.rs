//! The driver of one orb job: it submits the job, follows its state through the
//! [`Watcher`], speaks the IPC protocol with the orb over its supervision link
//! (`/orb-link/{room}`, one message per text frame) and carries out [`Order`]s with
//! `scancel`. No supervision rule lives here (they are the lifecycle's). Its last
//! event is always [`ProcessEvent::Exited`], sent once Slurm says the job ended
//! (or, after a kill Slurm never confirmed, after [`KILL_CONFIRM`]): the lifecycle
//! then revokes the orb's token, so an orb cut off by a partition can never speak
//! in its room again, and starts the replacement.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::StreamExt;
use shared::ipc::{IpcCodec, IpcEvent, ManagerToOrb, OrbToManager, ShutdownGraceful};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::command::{self, SlurmError};
use super::job_state::{EndState, JobState, parse_exit_code, parse_gpu_index, parse_job_id};
use super::watcher::JobView;
use super::{Cluster, JobRequest};
use crate::orbs::local_driver::{MAX_LINE_FROM_ORB, translate};
use crate::orbs::process_control::{EventSink, HandedOver, HandoverRequest, Order, Placement, ProcessEvent};

/// How long a kill may wait for Slurm to confirm the job's end before the orb
/// counts as gone anyway (its token is revoked then: it can do no harm).
pub const KILL_CONFIRM: Duration = Duration::from_secs(30);

/// Bound of one write to the supervision link.
const LINK_SEND: Duration = Duration::from_secs(1);

/// Where a driver's job comes from.
pub enum JobStart {
    /// Submitted by the driver.
    Submit(JobRequest),
    /// Already running or queued: a previous program image handed it over (its
    /// supervision link reconnects to this image).
    Adopted(String),
}

/// One orb job under supervision.
pub struct SlurmDriver {
    /// What the cluster needs (settings, watcher, link hub).
    pub cluster: Arc<Cluster>,
    /// The job to submit, or the one taken over.
    pub job: JobStart,
    /// Supervision links handed over by `/orb-link/{room}`.
    pub links: mpsc::Receiver<WebSocket>,
    /// Orders.
    pub orders: mpsc::Receiver<Order>,
    /// An upgrade asking for the job (the driver then ends and the job goes on).
    pub handover: oneshot::Receiver<HandoverRequest>,
    /// Where events go.
    pub events: EventSink,
}

/// How the job's supervision ended.
enum Outcome {
    /// Slurm says it ended so.
    Ended(EndState),
    /// Killed, and Slurm did not confirm in time (or the manager is gone).
    Unconfirmed,
    /// An upgrade takes the job over.
    HandOver(HandoverRequest),
}

impl SlurmDriver {
    /// Drives the job until it is gone.
    pub async fn run(mut self) {
        let submitted = match std::mem::replace(&mut self.job, JobStart::Adopted(String::new())) {
            JobStart::Submit(request) => self.submit(&request).await,
            JobStart::Adopted(job) => {
                info!(job = %job, "orb job taken over from the previous program image");
                Some(job)
            }
        };
        let Some(job) = submitted else {
            self.cluster.hub.remove(self.events.room(), self.events.generation());
            return;
        };
        let view = self.cluster.watcher.watch(&job);
        let outcome = self.supervise(&job, view).await;
        self.cluster.watcher.forget(&job);
        self.cluster.hub.remove(self.events.room(), self.events.generation());
        let (code, signal) = match outcome {
            Outcome::HandOver(request) => {
                let handed = HandedOver {
                    job: Some(job.clone()),
                    ..HandedOver::default()
                };
                // Nobody took it after all: the manager is gone, and so must the job be.
                if request.send(handed).is_err() {
                    self.cluster.cancel(&job, None);
                }
                return;
            }
            Outcome::Ended(end) => {
                let exit_code = match end {
                    EndState::Completed | EndState::Failed => self.exit_code(&job).await,
                    _ => None,
                };
                if end != EndState::Completed {
                    let error = format!("Slurm job {job} ended {}", end.label());
                    self.events.send(ProcessEvent::Error { error, critical: false }).await;
                }
                end.exit_status(exit_code)
            }
            Outcome::Unconfirmed => (None, Some(9)),
        };
        self.events.send(ProcessEvent::Exited { code, signal }).await;
    }

    /// Submits the job; retries while the controller does not answer (the room hears
    /// why it waits). `None`: it could not be submitted (its `Exited` is sent).
    async fn submit(&mut self, request: &JobRequest) -> Option<String> {
        let timeout = self.cluster.settings.command_timeout;
        loop {
            let answer = command::run("sbatch", &request.args, &request.env, Some(&request.script), timeout).await;
            let error = match answer {
                Ok(stdout) => match parse_job_id(&stdout) {
                    Some(job) => {
                        info!(job = %job, "orb job submitted");
                        return Some(job);
                    }
                    None => format!("sbatch printed no job id: {}", stdout.trim()),
                },
                // It may have been queued all the same: find it by its name and comment.
                Err(SlurmError::TimedOut { .. }) if let Some(job) = self.find_submitted(request).await => {
                    return Some(job);
                }
                Err(error) if error.transient() => {
                    let reason = format!("Slurm controller unreachable: {error}");
                    warn!(%reason, "cannot submit the orb job yet");
                    self.events
                        .send(ProcessEvent::Placement(Placement::Pending { job: None, reason }))
                        .await;
                    if self.wait_before_retry().await {
                        continue;
                    }
                    self.events
                        .send(ProcessEvent::Exited {
                            code: None,
                            signal: Some(9),
                        })
                        .await;
                    return None;
                }
                Err(error) => error.to_string(),
            };
            warn!(%error, "orb job refused");
            self.events.send(ProcessEvent::Error { error, critical: false }).await;
            self.events
                .send(ProcessEvent::Exited {
                    code: None,
                    signal: None,
                })
                .await;
            return None;
        }
    }

    /// Waits one poll interval between submissions; `false` when told to stop meanwhile.
    async fn wait_before_retry(&mut self) -> bool {
        let until = Instant::now() + self.cluster.settings.poll_interval;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return true,
                order = self.orders.recv() => match order {
                    None | Some(Order::Terminate | Order::Kill) => return false,
                    Some(Order::AskToStop { .. }) => self.events.send(ProcessEvent::CannotAsk).await,
                    Some(Order::Tell(_)) => {}
                },
            }
        }
    }

    /// The job of this submission, if Slurm has it (after an `sbatch` that timed out).
    async fn find_submitted(&self, request: &JobRequest) -> Option<String> {
        let args = vec![
            "--noheader".to_owned(),
            format!("--name={}", request.name),
            "--format=%i|%k".to_owned(),
        ];
        let out = self.cluster.query("squeue", &args).await.ok()?;
        out.lines().find_map(|line| {
            let (id, comment) = line.trim().split_once('|')?;
            (comment == request.comment).then(|| id.to_owned())
        })
    }

    async fn supervise(&mut self, job: &str, mut view: watch::Receiver<JobView>) -> Outcome {
        let mut link: Option<WebSocket> = None;
        let mut killed_at: Option<Instant> = None;
        let mut running = false;
        let mut handover_open = true;
        loop {
            let confirm = killed_at.map(|at| at + KILL_CONFIRM);
            tokio::select! {
                request = &mut self.handover, if handover_open && killed_at.is_none() => match request {
                    // The link drops with this image; the orb reconnects it to the next one.
                    Ok(request) => return Outcome::HandOver(request),
                    Err(_) => handover_open = false,
                },
                changed = view.changed() => {
                    if changed.is_err() {
                        return Outcome::Unconfirmed;
                    }
                    let seen = view.borrow_and_update().clone();
                    match (seen.state, seen.unreachable) {
                        (Some(JobState::Ended(end)), _) => {
                            close(link.take()).await;
                            return Outcome::Ended(end);
                        }
                        (Some(JobState::Running { node }), _) if !running => {
                            running = true;
                            info!(job, %node, "orb job running");
                            let placement = Placement::Running { job: job.to_owned(), node: node.clone(), gpu: None };
                            self.events.send(ProcessEvent::Placement(placement)).await;
                            self.tell_gpu(job, node);
                        }
                        (Some(JobState::Pending { reason }), None) => {
                            let placement = Placement::Pending { job: Some(job.to_owned()), reason };
                            self.events.send(ProcessEvent::Placement(placement)).await;
                        }
                        (state, Some(error)) if !running && !matches!(state, Some(JobState::Running { .. })) => {
                            let reason = format!("Slurm controller unreachable: {error}");
                            let placement = Placement::Pending { job: Some(job.to_owned()), reason };
                            self.events.send(ProcessEvent::Placement(placement)).await;
                        }
                        _ => {}
                    }
                }
                new = self.links.recv() => {
                    if let Some(new) = new {
                        debug!(job, "supervision link attached");
                        close(link.replace(new)).await;
                    }
                }
                frame = next_frame(&mut link) => match frame {
                    Some(text) => match IpcCodec::<OrbToManager, ManagerToOrb>::parse_line(text.as_bytes()) {
                        IpcEvent::Message(message) => self.events.send(translate(message)).await,
                        IpcEvent::Unknown { type_name, .. } => debug!(%type_name, "ignored unknown link message"),
                        IpcEvent::Invalid(error) => warn!(%error, "ignored invalid link message"),
                    },
                    None => {
                        debug!(job, "supervision link closed");
                        link = None;
                    }
                },
                order = self.orders.recv() => match order {
                    Some(Order::AskToStop { reason, grace }) => {
                        let message = ManagerToOrb::ShutdownGraceful(ShutdownGraceful {
                            reason: reason.to_owned(),
                            timeout: grace.as_millis() as u64,
                            extra: Default::default(),
                        });
                        if !send(&mut link, &message).await {
                            self.events.send(ProcessEvent::CannotAsk).await;
                        }
                    }
                    Some(Order::Tell(message)) => {
                        send(&mut link, &message).await;
                    }
                    Some(Order::Terminate) => self.cluster.cancel(job, Some("TERM")),
                    Some(Order::Kill) => {
                        self.cluster.cancel(job, Some("KILL"));
                        self.cluster.cancel(job, None);
                        killed_at.get_or_insert_with(Instant::now);
                    }
                    None => {
                        // The manager is gone: nothing may outlive it.
                        self.cluster.cancel(job, None);
                        close(link.take()).await;
                        return Outcome::Unconfirmed;
                    }
                },
                _ = sleep_until_opt(confirm) => {
                    warn!(job, "Slurm did not confirm the end of a cancelled job: counted as gone");
                    close(link.take()).await;
                    return Outcome::Unconfirmed;
                }
            }
        }
    }

    /// Asks Slurm (once, off the loop: the link is not held up) which GPU the job
    /// got on its node, and tells the lifecycle when it knows.
    fn tell_gpu(&self, job: &str, node: String) {
        let (cluster, events, job) = (Arc::clone(&self.cluster), self.events.clone(), job.to_owned());
        tokio::spawn(async move {
            let args = ["show", "job", "-d", "-o", &job].map(str::to_owned).to_vec();
            let gpu = match cluster.query("scontrol", &args).await {
                Ok(out) => parse_gpu_index(&out),
                Err(error) => {
                    debug!(job, %error, "no GPU index for the job");
                    None
                }
            };
            if let Some(gpu) = gpu {
                let placement = Placement::Running {
                    job,
                    node,
                    gpu: Some(gpu),
                };
                events.send(ProcessEvent::Placement(placement)).await;
            }
        });
    }

    /// `ExitCode=` of an ended job, when `scontrol` still knows it.
    async fn exit_code(&self, job: &str) -> Option<(i32, i32)> {
        let args = vec!["show".to_owned(), "job".to_owned(), "-o".to_owned(), job.to_owned()];
        let out = self.cluster.query("scontrol", &args).await.ok()?;
        parse_exit_code(&out)
    }
}

/// The next text frame of the link (`None`: it closed); pending forever without one.
async fn next_frame(link: &mut Option<WebSocket>) -> Option<String> {
    let Some(socket) = link.as_mut() else {
        return std::future::pending().await;
    };
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) if text.len() <= MAX_LINE_FROM_ORB => return Some(text.as_str().to_owned()),
            Some(Ok(Message::Text(_))) => warn!("ignored an oversized link message"),
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// Sends `message` on the link; `false` when there is none or it failed.
async fn send(link: &mut Option<WebSocket>, message: &ManagerToOrb) -> bool {
    let Some(socket) = link.as_mut() else { return false };
    let Ok(text) = serde_json::to_string(message) else {
        return false;
    };
    matches!(
        tokio::time::timeout(LINK_SEND, socket.send(Message::Text(text.into()))).await,
        Ok(Ok(()))
    )
}

async fn close(link: Option<WebSocket>) {
    if let Some(mut socket) = link {
        let _ = tokio::time::timeout(LINK_SEND, socket.send(Message::Close(None))).await;
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
