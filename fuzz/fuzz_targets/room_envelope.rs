//! The room WebSocket envelope: whatever a client sends must never panic the
//! parser, and whatever it accepts must relay as a valid frame.
//!
//! Exercises `parse_inbound` (size cap, JSON, `type`), `target`,
//! `join_request` (id rules) and `into_relayed` (server-set `fromId`); and the
//! relay's fast path (`parse_envelope`, `relayed`): whatever it takes, the full
//! parse takes too, with the same kind and target, and both relay the same object.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::room::{MessageKind, parse_envelope, parse_inbound, relayed};

/// The server's default cap; inputs larger than it are refused unparsed.
const MAX: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    // Text frames are UTF-8; test the lossy decoding of anything else too.
    let text = String::from_utf8_lossy(data);
    let fast = parse_envelope(&text, MAX);
    let Ok(mut inbound) = parse_inbound(&text, MAX) else {
        assert!(fast.is_none(), "the fast path took a frame the full parse refuses");
        return;
    };
    if let Some(envelope) = &fast {
        assert_eq!(envelope.kind, inbound.kind);
        assert_eq!(envelope.target, inbound.target().expect("a plain frame's target"));
        let spliced: serde_json::Value =
            serde_json::from_str(&relayed(&text, envelope, "\"sender\"")).expect("the fast path relays JSON");
        let rewritten: serde_json::Value = serde_json::from_str(&inbound.clone().into_relayed("sender")).expect("json");
        assert_eq!(spliced, rewritten);
    }
    let _ = inbound.target();
    if inbound.kind == MessageKind::Join {
        // The server strips the token before anything else sees the join.
        let _ = inbound.fields.remove("token");
        if let Ok(join) = inbound.join_request() {
            assert!(!join.user_id.is_empty() && join.user_id.len() <= 128);
            assert!(
                !join.user_id.chars().any(char::is_control),
                "control character in a user id"
            );
            assert!(!join.user_name.chars().any(char::is_control));
            assert!(!join.user_role.chars().any(char::is_control));
        }
    }
    let kind = inbound.kind;
    let relayed = inbound.into_relayed("sender");
    // What we relay must itself be a frame of the same kind, from us.
    let again = parse_inbound(&relayed, usize::MAX).expect("a relayed frame parses");
    assert_eq!(again.kind, kind);
    assert_eq!(again.fields.get("fromId").and_then(|v| v.as_str()), Some("sender"));
});
