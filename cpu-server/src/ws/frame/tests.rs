use super::*;

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A client frame: `first` is FIN/RSV/opcode, the payload masked with [`MASK`].
fn client(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

fn text(payload: &str) -> Vec<u8> {
    client(0x81, payload.as_bytes())
}

#[test]
fn a_text_frame_is_unmasked_in_place_whatever_its_length_encoding() {
    for len in [0, 5, 125, 126, 300, 65_535, 65_536] {
        let body = "x".repeat(len);
        let mut buf = text(&body);
        let total = buf.len();
        assert_eq!(Decoder::frame_len(&buf), Some(total));
        let mut d = Decoder::new(100_000);
        let got = d.decode(&mut buf).expect("valid").expect("complete");
        assert_eq!(got.consumed, total);
        assert_eq!(got.frame, Frame::Text(&body), "length {len}");
    }
}

#[test]
fn an_incomplete_frame_waits_for_more_bytes_at_every_cut() {
    let whole = text(r#"{"type":"ping"}"#);
    for cut in 0..whole.len() {
        let mut part = whole[..cut].to_vec();
        let mut d = Decoder::new(1000);
        assert!(d.decode(&mut part).expect("valid so far").is_none(), "cut at {cut}");
    }
}

#[test]
fn two_frames_in_one_read_are_decoded_one_after_the_other() {
    let mut buf = text("one");
    buf.extend(text("two"));
    let mut d = Decoder::new(1000);
    let first = d.decode(&mut buf).expect("valid").expect("complete");
    assert_eq!(first.frame, Frame::Text("one"));
    let rest = first.consumed;
    let second = d.decode(&mut buf[rest..]).expect("valid").expect("complete");
    assert_eq!(second.frame, Frame::Text("two"));
}

#[test]
fn the_cap_is_checked_from_the_header_before_the_payload_arrives() {
    let mut d = Decoder::new(100);
    let mut header_only = text(&"x".repeat(5000))[..8].to_vec();
    assert_eq!(
        d.decode(&mut header_only).expect_err("refused"),
        ProtocolError::TooLarge { size: 5000, max: 100 }
    );
    let mut at_cap = text(&"x".repeat(100));
    assert!(Decoder::new(100).decode(&mut at_cap).expect("ok").is_some());
}

#[test]
fn fragments_are_assembled_capped_by_their_total_and_interleave_with_control_frames() {
    let mut d = Decoder::new(10);
    let mut first = client(0x01, b"hello ");
    assert_eq!(
        d.decode(&mut first).expect("valid").expect("complete").frame,
        Frame::Fragment
    );
    let mut ping = client(0x89, b"p");
    assert_eq!(
        d.decode(&mut ping).expect("valid").expect("complete").frame,
        Frame::Ping(b"p")
    );
    let mut last = client(0x80, b"you");
    assert_eq!(
        d.decode(&mut last).expect("valid").expect("complete").frame,
        Frame::Text("hello you")
    );
    // The assembled message is forgotten: a new one may begin.
    let mut next = text("again");
    assert_eq!(
        d.decode(&mut next).expect("valid").expect("complete").frame,
        Frame::Text("again")
    );
    let mut big = client(0x01, b"123456");
    d.decode(&mut big).expect("ok");
    let mut over = client(0x80, b"78901");
    assert_eq!(
        d.decode(&mut over).expect_err("refused"),
        ProtocolError::TooLarge { size: 11, max: 10 }
    );
}

#[test]
fn protocol_breaches_name_their_close_code() {
    let cases: [(Vec<u8>, u16); 7] = [
        (vec![0x81, 0x03, b'a', b'b', b'c'], CLOSE_PROTOCOL), // unmasked
        (client(0xC1, b"x"), CLOSE_PROTOCOL),                 // RSV1 without an extension
        (client(0x83, b"x"), CLOSE_PROTOCOL),                 // unknown opcode
        (client(0x09, b"x"), CLOSE_PROTOCOL),                 // fragmented ping
        (client(0x80, b"x"), CLOSE_PROTOCOL),                 // continuation of nothing
        (client(0x81, &[0xff, 0xfe]), CLOSE_INVALID_UTF8),
        (client(0x88, &[0x03]), CLOSE_PROTOCOL), // one-byte close payload
    ];
    for (mut frame, code) in cases {
        let e = Decoder::new(1000).decode(&mut frame).expect_err("refused");
        assert_eq!(e.close_code(), code, "{e}");
    }
    let mut d = Decoder::new(1000);
    d.decode(&mut client(0x01, b"a")).expect("ok");
    let e = d.decode(&mut text("b")).expect_err("refused");
    assert_eq!(e.close_code(), CLOSE_PROTOCOL, "a new message inside a fragmented one");
}

#[test]
fn close_binary_and_pong_are_reported() {
    let mut close = client(0x88, &[0x03, 0xe8, b'b', b'y', b'e']);
    assert_eq!(
        Decoder::new(10)
            .decode(&mut close)
            .expect("valid")
            .expect("complete")
            .frame,
        Frame::Close(Some(1000))
    );
    let mut empty_close = client(0x88, b"");
    assert_eq!(
        Decoder::new(10)
            .decode(&mut empty_close)
            .expect("valid")
            .expect("complete")
            .frame,
        Frame::Close(None)
    );
    let mut binary = client(0x82, b"\x00\x01");
    assert_eq!(
        Decoder::new(10)
            .decode(&mut binary)
            .expect("valid")
            .expect("complete")
            .frame,
        Frame::Binary
    );
    let mut pong = client(0x8A, b"");
    assert_eq!(
        Decoder::new(10)
            .decode(&mut pong)
            .expect("valid")
            .expect("complete")
            .frame,
        Frame::Pong
    );
}

#[test]
fn server_frames_are_unmasked_with_the_shortest_length_encoding() {
    let mut out = Vec::new();
    put_text(&mut out, b"hi");
    assert_eq!(out, [0x81, 2, b'h', b'i']);
    out.clear();
    put_text(&mut out, &[b'x'; 200]);
    assert_eq!(out[..4], [0x81, 126, 0, 200]);
    assert_eq!(out.len(), 204);
    out.clear();
    put_text(&mut out, &vec![b'x'; 70_000]);
    assert_eq!(out[..2], [0x81, 127]);
    assert_eq!(u64::from_be_bytes(out[2..10].try_into().expect("ok")), 70_000);
    out.clear();
    put_close(&mut out, 1008, "slow consumer");
    assert_eq!(out[..4], [0x88, 15, 0x03, 0xf0]);
    out.clear();
    put_close(&mut out, 1000, &"é".repeat(100));
    assert!(out.len() <= 127, "a close frame fits a control frame");
    assert!(std::str::from_utf8(&out[4..]).is_ok(), "cut on a character boundary");
    out.clear();
    put_pong(&mut out, b"abc");
    put_ping(&mut out);
    assert_eq!(out, [0x8A, 3, b'a', b'b', b'c', 0x89, 0]);
}

#[test]
fn a_text_frame_from_parts_is_the_frame_of_their_concatenation_and_gives_back_a_large_buffer() {
    let mut frame = TextFrame::default();
    for parts in [
        &["{", "\"a\":1", "}"][..],
        &[&"x".repeat(200), "y"],
        &[&"z".repeat(70_000)],
        &[],
    ] {
        frame.encode(parts);
        let mut want = Vec::new();
        put_text(&mut want, parts.concat().as_bytes());
        assert_eq!(frame.bytes(), want);
        assert_eq!(frame.payload_len(), parts.concat().len());
    }
    frame.encode(&["{}"]);
    assert!(
        frame.bytes.capacity() <= KEEP_FRAME,
        "the 70,000-byte buffer is not kept"
    );
}
