//! The manager channel (`NODE_CHANNEL_FD`): one task owns the framed socket.
//!
//! Lines from the manager become [`IpcInbound`] events; unknown and invalid
//! lines are logged at warn and skipped. End of stream (the manager died) is
//! reported once as [`IpcInbound::Closed`]. Outgoing messages are queued and
//! written in order; dropping the sender flushes them and ends the task. A message
//! over the line cap is dropped with a warning and the channel carries on.

use std::os::unix::net::UnixStream as StdUnixStream;

use futures_util::{SinkExt, StreamExt};
use shared::ipc::{IpcCodec, IpcEvent, MAX_ORB_LINE_BYTES, ManagerToOrb, OrbToManager};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio_util::bytes::BytesMut;
use tokio_util::codec::{Framed, FramedParts};

/// The manager's socket (non-blocking), and what was already read from it
/// but not yet parsed (a warm orb reads its assignment before the session starts).
#[derive(Debug)]
pub struct ManagerChannel {
    /// The socket.
    pub stream: StdUnixStream,
    /// Bytes read past the last message taken.
    pub unread: BytesMut,
}

impl From<StdUnixStream> for ManagerChannel {
    fn from(stream: StdUnixStream) -> Self {
        Self {
            stream,
            unread: BytesMut::new(),
        }
    }
}

/// Manager → session.
#[derive(Debug)]
pub enum IpcInbound {
    /// A known message.
    Message(ManagerToOrb),
    /// The manager closed its end (or the channel failed).
    Closed,
}

/// The task owning the channel.
pub struct IpcLink {
    framed: Framed<UnixStream, IpcCodec<ManagerToOrb, OrbToManager>>,
    outgoing: mpsc::Receiver<OrbToManager>,
    inbound: mpsc::Sender<IpcInbound>,
}

impl IpcLink {
    /// Wraps the adopted socket (already non-blocking); must run inside the runtime.
    pub fn new(
        channel: ManagerChannel,
    ) -> std::io::Result<(Self, mpsc::Sender<OrbToManager>, mpsc::Receiver<IpcInbound>)> {
        let stream = UnixStream::from_std(channel.stream)?;
        // The manager reads lines up to this cap: a `session_summary` needs more than 64 KiB.
        let mut parts = FramedParts::new::<OrbToManager>(stream, IpcCodec::new(MAX_ORB_LINE_BYTES));
        parts.read_buf = channel.unread;
        let framed = Framed::from_parts(parts);
        let (out_tx, out_rx) = mpsc::channel(64);
        let (in_tx, in_rx) = mpsc::channel(64);
        Ok((
            Self {
                framed,
                outgoing: out_rx,
                inbound: in_tx,
            },
            out_tx,
            in_rx,
        ))
    }

    /// Runs until the session drops its sender (after flushing) or the channel dies.
    pub async fn run(mut self) {
        let mut reading = true;
        loop {
            tokio::select! {
                out = self.outgoing.recv() => match out {
                    Some(message) => {
                        match self.framed.send(message).await {
                            Ok(()) => {}
                            // Refused by the encoder before a byte was queued: the channel is fine.
                            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                                tracing::warn!(error = %e, "IPC message dropped");
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "IPC write failed");
                                self.closed(&mut reading).await;
                                // Keep draining the queue so senders never block.
                            }
                        }
                    }
                    None => {
                        let _ = self.framed.flush().await;
                        return;
                    }
                },
                event = self.framed.next(), if reading => match event {
                    Some(Ok(IpcEvent::Message(message))) => {
                        if self.inbound.send(IpcInbound::Message(message)).await.is_err() {
                            reading = false;
                        }
                    }
                    Some(Ok(IpcEvent::Unknown { type_name, .. })) => {
                        tracing::warn!(%type_name, "ignored an IPC message of unknown type");
                    }
                    Some(Ok(IpcEvent::Invalid(error))) => tracing::warn!(%error, "ignored an invalid IPC line"),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "IPC read failed");
                        self.closed(&mut reading).await;
                    }
                    None => {
                        tracing::info!("IPC channel closed by the manager");
                        self.closed(&mut reading).await;
                    }
                },
            }
        }
    }

    async fn closed(&mut self, reading: &mut bool) {
        if *reading {
            *reading = false;
            let _ = self.inbound.send(IpcInbound::Closed).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, json};
    use shared::ipc::SessionSummary;
    use tokio::io::{AsyncBufReadExt, BufReader};

    fn summary(text_bytes: usize) -> OrbToManager {
        OrbToManager::SessionSummary(SessionSummary {
            room_id: "r".into(),
            session_id: "s".into(),
            summary: json!({ "transcript": [], "summary": "x".repeat(text_bytes) }),
            extra: Map::new(),
        })
    }

    async fn read(lines: &mut tokio::io::Lines<BufReader<UnixStream>>) -> String {
        tokio::time::timeout(std::time::Duration::from_secs(5), lines.next_line())
            .await
            .expect("a line in time")
            .expect("read")
            .expect("not closed")
    }

    /// Regression: a summary over 64 KiB (the old cap) closed the channel; one over the
    /// manager's cap must be dropped alone.
    #[tokio::test]
    async fn a_large_summary_goes_through_and_an_oversized_one_is_dropped_alone() {
        let (orb, manager) = StdUnixStream::pair().expect("pair");
        orb.set_nonblocking(true).expect("nonblocking");
        manager.set_nonblocking(true).expect("nonblocking");
        let (link, out, mut inbound) = IpcLink::new(orb.into()).expect("link");
        let task = tokio::spawn(link.run());
        out.send(summary(200 * 1024)).await.expect("queue");
        out.send(summary(MAX_ORB_LINE_BYTES)).await.expect("queue");
        out.send(summary(10)).await.expect("queue");
        let mut lines = BufReader::new(UnixStream::from_std(manager).expect("tokio")).lines();
        let first = read(&mut lines).await;
        assert!(
            first.len() > 200 * 1024 && first.len() <= MAX_ORB_LINE_BYTES,
            "{}",
            first.len()
        );
        let next = read(&mut lines).await;
        assert!(
            next.len() < 1024,
            "the oversized one was not dropped: {} bytes",
            next.len()
        );
        assert!(inbound.try_recv().is_err(), "the channel was reported closed");
        drop(out);
        task.await.expect("link ends");
    }
}
