//! The relay's fast view of one inbound frame: its `type`, its target and whether the
//! sender wrote a `fromId`, read without building a map of its fields; and the frame
//! as relayed, the server's `fromId` spliced into the sender's own text.
//!
//! Only plain frames take this path: a JSON object whose `type`, `toId` and `targetId`
//! are strings (or absent), with no `fromId` and no repeated envelope field. Anything
//! else is `None` and goes through [`crate::room::parse_inbound`], which gives every bad
//! frame its error and rewrites the rest; both paths relay the same fields.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny};

use super::MessageKind;

/// The envelope of a plain frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// What the frame is.
    pub kind: MessageKind,
    /// `toId`, else `targetId`.
    pub target: Option<Cow<'a, str>>,
}

/// Whether a field was written at all (`null` included).
#[derive(Debug, Default)]
struct Present(bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(deserializer).map(|_| Self(true))
    }
}

/// The fields the relay reads; every other field is checked as JSON and skipped.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(rename = "toId", borrow, default)]
    to_id: Option<Cow<'a, str>>,
    #[serde(rename = "targetId", borrow, default)]
    target_id: Option<Cow<'a, str>>,
    #[serde(rename = "fromId", default)]
    from_id: Present,
}

/// The envelope of `text` when it is a plain frame of at most `max_bytes`, else `None`.
pub fn parse_envelope(text: &str, max_bytes: usize) -> Option<Envelope<'_>> {
    // A struct also deserialises from an array: only objects are frames.
    if text.len() > max_bytes || !text.trim_start().starts_with('{') {
        return None;
    }
    let fields: Fields<'_> = serde_json::from_str(text).ok()?;
    if fields.from_id.0 {
        return None;
    }
    let kind = MessageKind::from_wire(&fields.kind)?;
    Some(Envelope {
        kind,
        target: fields.to_id.or(fields.target_id),
    })
}

/// `text` (a plain frame, see [`parse_envelope`]) with `"fromId":from_json` added as its
/// last field; `from_json` is the sender's id already written as a JSON string.
pub fn with_from_id(text: &str, from_json: &str) -> String {
    let body = text.trim_end();
    let body = body.strip_suffix('}').unwrap_or(body).trim_end();
    let mut out = String::with_capacity(body.len() + from_json.len() + 12);
    out.push_str(body);
    if !body.ends_with('{') {
        out.push(',');
    }
    out.push_str("\"fromId\":");
    out.push_str(from_json);
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::parse_inbound;
    use serde_json::Value;

    /// Rule: the fast path relays exactly what the full parse relays.
    #[test]
    fn the_spliced_frame_equals_the_rewritten_one() {
        let from = serde_json::to_string("coach \"1\"").expect("json");
        for text in [
            r#"{"type":"offer","toId":"b","offer":{"sdp":"v=0\r\n","type":"offer"}}"#,
            r#" { "type" : "client_signal" , "x" : [1, {"fromId": "nested"}] }  "#,
            r#"{"type":"ai_response","text":"caf\u00e9 \"ok\"","inReplyTo":"u"}"#,
            r#"{"type":"ice-candidate","targetId":"c","candidate":null}"#,
        ] {
            let env = parse_envelope(text, 1024).unwrap_or_else(|| panic!("plain: {text}"));
            let fast: Value = serde_json::from_str(&with_from_id(text, &from)).expect("valid JSON");
            let slow: Value =
                serde_json::from_str(&parse_inbound(text, 1024).expect("parse").into_relayed("coach \"1\""))
                    .expect("json");
            assert_eq!(fast, slow, "{text}");
            let full = parse_inbound(text, 1024).expect("parse");
            assert_eq!(env.kind, full.kind);
            assert_eq!(env.target.as_deref(), full.target().expect("target"), "{text}");
        }
    }

    /// Rule: anything unusual goes the full way (which then replies or rewrites).
    #[test]
    fn unusual_frames_are_not_plain() {
        for text in [
            r#"{"type":"offer","fromId":"forged"}"#,
            r#"{"type":"offer","fromId":null}"#,
            r#"{"type":"offer","toId":5}"#,
            r#"{"type":"offer","toId":"a","toId":"b"}"#,
            r#"{"type":"offer","type":"answer"}"#,
            r#"["offer"]"#,
            r#"{"type":"nope"}"#,
            r#"{"toId":"a"}"#,
            r#"{"type":"offer""#,
            r#"{"type":"offer"} trailing"#,
            "\"offer\"",
        ] {
            assert_eq!(parse_envelope(text, 1024), None, "{text}");
        }
        assert_eq!(parse_envelope(r#"{"type":"offer"}"#, 10), None, "over the cap");
        // toId wins over targetId; a null toId falls back to targetId in both paths.
        let env = parse_envelope(r#"{"type":"offer","targetId":"t","toId":"a"}"#, 1024).expect("plain");
        assert_eq!(env.target.as_deref(), Some("a"));
        let env = parse_envelope(r#"{"type":"offer","toId":null,"targetId":"t"}"#, 1024).expect("plain");
        assert_eq!(env.target.as_deref(), Some("t"));
    }

    #[test]
    fn from_id_goes_last_even_in_an_empty_object() {
        assert_eq!(with_from_id("{}", "\"a\""), r#"{"fromId":"a"}"#);
        assert_eq!(
            with_from_id("{\"type\":\"x\"} \n", "\"a\""),
            r#"{"type":"x","fromId":"a"}"#
        );
    }
}
