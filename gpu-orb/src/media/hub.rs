//! The peer table: one entry per participant the orb has a media connection with.
//!
//! Owned by the session task. It takes the participants' `offer` and
//! `ice-candidate` signals, starts a [`peer`](super::peer) task on a first offer
//! (or on an offer from a new `RTCPeerConnection` of the same participant),
//! forwards renegotiations and candidates to it, keeps candidates that arrive
//! before their offer, and ends a participant's task when they leave or the orb
//! stops. What it sends back (answers, refusals) comes out of
//! [`MediaHub::next_outgoing`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use shared::room::ErrorCode;
use str0m::Candidate;
use str0m::change::SdpOffer;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use super::audio::{AudioEngine, AudioOut};
use super::bind::bind_udp;
use super::peer::{self, COMMAND_QUEUE, PeerCommand, PeerReport, PeerSetup};
use super::pending::{ClosedPeers, PendingCandidates};
use super::settings::MediaSettings;
use super::signal::{self, CandidateSignal, RemoteCandidate, SignalError};
use super::stats::{PeerSnapshot, PeerStats};

/// A peer whose ICE and DTLS are not up this long after its offer is dropped.
pub const ICE_TIMEOUT: Duration = Duration::from_secs(30);
/// Media connections at once (the room's default participant cap).
pub const MAX_PEERS: usize = 16;
/// Reports from every peer task to the table.
const REPORT_QUEUE: usize = 256;

/// A message for the room, to one participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// `answer` to `to`.
    Answer {
        /// The offerer.
        to: String,
        /// The answer's SDP.
        sdp: String,
    },
    /// A refusal of `to`'s signal.
    Refused {
        /// The sender of the signal.
        to: String,
        /// Why.
        error: SignalError,
    },
}

struct Entry {
    generation: u64,
    fingerprint: String,
    ufrag: Option<String>,
    commands: mpsc::Sender<PeerCommand>,
    stats: watch::Receiver<PeerStats>,
    task: JoinHandle<()>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        // The task owns the socket and the Rtc: both are freed now, not at its next wake-up.
        self.task.abort();
    }
}

/// The orb's media connections.
pub struct MediaHub {
    settings: MediaSettings,
    engine: Arc<dyn AudioEngine>,
    crypto: Arc<str0m::crypto::CryptoProvider>,
    ice_timeout: Duration,
    peers: HashMap<String, Entry>,
    pending: PendingCandidates,
    closed: ClosedPeers,
    reports_tx: mpsc::Sender<PeerReport>,
    reports: mpsc::Receiver<PeerReport>,
    next_generation: u64,
}

impl MediaHub {
    /// An empty table whose peers hear and speak through `engine`.
    pub fn new(settings: MediaSettings, engine: Arc<dyn AudioEngine>) -> Self {
        Self::with_ice_timeout(settings, engine, ICE_TIMEOUT)
    }

    /// Like [`MediaHub::new`] with another ICE timeout (tests).
    pub fn with_ice_timeout(settings: MediaSettings, engine: Arc<dyn AudioEngine>, ice_timeout: Duration) -> Self {
        let (reports_tx, reports) = mpsc::channel(REPORT_QUEUE);
        Self {
            settings,
            engine,
            crypto: Arc::new(str0m::crypto::from_feature_flags()),
            ice_timeout,
            peers: HashMap::new(),
            pending: PendingCandidates::new(ice_timeout),
            closed: ClosedPeers::default(),
            reports_tx,
            reports,
            next_generation: 0,
        }
    }

    /// An `offer` from `from` (the fields of its frame). The answer comes later through
    /// [`MediaHub::next_outgoing`]; an `Err` is the refusal to send now.
    pub fn offer(&mut self, from: &str, extra: &Map<String, Value>) -> Result<(), SignalError> {
        let sdp = signal::offer_sdp(extra)?;
        if !signal::has_audio(sdp) {
            return Err(SignalError::invalid(
                "the offer has no audio m-line: the AI takes part with audio only (add an audio transceiver)",
            ));
        }
        let fingerprint = signal::fingerprint(sdp)
            .ok_or_else(|| SignalError::invalid("the offer has no a=fingerprint line"))?
            .to_owned();
        let ufrag = signal::ice_ufrag(sdp).map(str::to_owned);
        let offer = SdpOffer::from_sdp_string(sdp)
            .map_err(|e| SignalError::invalid(format!("malformed SDP: {}", parse_error(&e.to_string()))))?;
        self.closed.remove(from);
        match self.peers.get_mut(from) {
            Some(entry) if entry.fingerprint == fingerprint => {
                tracing::info!(peer = from, "renegotiation offer");
                entry.ufrag = ufrag;
                entry
                    .commands
                    .try_send(PeerCommand::Offer(Box::new(offer)))
                    .map_err(|_| busy("too many signals queued for this connection; try again"))
            }
            existing => {
                if existing.is_some() {
                    tracing::info!(peer = from, "offer from a new peer connection: the old one is closed");
                    self.peers.remove(from);
                }
                self.start(from, offer, fingerprint, ufrag)
            }
        }
    }

    fn start(
        &mut self,
        from: &str,
        offer: SdpOffer,
        fingerprint: String,
        ufrag: Option<String>,
    ) -> Result<(), SignalError> {
        if self.peers.len() >= MAX_PEERS {
            return Err(busy(format!("the AI already has {MAX_PEERS} media connections")));
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        let start_port = u32::try_from(generation % u64::from(u32::MAX)).unwrap_or(0);
        let internal = |what: String| SignalError {
            code: ErrorCode::Internal,
            message: what,
        };
        let socket = bind_udp(self.settings.ip, self.settings.ports, start_port).map_err(|e| {
            tracing::error!(error = %e, "no media socket");
            internal(format!("the AI has no media port free: {e}"))
        })?;
        let local = socket.local_addr().map_err(|e| internal(e.to_string()))?;
        let socket = tokio::net::UdpSocket::from_std(socket).map_err(|e| internal(e.to_string()))?;
        let rtc = peer::new_rtc(&self.crypto, local).map_err(internal)?;
        let (commands_tx, commands) = mpsc::channel(COMMAND_QUEUE);
        let (stats_tx, stats) = watch::channel(PeerStats::new());
        let (out, audio_out) = AudioOut::channel();
        let sink = self.engine.open(from, out);
        // The offer first, then every candidate that came before it (the queue holds them all).
        let _ = commands_tx.try_send(PeerCommand::Offer(Box::new(offer)));
        for early in self.pending.take(from, Instant::now()) {
            if let Some(candidate) = parse_candidate(&early, ufrag.as_deref()) {
                let _ = commands_tx.try_send(PeerCommand::Candidate(candidate));
            }
        }
        let setup = PeerSetup {
            peer: from.to_owned(),
            generation,
            rtc,
            socket,
            commands,
            reports: self.reports_tx.clone(),
            sink,
            audio_out,
            stats: stats_tx,
            ice_timeout: self.ice_timeout,
        };
        let span = tracing::info_span!("media", peer = from, generation, %local);
        let task = tokio::spawn(peer::run(setup).instrument(span));
        tracing::info!(peer = from, %local, "media peer started");
        self.peers.insert(
            from.to_owned(),
            Entry {
                generation,
                fingerprint,
                ufrag,
                commands: commands_tx,
                stats,
                task,
            },
        );
        Ok(())
    }

    /// An `ice-candidate` from `from`. Before its offer it is kept (bounded); for a
    /// closed connection, or another connection than the current one, it is refused.
    pub fn candidate(&mut self, from: &str, extra: &Map<String, Value>) -> Result<(), SignalError> {
        let remote = match signal::candidate(extra)? {
            CandidateSignal::End => return Ok(()),
            CandidateSignal::Candidate(remote) => remote,
        };
        let Some(entry) = self.peers.get(from) else {
            if self.closed.contains(from) {
                return Err(stale("the AI's media connection with you is closed: send a new offer"));
            }
            return self
                .pending
                .push(from, remote, Instant::now())
                .map_err(|_| busy("too many candidates before an offer"));
        };
        if let (Some(theirs), Some(current)) = (&remote.ufrag, &entry.ufrag)
            && theirs != current
        {
            return Err(stale("this candidate belongs to an earlier peer connection"));
        }
        let candidate = Candidate::from_sdp_string(&remote.line)
            .map_err(|e| SignalError::invalid(format!("malformed candidate: {e}")))?;
        entry
            .commands
            .try_send(PeerCommand::Candidate(candidate))
            .map_err(|_| busy("too many signals queued for this connection; try again"))
    }

    /// `from` left the room: its media and anything kept for it go.
    pub fn left(&mut self, from: &str) {
        if self.peers.remove(from).is_some() {
            tracing::info!(peer = from, "participant left: media closed");
        }
        self.pending.forget(from);
        self.closed.remove(from);
    }

    /// The orb stops: every connection goes.
    pub fn close_all(&mut self) {
        if !self.peers.is_empty() {
            tracing::info!(peers = self.peers.len(), "closing every media connection");
        }
        self.peers.clear();
    }

    /// The next message for the room (an answer or a refusal). Closings are handled
    /// here and produce nothing. Never resolves while no peer reports.
    pub async fn next_outgoing(&mut self) -> Outgoing {
        loop {
            // The table holds a sender itself, so `recv` never ends.
            let Some(report) = self.reports.recv().await else {
                std::future::pending::<()>().await;
                continue;
            };
            match report {
                PeerReport::Answer { peer, generation, sdp } if self.is_current(&peer, generation) => {
                    return Outgoing::Answer { to: peer, sdp };
                }
                PeerReport::Refused {
                    peer,
                    generation,
                    error,
                } if self.is_current(&peer, generation) => {
                    return Outgoing::Refused { to: peer, error };
                }
                PeerReport::Closed {
                    peer,
                    generation,
                    reason,
                } if self.is_current(&peer, generation) => {
                    tracing::info!(peer = %peer, reason, "media connection closed");
                    self.peers.remove(&peer);
                    self.closed.insert(&peer);
                }
                stale => tracing::debug!(report = ?stale, "report of a replaced connection ignored"),
            }
        }
    }

    fn is_current(&self, peer: &str, generation: u64) -> bool {
        self.peers.get(peer).is_some_and(|e| e.generation == generation)
    }

    /// Every connection's health now (for heartbeats and logs).
    pub fn snapshot(&self) -> Vec<PeerSnapshot> {
        let now = Instant::now();
        let mut peers: Vec<PeerSnapshot> = self
            .peers
            .iter()
            .map(|(id, entry)| entry.stats.borrow().snapshot(id, now))
            .collect();
        peers.sort_by(|a, b| a.peer.cmp(&b.peer));
        peers
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

fn parse_candidate(remote: &RemoteCandidate, ufrag: Option<&str>) -> Option<Candidate> {
    if let (Some(theirs), Some(current)) = (remote.ufrag.as_deref(), ufrag)
        && theirs != current
    {
        return None;
    }
    Candidate::from_sdp_string(&remote.line).ok()
}

/// A parser's error for the sender: its lines, without the parser's memory offsets.
fn parse_error(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains("PointerOffset"))
        .collect();
    let joined = lines.join("; ");
    joined.chars().take(200).collect()
}

fn busy(message: impl Into<String>) -> SignalError {
    SignalError {
        code: ErrorCode::RateLimited,
        message: message.into(),
    }
}

fn stale(message: &str) -> SignalError {
    SignalError {
        code: ErrorCode::PeerNotFound,
        message: message.to_owned(),
    }
}

#[cfg(test)]
#[path = "hub_tests.rs"]
mod tests;
