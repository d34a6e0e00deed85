//! The other ends of the suite's relay measurements: raw WebSocket clients,
//! a tokio-tungstenite echo peer (run as its own process so its CPU can be
//! measured), Debian's nginx as a WebSocket proxy, and the round-trip loops.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use crate::process::Proc;

/// A raw client socket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The 256-byte relayed message (a `client_signal` to `b`).
pub fn message_256() -> String {
    let shell = r#"{"type":"client_signal","action":"bench","toId":"b","value":""}"#;
    let msg = format!(
        r#"{{"type":"client_signal","action":"bench","toId":"b","value":"{}"}}"#,
        "p".repeat(256 - shell.len())
    );
    debug_assert_eq!(msg.len(), 256);
    msg
}

/// Connects within 10 s with `TCP_NODELAY`.
pub async fn connect(url: &str) -> Result<Ws, String> {
    let (ws, _) = tokio::time::timeout(Duration::from_secs(10), connect_async(url))
        .await
        .map_err(|_| format!("connect {url}: timeout"))?
        .map_err(|e| format!("connect {url}: {e}"))?;
    if let MaybeTlsStream::Plain(tcp) = ws.get_ref() {
        let _ = tcp.set_nodelay(true);
    }
    Ok(ws)
}

/// The next text frame within `timeout`; `None` on close, error or timeout.
pub async fn next_text(ws: &mut Ws, timeout: Duration) -> Option<String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return Some(text.to_string()),
            Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) | Err(_) => return None,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// Sends a text frame; false when the socket is gone.
pub async fn send(ws: &mut Ws, text: &str) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(10), ws.send(Message::text(text))).await,
        Ok(Ok(()))
    )
}

/// Connects and joins `url` as `user` with `role`; waits for `peer-discovery`.
pub async fn join(url: &str, user: &str, role: &str) -> Result<Ws, String> {
    let mut ws = connect(url).await?;
    let join = serde_json::json!({"type":"join","userId":user,"userName":user,"userRole":role});
    send(&mut ws, &join.to_string()).await;
    loop {
        let text = next_text(&mut ws, Duration::from_secs(10))
            .await
            .ok_or_else(|| format!("no peer-discovery on {url}"))?;
        if text.contains("peer-discovery") {
            return Ok(ws);
        }
        if text.contains(r#""type":"error""#) {
            return Err(format!("join {url}: {text}"));
        }
    }
}

/// Room pairs: in each room of `urls`, `a` (returned, in this process) measures and
/// `b` answers every `client_signal` back to `a`. The `b`s run in a child process
/// (this executable with `--responders URL...`), as the echo peer does for the
/// references, so that both sides of each comparison have the same process layout.
pub async fn relay_pairs(dir: &Path, urls: &[String]) -> Result<(Proc, Vec<Ws>), String> {
    let mut sockets = Vec::with_capacity(urls.len());
    for url in urls {
        sockets.push(join(url, "a", "client").await?);
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut command = Command::new(exe);
    command.arg("--responders").args(urls);
    let proc = Proc::spawn("responders", command, dir);
    for a in &mut sockets {
        // a learns that b joined.
        loop {
            let text = next_text(a, Duration::from_secs(20))
                .await
                .ok_or("responder b did not join")?;
            if text.contains("user-joined") {
                break;
            }
        }
    }
    Ok((proc, sockets))
}

/// Joins every room of `urls` as `b` and answers each `client_signal` back to `a`
/// until the sockets close (the suite runs this in a child process).
pub fn run_responders(urls: &[String]) {
    let Ok(runtime) = tokio::runtime::Builder::new_multi_thread().enable_all().build() else {
        return;
    };
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for url in urls {
            let Ok(mut b) = join(url, "b", "client").await else {
                continue;
            };
            tasks.push(tokio::spawn(async move {
                while let Some(text) = next_text(&mut b, Duration::from_secs(3600)).await {
                    if !text.contains("client_signal") {
                        continue;
                    }
                    let reply = text.replace(r#""toId":"b""#, r#""toId":"a""#);
                    if !send(&mut b, &reply).await {
                        break;
                    }
                }
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
    });
}

/// `count` round trips of `msg` on `ws` (after `warmup`), in ms; stops early on a lost socket.
pub async fn round_trips(ws: &mut Ws, msg: &str, warmup: usize, count: usize) -> Vec<f64> {
    for _ in 0..warmup {
        if !send(ws, msg).await || next_text(ws, Duration::from_secs(10)).await.is_none() {
            return Vec::new();
        }
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let start = Instant::now();
        if !send(ws, msg).await || next_text(ws, Duration::from_secs(10)).await.is_none() {
            break;
        }
        out.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    out
}

/// Round trips on every socket at once until `duration` passes: the total count
/// and, per socket, the round-trip times (ms).
pub async fn ping_pong(sockets: Vec<Ws>, msg: &str, duration: Duration) -> (u64, Vec<f64>) {
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for mut ws in sockets {
        let msg = msg.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut rtts = Vec::new();
            while Instant::now() < deadline {
                let start = Instant::now();
                if !send(&mut ws, &msg).await || next_text(&mut ws, Duration::from_secs(10)).await.is_none() {
                    break;
                }
                rtts.push(start.elapsed().as_secs_f64() * 1000.0);
            }
            rtts
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap_or_default());
    }
    (all.len() as u64, all)
}

/// Serves a WebSocket echo on `addr` until killed (the suite runs this in a child process).
pub fn run_echo_server(addr: &str) {
    let Ok(runtime) = tokio::runtime::Builder::new_multi_thread().enable_all().build() else {
        return;
    };
    runtime.block_on(async {
        let Ok(listener) = TcpListener::bind(addr).await else {
            return;
        };
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
}

/// Starts the echo peer (this executable with `--echo-server ADDR`) on a free port.
pub fn start_echo(dir: &Path) -> (Proc, u16) {
    let port = crate::free_port();
    let exe = std::env::current_exe().expect("current_exe");
    let mut command = Command::new(exe);
    command.args(["--echo-server", &format!("127.0.0.1:{port}")]);
    let proc = Proc::spawn("echo-peer", command, dir);
    wait_port(port);
    (proc, port)
}

/// Debian's nginx in `dir` (`daemon off`, loopback only) proxying WebSockets to `upstream`.
pub fn start_nginx(dir: &Path, upstream: u16) -> Result<(Proc, u16), String> {
    let port = crate::free_port();
    let d = dir.display();
    let conf = format!(
        "daemon off;\nuser root;\nworker_processes auto;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 16384; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
           server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://127.0.0.1:{upstream};\n\
               proxy_http_version 1.1;\n      proxy_set_header Upgrade $http_upgrade;\n\
               proxy_set_header Connection \"upgrade\";\n      proxy_read_timeout 3600s;\n      tcp_nodelay on;\n    }}\n  }}\n}}\n"
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or("nginx is not installed (apt-get install nginx)")?;
    let mut command = Command::new(nginx);
    command.args([
        "-p",
        &d.to_string(),
        "-e",
        &format!("{d}/error.log"),
        "-c",
        &conf_path.display().to_string(),
    ]);
    let mut proc = Proc::spawn("nginx", command, dir);
    if !wait_port(port) {
        let _ = proc.wait_exit(Duration::ZERO);
        return Err(format!(
            "nginx did not listen: {}{}",
            proc.stderr(),
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        ));
    }
    Ok((proc, port))
}

/// Waits (≤ 10 s) until something accepts on 127.0.0.1:`port`.
pub fn wait_port(port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}
