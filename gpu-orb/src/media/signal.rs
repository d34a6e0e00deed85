//! Reading the browsers' signalling payloads: the `offer` SDP and trickled
//! `candidate`s (docs/protocol.md §1.3, the old client's shapes), and the few SDP
//! facts the peer table needs before str0m sees the offer. Pure functions.

use serde_json::{Map, Value};
use shared::room::ErrorCode;

/// Largest SDP or candidate text taken (the room caps frames at 64 KiB anyway).
pub const MAX_SDP_BYTES: usize = 64 * 1024;

/// A refusal sent back to the participant whose signal it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalError {
    /// Machine-readable code (docs/protocol.md §1.7).
    pub code: ErrorCode,
    /// What was wrong and what to do.
    pub message: String,
}

impl SignalError {
    /// An `invalid_field` refusal.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::InvalidField,
            message: message.into(),
        }
    }
}

/// The SDP of an `offer` frame: `offer: {type: "offer", sdp}` (or `offer` as the SDP text).
pub fn offer_sdp(extra: &Map<String, Value>) -> Result<&str, SignalError> {
    let sdp = match extra.get("offer") {
        Some(Value::Object(offer)) => {
            if let Some(kind) = offer.get("type").and_then(Value::as_str)
                && kind != "offer"
            {
                return Err(SignalError::invalid(format!("offer.type is {kind:?}, not \"offer\"")));
            }
            offer.get("sdp").and_then(Value::as_str)
        }
        Some(Value::String(sdp)) => Some(sdp.as_str()),
        _ => None,
    };
    let sdp = sdp.ok_or_else(|| SignalError::invalid("an offer needs offer.sdp (the SDP text)"))?;
    if sdp.len() > MAX_SDP_BYTES {
        return Err(SignalError::invalid("offer.sdp is too long"));
    }
    Ok(sdp)
}

/// One trickled candidate: its `candidate:` line and the ICE username fragment it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteCandidate {
    /// The `candidate:…` attribute value.
    pub line: String,
    /// `usernameFragment`, when the browser sent it.
    pub ufrag: Option<String>,
}

/// What an `ice-candidate` frame carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CandidateSignal {
    /// A candidate to add.
    Candidate(RemoteCandidate),
    /// End of candidates (`candidate: null` or an empty line): nothing to do.
    End,
}

/// Reads `candidate: {candidate, sdpMid, sdpMLineIndex, usernameFragment}` (or a bare string).
pub fn candidate(extra: &Map<String, Value>) -> Result<CandidateSignal, SignalError> {
    let (line, ufrag) = match extra.get("candidate") {
        None | Some(Value::Null) => return Ok(CandidateSignal::End),
        Some(Value::String(line)) => (line.as_str(), None),
        Some(Value::Object(c)) => match c.get("candidate") {
            None | Some(Value::Null) => return Ok(CandidateSignal::End),
            Some(Value::String(line)) => (
                line.as_str(),
                c.get("usernameFragment").and_then(Value::as_str).map(str::to_owned),
            ),
            Some(_) => return Err(SignalError::invalid("candidate.candidate must be a string")),
        },
        Some(_) => return Err(SignalError::invalid("candidate must be an object or a string")),
    };
    let line = line.trim().strip_prefix("a=").unwrap_or(line.trim());
    if line.is_empty() {
        return Ok(CandidateSignal::End);
    }
    if line.len() > 1024 || !line.starts_with("candidate:") {
        return Err(SignalError::invalid(
            "candidate.candidate must be one `candidate:…` line",
        ));
    }
    Ok(CandidateSignal::Candidate(RemoteCandidate {
        line: line.to_owned(),
        ufrag: ufrag.filter(|u| !u.is_empty()),
    }))
}

/// Whether the SDP has an audio m-line that is not rejected (port 0).
pub fn has_audio(sdp: &str) -> bool {
    sdp.lines().any(|line| {
        line.strip_prefix("m=audio ")
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|port| port != "0")
    })
}

/// The first `a=fingerprint:` value: a new one means a new `RTCPeerConnection`.
pub fn fingerprint(sdp: &str) -> Option<&str> {
    attribute(sdp, "a=fingerprint:")
}

/// The first `a=ice-ufrag:` value: the ICE generation candidates must name.
pub fn ice_ufrag(sdp: &str) -> Option<&str> {
    attribute(sdp, "a=ice-ufrag:")
}

fn attribute<'a>(sdp: &'a str, prefix: &str) -> Option<&'a str> {
    sdp.lines()
        .find_map(|line| line.trim_end().strip_prefix(prefix))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().cloned().expect("object")
    }

    #[test]
    fn offers_are_read_in_both_shapes_and_bad_ones_refused() {
        let extra = map(json!({"offer": {"type": "offer", "sdp": "v=0"}}));
        assert_eq!(offer_sdp(&extra), Ok("v=0"));
        assert_eq!(offer_sdp(&map(json!({"offer": "v=0"}))), Ok("v=0"));
        for bad in [
            json!({}),
            json!({"offer": 5}),
            json!({"offer": {"type": "answer", "sdp": "v=0"}}),
        ] {
            let error = offer_sdp(&map(bad.clone())).expect_err("refused");
            assert_eq!(error.code, ErrorCode::InvalidField, "{bad}");
        }
    }

    #[test]
    fn candidates_are_read_and_end_of_candidates_is_not_an_error() {
        let c = json!({"candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host", "sdpMid": "0", "usernameFragment": "abcd"}});
        assert_eq!(
            candidate(&map(c)),
            Ok(CandidateSignal::Candidate(RemoteCandidate {
                line: "candidate:1 1 udp 1 127.0.0.1 5000 typ host".into(),
                ufrag: Some("abcd".into())
            }))
        );
        assert!(matches!(
            candidate(&map(json!({"candidate": "a=candidate:1 1 udp 1 ::1 5 typ host"}))),
            Ok(CandidateSignal::Candidate(RemoteCandidate { ufrag: None, .. }))
        ));
        for end in [
            json!({}),
            json!({"candidate": null}),
            json!({"candidate": {"candidate": ""}}),
        ] {
            assert_eq!(candidate(&map(end)), Ok(CandidateSignal::End));
        }
        for bad in [
            json!({"candidate": 1}),
            json!({"candidate": {"candidate": "x"}}),
            json!({"candidate": {"candidate": 2}}),
        ] {
            assert!(candidate(&map(bad)).is_err());
        }
    }

    #[test]
    fn sdp_facts() {
        let sdp = "v=0\r\na=fingerprint:sha-256 AB:CD\r\nm=video 9 UDP 96\r\nm=audio 0 UDP 111\r\na=ice-ufrag:u1\r\n";
        assert!(!has_audio(sdp), "a rejected audio line is no audio");
        assert!(has_audio("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"));
        assert_eq!(fingerprint(sdp), Some("sha-256 AB:CD"));
        assert_eq!(ice_ufrag(sdp), Some("u1"));
        assert_eq!(ice_ufrag("v=0"), None);
    }
}
