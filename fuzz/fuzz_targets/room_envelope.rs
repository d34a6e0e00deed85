//! The room WebSocket envelope: whatever a client sends must never panic the
//! parser, and whatever it accepts must relay as a valid frame.
//!
//! Exercises `parse_inbound` (size cap, JSON, `type`), `target`,
//! `join_request` (id rules) and `into_relayed` (server-set `fromId`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::room::{MessageKind, parse_inbound};

/// The server's default cap; inputs larger than it are refused unparsed.
const MAX: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    // Text frames are UTF-8; test the lossy decoding of anything else too.
    let text = String::from_utf8_lossy(data);
    let Ok(mut inbound) = parse_inbound(&text, MAX) else {
        return;
    };
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
