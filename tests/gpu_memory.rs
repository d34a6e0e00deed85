//! GPU memory per orb through the real binaries. The CI machine has no NVIDIA
//! driver, so NVML is a stand-in built from `tests/nvml/fake_nvml.c` with the
//! real library's name, signatures and codes, found by cpu-server's `dlopen`
//! through `LD_LIBRARY_PATH`; the test writes the GPU's process list. It
//! checks the figure in the record and the metrics, `ORB_GPU_MEMORY_LIMIT_MB`
//! (kill, restart, `orbs why`), and the no-driver path: no figure, no error.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use system_tests::operator_kit::request;
use system_tests::room_harness::RoomServer;
use system_tests::wait::until;
use system_tests::ws::Client;

const ADMIN_TOKEN: &str = "gpu-memory-admin-token-0123456789";
const MIB: u64 = 1 << 20;

fn record(port: u16, room: &str) -> Option<Value> {
    let (status, body) = request(port, "GET", &format!("/api/orbs/{room}"), Some(ADMIN_TOKEN), None);
    (status == 200).then(|| serde_json::from_str(&body).expect("record json"))
}

/// Builds the stand-in `libnvidia-ml.so.1` into `dir` (the C compiler Rust links with).
fn build_fake_nvml(dir: &Path) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("nvml/fake_nvml.c");
    let out = Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(dir.join("libnvidia-ml.so.1"))
        .arg(&source)
        .output()
        .expect("run cc (installed with the Rust toolchain's linker)");
    assert!(
        out.status.success(),
        "cc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn server(extra: &[(&str, &str)]) -> RoomServer {
    let target = system_tests::binaries::target_dir().display().to_string();
    let mut env = vec![
        ("ORB_SPAWN_ON", "coach"),
        ("GPU_SERVER_PATH", target.as_str()),
        ("ADMIN_TOKEN", ADMIN_TOKEN),
        ("ORB_HEALTH_CHECK_INTERVAL", "500"),
        ("ORB_STOP_GRACE", "500"),
        ("ORB_KILL_GRACE", "500"),
        ("RUST_LOG", "info"),
    ];
    env.extend_from_slice(extra);
    RoomServer::start(&env)
}

async fn ready_pid(port: u16, room: &str, not: Option<u64>) -> u64 {
    until(Duration::from_secs(15), || {
        record(port, room)
            .filter(|r| r["state"] == "ready")
            .and_then(|r| r["pid"].as_u64())
            .filter(|pid| Some(*pid) != not)
    })
    .await
    .unwrap_or_else(|| panic!("no ready orb in {room}: {:?}", record(port, room)))
}

#[tokio::test]
async fn nvml_figures_reach_the_record_and_the_gpu_memory_limit_kills() {
    let dir = tempfile::tempdir().expect("tempdir");
    build_fake_nvml(dir.path());
    let processes = dir.path().join("gpu-processes");
    let lib_dir = dir.path().display().to_string();
    let list = processes.display().to_string();
    let server = server(&[
        ("LD_LIBRARY_PATH", &lib_dir),
        ("FAKE_NVML_PROCESSES", &list),
        ("ORB_GPU_MEMORY_LIMIT_MB", "100"),
    ]);
    let port = server.port;
    let (_coach, _) = Client::join(&server.url("gpu-mem"), "coach-1", "coach").await;
    let first = ready_pid(port, "gpu-mem", None).await;

    // 60 MiB by the orb, and some by an unrelated process that must not count.
    std::fs::write(&processes, format!("{first} {}\n1 {}\n", 60 * MIB, 500 * MIB)).expect("write list");
    let seen = until(Duration::from_secs(10), || {
        record(port, "gpu-mem").and_then(|r| r["gpu_memory_bytes"].as_u64())
    })
    .await;
    assert_eq!(seen, Some(60 * MIB), "{:?}", record(port, "gpu-mem"));
    let (_, metrics) = request(port, "GET", "/metrics", Some(ADMIN_TOKEN), None);
    assert!(
        metrics.contains(&format!(
            "cpu_server_orb_gpu_memory_bytes{{room=\"gpu-mem\"}} {}",
            60 * MIB
        )),
        "{metrics}"
    );
    assert!(server.proc.stderr().contains("NVML loaded"), "{}", server.proc.stderr());

    // Over the limit: killed as for RSS, restarted, and `orbs why` says why.
    std::fs::write(&processes, format!("{first} {}\n", 150 * MIB)).expect("write list");
    let second = ready_pid(port, "gpu-mem", Some(first)).await;
    assert_ne!(first, second);
    let last_exit = record(port, "gpu-mem")
        .map(|r| r["last_exit"].clone())
        .unwrap_or_default();
    assert_eq!(last_exit["cause"], "memory_limit", "{last_exit}");
    let (status, events) = request(port, "GET", "/api/orbs/gpu-mem/events", Some(ADMIN_TOKEN), None);
    assert_eq!(status, 200, "{events}");
    assert!(events.contains("GPU memory limit 100 MB exceeded (150 MB)"), "{events}");
}

#[tokio::test]
async fn without_the_driver_there_is_no_figure_and_no_error() {
    assert!(
        !Path::new("/proc/driver/nvidia").exists(),
        "this test checks the no-driver path: run it on a host without the NVIDIA driver"
    );
    let server = server(&[("ORB_GPU_MEMORY_LIMIT_MB", "100")]);
    let port = server.port;
    let (_coach, _) = Client::join(&server.url("no-gpu"), "coach-1", "coach").await;
    ready_pid(port, "no-gpu", None).await;
    // The sampler's first pass tells that the limit cannot be enforced; after
    // it, no GPU figure, and the orb is not killed for it.
    let warned = until(Duration::from_secs(10), || {
        let log = server.proc.stderr();
        log.contains("ORB_GPU_MEMORY_LIMIT_MB is not enforced").then_some(log)
    })
    .await;
    let log = warned.unwrap_or_else(|| panic!("no warning:\n{}", server.proc.stderr()));
    assert!(!log.contains("ERROR"), "{log}");
    tokio::time::sleep(Duration::from_millis(1200)).await; // two more sampler passes
    let measured = record(port, "no-gpu").expect("record");
    assert!(measured["gpu_memory_bytes"].is_null(), "{measured}");
    assert_eq!(measured["restarts"], 0, "{measured}");
    assert_eq!(measured["state"], "ready", "{measured}");
    let (_, metrics) = request(port, "GET", "/metrics", Some(ADMIN_TOKEN), None);
    assert!(!metrics.contains("orb_gpu_memory_bytes{"), "{metrics}");
}
