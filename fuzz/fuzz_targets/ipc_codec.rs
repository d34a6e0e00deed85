//! The orb ↔ manager IPC line codec on arbitrary bytes, in both directions
//! (what the manager decodes from an orb, and what an orb decodes from the
//! manager), fed in arbitrary chunks: never a panic, never an unbounded buffer.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use shared::ipc::{IpcCodec, IpcEvent, IpcMessage, ManagerToOrb, OrbToManager};
use tokio_util::codec::{Decoder, Encoder};

/// A small cap so the oversized-line path is reached often.
const MAX_LINE: usize = 512;

fn run<T: IpcMessage>(data: &[u8]) {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut codec: IpcCodec<T, T> = IpcCodec::new(MAX_LINE);
    let mut buf = BytesMut::new();
    let mut decoded = Vec::new();
    for piece in rest.chunks(chunk) {
        buf.extend_from_slice(piece);
        while let Some(event) = codec.decode(&mut buf).expect("decode never fails") {
            decoded.push(event);
        }
        assert!(
            buf.len() <= MAX_LINE + 1 + chunk,
            "buffer grew past the cap: {}",
            buf.len()
        );
    }
    while let Some(event) = codec.decode_eof(&mut buf).expect("decode_eof never fails") {
        decoded.push(event);
    }
    // Whatever was understood can be sent back out (or refused for its size).
    let mut out = BytesMut::new();
    for event in decoded {
        if let IpcEvent::Message(message) = event {
            let _ = codec.encode(message, &mut out);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    run::<OrbToManager>(data);
    run::<ManagerToOrb>(data);
});
