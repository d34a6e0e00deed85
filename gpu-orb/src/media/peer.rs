//! One browser's media connection: a task that owns its str0m [`Rtc`] and its UDP
//! socket, drives the sans-IO state machine (datagrams and timeouts in, datagrams and
//! events out), answers the peer's offers, hands its audio to an [`AudioSink`] and
//! writes what the engine sends on the answer's audio m-line.
//!
//! It ends when the peer table drops it (leave, stop, replacement), when ICE and
//! DTLS have not completed within the ICE timeout, when ICE disconnects, or on a
//! protocol error; each end but the first is reported as [`PeerReport::Closed`].
//! Every queue is bounded; every loop turn handles at most one input.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use str0m::change::SdpOffer;
use str0m::format::Codec;
use str0m::media::{Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::audio::{AudioFrame, AudioSink};
use super::signal::SignalError;
use super::stats::PeerStats;

/// Commands queued to one peer (its first offer plus every candidate buffered before it fit).
pub const COMMAND_QUEUE: usize = 128;
/// Outputs drained from the `Rtc` before the task lets others run.
const MAX_OUTPUTS_PER_TURN: usize = 256;
/// Largest datagram read.
const DATAGRAM: usize = 2048;
/// How often the published stats are refreshed while packets flow.
const STATS_EVERY: Duration = Duration::from_secs(1);

/// What the peer table asks of a peer.
#[derive(Debug)]
pub enum PeerCommand {
    /// An offer (the first, or a renegotiation on the same connection).
    Offer(Box<SdpOffer>),
    /// A trickled remote candidate.
    Candidate(Candidate),
}

/// What a peer tells the peer table. `generation` tells a replaced peer's late reports apart.
#[derive(Debug)]
pub enum PeerReport {
    /// The answer to send back.
    Answer {
        /// The participant.
        peer: String,
        /// Which connection of theirs.
        generation: u64,
        /// The answer's SDP, the orb's candidates inside.
        sdp: String,
    },
    /// An offer str0m refused.
    Refused {
        /// The participant.
        peer: String,
        /// Which connection.
        generation: u64,
        /// Why.
        error: SignalError,
    },
    /// The task ended by itself.
    Closed {
        /// The participant.
        peer: String,
        /// Which connection.
        generation: u64,
        /// Why (`ice_timeout`, `ice_disconnected`, `rtc_error`, …).
        reason: &'static str,
    },
}

/// Everything one peer task starts with.
pub struct PeerSetup {
    /// The participant's user id.
    pub peer: String,
    /// Its connection generation.
    pub generation: u64,
    /// A ready `Rtc` (local candidate added).
    pub rtc: Rtc,
    /// The bound socket.
    pub socket: UdpSocket,
    /// Commands from the peer table.
    pub commands: mpsc::Receiver<PeerCommand>,
    /// Reports to the peer table.
    pub reports: mpsc::Sender<PeerReport>,
    /// Where incoming audio goes.
    pub sink: Box<dyn AudioSink>,
    /// Audio to send.
    pub audio_out: mpsc::Receiver<AudioFrame>,
    /// Where the stats are published.
    pub stats: watch::Sender<PeerStats>,
    /// Drop the peer when ICE+DTLS are not up this long after the start.
    pub ice_timeout: Duration,
}

/// Builds an answering `Rtc` for one peer: Opus only (video m-lines are answered
/// rejected, port 0), the orb's host candidate on `local`.
pub fn new_rtc(crypto: &Arc<str0m::crypto::CryptoProvider>, local: SocketAddr) -> Result<Rtc, String> {
    let mut rtc = Rtc::builder()
        .set_crypto_provider(crypto.clone())
        .clear_codecs()
        .enable_opus(true, false)
        .build(std::time::Instant::now());
    let candidate = Candidate::host(local, "udp").map_err(|e| format!("host candidate {local}: {e}"))?;
    rtc.add_local_candidate(candidate);
    Ok(rtc)
}

/// A running peer.
struct Peer {
    setup: PeerSetup,
    local: SocketAddr,
    stats: PeerStats,
    published: Instant,
    audio_mid: Option<Mid>,
    connected: bool,
}

/// Runs one peer until it ends.
pub async fn run(setup: PeerSetup) {
    let local = match setup.socket.local_addr() {
        Ok(local) => local,
        Err(e) => {
            tracing::warn!(error = %e, "media socket has no address");
            return;
        }
    };
    let mut peer = Peer {
        setup,
        local,
        stats: PeerStats::new(),
        published: Instant::now(),
        audio_mid: None,
        connected: false,
    };
    let reason = peer.serve().await;
    peer.publish();
    tracing::info!(
        reason = reason.unwrap_or("dropped"),
        packets_in = peer.stats.packets_in,
        packets_out = peer.stats.packets_out,
        frames_in = peer.stats.frames_in,
        frames_out = peer.stats.frames_out,
        "media peer closed"
    );
    if let Some(reason) = reason {
        let report = PeerReport::Closed {
            peer: peer.setup.peer.clone(),
            generation: peer.setup.generation,
            reason,
        };
        let _ = peer.setup.reports.try_send(report);
    }
}

/// Debug builds only: `ORB_FAILPOINT=media_freeze` freezes each peer's task once it is
/// connected (its stats stop while the orb's heartbeats go on), for tests/voice_call.rs.
fn frozen_by_failpoint() -> bool {
    static FREEZE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    cfg!(debug_assertions) && *FREEZE.get_or_init(|| std::env::var("ORB_FAILPOINT").is_ok_and(|v| v == "media_freeze"))
}

impl Peer {
    /// The loop; `None` when the peer table dropped the peer, else why it ended.
    async fn serve(&mut self) -> Option<&'static str> {
        let ice_deadline = Instant::now() + self.setup.ice_timeout;
        let mut buf = vec![0u8; DATAGRAM];
        loop {
            let next = match self.drain() {
                Ok(next) => next,
                Err(reason) => return Some(reason),
            };
            if !self.setup.rtc.is_alive() {
                return Some("rtc_closed");
            }
            if self.connected && frozen_by_failpoint() {
                // A hung media task, as the manager's stall rule must catch it (tests only).
                tracing::warn!("failpoint media_freeze: this peer's task stops");
                std::future::pending::<()>().await;
            }
            let wake = next.map_or_else(Instant::now, |at| {
                Instant::now() + at.saturating_duration_since(std::time::Instant::now())
            });
            tokio::select! {
                command = self.setup.commands.recv() => match command {
                    Some(command) => self.command(command),
                    None => return None,
                },
                Some(frame) = self.setup.audio_out.recv() => self.write_audio(frame),
                received = self.setup.socket.recv_from(&mut buf) => match received {
                    Ok((n, source)) => {
                        if let Err(reason) = self.datagram(&buf[..n], source) {
                            return Some(reason);
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "media socket read failed"),
                },
                _ = tokio::time::sleep_until(wake) => {
                    if let Err(e) = self.setup.rtc.handle_input(Input::Timeout(std::time::Instant::now())) {
                        tracing::warn!(error = %e, "media timeout handling failed");
                        return Some("rtc_error");
                    }
                }
                _ = tokio::time::sleep_until(ice_deadline), if !self.connected => {
                    tracing::warn!(timeout_ms = self.setup.ice_timeout.as_millis(), "ICE/DTLS not completed in time: peer dropped");
                    return Some("ice_timeout");
                }
            }
        }
    }

    /// Sends what the `Rtc` has to send and handles its events; the next timeout,
    /// or `None` when more output is waiting (the caller yields, then drains again).
    fn drain(&mut self) -> Result<Option<std::time::Instant>, &'static str> {
        for _ in 0..MAX_OUTPUTS_PER_TURN {
            match self.setup.rtc.poll_output() {
                Ok(Output::Timeout(at)) => return Ok(Some(at)),
                Ok(Output::Transmit(t)) => match self.setup.socket.try_send_to(&t.contents, t.destination) {
                    Ok(n) => self.stats.sent(n),
                    Err(e) => tracing::debug!(error = %e, to = %t.destination, "media datagram dropped"),
                },
                Ok(Output::Event(event)) => self.event(event)?,
                Err(e) => {
                    tracing::warn!(error = %e, "media connection failed");
                    return Err("rtc_error");
                }
            }
        }
        Ok(None)
    }

    fn event(&mut self, event: Event) -> Result<(), &'static str> {
        match event {
            Event::IceConnectionStateChange(state) => {
                self.stats.ice = ice_name(state);
                tracing::debug!(ice = self.stats.ice, "ICE state");
                self.publish();
                if state == IceConnectionState::Disconnected {
                    return Err("ice_disconnected");
                }
            }
            Event::Connected => {
                self.connected = true;
                self.stats.dtls = "connected";
                self.stats.connected_at = Some(Instant::now());
                tracing::info!(local = %self.local, "media connected (ICE and DTLS)");
                self.publish();
            }
            Event::MediaAdded(added) => {
                tracing::debug!(mid = %added.mid, kind = ?added.kind, direction = ?added.direction, "media line");
                if added.kind == MediaKind::Audio && self.audio_mid.is_none() {
                    self.audio_mid = Some(added.mid);
                }
            }
            Event::MediaData(data) if Some(data.mid) == self.audio_mid => {
                self.stats.frames_in += 1;
                self.setup.sink.frame(AudioFrame {
                    opus: data.data,
                    rtp_time: data.time.rebase(Frequency::FORTY_EIGHT_KHZ).numer(),
                    received: Some(Instant::from_std(data.network_time)),
                });
            }
            _ => {}
        }
        Ok(())
    }

    fn datagram(&mut self, bytes: &[u8], source: SocketAddr) -> Result<(), &'static str> {
        let now = Instant::now();
        self.stats.received(source, bytes.len(), now);
        let Ok(contents) = bytes.try_into() else {
            return Ok(());
        };
        let input = Input::Receive(
            now.into_std(),
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.local,
                contents,
            },
        );
        if let Err(e) = self.setup.rtc.handle_input(input) {
            tracing::warn!(error = %e, %source, "media datagram refused");
            return Err("rtc_error");
        }
        if now.duration_since(self.published) >= STATS_EVERY {
            self.publish();
        }
        Ok(())
    }

    fn command(&mut self, command: PeerCommand) {
        match command {
            PeerCommand::Offer(offer) => {
                let report = match self.setup.rtc.sdp_api().accept_offer(*offer) {
                    Ok(answer) => PeerReport::Answer {
                        peer: self.setup.peer.clone(),
                        generation: self.setup.generation,
                        sdp: answer.to_sdp_string(),
                    },
                    Err(e) => PeerReport::Refused {
                        peer: self.setup.peer.clone(),
                        generation: self.setup.generation,
                        error: SignalError::invalid(format!("the AI cannot take this offer: {e}")),
                    },
                };
                if self.setup.reports.try_send(report).is_err() {
                    tracing::warn!("media report queue full: an answer was lost");
                }
            }
            PeerCommand::Candidate(candidate) => self.setup.rtc.add_remote_candidate(candidate),
        }
    }

    fn write_audio(&mut self, frame: AudioFrame) {
        let Some(mid) = self.audio_mid.filter(|_| self.connected) else {
            return;
        };
        let Some(writer) = self.setup.rtc.writer(mid) else {
            return;
        };
        let Some(pt) = writer
            .payload_params()
            .find(|p| p.spec().codec == Codec::Opus)
            .map(|p| p.pt())
        else {
            return;
        };
        let time = MediaTime::new(frame.rtp_time, Frequency::FORTY_EIGHT_KHZ);
        match writer.write(pt, std::time::Instant::now(), time, frame.opus) {
            Ok(()) => {
                self.stats.frames_out += 1;
                if let Some(received) = frame.received {
                    self.stats.forward_delay.record(received.elapsed());
                }
            }
            Err(e) => tracing::debug!(error = %e, "audio frame not sent"),
        }
    }

    fn publish(&mut self) {
        self.published = Instant::now();
        self.setup.stats.send_replace(self.stats.clone());
    }
}

fn ice_name(state: IceConnectionState) -> &'static str {
    match state {
        IceConnectionState::New => "new",
        IceConnectionState::Checking => "checking",
        IceConnectionState::Connected => "connected",
        IceConnectionState::Completed => "completed",
        IceConnectionState::Disconnected => "disconnected",
    }
}
