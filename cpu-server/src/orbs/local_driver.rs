//! The driver of one local orb process: it owns the child and its IPC socket,
//! turns what they say into [`ProcessEvent`]s and carries out [`Order`]s on
//! the process group. No supervision rule lives here (they are the
//! lifecycle's); it ends only after the process has been reaped and its whole
//! process group killed, and its last event is always [`ProcessEvent::Exited`].

use std::os::fd::OwnedFd;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use shared::ipc::{IpcCodec, IpcEvent, ManagerToOrb, OrbToManager, ShutdownGraceful};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{Framed, FramedParts};
use tracing::{debug, warn};

use super::child::OrbChild;
use super::process_control::{EventSink, HandedOver, HandoverRequest, Order, ProcessEvent};
use super::process_group;

type Ipc = Framed<UnixStream, IpcCodec<OrbToManager, ManagerToOrb>>;

/// Cap on one line from the orb: room for a `session_summary` of
/// [`shared::ipc::MAX_SUMMARY_BYTES`] and its envelope (the store refuses bigger ones
/// with a warning; a longer line is discarded as it arrives).
pub const MAX_LINE_FROM_ORB: usize = shared::ipc::MAX_ORB_LINE_BYTES;

/// Longest wait for the IPC channel's queued bytes to be written before a handover.
const HANDOVER_FLUSH: Duration = Duration::from_millis(200);

/// One local orb process under supervision.
pub struct LocalDriver {
    /// The process.
    pub child: OrbChild,
    /// Its pid (= its process group).
    pub pid: u32,
    /// The manager's end of the IPC channel.
    pub ipc: UnixStream,
    /// Bytes already read from (or queued for) the channel by a previous program
    /// image: read first, written first.
    pub buffered: (Vec<u8>, Vec<u8>),
    /// Copies of the read ends of its stdout and stderr pipes (an upgrade hands
    /// them over; the log capture reads the originals).
    pub output: Option<(OwnedFd, OwnedFd)>,
    /// Orders.
    pub orders: mpsc::Receiver<Order>,
    /// An upgrade asking for the process (the driver then ends and the process lives on).
    pub handover: oneshot::Receiver<HandoverRequest>,
    /// Where events go.
    pub events: EventSink,
}

/// Why the driver's loop ended.
enum Stopped {
    /// The process was reaped: (code, signal).
    Exited((Option<i32>, Option<i32>)),
    /// An upgrade takes the process over.
    HandOver(HandoverRequest),
}

impl LocalDriver {
    /// Drives the process until it is gone (or handed over).
    pub async fn run(self) {
        let LocalDriver {
            mut child,
            pid,
            ipc,
            buffered,
            output,
            mut orders,
            mut handover,
            events,
        } = self;
        let mut parts = FramedParts::new::<ManagerToOrb>(ipc, IpcCodec::new(MAX_LINE_FROM_ORB));
        parts.read_buf = BytesMut::from(&buffered.0[..]);
        parts.write_buf = BytesMut::from(&buffered.1[..]);
        let mut ipc: Ipc = Framed::from_parts(parts);
        let mut ipc_open = true;
        let mut orders_open = true;
        let mut handover_open = true;
        let stopped = loop {
            tokio::select! {
                status = child.wait() => break Stopped::Exited(status),
                request = &mut handover, if handover_open => match request {
                    Ok(request) => break Stopped::HandOver(request),
                    Err(_) => handover_open = false,
                },
                event = ipc.next(), if ipc_open => match event {
                    Some(Ok(IpcEvent::Message(message))) => events.send(translate(message)).await,
                    Some(Ok(IpcEvent::Unknown { type_name, .. })) => debug!(%type_name, "ignored unknown IPC message"),
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
                order = orders.recv(), if orders_open => match order {
                    Some(Order::AskToStop { reason, grace }) => {
                        if !(ipc_open && ask_to_stop(&mut ipc, reason, grace)) {
                            events.send(ProcessEvent::CannotAsk).await;
                        }
                    }
                    Some(Order::Terminate) => process_group::terminate(pid),
                    Some(Order::Kill) => process_group::kill(pid),
                    Some(Order::Tell(message)) => {
                        if ipc_open && send_ipc(&mut ipc, message).await.is_err() {
                            ipc_open = false;
                        }
                    }
                    // The manager is gone: nothing may outlive it.
                    None => {
                        orders_open = false;
                        process_group::kill(pid);
                    }
                },
            }
        };
        let status = match stopped {
            Stopped::Exited(status) => status,
            Stopped::HandOver(request) => {
                let _ = tokio::time::timeout(HANDOVER_FLUSH, ipc.flush()).await;
                let handed = hand_over(pid, ipc_open.then_some(ipc), output);
                // The process lives on: this image must not kill it when it drops its handle.
                child.let_go();
                if let Err(handed) = request.send(handed) {
                    // Nobody took it after all: the manager is gone, and so must the orb be.
                    drop(handed);
                    process_group::kill(pid);
                }
                return;
            }
        };
        // The leader is reaped; anything left in its group goes too.
        process_group::kill(pid);
        // What it wrote just before exiting may still be unread: its session
        // summary, and its last word (`orb_shutdown`), which decides how the
        // exit counts. Bounded: EOF comes as soon as the group is gone.
        if ipc_open {
            let (summary, announced) = last_words(&mut ipc).await;
            if let Some(summary) = summary {
                events.send(ProcessEvent::Summary(summary)).await;
            }
            if let Some(reason) = announced {
                events.send(ProcessEvent::Announced(reason)).await;
            }
        }
        let (code, signal) = status;
        events.send(ProcessEvent::Exited { code, signal }).await;
    }
}

/// The process's channel (with what its codec buffered) and output pipes, for a new image.
fn hand_over(pid: u32, ipc: Option<Ipc>, output: Option<(OwnedFd, OwnedFd)>) -> HandedOver {
    let (ipc, unread, unsent) = match ipc {
        Some(ipc) => {
            let parts = ipc.into_parts();
            let fd = parts.io.into_std().map(OwnedFd::from).ok();
            (fd, parts.read_buf.to_vec(), parts.write_buf.to_vec())
        }
        None => (None, Vec::new(), Vec::new()),
    };
    HandedOver {
        pid: Some(pid),
        job: None,
        ipc,
        unread,
        unsent,
        output,
    }
}

/// What an IPC message means to the lifecycle (over any channel).
pub fn translate(message: OrbToManager) -> ProcessEvent {
    match message {
        OrbToManager::OrbReady(_) => ProcessEvent::Ready,
        OrbToManager::OrbHeartbeat(beat) => ProcessEvent::Heartbeat {
            delay_ms: shared::clock::epoch_ms().checked_sub(beat.timestamp).map(|d| d as f64),
            metrics: beat.metrics,
        },
        OrbToManager::OrbError(error) => ProcessEvent::Error {
            error: error.error,
            critical: error.critical,
        },
        OrbToManager::SessionSummary(summary) => ProcessEvent::Summary(summary.summary),
        OrbToManager::OrbShutdown(shutdown) => ProcessEvent::Announced(shutdown.reason),
        OrbToManager::OrbWarm(_) => ProcessEvent::Warm,
        OrbToManager::OrbAssigned(assigned) => ProcessEvent::Assigned { room: assigned.room_id },
    }
}

/// Queues `shutdown_graceful` and flushes without waiting: a full socket
/// buffer must not hold up the stop (the escalation's deadlines do the rest).
fn ask_to_stop(ipc: &mut Ipc, reason: &str, grace: Duration) -> bool {
    let message = ManagerToOrb::ShutdownGraceful(ShutdownGraceful {
        reason: reason.to_owned(),
        timeout: grace.as_millis() as u64,
        extra: Default::default(),
    });
    if ipc.start_send_unpin(message).is_err() {
        return false;
    }
    let waker = futures_util::task::noop_waker_ref();
    let mut cx = std::task::Context::from_waker(waker);
    matches!(ipc.poll_flush_unpin(&mut cx), std::task::Poll::Ready(Ok(())))
}

/// Reads what is left on the channel of an exited orb (at most 100 ms, 64
/// lines) and returns the last `session_summary` and the reason of the last
/// `orb_shutdown` among it.
async fn last_words(ipc: &mut Ipc) -> (Option<serde_json::Value>, Option<String>) {
    let mut summary = None;
    let mut announced = None;
    let read = async {
        for _ in 0..64 {
            match ipc.next().await {
                Some(Ok(IpcEvent::Message(OrbToManager::OrbShutdown(shutdown)))) => announced = Some(shutdown.reason),
                Some(Ok(IpcEvent::Message(OrbToManager::SessionSummary(last)))) => summary = Some(last.summary),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(100), read).await;
    (summary, announced)
}

async fn send_ipc(ipc: &mut Ipc, message: ManagerToOrb) -> Result<(), ()> {
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
