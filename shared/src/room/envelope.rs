//! The relay's fast view of one inbound frame: its `type`, its target and whether the
//! sender wrote a `fromId`, read without building a map of its fields; and the frame
//! as relayed, the server's `fromId` spliced into the sender's own text.
//!
//! Only plain frames take this path: a JSON object whose `type`, `toId` and `targetId`
//! are strings (or absent), with no repeated envelope field and at most one `fromId`
//! (cut out of the text, then checked by a second parse: a client echoing a frame
//! it received sends one back). Anything else is `None` and goes through
//! [`crate::room::parse_inbound`], which gives every bad frame its error and rewrites
//! the rest; both paths relay the same fields.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::MessageKind;

/// The envelope of a plain frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// What the frame is.
    pub kind: MessageKind,
    /// `toId`, else `targetId`.
    pub target: Option<Cow<'a, str>>,
    /// The sender wrote a `fromId` (the server replaces it).
    pub has_from_id: bool,
}

/// Any JSON value, checked as strictly as `serde_json::Value` checks it (strings
/// decoded, so a lone surrogate fails; numbers parsed, so one out of range fails)
/// and kept nowhere.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_key::<Key<'de>>()?.is_some() {
            map.next_value::<Checked>()?;
        }
        Ok(Checked)
    }
}

/// An object key, decoded (borrowed unless it has escapes).
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// A string or null field of the envelope.
struct Text<'a>(Option<Cow<'a, str>>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Option::<Key<'de>>::deserialize(deserializer).map(|k| Text(k.map(|k| k.0)))
    }
}

/// The fields the relay reads; every other field is checked and skipped. A repeated
/// envelope field is an error (the full parse decides those).
struct Fields<'a> {
    kind: Option<Cow<'a, str>>,
    to_id: Option<Cow<'a, str>>,
    target_id: Option<Cow<'a, str>>,
    has_from_id: bool,
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
                let mut fields = Fields {
                    kind: None,
                    to_id: None,
                    target_id: None,
                    has_from_id: false,
                };
                let (mut kind, mut to, mut target) = (false, false, false);
                let twice = || A::Error::custom("repeated envelope field");
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    match key.as_ref() {
                        "type" if !kind => {
                            kind = true;
                            fields.kind = map.next_value::<Text<'de>>()?.0;
                        }
                        "toId" if !to => {
                            to = true;
                            fields.to_id = map.next_value::<Text<'de>>()?.0;
                        }
                        "targetId" if !target => {
                            target = true;
                            fields.target_id = map.next_value::<Text<'de>>()?.0;
                        }
                        "fromId" if !fields.has_from_id => {
                            fields.has_from_id = true;
                            map.next_value::<Checked>()?;
                        }
                        "type" | "toId" | "targetId" | "fromId" => return Err(twice()),
                        _ => {
                            map.next_value::<Checked>()?;
                        }
                    }
                }
                Ok(fields)
            }
        }
        deserializer.deserialize_map(FieldsVisitor)
    }
}

/// The envelope of `text` when it is a plain frame of at most `max_bytes`, else `None`.
pub fn parse_envelope(text: &str, max_bytes: usize) -> Option<Envelope<'_>> {
    if text.len() > max_bytes {
        return None;
    }
    let fields: Fields<'_> = serde_json::from_str(text).ok()?;
    let kind = MessageKind::from_wire(fields.kind.as_deref()?)?;
    Some(Envelope {
        kind,
        target: fields.to_id.or(fields.target_id),
        has_from_id: fields.has_from_id,
    })
}

/// The frame `text` with envelope `envelope` as relayed: its own `fromId` (if any) cut
/// out, `"fromId":from_json` added as its last field (`from_json` is the sender's id
/// already written as a JSON string). `None` when the `fromId` cannot be cut safely.
pub fn relayed(text: &str, envelope: &Envelope<'_>, from_json: &str) -> Option<String> {
    if !envelope.has_from_id {
        return Some(with_from_id(text, from_json));
    }
    let stripped = without_from_id(text)?;
    let check = parse_envelope(&stripped, usize::MAX)?;
    let same = !check.has_from_id && check.kind == envelope.kind && check.target == envelope.target;
    same.then(|| with_from_id(&stripped, from_json))
}

/// `text` without its member `"fromId": value`, when the key is written once, literally.
fn without_from_id(text: &str) -> Option<String> {
    const KEY: &str = "\"fromId\"";
    let mut hits = text.match_indices(KEY);
    let (key, _) = hits.next()?;
    if hits.next().is_some() {
        return None;
    }
    let after_key = &text[key + KEY.len()..];
    let colon = key + KEY.len() + (after_key.len() - after_key.trim_start().len());
    if !text[colon..].starts_with(':') {
        return None;
    }
    let mut values = serde_json::Deserializer::from_str(&text[colon + 1..]).into_iter::<IgnoredAny>();
    values.next()?.ok()?;
    let end = colon + 1 + values.byte_offset();
    let before = text[..key].trim_end();
    let (start, stop) = if let Some(comma) = before.strip_suffix(',') {
        (comma.len(), end)
    } else {
        let rest = &text[end..];
        let gap = rest.len() - rest.trim_start().len();
        if rest[gap..].starts_with(',') {
            (key, end + gap + 1)
        } else {
            (key, end)
        }
    };
    Some(format!("{}{}", &text[..start], &text[stop..]))
}

/// `text` (a plain frame without `fromId`) with `"fromId":from_json` added as its
/// last field.
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
            r#"{"type":"client_signal","toId":"a","fromId":"b","v":"p"}"#,
            r#"{"fromId" : {"x":[1,"}"]} , "type":"client_signal"}"#,
            r#"{"type":"client_signal","fromId":12}"#,
            r#"{"type":"client_signal","fromId":null }"#,
        ] {
            let env = parse_envelope(text, 1024).unwrap_or_else(|| panic!("plain: {text}"));
            let out = relayed(text, &env, &from).unwrap_or_else(|| panic!("relayed: {text}"));
            let fast: Value = serde_json::from_str(&out).expect("valid JSON");
            let slow: Value =
                serde_json::from_str(&parse_inbound(text, 1024).expect("parse").into_relayed("coach \"1\""))
                    .expect("json");
            assert_eq!(fast, slow, "{text}");
            let full = parse_inbound(text, 1024).expect("parse");
            assert_eq!(env.kind, full.kind);
            assert_eq!(env.target.as_deref(), full.target().expect("target"), "{text}");
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
        assert_eq!(env.target.as_deref(), Some("a"));
        let env = parse_envelope(r#"{"type":"offer","toId":null,"targetId":"t"}"#, 1024).expect("plain");
        assert_eq!(env.target.as_deref(), Some("t"));
    }

    /// Rule: a `fromId` that cannot be cut safely sends the frame the full way.
    #[test]
    fn an_unclear_from_id_is_not_cut() {
        for text in [
            r#"{"type":"offer","fromId":"a","x":{"fromId":"b"}}"#,
            r#"{"type":"offer","from\u0049d":"a"}"#,
            r#"{"type":"offer","from\u0049d":"a","x":"\"fromId\":1"}"#,
        ] {
            let env = parse_envelope(text, 1024).unwrap_or_else(|| panic!("plain: {text}"));
            assert!(env.has_from_id, "{text}");
            assert_eq!(relayed(text, &env, "\"s\""), None, "{text}");
        }
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
