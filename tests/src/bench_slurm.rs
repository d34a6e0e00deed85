//! The suite's `slurm` scenario: coach `join` → the AI's `user-joined`, one room at a
//! time, with each orb placed by the local Slurm cluster (`scripts/slurm-local.sh`,
//! tuned scheduler) against the same with local orbs, in the same run.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::bench_kit::{Latency, Report};
use crate::bench_server::{api, start, start_on};
use crate::room_harness::RoomServer;
use crate::slurm_kit::{CancelOnDrop, cluster};
use crate::ws::Client;

/// Measures `rooms` rooms through Slurm and as many local ones.
pub fn slurm(report: &mut Report, runtime: &tokio::runtime::Runtime, rooms: usize) {
    let cluster = cluster();
    let _cleanup = CancelOnDrop(cluster.clone());
    let local = start(&[("ORB_SPAWN_ON", "coach"), ("ORB_MEDIA", "false")]);
    let local_ms = runtime.block_on(join_to_ai(&local, "loc", rooms));
    drop(local);
    let port = crate::free_port();
    let url = format!("ws://{}:{port}/ws-simple", cluster.cpu_ip);
    let host = format!("0.0.0.0:{port}");
    let server = start_on(
        port,
        &[
            ("CPU_HOST", &host),
            ("ORB_LAUNCHER", "slurm"),
            ("ORB_CPU_WEBSOCKET_URL", &url),
            ("SLURM_CONF", &cluster.conf),
            ("ORB_SLURM_POLL_INTERVAL", "100"),
            ("ORB_SPAWN_ON", "coach"),
            ("ORB_MEDIA", "false"),
        ],
    );
    let slurm_ms = runtime.block_on(join_to_ai(&server, "slm", rooms));
    let (s, l) = (Latency::of(slurm_ms), Latency::of(local_ms));
    report.latency(
        "slurm",
        "coach join -> AI user-joined, orb placed by Slurm (sbatch, tuned)",
        s,
    );
    report.latency("slurm", "reference: the same with a local orb", l);
    report.value("slurm", "slurm median - local median", s.median - l.median, "ms");
}

/// Join → AI `user-joined` per room, one room after the other (each orb stopped before
/// the next room: the cluster's GPUs are few).
async fn join_to_ai(server: &RoomServer, prefix: &str, rooms: usize) -> Vec<f64> {
    let mut out = Vec::new();
    for i in 0..rooms {
        let room = format!("{prefix}{i}");
        let Ok(mut coach) = Client::connect(&server.url(&room)).await else {
            continue;
        };
        let start = Instant::now();
        coach
            .send(json!({"type":"join","userId":"coach","userName":"c","userRole":"coach"}))
            .await;
        while let Some(frame) = coach.try_recv_type("user-joined", Duration::from_secs(30)).await {
            if frame["participantType"] == "ai" {
                out.push(start.elapsed().as_secs_f64() * 1000.0);
                break;
            }
        }
        coach.close().await;
        // DELETE answers once the orb (its job) is gone.
        let port = server.port;
        let path = format!("/api/orbs/{room}");
        let _ = tokio::task::spawn_blocking(move || api(port, "DELETE", &path, None)).await;
    }
    out
}
