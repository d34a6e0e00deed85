//! Periodic CPU, memory and GPU memory figures of every orb's whole process tree.
//!
//! One `sysinfo` refresh per period, on the blocking pool (it reads `/proc`),
//! summed over each orb and its descendants; GPU memory from NVML's process
//! list when the NVIDIA driver is there ([`super::nvml`]), summed over the
//! same tree; results go to the manager.

use std::collections::HashMap;
use std::time::Duration;

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::nvml::Nvml;
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
    /// GPU memory, bytes, summed over the tree; `None` without NVML.
    pub gpu_bytes: Option<u64>,
}

/// What the sampler reads with, moved to the blocking pool for each pass.
struct Probes {
    system: System,
    /// NVML once loaded; `None` before the first pass and when it is absent.
    nvml: Option<Nvml>,
    /// Whether loading was tried (once: a missing driver is not retried).
    nvml_tried: bool,
    /// The last NVML failure reported (each distinct failure is logged once).
    nvml_failure: Option<String>,
    /// Whether `ORB_GPU_MEMORY_LIMIT_MB` is set (a missing NVML is then a warning).
    gpu_limit: bool,
}

impl Probes {
    /// Loads NVML on the first pass; tells once what happened.
    fn load_nvml(&mut self) {
        if self.nvml_tried {
            return;
        }
        self.nvml_tried = true;
        match Nvml::load() {
            Ok(nvml) => {
                tracing::info!("NVML loaded: orbs' GPU memory is measured");
                self.nvml = Some(nvml);
            }
            Err(why) if self.gpu_limit => tracing::warn!(
                %why,
                "no NVML (no NVIDIA driver): orbs' GPU memory is not measured and ORB_GPU_MEMORY_LIMIT_MB is not enforced"
            ),
            Err(why) => tracing::info!(%why, "no NVML (no NVIDIA driver): orbs' GPU memory is not measured"),
        }
    }

    /// GPU memory by pid, or `None` (no NVML, or this query failed).
    fn gpu_memory(&mut self) -> Option<HashMap<u32, u64>> {
        match self.nvml.as_ref()?.memory_by_pid() {
            Ok(used) => {
                self.nvml_failure = None;
                Some(used)
            }
            Err(why) => {
                if self.nvml_failure.as_deref() != Some(why.as_str()) {
                    tracing::warn!(%why, "NVML query failed; orbs' GPU memory unknown this pass");
                    self.nvml_failure = Some(why);
                }
                None
            }
        }
    }
}

/// Samples every `period` until `stop` is cancelled; `gpu_limit`: whether
/// `ORB_GPU_MEMORY_LIMIT_MB` is set.
pub fn spawn_sampler(
    table: ProcessTable,
    period: Duration,
    samples: mpsc::Sender<Vec<Sample>>,
    stop: CancellationToken,
    gpu_limit: bool,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut probes = match System::new() {
            Ok(system) => Some(Probes {
                system,
                nvml: None,
                nvml_tried: false,
                nvml_failure: None,
                gpu_limit,
            }),
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
            let Some(mut taken) = probes.take() else { break };
            let joined = tokio::task::spawn_blocking(move || {
                taken.load_nvml();
                let gpu = taken.gpu_memory();
                let found = measure(&mut taken.system, &roots, gpu.as_ref());
                (taken, found)
            })
            .await;
            let Ok((back, found)) = joined else { break };
            probes = Some(back);
            if samples.try_send(found).is_err() {
                tracing::debug!("manager busy; resource sample dropped");
            }
        }
    })
}

/// Refreshes process figures and sums them (and `gpu`, by pid) per root's tree.
fn measure(system: &mut System, roots: &[(u32, String)], gpu: Option<&HashMap<u32, u64>>) -> Vec<Sample> {
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
            let (mut cpu, mut rss, mut gpu_bytes) = (0.0f64, 0u64, 0u64);
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
                gpu_bytes += gpu.and_then(|g| g.get(&pid.as_u32())).copied().unwrap_or(0);
                if let Some(kids) = children.get(&pid) {
                    stack.extend(kids);
                }
            }
            Some(Sample {
                room: room.clone(),
                pid: *root,
                cpu_percent: cpu,
                rss_bytes: rss,
                gpu_bytes: gpu.map(|_| gpu_bytes),
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
        let kids = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id())).unwrap_or_default();
        let kid: u32 = kids
            .split_whitespace()
            .next()
            .and_then(|k| k.parse().ok())
            .expect("a child sleep");
        let roots = [(child.id(), "r".to_owned())];
        let plain = measure(&mut system, &roots, None);
        let gpu = HashMap::from([(child.id(), 3u64 << 20), (kid, 5 << 20), (1, 7 << 20)]);
        let with_gpu = measure(&mut system, &roots, Some(&gpu));
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(plain.len(), 1, "{plain:?}");
        assert!(plain[0].rss_bytes > 100_000, "{plain:?}");
        assert_eq!(plain[0].gpu_bytes, None, "no NVML, no figure");
        // The tree's processes count (root and child), not another one (pid 1).
        assert_eq!(with_gpu[0].gpu_bytes, Some(8 << 20), "{with_gpu:?}");
    }
}
