//! GPU slots on one host through the real binaries: with `ORB_GPUS=0,1` and one slot per
//! device, cpu-server runs at most two gpu-orbs whatever `MAX_CONCURRENT_ORBS` says; each
//! orb's environment names its own device (`CUDA_VISIBLE_DEVICES`,
//! `NVIDIA_VISIBLE_DEVICES`, read from `/proc/PID/environ`), the record and the metrics
//! show it, a third room waits, and it gets the device the first one frees.

use std::time::Duration;

use serde_json::Value;
use system_tests::operator_kit::request;
use system_tests::room_harness::RoomServer;
use system_tests::wait::until;
use system_tests::ws::Client;

const ADMIN_TOKEN: &str = "gpu-tests-admin-token-0123456789";

fn record(port: u16, room: &str) -> Option<Value> {
    let (status, body) = request(port, "GET", &format!("/api/orbs/{room}"), Some(ADMIN_TOKEN), None);
    (status == 200).then(|| serde_json::from_str(&body).expect("record json"))
}

/// The orb process's value of `name` in its environment.
fn env_of(pid: u64, name: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ
        .split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")).map(str::to_owned))
}

async fn ready(port: u16, room: &str) -> Value {
    until(Duration::from_secs(15), || {
        record(port, room).filter(|r| r["state"] == "ready" && r["pid"].as_u64().is_some())
    })
    .await
    .unwrap_or_else(|| panic!("no ready orb in {room}: {:?}", record(port, room)))
}

#[tokio::test]
async fn orbs_get_their_own_gpu_and_capacity_follows_the_slots() {
    let target = system_tests::binaries::target_dir().display().to_string();
    let server = RoomServer::start(&[
        ("ORB_SPAWN_ON", "coach"),
        ("GPU_SERVER_PATH", &target),
        ("ADMIN_TOKEN", ADMIN_TOKEN),
        ("MAX_CONCURRENT_ORBS", "5"),
        ("ORB_GPUS", "0,1"),
        ("ORB_GPU_SLOTS_PER_DEVICE", "1"),
        ("ORB_STOP_GRACE", "500"),
        ("ORB_KILL_GRACE", "500"),
        // The server's own device list never reaches an orb.
        ("CUDA_VISIBLE_DEVICES", "7"),
        ("ORB_ENV_PASSTHROUGH", "CUDA_VISIBLE_DEVICES"),
    ]);
    let port = server.port;
    let (_a, _) = Client::join(&server.url("gpu-a"), "coach-a", "coach").await;
    let a = ready(port, "gpu-a").await;
    let (_b, _) = Client::join(&server.url("gpu-b"), "coach-b", "coach").await;
    let b = ready(port, "gpu-b").await;
    let devices: Vec<(String, Option<String>, Option<String>)> = [&a, &b]
        .iter()
        .map(|r| {
            let pid = r["pid"].as_u64().expect("pid");
            (
                r["gpu"].as_str().unwrap_or_default().to_owned(),
                env_of(pid, "CUDA_VISIBLE_DEVICES"),
                env_of(pid, "NVIDIA_VISIBLE_DEVICES"),
            )
        })
        .collect();
    assert_eq!(
        devices,
        [
            ("0".to_owned(), Some("0".to_owned()), Some("0".to_owned())),
            ("1".to_owned(), Some("1".to_owned()), Some("1".to_owned()))
        ]
    );
    // Two slots: the third room waits, whatever MAX_CONCURRENT_ORBS allows.
    let (_c, _) = Client::join(&server.url("gpu-c"), "coach-c", "coach").await;
    let queued = until(Duration::from_secs(5), || {
        record(port, "gpu-c").filter(|r| r["state"] == "queued")
    })
    .await;
    assert!(queued.is_some(), "{:?}", record(port, "gpu-c"));
    let (_, metrics) = request(port, "GET", "/metrics", Some(ADMIN_TOKEN), None);
    assert!(metrics.contains("orb_gpu_slots 2"), "{metrics}");
    assert!(metrics.contains("orb_gpu_slots_used 2"), "{metrics}");
    assert!(metrics.contains(r#"orb_gpu{room="gpu-a",gpu="0"} 1"#), "{metrics}");
    // The first orb stops: the waiting room gets its device.
    let (status, _) = request(port, "DELETE", "/api/orbs/gpu-a", Some(ADMIN_TOKEN), None);
    assert!((200..300).contains(&status), "DELETE answered {status}");
    let c = ready(port, "gpu-c").await;
    assert_eq!(c["gpu"], "0");
    assert_eq!(
        env_of(c["pid"].as_u64().expect("pid"), "CUDA_VISIBLE_DEVICES").as_deref(),
        Some("0")
    );
}
