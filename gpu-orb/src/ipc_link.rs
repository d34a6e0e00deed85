//! The manager channel (`NODE_CHANNEL_FD`): one task owns the framed socket.
//!
//! Lines from the manager become [`IpcInbound`] events; unknown and invalid
//! lines are logged at warn and skipped. End of stream (the manager died) is
//! reported once as [`IpcInbound::Closed`]. Outgoing messages are queued and
//! written in order; dropping the sender flushes them and ends the task.

use std::os::unix::net::UnixStream as StdUnixStream;

use futures_util::{SinkExt, StreamExt};
use shared::ipc::{DEFAULT_MAX_LINE_BYTES, IpcCodec, IpcEvent, ManagerToOrb, OrbToManager};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio_util::codec::Framed;

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
        stream: StdUnixStream,
    ) -> std::io::Result<(Self, mpsc::Sender<OrbToManager>, mpsc::Receiver<IpcInbound>)> {
        let stream = UnixStream::from_std(stream)?;
        let framed = Framed::new(stream, IpcCodec::new(DEFAULT_MAX_LINE_BYTES));
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
                        if let Err(e) = self.framed.send(message).await {
                            tracing::warn!(error = %e, "IPC write failed");
                            self.closed(&mut reading).await;
                            // Keep draining the queue so senders never block.
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
