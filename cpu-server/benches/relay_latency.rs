//! Round-trip latency of a 256-byte message through the room relay, against a
//! direct WebSocket echo peer on the same machine. Not a timed test: run with
//! `cargo bench -p cpu-server --bench relay_latency` and read the table.
//!
//! Rows:
//! - direct echo: client → echo server → client (2 socket hops);
//! - server ping: client → cpu-server `ping` → `pong` → client (2 hops, through the reader);
//! - relay: client A → cpu-server → client B, which answers → cpu-server → A
//!   (4 hops, two passes through the registry and the writer pumps).

#![allow(missing_docs, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use cpu_server::settings::{OrbArgs, RoomArgs, ServerArgs};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use shared::settings::DotEnv;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const ROUND_TRIPS: usize = 5_000;
const WARMUP: usize = 200;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench());
}

async fn bench() {
    let payload = "p".repeat(256 - r#"{"type":"client_signal","action":"bench","toId":"b","value":""}"#.len());

    let echo = spawn_echo().await;
    let mut direct = connect(&format!("ws://{echo}/")).await;
    let msg = json!({"type":"client_signal","action":"bench","toId":"b","value":payload}).to_string();
    assert_eq!(msg.len(), 256);
    let direct_rtts = measure(&mut direct, &msg).await;

    let (addr, stop) = spawn_server().await;
    let url = format!("ws://{addr}/ws-simple/bench");
    let mut pinger = connect(&url).await;
    let ping_rtts = measure(&mut pinger, r#"{"type":"ping"}"#).await;

    let mut a = connect(&url).await;
    let mut b = connect(&url).await;
    join(&mut a, "a").await;
    join(&mut b, "b").await;
    next_text(&mut a).await; // user-joined b
    tokio::spawn(async move {
        // B answers every message back to A at once.
        while let Some(Ok(Message::Text(text))) = b.next().await {
            let mut value: Value = serde_json::from_str(&text).unwrap();
            value["toId"] = json!("a");
            b.send(Message::text(value.to_string())).await.unwrap();
        }
    });
    let relay_rtts = measure(&mut a, &msg).await;
    let _ = stop.send(());

    println!();
    println!("round-trip latency, 256-byte JSON text frames, {ROUND_TRIPS} round trips each (after {WARMUP} warm-up)");
    println!("{:<48} {:>10} {:>10} {:>10}", "path", "median", "p99", "max");
    row("direct echo (client -> echo -> client)", &direct_rtts);
    row("server ping (client -> cpu-server -> client)", &ping_rtts);
    row("relay (A -> cpu-server -> B -> cpu-server -> A)", &relay_rtts);
}

/// Sends `msg` on `ws` and waits for the next text frame, over and over.
async fn measure(ws: &mut Ws, msg: &str) -> Vec<Duration> {
    for _ in 0..WARMUP {
        ws.send(Message::text(msg)).await.unwrap();
        next_text(ws).await;
    }
    let mut rtts = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS {
        let started = Instant::now();
        ws.send(Message::text(msg)).await.unwrap();
        next_text(ws).await;
        rtts.push(started.elapsed());
    }
    rtts.sort();
    rtts
}

fn row(name: &str, sorted: &[Duration]) {
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q) as usize];
    let us = |d: Duration| format!("{:.1} µs", d.as_secs_f64() * 1e6);
    println!(
        "{name:<48} {:>10} {:>10} {:>10}",
        us(at(0.5)),
        us(at(0.99)),
        us(*sorted.last().unwrap())
    );
}

async fn connect(url: &str) -> Ws {
    let (ws, _) = connect_async(url).await.unwrap();
    if let MaybeTlsStream::Plain(tcp) = ws.get_ref() {
        tcp.set_nodelay(true).unwrap();
    }
    ws
}

async fn join(ws: &mut Ws, user: &str) {
    let join = json!({"type":"join","userId":user,"userName":user,"userRole":"coach"});
    ws.send(Message::text(join.to_string())).await.unwrap();
    let discovery = next_text(ws).await;
    assert!(discovery.contains("peer-discovery"), "{discovery}");
}

async fn next_text(ws: &mut Ws) -> String {
    loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Text(text) => return text.to_string(),
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => continue,
        }
    }
}

/// A plain tokio-tungstenite echo server on 127.0.0.1.
async fn spawn_echo() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tcp.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// cpu-server in-process on 127.0.0.1:0, orbs by hand only.
async fn spawn_server() -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let args = ServerArgs {
        cpu_host: Some("127.0.0.1:0".to_owned()),
        rooms: RoomArgs {
            max_messages_per_second: Some("1000000".to_owned()),
            ..RoomArgs::default()
        },
        orbs: OrbArgs {
            orb_spawn_on: Some("manual".to_owned()),
            ..OrbArgs::default()
        },
        ..ServerArgs::default()
    };
    let settings = args.validate(&DotEnv::default(), false).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(cpu_server::run(listener, settings, async move {
        let _ = stopped.await;
    }));
    (addr, stop)
}
