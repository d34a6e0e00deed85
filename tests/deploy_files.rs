//! The shipped deploy files, checked with the real tools (nginx, apache2,
//! logrotate, systemd-analyze, openssl), the systemd notify protocol of the
//! real binary, and a room joined over `wss://` through the shipped nginx site.
//!
//! A missing tool fails its test with the package to install (tests/run.sh
//! installs them all); none is skipped.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::json;
use system_tests::binaries;
use system_tests::deploy_tls::{WssClient, client_config, https_get};
use system_tests::deploy_tools::{
    Apache, Nginx, TestCert, apache_binary, apache_conf, apache_site, nginx_command, nginx_conf, nginx_site, p,
    require_tool, run_bounded, shipped, substitute,
};
use system_tests::room_harness::RoomServer;

const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// Reads datagrams until one equals `want` (others are collected), bounded.
fn recv_until(socket: &UnixDatagram, want: &str, timeout: Duration) -> Result<Vec<String>, Vec<String>> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    while Instant::now() < deadline {
        socket
            .set_read_timeout(Some(
                deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            ))
            .expect("timeout");
        match socket.recv(&mut buf) {
            Ok(n) => {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                let done = message == want;
                seen.push(message);
                if done {
                    return Ok(seen);
                }
            }
            Err(_) => break,
        }
    }
    Err(seen)
}

#[test]
fn server_sends_ready_watchdog_and_stopping_to_notify_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let systemd = UnixDatagram::bind(&path).expect("bind notify socket");
    let mut server = RoomServer::start(&[("NOTIFY_SOCKET", p(&path)), ("WATCHDOG_USEC", "200000")]);
    let before_ready = recv_until(&systemd, "READY=1", Duration::from_secs(10))
        .unwrap_or_else(|seen| panic!("no READY=1 (got {seen:?}):\n{}", server.proc.stderr()));
    assert_eq!(before_ready, ["READY=1"], "READY=1 comes first");
    // WATCHDOG_USEC=200000: a ping every 100 ms; 5 pings must come well within 2 s.
    let started = Instant::now();
    for i in 0..5 {
        let seen = recv_until(&systemd, "WATCHDOG=1", Duration::from_secs(2))
            .unwrap_or_else(|seen| panic!("watchdog ping {i} missing (got {seen:?})"));
        assert_eq!(seen, ["WATCHDOG=1"]);
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "pings too slow: {:?}",
        started.elapsed()
    );
    server.proc.signal(Signal::SIGTERM);
    recv_until(&systemd, "STOPPING=1", Duration::from_secs(10))
        .unwrap_or_else(|seen| panic!("no STOPPING=1 after SIGTERM (got {seen:?}):\n{}", server.proc.stderr()));
    let status = server
        .proc
        .wait_exit(Duration::from_secs(20))
        .expect("exit after SIGTERM");
    assert!(status.success(), "clean exit: {status:?}");
}

#[test]
fn watchdog_for_another_pid_is_not_pinged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let systemd = UnixDatagram::bind(&path).expect("bind notify socket");
    let _server = RoomServer::start(&[
        ("NOTIFY_SOCKET", p(&path)),
        ("WATCHDOG_USEC", "100000"),
        ("WATCHDOG_PID", "1"),
    ]);
    recv_until(&systemd, "READY=1", Duration::from_secs(10)).expect("READY=1");
    let seen = recv_until(&systemd, "WATCHDOG=1", Duration::from_millis(500)).unwrap_or_else(|seen| seen);
    assert!(seen.is_empty(), "WATCHDOG_PID=1 is not us, yet got {seen:?}");
}

#[test]
fn nginx_accepts_the_shipped_site() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = TestCert::generate(dir.path());
    let conf = nginx_conf(dir.path(), &nginx_site(8443, 8080, 3000, &cert));
    let (ok, output) = run_bounded(
        "nginx-t",
        nginx_command(dir.path(), &conf, &["-t"]),
        dir.path(),
        TOOL_TIMEOUT,
    );
    assert!(ok, "nginx -t rejected the site:\n{output}");
    assert!(output.contains("test is successful"), "{output}");
}

#[test]
fn apache_accepts_the_shipped_vhost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = TestCert::generate(dir.path());
    let conf = apache_conf(dir.path(), &apache_site(8443, 8080, 3000, &cert), 8443, 8080);
    let mut command = Command::new(apache_binary());
    command.arg("-t").arg("-f").arg(&conf);
    let (ok, output) = run_bounded("apache-t", command, dir.path(), TOOL_TIMEOUT);
    assert!(ok, "apache2 -t rejected the vhost:\n{output}");
    assert!(output.contains("Syntax OK"), "{output}");
}

#[test]
fn logrotate_accepts_and_rotates_with_the_shipped_config() {
    let logrotate = require_tool("logrotate", "logrotate");
    let dir = tempfile::tempdir().expect("tempdir");
    let cpu_dir = dir.path().join("myultracoach");
    let gpu_dir = dir.path().join("hybrid-coach-gpu");
    for d in [&cpu_dir, &gpu_dir] {
        std::fs::create_dir(d).expect("log dir");
    }
    std::fs::write(cpu_dir.join("cpu.log"), "server line\n").expect("cpu.log");
    std::fs::write(gpu_dir.join("orb-room1.log"), "orb line\n").expect("orb log");
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::effective())
        .ok()
        .flatten()
        .map(|u| u.name)
        .expect("user name");
    let group = nix::unistd::Group::from_gid(nix::unistd::Gid::effective())
        .ok()
        .flatten()
        .map(|g| g.name)
        .expect("group name");
    let conf = shipped("logrotate/hybrid-coach");
    let conf = substitute(&conf, "/var/log/myultracoach/cpu.log", p(&cpu_dir.join("cpu.log")));
    let conf = substitute(
        &conf,
        "/var/log/hybrid-coach-gpu/orb-*.log",
        &format!("{}/orb-*.log", p(&gpu_dir)),
    );
    let conf = substitute(
        &conf,
        "create 0640 deployer deployer",
        &format!("create 0640 {user} {group}"),
    );
    // The reload would reach a real systemd: log that it ran instead.
    let marker = dir.path().join("postrotate-ran");
    let conf = substitute(
        &conf,
        "systemctl reload myultracoach.service",
        &format!("touch {}", p(&marker)),
    );
    let conf_path = dir.path().join("hybrid-coach");
    std::fs::write(&conf_path, conf).expect("write config");
    let state = dir.path().join("status");

    let mut debug = Command::new(&logrotate);
    debug.arg("-d").arg("-s").arg(&state).arg(&conf_path);
    let (ok, output) = run_bounded("logrotate-d", debug, dir.path(), TOOL_TIMEOUT);
    assert!(ok, "logrotate -d rejected the config:\n{output}");
    assert!(
        !output.to_lowercase().contains("error"),
        "logrotate -d reported errors:\n{output}"
    );
    assert!(
        output.contains("cpu.log") && output.contains("orb-room1.log"),
        "{output}"
    );

    let mut force = Command::new(&logrotate);
    force.arg("-f").arg("-s").arg(&state).arg(&conf_path);
    let (ok, output) = run_bounded("logrotate-f", force, dir.path(), TOOL_TIMEOUT);
    assert!(ok, "forced rotation failed:\n{output}");
    assert!(
        cpu_dir.join("cpu.log.1").is_file(),
        "cpu.log rotated (delaycompress keeps .1 plain)"
    );
    assert!(gpu_dir.join("orb-room1.log.1").is_file(), "orb log rotated");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(cpu_dir.join("cpu.log"))
        .expect("new cpu.log")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640, "recreated with 0640");
    assert!(marker.is_file(), "postrotate ran");
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    let analyze = require_tool("systemd-analyze", "systemd");
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = shipped("deploy/myultracoach.service");
    let unit = substitute(
        &unit,
        "ExecStart=/usr/local/bin/cpu-server",
        &format!("ExecStart={}", p(&binaries::cpu_server())),
    );
    let unit_path = dir.path().join("myultracoach.service");
    std::fs::write(&unit_path, unit).expect("write unit");
    let mut command = Command::new(analyze);
    command.arg("verify").arg(&unit_path).env("SYSTEMD_LOG_COLOR", "0");
    let (ok, output) = run_bounded("systemd-analyze", command, dir.path(), TOOL_TIMEOUT);
    let ours: Vec<&str> = output.lines().filter(|l| l.contains("myultracoach.service")).collect();
    assert!(ok, "systemd-analyze verify failed:\n{output}");
    assert!(ours.is_empty(), "systemd-analyze complained about the unit:\n{output}");
}

/// The GPU hosts' drop-in, verified on top of the unit. A copy with a bad key
/// proves the drop-in is read (its complaint names the file).
#[test]
fn systemd_analyze_verifies_the_gpu_devices_drop_in() {
    let analyze = require_tool("systemd-analyze", "systemd");
    let dropin = shipped("deploy/systemd/gpu-devices.conf");
    for (extra, complains) in [("", false), ("NotASetting=1\n", true)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let unit = substitute(
            &shipped("deploy/myultracoach.service"),
            "ExecStart=/usr/local/bin/cpu-server",
            &format!("ExecStart={}", p(&binaries::cpu_server())),
        );
        let unit_path = dir.path().join("myultracoach.service");
        std::fs::write(&unit_path, unit).expect("write unit");
        let dropin_dir = dir.path().join("myultracoach.service.d");
        std::fs::create_dir(&dropin_dir).expect("drop-in dir");
        std::fs::write(dropin_dir.join("gpu-devices.conf"), format!("{dropin}{extra}")).expect("write drop-in");
        let mut command = Command::new(&analyze);
        command
            .arg("verify")
            .arg(&unit_path)
            .env("SYSTEMD_LOG_COLOR", "0")
            .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.path().display()));
        let (ok, output) = run_bounded("systemd-analyze", command, dir.path(), TOOL_TIMEOUT);
        assert!(ok, "systemd-analyze verify failed:\n{output}");
        let about_dropin = output.lines().any(|l| l.contains("gpu-devices.conf"));
        assert_eq!(about_dropin, complains, "extra {extra:?}:\n{output}");
    }
}

#[test]
fn unit_and_env_examples_say_what_the_issue_asks() {
    let unit = shipped("deploy/myultracoach.service");
    for line in [
        "Type=notify",
        "Restart=on-failure",
        "KillMode=mixed",
        "TimeoutStopSec=45s",
        "User=deployer",
        "Group=deployer",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "ReadWritePaths=/var/log/myultracoach /var/log/hybrid-coach-gpu /var/lib/myultracoach",
    ] {
        assert!(unit.lines().any(|l| l.trim() == line), "unit lacks {line}");
    }
    assert!(
        !unit
            .lines()
            .any(|l| l.trim_start().starts_with("MemoryDenyWriteExecute")),
        "breaks Node orbs"
    );
    // Every setting the binary knows is documented in the example env file.
    let help = Command::new(binaries::cpu_server())
        .arg("--help")
        .output()
        .expect("--help");
    let help = String::from_utf8_lossy(&help.stdout);
    let example = shipped("deploy/cpu-server.env.example");
    let names: Vec<&str> = help
        .split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split(['=', ']']).next())
        .collect();
    assert!(names.len() > 20, "parsed the settings from --help: {names:?}");
    for name in names {
        assert!(
            example.contains(&format!("{name}=")),
            "deploy/cpu-server.env.example lacks {name}"
        );
    }
    let help = Command::new(binaries::gpu_orb())
        .arg("--help")
        .output()
        .expect("--help");
    let help = String::from_utf8_lossy(&help.stdout);
    let example = shipped("deploy/gpu-orb.env.example");
    for rest in help.split("[env: ").skip(1) {
        let name = rest.split(['=', ']']).next().expect("name");
        assert!(
            example.contains(&format!("{name}=")),
            "deploy/gpu-orb.env.example lacks {name}"
        );
    }
}

/// GET /health and a two-party room over `wss://` through a proxy on `https_port`.
async fn health_and_room_through(proxy: &str, https_port: u16, tls: &std::sync::Arc<rustls::ClientConfig>) {
    let (status, head, body) = tokio::task::spawn_blocking({
        let tls = tls.clone();
        move || https_get(&tls, https_port, "/health")
    })
    .await
    .expect("join")
    .unwrap_or_else(|e| panic!("GET /health through {proxy}: {e}"));
    assert_eq!(status, 200, "{head}\n{body}");
    let health: serde_json::Value = serde_json::from_str(&body).expect("JSON health");
    assert_eq!(health["status"], "healthy");
    assert!(
        head.to_lowercase().contains(&format!("server: {proxy}")),
        "answered through {proxy}: {head}"
    );

    let room = format!("{proxy}-room");
    let mut coach = WssClient::connect(tls, https_port, &room)
        .await
        .expect("coach connects");
    coach
        .send(json!({"type":"join","userId":"coach-1","userName":"Coach","userRole":"coach"}))
        .await;
    let discovery = coach
        .recv_type("peer-discovery", Duration::from_secs(5))
        .await
        .expect("coach discovery");
    assert_eq!(discovery["peers"], json!([]));

    let mut client = WssClient::connect(tls, https_port, &room)
        .await
        .expect("client connects");
    client
        .send(json!({"type":"join","userId":"client-1","userName":"Client","userRole":"client"}))
        .await;
    let discovery = client
        .recv_type("peer-discovery", Duration::from_secs(5))
        .await
        .expect("client discovery");
    assert_eq!(discovery["roomId"], room.as_str());
    assert_eq!(discovery["peers"][0]["userId"], "coach-1", "{discovery}");
    let joined = coach
        .recv_type("user-joined", Duration::from_secs(5))
        .await
        .expect("user-joined");
    assert_eq!(joined["userId"], "client-1");

    coach
        .send(json!({"type":"offer","toId":"client-1","offer":{"type":"offer","sdp":"v=0 test"}}))
        .await;
    let offer = client
        .recv_type("offer", Duration::from_secs(5))
        .await
        .expect("relayed offer");
    assert_eq!(offer["fromId"], "coach-1");
    assert_eq!(offer["offer"]["sdp"], "v=0 test");
    client
        .send(json!({"type":"answer","toId":"coach-1","answer":{"type":"answer","sdp":"v=0 reply"}}))
        .await;
    let answer = coach
        .recv_type("answer", Duration::from_secs(5))
        .await
        .expect("relayed answer");
    assert_eq!(answer["fromId"], "client-1");
    coach.close().await;
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_over_wss_through_the_shipped_nginx_site() {
    let server = RoomServer::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = TestCert::generate(dir.path());
    let nginx = Nginx::start(dir.path(), server.port, &cert);
    health_and_room_through("nginx", nginx.https_port, &client_config(&cert.ca)).await;
    // Plain HTTP on the site only redirects to HTTPS.
    let redirect = system_tests::room_harness::http_get(nginx.http_port, "/health").expect("http answer");
    assert_eq!(redirect.0, 301);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_over_wss_through_the_shipped_apache_vhost() {
    let server = RoomServer::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = TestCert::generate(dir.path());
    let apache = Apache::start(dir.path(), server.port, &cert);
    health_and_room_through("apache", apache.https_port, &client_config(&cert.ca)).await;
}
