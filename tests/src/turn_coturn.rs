//! A real coturn (`turnserver`) on loopback with `use-auth-secret`, and
//! `turnutils_uclient` to prove credentials allocate relays on it.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::deploy_tools::{p, require_tool};
use crate::process::Proc;

/// A running coturn, killed on drop.
pub struct Coturn {
    /// The process.
    pub proc: Proc,
    /// Its TURN port on 127.0.0.1 (UDP and TCP).
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Coturn {
    /// Starts coturn on a free 127.0.0.1 port with `static-auth-secret = secret`
    /// and waits (bounded) until its TCP listener accepts.
    pub fn start(secret: &str) -> Self {
        let turnserver = require_tool("turnserver", "coturn");
        let dir = tempfile::tempdir().expect("tempdir");
        let port = crate::free_port();
        // A relay range of its own, derived from the port so parallel runs rarely overlap.
        let min_port = 20_000 + (port % 200) * 100;
        let mut command = Command::new(turnserver);
        command
            .current_dir(dir.path())
            .arg("--listening-ip=127.0.0.1")
            .arg("--relay-ip=127.0.0.1")
            .arg(format!("--listening-port={port}"))
            .arg(format!("--min-port={min_port}"))
            .arg(format!("--max-port={}", min_port + 99))
            .arg("--use-auth-secret")
            .arg(format!("--static-auth-secret={secret}"))
            .arg("--realm=myultracoach.test")
            .arg("--no-tls")
            .arg("--no-dtls")
            .arg("--allow-loopback-peers")
            .arg("--no-cli")
            .arg("--simple-log")
            .arg(format!("--log-file={}", p(&dir.path().join("turn.log"))))
            .arg(format!("--pidfile={}", p(&dir.path().join("turn.pid"))));
        Self::spawn(command, dir, port)
    }

    /// Starts coturn from a configuration file's text (`{port}` placeholders already
    /// filled); it must listen on 127.0.0.1:`port`.
    pub fn start_config(config: &str, port: u16, dir: tempfile::TempDir) -> Self {
        let turnserver = require_tool("turnserver", "coturn");
        let path = dir.path().join("turnserver.conf");
        std::fs::write(&path, config).expect("write turnserver.conf");
        let mut command = Command::new(turnserver);
        command
            .current_dir(dir.path())
            .arg("-c")
            .arg(&path)
            .arg(format!("--pidfile={}", p(&dir.path().join("turn.pid"))));
        Self::spawn(command, dir, port)
    }

    fn spawn(command: Command, dir: tempfile::TempDir, port: u16) -> Self {
        let proc = Proc::spawn("turnserver", command, dir.path());
        // Ready when both listeners answer: TCP accepts and a STUN binding request over
        // UDP gets its response (coturn opens them from different threads).
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() || !stun_binding_answers(port) {
            assert!(
                Instant::now() < deadline,
                "turnserver did not answer on 127.0.0.1:{port} (TCP and UDP) within 10 s:\n{}",
                proc.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { proc, port, dir }
    }

    /// Runs `turnutils_uclient` (one client pair over UDP relays, one message)
    /// with `username`/`credential`: whether it exited 0, and its output.
    pub fn allocate(&self, username: &str, credential: &str) -> (bool, String) {
        let uclient = require_tool("turnutils_uclient", "coturn");
        let mut command = Command::new(uclient);
        command
            .current_dir(self.dir.path())
            .args(["-u", username, "-w", credential, "-p"])
            .arg(self.port.to_string())
            .args(["-y", "-n", "1", "-c", "127.0.0.1"]);
        crate::deploy_tools::run_bounded("uclient", command, self.dir.path(), Duration::from_secs(30))
    }
}

/// Whether a STUN binding request (RFC 5389) to UDP 127.0.0.1:`port` gets a
/// binding success response within 200 ms.
pub fn stun_binding_answers(port: u16) -> bool {
    let Ok(socket) = std::net::UdpSocket::bind("127.0.0.1:0") else {
        return false;
    };
    let _ = socket.set_read_timeout(Some(Duration::from_millis(200)));
    let mut request = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
    request.extend_from_slice(b"mucready1234");
    if socket.send_to(&request, ("127.0.0.1", port)).is_err() {
        return false;
    }
    let mut buf = [0u8; 512];
    match socket.recv(&mut buf) {
        Ok(n) => n >= 20 && buf[..2] == [0x01, 0x01] && buf[8..20] == request[8..20],
        Err(_) => false,
    }
}

/// `GET path` on 127.0.0.1:port with extra request headers (5 s bound): status, head, body.
pub fn get_with_headers(port: u16, path: &str, headers: &[(&str, &str)]) -> Option<(u16, String, String)> {
    let mut stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, head.to_owned(), body.to_owned()))
}

/// The value of header `name` in an HTTP head.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}
