//! Periodic CPU and memory figures of every orb's whole process tree.
//!
//! One `sysinfo` refresh per period, on the blocking pool (it reads `/proc`),
//! summed over each orb and its descendants; results go to the manager.

use std::collections::HashMap;
use std::time::Duration;

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::process_table::ProcessTable;

/// Figures of one orb's process tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The room.
    pub room: String,
    /// The orb's pid.
    pub pid: u32,
    /// CPU, percent of one core, summed over the tree.
    pub cpu_percent: f64,
    /// Resident memory, bytes, summed over the tree.
    pub rss_bytes: u64,
}

/// Samples every `period` until `stop` is cancelled.
pub fn spawn_sampler(
    table: ProcessTable,
    period: Duration,
    samples: mpsc::Sender<Vec<Sample>>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut system = match System::new() {
            Ok(system) => Some(system),
            Err(error) => {
                tracing::warn!(%error, "cannot read process figures; orb CPU and RSS stay unknown");
                None
            }
        };
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let roots = table.snapshot();
            if roots.is_empty() {
                continue;
            }
            let Some(mut sys) = system.take() else { break };
            let joined = tokio::task::spawn_blocking(move || {
                let found = measure(&mut sys, &roots);
                (sys, found)
            })
            .await;
            let Ok((sys, found)) = joined else { break };
            system = Some(sys);
            if samples.try_send(found).is_err() {
                tracing::debug!("manager busy; resource sample dropped");
            }
        }
    })
}

/// Refreshes process figures and sums them per root's tree.
fn measure(system: &mut System, roots: &[(u32, String)]) -> Vec<Sample> {
    system.refresh_processes_specifics(
        ProcessesToUpdate::All,
        true,
        ProcessRefreshKind::nothing().with_memory().with_cpu(),
    );
    let mut children: HashMap<Pid, Vec<Pid>> = HashMap::new();
    for (pid, process) in system.processes() {
        if let Some(parent) = process.parent() {
            children.entry(parent).or_default().push(*pid);
        }
    }
    roots
        .iter()
        .filter_map(|(root, room)| {
            let root_pid = Pid::from_u32(*root);
            system.process(root_pid)?;
            let (mut cpu, mut rss) = (0.0f64, 0u64);
            let mut stack = vec![root_pid];
            let mut seen = 0usize;
            while let Some(pid) = stack.pop() {
                seen += 1;
                if seen > 100_000 {
                    break;
                }
                if let Some(process) = system.process(pid) {
                    cpu += f64::from(process.cpu_usage());
                    rss += process.memory();
                }
                if let Some(kids) = children.get(&pid) {
                    stack.extend(kids);
                }
            }
            Some(Sample {
                room: room.clone(),
                pid: *root,
                cpu_percent: cpu,
                rss_bytes: rss,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_a_process_tree() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 5 & sleep 5"])
            .spawn()
            .expect("spawn sh");
        std::thread::sleep(Duration::from_millis(200));
        let mut system = System::new().expect("sysinfo");
        let samples = measure(&mut system, &[(child.id(), "r".to_owned())]);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(samples.len(), 1, "{samples:?}");
        assert!(samples[0].rss_bytes > 100_000, "{samples:?}");
    }
}
