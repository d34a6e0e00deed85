//! The relay's fast view of one inbound frame: its `type`, its target and where
//! the sender's own `fromId` is, read in one pass over the text (no map of its
//! fields, nothing decoded or allocated); and the frame as relayed, the server's
//! `fromId` spliced into the sender's own text.
//!
//! Only plain frames take this path: a JSON object whose `type`, `toId` and
//! `targetId` are strings without escapes (or null), whose top-level keys have no
//! escapes, with no repeated envelope field. The sender's `fromId`, if any, is
//! cut out (one top-level member, found by the scan, not by a text search).
//! Anything else is `None` and goes through [`crate::room::parse_inbound`], which
//! gives every bad frame its error and rewrites the rest; both paths relay the
//! same fields.

use std::ops::Range;

use super::MessageKind;
use super::scan::Cursor;

/// The envelope of a plain frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// What the frame is.
    pub kind: MessageKind,
    /// `toId`, else `targetId`.
    pub target: Option<&'a str>,
    /// The sender wrote a `fromId` (the server replaces it).
    pub has_from_id: bool,
    /// The bytes cut when relayed: the sender's `fromId` member and one comma
    /// beside it.
    cut: Range<usize>,
    /// Where the object's closing brace is.
    close: usize,
    /// Whether members other than the sender's `fromId` remain.
    others: bool,
}

/// What [`parse_envelope`] learns of the sender's `fromId` member.
struct FromId {
    key: usize,
    value_end: usize,
    comma_before: Option<usize>,
    comma_after: Option<usize>,
}

/// The envelope of `text` when it is a plain frame of at most `max_bytes`, else `None`.
pub fn parse_envelope(text: &str, max_bytes: usize) -> Option<Envelope<'_>> {
    if text.len() > max_bytes {
        return None;
    }
    let mut c = Cursor::new(text);
    c.skip_ws();
    if !c.eat(b'{') {
        return None;
    }
    let (mut kind, mut to_id, mut target_id) = (None, None, None);
    let mut from: Option<FromId> = None;
    let mut members = 0usize;
    let mut comma_before = None;
    c.skip_ws();
    let close = if c.eat(b'}') {
        c.at - 1
    } else {
        // Bounded: each round reads one member or returns.
        loop {
            let key_at = c.at;
            let (key, escaped) = c.string()?;
            if escaped {
                return None;
            }
            c.skip_ws();
            if !c.eat(b':') {
                return None;
            }
            c.skip_ws();
            match &text[key] {
                "type" => kind = Some(envelope_text(&mut c, text, kind.is_some())?),
                "toId" => to_id = Some(envelope_text(&mut c, text, to_id.is_some())?),
                "targetId" => target_id = Some(envelope_text(&mut c, text, target_id.is_some())?),
                "fromId" => {
                    if from.is_some() {
                        return None;
                    }
                    c.value(1)?;
                    from = Some(FromId {
                        key: key_at,
                        value_end: c.at,
                        comma_before,
                        comma_after: None,
                    });
                }
                _ => c.value(1)?,
            }
            members += 1;
            c.skip_ws();
            match c.next()? {
                b',' => {
                    comma_before = Some(c.at - 1);
                    if let Some(f) = from.as_mut().filter(|f| f.comma_after.is_none()) {
                        f.comma_after = Some(c.at);
                    }
                    c.skip_ws();
                }
                b'}' => break c.at - 1,
                _ => return None,
            }
        }
    };
    c.skip_ws();
    if !c.at_end() {
        return None;
    }
    let kind = MessageKind::from_wire(kind.flatten()?)?;
    let cut = match &from {
        None => close..close,
        Some(f) => match (f.comma_before, f.comma_after) {
            (Some(comma), _) => comma..f.value_end,
            (None, Some(after)) => f.key..after,
            (None, None) => f.key..f.value_end,
        },
    };
    Some(Envelope {
        kind,
        target: to_id.flatten().or(target_id.flatten()),
        has_from_id: from.is_some(),
        cut,
        close,
        others: members > usize::from(from.is_some()),
    })
}

/// An envelope field's value: a string without escapes, or null (`None`). A
/// field read twice (`again`), or of another kind, makes the frame not plain.
fn envelope_text<'t>(c: &mut Cursor<'_>, text: &'t str, again: bool) -> Option<Option<&'t str>> {
    if again {
        return None;
    }
    if c.peek() == Some(b'n') {
        c.value(1)?;
        return Some(None);
    }
    let (value, escaped) = c.string()?;
    (!escaped).then(|| Some(&text[value]))
}

impl Envelope<'_> {
    /// The relayed text of `text` (the frame this envelope was read from), in
    /// pieces: the sender's own `fromId` cut out, `"fromId":from_json` added as
    /// its last member (`from_json` is the sender's id already written as a
    /// JSON string).
    pub fn relayed_parts<'s>(&self, text: &'s str, from_json: &'s str) -> [&'s str; 6] {
        let comma = if self.others { "," } else { "" };
        [
            &text[..self.cut.start],
            &text[self.cut.end..self.close],
            comma,
            "\"fromId\":",
            from_json,
            "}",
        ]
    }
}

/// The frame `text` with envelope `envelope` as relayed, in one string (see
/// [`Envelope::relayed_parts`]).
pub fn relayed(text: &str, envelope: &Envelope<'_>, from_json: &str) -> String {
    envelope.relayed_parts(text, from_json).concat()
}

/// `text` (a plain frame without `fromId`) with `"fromId":from_json` added as its
/// last field.
pub fn with_from_id(text: &str, from_json: &str) -> String {
    let body = text.trim_end();
    let body = body.strip_suffix('}').unwrap_or(body).trim_end();
    let comma = if body.ends_with('{') { "" } else { "," };
    format!("{body}{comma}\"fromId\":{from_json}}}")
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
            r#"{"type":"client_signal","toId":"a","fromId":"b","v":"p"}"#,
            r#"{"fromId" : {"x":[1,"}"]} , "type":"client_signal"}"#,
            r#"{"type":"client_signal","fromId":12}"#,
            r#"{"type":"client_signal","fromId":null }"#,
        ] {
            let env = parse_envelope(text, 1024).unwrap_or_else(|| panic!("plain: {text}"));
            let out = relayed(text, &env, &from);
            let fast: Value = serde_json::from_str(&out).expect("valid JSON");
            let slow: Value =
                serde_json::from_str(&parse_inbound(text, 1024).expect("parse").into_relayed("coach \"1\""))
                    .expect("json");
            assert_eq!(fast, slow, "{text}");
            let full = parse_inbound(text, 1024).expect("parse");
            assert_eq!(env.kind, full.kind);
            assert_eq!(env.target, full.target().expect("target"), "{text}");
        }
    }

    /// Rule: anything unusual goes the full way (which then replies or rewrites); what
    /// the full parse refuses is never plain.
    #[test]
    fn unusual_frames_are_not_plain() {
        for text in [
            r#"{"type":"offer","toId":5}"#,
            r#"{"type":"offer","toId":"a","toId":"b"}"#,
            r#"{"type":"offer","type":"answer"}"#,
            r#"["offer"]"#,
            r#"{"type":"nope"}"#,
            r#"{"toId":"a"}"#,
            r#"{"type":"offer""#,
            r#"{"type":"offer"} trailing"#,
            r#"{"type":"client_signal","v":"\ud800"}"#,
            r#"{"type":"client_signal","v":1e400}"#,
            r#"{"type":"client_signal","\ud800":1}"#,
            r#"{"type":"client_signal","v":[{"w":-1e999}]}"#,
            r#"{"type":null}"#,
            r#"{"type":"offer","toId":{}}"#,
            "\"offer\"",
        ] {
            assert_eq!(parse_envelope(text, 1024), None, "{text}");
        }
        assert_eq!(parse_envelope(r#"{"type":"offer"}"#, 10), None, "over the cap");
        // toId wins over targetId; a null toId falls back to targetId in both paths.
        let env = parse_envelope(r#"{"type":"offer","targetId":"t","toId":"a"}"#, 1024).expect("plain");
        assert_eq!(env.target, Some("a"));
        let env = parse_envelope(r#"{"type":"offer","toId":null,"targetId":"t"}"#, 1024).expect("plain");
        assert_eq!(env.target, Some("t"));
    }

    /// Rule: only the top-level `fromId` is cut, wherever it is; a key written with
    /// escapes sends the frame the full way.
    #[test]
    fn the_top_level_from_id_is_cut_and_an_escaped_key_is_not_plain() {
        for (text, want) in [
            (
                r#"{"type":"offer","fromId":"a","x":{"fromId":"b"}}"#,
                r#"{"type":"offer","x":{"fromId":"b"},"fromId":"s"}"#,
            ),
            (r#"{"fromId":"a","type":"offer"}"#, r#"{"type":"offer","fromId":"s"}"#),
            (
                r#"{ "fromId" : [1,"}"] , "type":"offer" , "x":"\"fromId\":1" }"#,
                r#"{  "type":"offer" , "x":"\"fromId\":1" ,"fromId":"s"}"#,
            ),
            (
                r#"{"type":"offer" , "fromId":1 }"#,
                r#"{"type":"offer"  ,"fromId":"s"}"#,
            ),
        ] {
            let env = parse_envelope(text, 1024).unwrap_or_else(|| panic!("plain: {text}"));
            assert!(env.has_from_id, "{text}");
            assert_eq!(relayed(text, &env, "\"s\""), want, "{text}");
        }
        let env = parse_envelope(r#"{"fromId":1,"type":"offer"}"#, 1024).expect("plain");
        assert_eq!(env.kind, MessageKind::Offer);
        for text in [
            r#"{"type":"offer","from\u0049d":"a"}"#,
            r#"{"typ\u0065":"offer"}"#,
            r#"{"type":"off\u0065r"}"#,
            r#"{"type":"offer","toId":"\u0061"}"#,
            r#"{"type":"offer","fromId":1,"fromId":2}"#,
        ] {
            assert_eq!(parse_envelope(text, 1024), None, "{text}");
        }
    }

    /// Rule, over many frames (each prefix and one-byte change of a few seeds,
    /// deterministic): whenever the fast path takes a frame, the full parse takes
    /// it too, reads the same kind and target, and relays the same object.
    #[test]
    fn the_fast_path_agrees_with_the_full_parse() {
        let seeds = [
            r#"{"type":"client_signal","action":"bench","toId":"b","value":"ppp","fromId":"a"}"#,
            r#"{"fromId":null,"type":"offer","targetId":"t","offer":{"sdp":"v=0\r\n","type":"offer"}}"#,
            r#" {"type":"ice-candidate","candidate":[1,-2.5,true,null,{"x":"\u00e9"}],"toId":null} "#,
        ];
        let swaps = b"\"\\{}[]:,0-. tfnux";
        let (mut fast, mut checked) = (0, 0);
        let mut check = |text: &str| {
            checked += 1;
            let Some(env) = parse_envelope(text, 4096) else { return };
            fast += 1;
            let full = parse_inbound(text, 4096).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(env.kind, full.kind, "{text:?}");
            assert_eq!(env.target, full.target().expect("target"), "{text:?}");
            let spliced: Value = serde_json::from_str(&relayed(text, &env, "\"s\"")).expect("valid JSON");
            let rewritten: Value = serde_json::from_str(&full.into_relayed("s")).expect("json");
            assert_eq!(spliced, rewritten, "{text:?}");
        };
        for seed in seeds {
            crate::room::scan::variants(seed, swaps, &mut check);
        }
        assert!(checked > 3_000 && fast > 300, "{checked} checked, {fast} fast");
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
