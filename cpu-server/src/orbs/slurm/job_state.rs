//! What Slurm says of a job, read from `squeue` and `scontrol`, and what each end
//! state means to the lifecycle. Pure.

use std::collections::HashMap;

/// The `squeue` format the watcher asks for: id, state, reason, node list.
pub const SQUEUE_FORMAT: &str = "%i|%T|%r|%N";

/// A job's state as the watcher last read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Waiting in Slurm's queue (for a GPU, a node, a limit).
    Pending {
        /// Slurm's reason (`Resources`, `Priority`, …).
        reason: String,
    },
    /// Running (or configuring its node) on `node`.
    Running {
        /// The node.
        node: String,
    },
    /// Ended.
    Ended(EndState),
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndState {
    /// COMPLETED: the orb exited with status 0.
    Completed,
    /// FAILED: a non-zero status or a signal.
    Failed,
    /// CANCELLED: scancel (ours or someone's).
    Cancelled,
    /// TIMEOUT: Slurm's time limit.
    Timeout,
    /// NODE_FAIL: its node was lost (the orb may still run there).
    NodeFail,
    /// OUT_OF_MEMORY.
    OutOfMemory,
    /// PREEMPTED.
    Preempted,
    /// BOOT_FAIL, DEADLINE, or a state this server does not know.
    Other,
}

impl EndState {
    /// Its name in Slurm.
    pub fn label(self) -> &'static str {
        match self {
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
            Self::Timeout => "TIMEOUT",
            Self::NodeFail => "NODE_FAIL",
            Self::OutOfMemory => "OUT_OF_MEMORY",
            Self::Preempted => "PREEMPTED",
            Self::Other => "ended",
        }
    }

    /// The `(code, signal)` the lifecycle classifies, given Slurm's `ExitCode=code:signal`
    /// when it could be read. Only a job that completed can count as a clean exit; every
    /// other end is a failure (restart, backoff, parking) unless the supervisor asked for it.
    pub fn exit_status(self, exit_code: Option<(i32, i32)>) -> (Option<i32>, Option<i32>) {
        match (self, exit_code) {
            (Self::Completed, Some((code, _))) => (Some(code), None),
            (Self::Completed, None) => (Some(0), None),
            (Self::Failed, Some((code, signal))) if signal > 0 => (code.ne(&0).then_some(code), Some(signal)),
            (Self::Failed, Some((code, _))) if code != 0 => (Some(code), None),
            (Self::Cancelled, _) => (None, Some(libc_sigterm())),
            (Self::OutOfMemory, _) => (None, Some(9)),
            _ => (None, None),
        }
    }
}

const fn libc_sigterm() -> i32 {
    15
}

/// A Slurm state name: pending, running, ending or ended.
pub fn parse_state(state: &str, reason: &str, node: &str) -> Option<JobState> {
    let ended = |end| Some(JobState::Ended(end));
    match state {
        "PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "RESV_DEL_HOLD" | "SUSPENDED" => {
            Some(JobState::Pending {
                reason: reason.to_owned(),
            })
        }
        // Still holding its node: the orb may be running.
        "RUNNING" | "CONFIGURING" | "COMPLETING" | "STAGE_OUT" | "SIGNALING" | "RESIZING" | "STOPPED" => {
            Some(JobState::Running { node: node.to_owned() })
        }
        "COMPLETED" => ended(EndState::Completed),
        "FAILED" => ended(EndState::Failed),
        "CANCELLED" => ended(EndState::Cancelled),
        "TIMEOUT" => ended(EndState::Timeout),
        "NODE_FAIL" => ended(EndState::NodeFail),
        "OUT_OF_MEMORY" => ended(EndState::OutOfMemory),
        "PREEMPTED" => ended(EndState::Preempted),
        "BOOT_FAIL" | "DEADLINE" | "REVOKED" | "SPECIAL_EXIT" => ended(EndState::Other),
        _ => None,
    }
}

/// Reads `squeue -h -o '%i|%T|%r|%N'` output: job id → state. Lines it cannot read
/// are skipped.
pub fn parse_squeue(output: &str) -> HashMap<String, JobState> {
    output
        .lines()
        .filter_map(|line| {
            let mut fields = line.trim().splitn(4, '|');
            let (id, state, reason, node) = (fields.next()?, fields.next()?, fields.next()?, fields.next()?);
            // `CANCELLED by 0` in some versions.
            let state = state.split_whitespace().next()?;
            Some((id.to_owned(), parse_state(state, reason, node.trim())?))
        })
        .collect()
}

/// `ExitCode=code:signal` from `scontrol show job -o ID`.
pub fn parse_exit_code(scontrol: &str) -> Option<(i32, i32)> {
    let value = scontrol
        .split_whitespace()
        .find_map(|field| field.strip_prefix("ExitCode="))?;
    let (code, signal) = value.split_once(':')?;
    Some((code.parse().ok()?, signal.parse().ok()?))
}

/// The GPU indices Slurm gave the job on its node, from `scontrol show job -d -o ID`'s
/// per-node detail `GRES=gpu[:type]:N(IDX:0-1,3)` (the first GPU entry): `0-1,3`.
pub fn parse_gpu_index(scontrol: &str) -> Option<String> {
    scontrol
        .split_whitespace()
        .filter_map(|field| field.strip_prefix("GRES="))
        .flat_map(|value| value.split("),"))
        .filter(|entry| entry.starts_with("gpu"))
        .find_map(|entry| {
            let (_, index) = entry.split_once("(IDX:")?;
            let index = index.trim_end_matches(')');
            (!index.is_empty() && index != "N/A").then(|| index.to_owned())
        })
}

/// The job id `sbatch --parsable` printed (`ID` or `ID;cluster`).
pub fn parse_job_id(stdout: &str) -> Option<String> {
    let id = stdout.trim().split(';').next()?.trim();
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())).then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_lines_become_states() {
        let out = "12|PENDING|Resources|\n13|RUNNING|None|orbnode1\n14|NODE_FAIL|None|orbnode2\n\
                   15|CANCELLED by 0|None|orbnode1\nbad line\n16|WHATEVER|x|y\n";
        let states = parse_squeue(out);
        assert_eq!(
            states["12"],
            JobState::Pending {
                reason: "Resources".into()
            }
        );
        assert_eq!(
            states["13"],
            JobState::Running {
                node: "orbnode1".into()
            }
        );
        assert_eq!(states["14"], JobState::Ended(EndState::NodeFail));
        assert_eq!(states["15"], JobState::Ended(EndState::Cancelled));
        assert_eq!(states.len(), 4);
    }

    /// Rule: only a completed job is a clean exit; a lost node is a crash to restart.
    #[test]
    fn end_states_map_to_exit_statuses() {
        assert_eq!(EndState::Completed.exit_status(Some((0, 0))), (Some(0), None));
        assert_eq!(EndState::Failed.exit_status(Some((3, 0))), (Some(3), None));
        assert_eq!(EndState::Failed.exit_status(Some((0, 9))), (None, Some(9)));
        assert_eq!(EndState::NodeFail.exit_status(Some((0, 0))), (None, None));
        assert_eq!(EndState::Timeout.exit_status(None), (None, None));
        assert_eq!(EndState::Cancelled.exit_status(Some((0, 0))), (None, Some(15)));
    }

    #[test]
    fn ids_and_exit_codes_are_read() {
        assert_eq!(parse_job_id("42\n").as_deref(), Some("42"));
        assert_eq!(parse_job_id("42;muclocal\n").as_deref(), Some("42"));
        assert_eq!(parse_job_id("sbatch: error\n"), None);
        assert_eq!(parse_exit_code("JobId=4 JobState=FAILED ExitCode=2:0 x"), Some((2, 0)));
    }

    #[test]
    fn the_gpu_index_is_read_from_the_node_detail() {
        // As Slurm 22.05 prints it (scripts/slurm-local.sh), with the request's JOB_GRES.
        let out = "JobId=9 JOB_GRES=gpu:1 Nodes=orbnode1 CPU_IDs=0 Mem=0 GRES=gpu:1(IDX:0) TresPerNode=gres:gpu:1";
        assert_eq!(parse_gpu_index(out).as_deref(), Some("0"));
        let typed = "Nodes=n1 CPU_IDs=0-3 Mem=0 GRES=shard:2(2/4,0/4),gpu:a100:2(IDX:1-2)";
        assert_eq!(parse_gpu_index(typed).as_deref(), Some("1-2"));
        assert_eq!(parse_gpu_index("JobId=9 JOB_GRES=(null) Nodes=n1 GRES="), None);
    }
}
