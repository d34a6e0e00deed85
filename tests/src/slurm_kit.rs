//! The local Slurm cluster of `scripts/slurm-local.sh` for the placement tests:
//! brought up once per test process (the script is idempotent), its exports read,
//! and the jobs and orbs of a test found. `tests/run.sh` takes it down after the run.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// What `slurm-local.sh up` printed.
#[derive(Debug, Clone)]
pub struct LocalCluster {
    /// `SLURM_CONF`.
    pub conf: String,
    /// `SLURM_LOCAL_CPU_IP`: where jobs reach this machine's server.
    pub cpu_ip: String,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/slurm-local.sh")
}

/// The cluster, up (starting it on first use; panics with the script's output if it cannot).
pub fn cluster() -> LocalCluster {
    static CLUSTER: OnceLock<LocalCluster> = OnceLock::new();
    CLUSTER
        .get_or_init(|| {
            let out = Command::new("bash")
                .arg(script())
                .arg("up")
                .output()
                .expect("run slurm-local.sh");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "slurm-local.sh up failed:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let export = |name: &str| {
                stdout
                    .lines()
                    .find_map(|l| l.trim().strip_prefix(&format!("export {name}=")))
                    .map(|v| v.trim_matches(['\'', '"']).to_owned())
                    .unwrap_or_else(|| panic!("slurm-local.sh up printed no {name}:\n{stdout}"))
            };
            let cluster = LocalCluster {
                conf: export("SLURM_CONF"),
                cpu_ip: export("SLURM_LOCAL_CPU_IP"),
            };
            // The cluster is the tests' own: nothing an earlier (failed) run left holds its GPUs.
            cluster.cancel_all();
            cluster
        })
        .clone()
}

/// Cancels every job of the cluster when dropped (a failed test leaves none running).
#[derive(Debug)]
pub struct CancelOnDrop(pub LocalCluster);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel_all();
    }
}

impl LocalCluster {
    /// Runs a Slurm client command against the cluster; its stdout (panics on failure).
    pub fn run(&self, program: &str, args: &[&str]) -> String {
        let out = Command::new(program)
            .args(args)
            .env("SLURM_CONF", &self.conf)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Cancels every job (bounded: `scancel` returns at once) and waits up to 10 s for
    /// them to end.
    pub fn cancel_all(&self) {
        let user = nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map_or_else(|| "root".to_owned(), |u| u.name);
        let _ = Command::new("scancel")
            .args(["--user", &user])
            .env("SLURM_CONF", &self.conf)
            .status();
        for _ in 0..100 {
            let live = self
                .jobs()
                .iter()
                .any(|(_, state, _)| matches!(state.as_str(), "RUNNING" | "PENDING" | "CONFIGURING" | "COMPLETING"));
            if !live {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// `(id, state, comment)` of every job Slurm still lists.
    pub fn jobs(&self) -> Vec<(String, String, String)> {
        self.run("squeue", &["--noheader", "--states=all", "--format=%i|%T|%k"])
            .lines()
            .filter_map(|l| {
                let mut f = l.trim().splitn(3, '|');
                Some((f.next()?.to_owned(), f.next()?.to_owned(), f.next()?.to_owned()))
            })
            .collect()
    }

    /// A fault subcommand of the script (`kill-slurmd orbnode1`, `stop-ctld`, …).
    pub fn fault(&self, args: &[&str]) {
        let out = Command::new("bash")
            .arg(script())
            .args(args)
            .output()
            .expect("run slurm-local.sh");
        assert!(
            out.status.success(),
            "slurm-local.sh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
