//! Newline-delimited JSON codec with a per-line size cap.
//!
//! A garbled or oversized line becomes an [`IpcEvent::Invalid`] and decoding
//! carries on with the next line; end of stream is the end of the framed
//! stream (`None`), distinct from any error. The buffer never holds more than
//! the cap plus one read: an oversized line is discarded as it arrives.

use std::marker::PhantomData;

use bytes::{BufMut, BytesMut};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio_util::codec::{Decoder, Encoder};

use super::IpcMessage;

/// One decoded line.
#[derive(Debug, Clone, PartialEq)]
pub enum IpcEvent<T> {
    /// A message of a known type.
    Message(T),
    /// A well-formed object with a `type` this side does not know (ignored by protocol).
    Unknown {
        /// Its `type`.
        type_name: String,
        /// The whole object.
        fields: Map<String, Value>,
    },
    /// A line that could not be used; the channel carries on.
    Invalid(IpcLineError),
}

/// Why one line was unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpcLineError {
    /// The line exceeded the cap and was discarded.
    #[error("line longer than {max} bytes discarded")]
    TooLong {
        /// The cap.
        max: usize,
    },
    /// Not JSON (or not UTF-8).
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// Not an object with a string `type`.
    #[error("not an object with a string \"type\"")]
    MissingType,
    /// A known type with fields of the wrong shape.
    #[error("invalid {type_name}: {reason}")]
    InvalidFields {
        /// The message type.
        type_name: String,
        /// What was wrong.
        reason: String,
    },
}

/// Decodes `In` lines and encodes `Out` lines.
#[derive(Debug)]
pub struct IpcCodec<In, Out> {
    max_line: usize,
    /// Bytes of the buffer already searched for a newline.
    scanned: usize,
    /// Inside an oversized line: drop bytes until the next newline.
    discarding: bool,
    _types: PhantomData<fn(Out) -> In>,
}

impl<In, Out> IpcCodec<In, Out> {
    /// A codec whose lines may be at most `max_line` bytes (newline excluded).
    pub fn new(max_line: usize) -> Self {
        Self {
            max_line,
            scanned: 0,
            discarding: false,
            _types: PhantomData,
        }
    }
}

impl<In: IpcMessage, Out> IpcCodec<In, Out> {
    /// One line (without its newline) as this codec reads it: the same rules for a
    /// message carried some other way (a WebSocket text frame).
    pub fn parse_line(line: &[u8]) -> IpcEvent<In> {
        let value: Value = match serde_json::from_slice(line) {
            Ok(value) => value,
            Err(e) => return IpcEvent::Invalid(IpcLineError::InvalidJson(e.to_string())),
        };
        let Value::Object(fields) = value else {
            return IpcEvent::Invalid(IpcLineError::MissingType);
        };
        let Some(type_name) = fields.get("type").and_then(Value::as_str).map(str::to_owned) else {
            return IpcEvent::Invalid(IpcLineError::MissingType);
        };
        if !In::TYPES.contains(&type_name.as_str()) {
            return IpcEvent::Unknown { type_name, fields };
        }
        match serde_json::from_value(Value::Object(fields)) {
            Ok(message) => IpcEvent::Message(message),
            Err(e) => IpcEvent::Invalid(IpcLineError::InvalidFields {
                type_name,
                reason: e.to_string(),
            }),
        }
    }
}

impl<In: IpcMessage, Out> Decoder for IpcCodec<In, Out> {
    type Item = IpcEvent<In>;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        loop {
            let newline = buf[self.scanned..]
                .iter()
                .position(|b| *b == b'\n')
                .map(|i| i + self.scanned);
            match newline {
                Some(end) => {
                    let line = buf.split_to(end + 1);
                    self.scanned = 0;
                    if std::mem::take(&mut self.discarding) {
                        return Ok(Some(IpcEvent::Invalid(IpcLineError::TooLong { max: self.max_line })));
                    }
                    let line = trim_line(&line[..end]);
                    if line.is_empty() {
                        continue;
                    }
                    if line.len() > self.max_line {
                        return Ok(Some(IpcEvent::Invalid(IpcLineError::TooLong { max: self.max_line })));
                    }
                    return Ok(Some(Self::parse_line(line)));
                }
                None if buf.len() > self.max_line + 1 => {
                    // No newline within the cap: drop what we have and keep dropping.
                    buf.clear();
                    self.scanned = 0;
                    self.discarding = true;
                    return Ok(None);
                }
                None => {
                    self.scanned = buf.len();
                    return Ok(None);
                }
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        if let Some(event) = self.decode(buf)? {
            return Ok(Some(event));
        }
        // A last line without its newline still counts; then the stream ends.
        self.scanned = 0;
        if std::mem::take(&mut self.discarding) {
            buf.clear();
            return Ok(Some(IpcEvent::Invalid(IpcLineError::TooLong { max: self.max_line })));
        }
        let rest = buf.split();
        let line = trim_line(&rest);
        if line.is_empty() {
            Ok(None)
        } else {
            Ok(Some(Self::parse_line(line)))
        }
    }
}

impl<In, Out: Serialize> Encoder<Out> for IpcCodec<In, Out> {
    type Error = std::io::Error;

    fn encode(&mut self, item: Out, dst: &mut BytesMut) -> Result<(), Self::Error> {
        let json = serde_json::to_vec(&item).map_err(std::io::Error::other)?;
        if json.len() > self.max_line {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "IPC message of {} bytes exceeds the {}-byte line cap",
                    json.len(),
                    self.max_line
                ),
            ));
        }
        dst.reserve(json.len() + 1);
        dst.put_slice(&json);
        dst.put_u8(b'\n');
        Ok(())
    }
}

fn trim_line(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.trim_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::{ManagerToOrb, OrbToManager, ShutdownGraceful};
    use futures_like::collect;

    type OrbSide = IpcCodec<ManagerToOrb, OrbToManager>;
    type ManagerSide = IpcCodec<OrbToManager, ManagerToOrb>;

    mod futures_like {
        use super::*;
        /// Feeds `chunks` one at a time, then EOF; returns every event.
        pub fn collect<C: Decoder>(codec: &mut C, chunks: &[&[u8]]) -> Vec<C::Item>
        where
            C::Error: std::fmt::Debug,
        {
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            for chunk in chunks {
                buf.extend_from_slice(chunk);
                while let Some(item) = codec.decode(&mut buf).expect("decode") {
                    out.push(item);
                }
            }
            while let Some(item) = codec.decode_eof(&mut buf).expect("decode_eof") {
                out.push(item);
            }
            out
        }
    }

    #[test]
    fn garbled_line_then_good_line() {
        let mut codec = ManagerSide::new(1024);
        let events = collect(
            &mut codec,
            &[b"{garbage\n", b"{\"type\":\"orb_shutdown\",\"reason\":\"x\"}\n"],
        );
        assert_eq!(events.len(), 2);
        assert!(matches!(events[0], IpcEvent::Invalid(IpcLineError::InvalidJson(_))));
        assert!(matches!(&events[1], IpcEvent::Message(OrbToManager::OrbShutdown(s)) if s.reason == "x"));
    }

    #[test]
    fn line_split_across_reads_is_joined() {
        let mut codec = ManagerSide::new(1024);
        let events = collect(
            &mut codec,
            &[b"{\"type\":\"orb_sh", b"utdown\",\"reason\":\"y\"}", b"\n"],
        );
        assert!(matches!(&events[..], [IpcEvent::Message(OrbToManager::OrbShutdown(s))] if s.reason == "y"));
    }

    #[test]
    fn oversized_line_is_discarded_and_the_next_one_decodes() {
        let mut codec = ManagerSide::new(48);
        let long = vec![b'x'; 100];
        let events = collect(
            &mut codec,
            &[&long, &long, b"\n", b"{\"type\":\"orb_shutdown\",\"reason\":\"z\"}\n"],
        );
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events[0], IpcEvent::Invalid(IpcLineError::TooLong { max: 48 }));
        assert!(matches!(&events[1], IpcEvent::Message(OrbToManager::OrbShutdown(_))));
    }

    #[test]
    fn buffer_stays_bounded_while_discarding() {
        let mut codec = ManagerSide::new(16);
        let mut buf = BytesMut::new();
        for _ in 0..100 {
            buf.extend_from_slice(&[b'a'; 10]);
            assert!(codec.decode(&mut buf).expect("decode").is_none());
            assert!(buf.len() <= 16 + 11, "buffer grew to {}", buf.len());
        }
    }

    #[test]
    fn unknown_type_and_missing_type_are_distinct() {
        let mut codec = OrbSide::new(1024);
        let events = collect(&mut codec, &[b"{\"type\":\"future_thing\",\"a\":1}\n{\"a\":1}\n[1]\n"]);
        assert!(matches!(&events[0], IpcEvent::Unknown { type_name, .. } if type_name == "future_thing"));
        assert_eq!(events[1], IpcEvent::Invalid(IpcLineError::MissingType));
        assert_eq!(events[2], IpcEvent::Invalid(IpcLineError::MissingType));
    }

    #[test]
    fn known_type_with_bad_fields_is_invalid() {
        let mut codec = OrbSide::new(1024);
        let events = collect(
            &mut codec,
            &[b"{\"type\":\"shutdown_graceful\",\"timeout\":\"soon\"}\n"],
        );
        assert!(matches!(
            &events[0],
            IpcEvent::Invalid(IpcLineError::InvalidFields { .. })
        ));
    }

    #[test]
    fn last_line_without_newline_counts_then_eof() {
        let mut codec = OrbSide::new(1024);
        let events = collect(&mut codec, &[b"{\"type\":\"participant_left\",\"userId\":\"u\"}"]);
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn encode_writes_one_line() {
        let mut codec = ManagerSide::new(1024);
        let mut buf = BytesMut::new();
        let msg = ManagerToOrb::ShutdownGraceful(ShutdownGraceful {
            reason: "restart".into(),
            timeout: 5000,
            extra: Map::new(),
        });
        codec.encode(msg.clone(), &mut buf).expect("encode");
        assert_eq!(buf.iter().filter(|b| **b == b'\n').count(), 1);
        assert!(buf.ends_with(b"\n"));
        let mut orb = OrbSide::new(1024);
        assert_eq!(orb.decode(&mut buf).expect("decode"), Some(IpcEvent::Message(msg)));
    }
}
