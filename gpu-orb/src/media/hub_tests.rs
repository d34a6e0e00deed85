//! The peer table against real str0m peers on loopback, driven by a Chromium offer
//! captured on this machine (`testdata/chrome_offer.sdp`); no browser, so nothing
//! ever connects: the ICE timeout is the only way a peer ends by itself here.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use shared::room::ErrorCode;

use super::*;
use crate::media::EchoEngine;

const OFFER: &str = include_str!("testdata/chrome_offer.sdp");

fn hub(ice_timeout: Duration) -> MediaHub {
    MediaHub::with_ice_timeout(MediaSettings::default(), Arc::new(EchoEngine), ice_timeout)
}

fn offer(sdp: &str) -> Map<String, Value> {
    json!({"offer": {"type": "offer", "sdp": sdp}})
        .as_object()
        .cloned()
        .expect("object")
}

fn candidate(ufrag: &str) -> Map<String, Value> {
    json!({"candidate": {"candidate": "candidate:1 1 udp 2122260223 127.0.0.1 9 typ host", "sdpMid": "0", "usernameFragment": ufrag}})
        .as_object()
        .cloned()
        .expect("object")
}

async fn answer(hub: &mut MediaHub) -> (String, String) {
    match tokio::time::timeout(Duration::from_secs(5), hub.next_outgoing()).await {
        Ok(Outgoing::Answer { to, sdp }) => (to, sdp),
        other => panic!("expected an answer, got {other:?}"),
    }
}

#[tokio::test]
async fn an_offer_is_answered_with_the_orbs_candidate_and_video_rejected() {
    let mut hub = hub(ICE_TIMEOUT);
    hub.candidate("u1", &candidate("sA48")).expect("kept until the offer");
    assert_eq!(hub.pending.len(), 1);
    hub.offer("u1", &offer(OFFER)).expect("offer taken");
    assert_eq!(hub.pending.len(), 0, "early candidates went to the new peer");
    let (to, sdp) = answer(&mut hub).await;
    assert_eq!(to, "u1");
    assert!(sdp.contains(" 127.0.0.1 ") && sdp.contains("typ host"), "{sdp}");
    assert!(sdp.contains("m=audio 9 "), "{sdp}");
    assert!(sdp.contains("m=video 0 "), "video rejected: {sdp}");
    assert_eq!(hub.snapshot().len(), 1);
    assert_eq!(hub.snapshot()[0].ice, "new");

    // The same connection again (same fingerprint): a renegotiation, answered, one peer still.
    hub.offer("u1", &offer(OFFER)).expect("renegotiation");
    assert_eq!(answer(&mut hub).await.0, "u1");
    assert_eq!(hub.len(), 1);
    // A candidate of another ICE generation is stale.
    let stale = hub.candidate("u1", &candidate("other")).expect_err("stale");
    assert_eq!(stale.code, ErrorCode::PeerNotFound);
    hub.candidate("u1", &candidate("sA48")).expect("current generation");

    hub.left("u1");
    assert!(hub.is_empty());
}

#[tokio::test]
async fn bad_offers_are_refused_and_touch_no_peer() {
    let mut hub = hub(ICE_TIMEOUT);
    let no_audio = OFFER.replace("m=audio 9 ", "m=audio 0 ");
    let fingerprint = OFFER
        .lines()
        .find(|l| l.starts_with("a=fingerprint"))
        .expect("fingerprint");
    let malformed = format!("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n{fingerprint}\r\nnot sdp\r\n");
    for (sdp, why) in [(no_audio.as_str(), "no audio"), (malformed.as_str(), "malformed SDP")] {
        let error = hub.offer("u1", &offer(sdp)).expect_err("refused");
        assert_eq!(error.code, ErrorCode::InvalidField);
        assert!(error.message.contains(why), "{}", error.message);
    }
    let error = hub
        .offer("u1", &json!({}).as_object().cloned().expect("object"))
        .expect_err("no sdp");
    assert_eq!(error.code, ErrorCode::InvalidField);
    assert!(hub.is_empty());
}

#[tokio::test]
async fn a_peer_that_never_connects_is_dropped_and_its_late_candidates_refused() {
    let mut hub = hub(Duration::from_millis(300));
    hub.offer("u1", &offer(OFFER)).expect("offer");
    answer(&mut hub).await;
    // The closing report is handled inside next_outgoing, which has nothing to return.
    let nothing = tokio::time::timeout(Duration::from_secs(2), hub.next_outgoing()).await;
    assert!(nothing.is_err(), "{nothing:?}");
    assert!(hub.is_empty(), "dropped after the ICE timeout");
    let error = hub.candidate("u1", &candidate("sA48")).expect_err("closed");
    assert_eq!(error.code, ErrorCode::PeerNotFound);
    // A new offer opens it again.
    hub.offer("u1", &offer(OFFER)).expect("offer");
    answer(&mut hub).await;
    assert_eq!(hub.len(), 1);
    hub.close_all();
    assert!(hub.is_empty());
}

#[tokio::test]
async fn a_new_peer_connection_replaces_the_old_one() {
    let mut hub = hub(ICE_TIMEOUT);
    hub.offer("u1", &offer(OFFER)).expect("offer");
    answer(&mut hub).await;
    let other = OFFER.replace("a=fingerprint:sha-256 55:A9", "a=fingerprint:sha-256 66:A9");
    hub.offer("u1", &offer(&other)).expect("new connection");
    answer(&mut hub).await;
    assert_eq!(hub.len(), 1);
    assert_eq!(hub.peers["u1"].generation, 1);
}

#[test]
fn parse_errors_lose_their_memory_offsets() {
    let raw = "SDP parse: Parse error at PointerOffset(0x56361ac969a5)\nUnexpected `m`\nExpected `o`\nsdp line\n";
    assert_eq!(parse_error(raw), "Unexpected `m`; Expected `o`; sdp line");
}
