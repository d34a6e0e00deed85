//! The outbox's ownership of a socket's write side, against a real loopback
//! socket: direct writes, queueing behind anything pending, partial writes whose
//! rest goes first, kicks, the end of the queue, and the bound.

use std::task::{Context, Waker};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use super::*;

/// A connected loopback pair: (the server's side, shared as a socket's is; the peer).
async fn pair() -> (Arc<TcpStream>, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let peer = TcpStream::connect(listener.local_addr().expect("addr"))
        .await
        .expect("connect");
    let (server, _) = listener.accept().await.expect("accept");
    (Arc::new(server), peer)
}

/// The texts of the server frames in `bytes` (unmasked), and whether they end on a boundary.
fn texts(mut bytes: &[u8]) -> (Vec<String>, bool) {
    let mut out = Vec::new();
    // Bounded: each round consumes a frame or returns.
    loop {
        let [first, second, ..] = bytes else {
            return (out, bytes.is_empty());
        };
        let (len, skip) = match second & 0x7f {
            126 if bytes.len() >= 4 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 if bytes.len() >= 10 => (
                u64::from_be_bytes(bytes[2..10].try_into().expect("8 bytes")) as usize,
                10,
            ),
            126 | 127 => return (out, false),
            n => (n as usize, 2),
        };
        if bytes.len() < skip + len {
            return (out, false);
        }
        assert_eq!(*first, 0x81, "a final text frame");
        out.push(String::from_utf8(bytes[skip..skip + len].to_vec()).expect("utf-8"));
        bytes = &bytes[skip + len..];
    }
}

/// Everything the peer can read within `quiet` of silence.
async fn read_all(peer: &mut TcpStream, quiet: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    // Bounded: each round reads bytes or ends on `quiet`; the writer stopped.
    while let Ok(Ok(n)) = tokio::time::timeout(quiet, peer.read(&mut chunk)).await {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&chunk[..n]);
    }
    got
}

fn context() -> Context<'static> {
    Context::from_waker(Waker::noop())
}

#[tokio::test]
async fn a_frame_with_nothing_ahead_is_written_by_its_sender() {
    let (server, mut peer) = pair().await;
    let outbox = Outbox::new(4, Some(server));
    outbox.try_text(b"hello").expect("sent");
    assert!(outbox.take_texts().is_empty(), "nothing queued");
    let mut frame = [0u8; 7];
    peer.read_exact(&mut frame).await.expect("read");
    assert_eq!(&frame, b"\x81\x05hello");
    assert_eq!(outbox.lock().writer, Writer::Idle, "the socket is free again");
}

/// Rule: a direct write moves the stream out and gives it back (no clone), so
/// the outbox holds it between writes; a write still under way when the socket
/// ends lets go of it instead, and nobody holds it after the end.
#[tokio::test]
async fn direct_writes_give_the_stream_back_and_one_under_way_at_the_end_lets_go() {
    let (server, mut peer) = pair().await;
    let outbox = Outbox::new(4, Some(Arc::clone(&server)));
    for _ in 0..3 {
        outbox.try_text(b"hi").expect("sent");
    }
    assert!(outbox.take_texts().is_empty(), "every one written directly");
    assert_eq!(Arc::strong_count(&server), 2, "the outbox holds the stream again");
    // A sender claimed the socket and took the stream; the socket ends meanwhile.
    let stream = {
        let mut state = outbox.lock();
        state.writer = Writer::Sender;
        state.direct.take().expect("held between writes")
    };
    let _ = outbox.end(Ending::Drop);
    outbox.write_direct(stream, b"\x81\x02", b"ok");
    assert_eq!(Arc::strong_count(&server), 1, "let go by the sender that wrote last");
    assert!(outbox.lock().direct.is_none());
    let (got, whole) = texts(&read_all(&mut peer, Duration::from_millis(200)).await);
    assert_eq!(got, ["hi", "hi", "hi", "ok"]);
    assert!(whole);
}

#[tokio::test]
async fn a_frame_queues_behind_anything_the_task_holds_and_order_holds() {
    let (server, mut peer) = pair().await;
    let outbox = Outbox::new(8, Some(server));
    // The task's own frame (a pong) is queued: senders must not overtake it.
    outbox.put_own(|out| frame::put_text(out, b"first"), false);
    outbox.try_text(b"second").expect("queued");
    outbox.try_text(b"third").expect("queued");
    let mut wbuf = Vec::new();
    assert_eq!(outbox.turn(&context(), &mut wbuf, 0, 1 << 16), Turn::Write);
    let (queued, whole) = texts(&wbuf);
    assert_eq!(
        (queued, whole),
        (vec!["first".into(), "second".into(), "third".into()], true)
    );
    // Still the task's until it wrote them: a sender queues behind.
    outbox.try_text(b"fourth").expect("queued");
    assert!(outbox.written(), "one more frame came meanwhile");
    let mut more = Vec::new();
    assert_eq!(outbox.turn(&context(), &mut more, 0, 1 << 16), Turn::Write);
    assert_eq!(texts(&more).0, ["fourth"]);
    assert!(!outbox.written());
    outbox.try_text(b"fifth").expect("direct");
    let mut frame = [0u8; 7];
    peer.read_exact(&mut frame).await.expect("read");
    assert_eq!(&frame, b"\x81\x05fifth");
}

#[tokio::test]
async fn a_partial_direct_write_leaves_its_rest_first_and_nothing_is_lost_or_reordered() {
    let (server, mut peer) = pair().await;
    let outbox = Outbox::new(10_000, Some(server));
    let mut sent = fill(&outbox);
    assert_eq!(outbox.lock().writer, Writer::Task, "the task owns the rest");
    outbox.try_text(b"last").expect("queued");
    sent.push("last".into());
    let mut wbuf = Vec::new();
    assert_eq!(outbox.turn(&context(), &mut wbuf, 0, usize::MAX), Turn::Write);
    let mut got = read_all(&mut peer, Duration::from_millis(300)).await;
    got.extend_from_slice(&wbuf);
    let (received, whole) = texts(&got);
    assert!(whole, "the stream ends on a frame boundary");
    assert_eq!(received.len(), sent.len());
    assert!(received == sent, "every frame once, in order");
}

/// Sends 60 kB frames to a peer that does not read until frames queue behind a
/// partial write; the frames sent.
fn fill(outbox: &Outbox) -> Vec<String> {
    let body = "x".repeat(60_000);
    let mut sent = Vec::new();
    // Bounded by the count: loopback buffers hold a few MiB.
    for i in 0..400 {
        let text = format!("{i:04}{body}");
        outbox.try_text(text.as_bytes()).expect("sent or queued");
        sent.push(text);
        if outbox.lock().frames >= 3 {
            break;
        }
    }
    assert!(outbox.lock().frames >= 3, "the socket filled up and frames were queued");
    sent
}

#[tokio::test]
async fn a_kick_drops_the_queue_but_not_the_rest_of_a_frame_begun() {
    let (server, mut peer) = pair().await;
    let outbox = Outbox::new(10_000, Some(server));
    let sent = fill(&outbox);
    assert!(outbox.kick((1008, "slow consumer")));
    assert_eq!(outbox.end(Ending::Drop), Some(Kick::from((1008, "slow consumer"))));
    let mut wbuf = Vec::new();
    assert_eq!(outbox.turn(&context(), &mut wbuf, 0, usize::MAX), Turn::Write);
    let mut got = read_all(&mut peer, Duration::from_millis(300)).await;
    got.extend_from_slice(&wbuf);
    let (received, whole) = texts(&got);
    assert!(whole, "the stream ends on a frame boundary: a close frame may follow");
    assert!(received.len() < sent.len(), "the queued frames were dropped");
    assert!(
        received[..] == sent[..received.len()],
        "what went out, whole and in order"
    );
}

#[tokio::test]
async fn a_kick_overtakes_the_queue_and_an_ended_outbox_takes_and_writes_nothing() {
    let (server, mut peer) = pair().await;
    let outbox = Outbox::new(8, Some(server));
    outbox.put_own(|out| frame::put_text(out, b"queued"), false);
    assert!(outbox.kick((1008, "slow consumer")));
    assert!(!outbox.kick((4000, "replaced")), "the first kick wins");
    let kick = Kick::from((1008, "slow consumer"));
    assert_eq!(outbox.turn(&context(), &mut Vec::new(), 0, 1 << 16), Turn::Kicked(kick));
    assert_eq!(outbox.end(Ending::Drop), Some(kick));
    assert!(outbox.take_texts().is_empty(), "the kick dropped the queue");
    assert_eq!(outbox.try_text(b"late"), Err(QueueError::Closed));
    assert!(!outbox.kick((1001, "shutdown")), "no kick once ended");
    assert!(outbox.lock().direct.is_none(), "the socket is let go");
    drop(outbox);
    // The server's side was the outbox's last handle: the peer sees its end, no frame.
    assert!(read_all(&mut peer, Duration::from_millis(300)).await.is_empty());
}

#[tokio::test]
async fn the_readers_own_close_keeps_what_was_queued_before_it() {
    let outbox = Outbox::new(8, None);
    outbox.try_text(b"error reply").expect("queued");
    outbox.close_after_queued((1009, "message too large"));
    assert_eq!(outbox.try_text(b"after"), Err(QueueError::Closed));
    assert_eq!(outbox.end(Ending::Flush), Some(Kick::from((1009, "message too large"))));
    assert_eq!(outbox.take_texts(), ["error reply"]);
}

#[test]
fn the_bound_counts_frames_a_pong_is_skipped_when_full_and_a_close_never() {
    let outbox = Outbox::new(2, None);
    outbox.try_text(b"1").expect("queued");
    outbox.try_text(b"2").expect("queued");
    assert_eq!(outbox.try_text(b"3"), Err(QueueError::Full));
    outbox.put_own(|out| frame::put_pong(out, b""), true);
    assert_eq!(outbox.lock().frames, 2, "the pong was skipped");
    outbox.put_own(|out| frame::put_close(out, 1000, ""), false);
    assert_eq!(outbox.lock().frames, 3, "the close was queued");
}

#[test]
fn while_a_sender_writes_others_queue_and_the_task_waits_to_be_woken() {
    let outbox = Outbox::new(8, None);
    outbox.lock().writer = Writer::Sender;
    outbox.try_text(b"behind").expect("queued");
    let mut wbuf = Vec::new();
    assert_eq!(outbox.turn(&context(), &mut wbuf, 0, 1 << 16), Turn::SenderWrites);
    assert!(wbuf.is_empty(), "nothing taken while a sender writes");
    assert!(outbox.lock().waker.is_some(), "the task is woken when it is done");
}
