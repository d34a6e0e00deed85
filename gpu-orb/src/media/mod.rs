//! The orb in the call's media: a WebRTC answerer for every human that offers to it.
//!
//! Each human's browser sends the AI an `offer` (the AI never offers, docs/protocol.md
//! §1.4) and trickles `ice-candidate`s. The orb answers with its own host candidate
//! inside the answer's SDP (the old browser client drops candidates that arrive
//! before the answer), takes Opus audio and rejects video m-lines (port 0) while
//! keeping the connection. Audio goes through the [`audio`] seam: test mode echoes
//! each human's own frames back to them; the voice pipeline will plug in there.
//!
//! Built on `str0m` (sans-IO WebRTC): one tokio task per peer owns its `Rtc` and its
//! UDP socket, so peers share nothing and a peer's end frees everything it held.
//!
//! # Layout
//! - [`settings`]: `ORB_MEDIA`, `ORB_MEDIA_IP` (address, interface or CIDR), `ORB_MEDIA_PORTS`.
//! - [`bind`]: the host's addresses; a peer's socket inside the port range.
//! - [`signal`]: reading `offer` / `ice-candidate` payloads and the SDP facts the table needs.
//! - [`pending`]: candidates that came before their offer; participants whose media closed.
//! - [`hub`]: [`MediaHub`], the peer table the session owns.
//! - [`peer`]: the per-peer task.
//! - [`audio`]: [`AudioEngine`] / [`AudioSink`] / [`AudioOut`]; [`EchoEngine`], [`SilentEngine`].
//! - [`stats`]: per-peer counters and [`PeerSnapshot`].

pub mod audio;
pub mod bind;
pub mod hub;
pub mod peer;
pub mod pending;
pub mod settings;
pub mod signal;
pub mod stats;

pub use audio::{AudioEngine, AudioFrame, AudioOut, AudioSink, EchoEngine, SilentEngine};
pub use hub::{ICE_TIMEOUT, MediaHub, Outgoing};
pub use settings::{MediaArgs, MediaSettings};
pub use signal::SignalError;
pub use stats::{PeerSnapshot, SourceCount};
