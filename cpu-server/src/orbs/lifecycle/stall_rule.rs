//! The media-flow rule: whether an orb's heartbeat shows a dead call while the
//! orb itself is alive (its heartbeats say nothing about the call).
//!
//! Pure: it reads the heartbeat's `metrics` and `ORB_MEDIA_STALL_TIMEOUT`, and
//! says whether the call is stalled and why. Every field it reads is optional:
//! an orb that does not send it (an older orb, one without a voice pipeline or
//! without media) is healthy as far as this rule knows.
//!
//! Fields read:
//! - `metrics.voice.pending_ms`: age of the accepted utterance that has got
//!   neither an answer nor an error yet (`null`: none pending);
//! - per `metrics.media[]` peer: `ice`, `dtls`, `last_packet_age_ms` (`null`
//!   until the first packet), `connected_age_ms` (since ICE and DTLS connected).

use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

use super::cause::StopReason;

/// Why a call is stalled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum Stall {
    /// An answer never came: an accepted utterance has been pending this long.
    Voice {
        /// `voice.pending_ms`.
        pending_ms: u64,
    },
    /// No packet reaches the orb from a connected peer.
    Media {
        /// The peer (its userId).
        peer: String,
        /// Since its last packet, or since it connected when none ever came, ms.
        silent_ms: u64,
        /// Whether any packet ever came from it.
        any_packet: bool,
    },
}

impl Stall {
    /// The stop reason (and `ai_status` `error` code, its label).
    pub fn reason(&self) -> StopReason {
        match self {
            Self::Voice { .. } => StopReason::VoiceStalled,
            Self::Media { .. } => StopReason::MediaStalled,
        }
    }
}

/// What the room's humans read when their AI is replaced for a stall of `reason`.
pub fn stall_message(reason: StopReason) -> &'static str {
    match reason {
        StopReason::MediaStalled => "The AI stopped receiving your audio; it is being restarted.",
        _ => "The AI stopped answering; it is being restarted.",
    }
}

/// The stall a heartbeat's `metrics` shows under `timeout`, if any: first an
/// utterance pending for `timeout` or more; then the first media peer whose
/// ICE (`connected` or `completed`) and DTLS are `connected` while its last
/// packet is `timeout` or more old, or, with no packet yet, while it has
/// been connected for `timeout` or more.
pub fn stall(metrics: &Map<String, Value>, timeout: Duration) -> Option<Stall> {
    let timeout_ms = timeout.as_millis().min(u128::from(u64::MAX)) as u64;
    if let Some(pending_ms) = metrics.get("voice").and_then(|v| millis(&v["pending_ms"]))
        && pending_ms >= timeout_ms
    {
        return Some(Stall::Voice { pending_ms });
    }
    metrics
        .get("media")?
        .as_array()?
        .iter()
        .find_map(|peer| media_stall(peer, timeout_ms))
}

fn media_stall(peer: &Value, timeout_ms: u64) -> Option<Stall> {
    let ice = peer["ice"].as_str()?;
    let connected = matches!(ice, "connected" | "completed") && peer["dtls"].as_str() == Some("connected");
    if !connected {
        return None;
    }
    let (silent_ms, any_packet) = match millis(&peer["last_packet_age_ms"]) {
        Some(age) => (age, true),
        None => (millis(&peer["connected_age_ms"])?, false),
    };
    (silent_ms >= timeout_ms).then(|| Stall::Media {
        peer: peer["peer"].as_str().unwrap_or("?").to_owned(),
        silent_ms,
        any_packet,
    })
}

/// A non-negative number of ms (`None`: absent, `null` or not a number).
fn millis(value: &Value) -> Option<u64> {
    value
        .as_u64()
        .or_else(|| value.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const T: Duration = Duration::from_secs(10);

    fn metrics(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    fn voice(pending: Value) -> Map<String, Value> {
        metrics(json!({"cpu": 1, "voice": {
            "stage": "thinking", "stage_age_ms": 12000, "pending_ms": pending,
            "utterances": 3, "answers": 2, "errors": 0, "last_error": null
        }}))
    }

    fn peer(ice: &str, dtls: &str, last: Value, connected: Value) -> Map<String, Value> {
        metrics(json!({"media": [
            {"peer": "client-1", "ice": "connected", "dtls": "connected", "packets_in": 900, "last_packet_age_ms": 20, "connected_age_ms": 60000},
            {"peer": "coach-1", "ice": ice, "dtls": dtls, "packets_in": 0, "last_packet_age_ms": last, "connected_age_ms": connected}
        ]}))
    }

    /// Rule: an utterance pending for the timeout or more is a voice stall; less, or none, is not.
    #[test]
    fn a_pending_utterance_past_the_timeout_is_a_voice_stall() {
        assert_eq!(
            stall(&voice(json!(10_000)), T),
            Some(Stall::Voice { pending_ms: 10_000 })
        );
        assert_eq!(
            stall(&voice(json!(12_500.7)), T),
            Some(Stall::Voice { pending_ms: 12_500 })
        );
        assert_eq!(stall(&voice(json!(9_999)), T), None);
        assert_eq!(stall(&voice(Value::Null), T), None, "nothing pending");
        assert_eq!(stall(&voice(json!("soon")), T), None, "not a number");
        assert_eq!(Stall::Voice { pending_ms: 1 }.reason(), StopReason::VoiceStalled);
    }

    /// Rule: a connected peer whose last packet is the timeout old is a media stall.
    #[test]
    fn a_connected_peer_with_stale_packets_is_a_media_stall() {
        let stalled = Stall::Media {
            peer: "coach-1".into(),
            silent_ms: 10_000,
            any_packet: true,
        };
        assert_eq!(
            stall(&peer("connected", "connected", json!(10_000), json!(50_000)), T),
            Some(stalled)
        );
        assert_eq!(
            stall(&peer("connected", "connected", json!(9_000), json!(50_000)), T),
            None
        );
        assert!(stall(&peer("completed", "connected", json!(20_000), Value::Null), T).is_some());
    }

    /// Rule: a connected peer that never sent a packet stalls once connected for the timeout.
    #[test]
    fn a_connected_peer_without_any_packet_stalls_after_the_timeout() {
        assert_eq!(
            stall(&peer("connected", "connected", Value::Null, json!(11_000)), T),
            Some(Stall::Media {
                peer: "coach-1".into(),
                silent_ms: 11_000,
                any_packet: false
            })
        );
        assert_eq!(
            stall(&peer("connected", "connected", Value::Null, json!(3_000)), T),
            None
        );
        assert_eq!(
            stall(&peer("connected", "connected", Value::Null, Value::Null), T),
            None,
            "no connected age: an older orb"
        );
    }

    /// Rule: a peer not (yet) connected never stalls, however old its packets.
    #[test]
    fn a_peer_not_connected_is_not_stalled() {
        for (ice, dtls) in [("checking", "new"), ("connected", "new"), ("disconnected", "connected")] {
            assert_eq!(
                stall(&peer(ice, dtls, json!(60_000), json!(60_000)), T),
                None,
                "{ice}/{dtls}"
            );
        }
    }

    /// Rule: an orb that sends none of these fields is healthy (older orbs, test mode).
    #[test]
    fn absent_fields_are_healthy() {
        assert_eq!(stall(&Map::new(), T), None);
        assert_eq!(stall(&metrics(json!({"cpu": 3, "memory": 40})), T), None);
        assert_eq!(
            stall(&metrics(json!({"media": [], "voice": {"stage": "listening"}})), T),
            None
        );
        let old = metrics(json!({"media": [{"peer": "c", "ice": "connected", "dtls": "connected", "packets_in": 0}]}));
        assert_eq!(stall(&old, T), None);
        assert_eq!(stall(&metrics(json!({"media": "junk", "voice": 7})), T), None);
    }

    /// Rule: a voice stall is named before a media one.
    #[test]
    fn voice_comes_first() {
        let mut both = voice(json!(20_000));
        both.extend(peer("connected", "connected", json!(20_000), json!(20_000)));
        assert_eq!(stall(&both, T), Some(Stall::Voice { pending_ms: 20_000 }));
    }
}
