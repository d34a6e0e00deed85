//! The suite's `slurm` scenario: coach `join` → the AI's `user-joined`, one room at a
//! time, with each orb placed by the local Slurm cluster (`scripts/slurm-local.sh`,
//! tuned scheduler) against the same with local orbs, in the same run.

use crate::bench_kit::{Latency, Report};
use crate::bench_server::{join_to_ai, start, start_on};
use crate::slurm_kit::{CancelOnDrop, cluster};

/// Measures `rooms` rooms through Slurm and as many local ones.
pub fn slurm(report: &mut Report, runtime: &tokio::runtime::Runtime, rooms: usize) {
    let cluster = cluster();
    let _cleanup = CancelOnDrop(cluster.clone());
    let local = start(&[("ORB_SPAWN_ON", "coach"), ("ORB_MEDIA", "false")]);
    // Each orb is stopped before the next room: the cluster's GPUs are few.
    let local_ms = runtime.block_on(join_to_ai(&local, "loc", rooms, |_| ()));
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
    let slurm_ms = runtime.block_on(join_to_ai(&server, "slm", rooms, |_| ()));
    let (s, l) = (Latency::of(slurm_ms), Latency::of(local_ms));
    report.latency(
        "slurm",
        "coach join -> AI user-joined, orb placed by Slurm (sbatch, tuned)",
        s,
    );
    report.latency("slurm", "reference: the same with a local orb", l);
    report.value("slurm", "slurm median - local median", s.median - l.median, "ms");
}
