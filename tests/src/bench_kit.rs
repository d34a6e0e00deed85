//! Measuring helpers of the benchmark suite (`benches/suite.rs`): summaries,
//! CPU and memory of a process from `/proc`, descriptor limits, process spawn
//! references, and the server log's `ready_ms` figures.

use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use serde_json::{Value, json};

/// The `p`th percentile (nearest rank) of sorted samples; NaN when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Median and p99 of latency samples in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    /// Number of samples.
    pub n: usize,
    /// Median, ms.
    pub median: f64,
    /// 99th percentile, ms.
    pub p99: f64,
}

impl Latency {
    /// Summarises `samples` (ms).
    pub fn of(mut samples: Vec<f64>) -> Self {
        samples.sort_by(|a, b| a.total_cmp(b));
        Self {
            n: samples.len(),
            median: percentile(&samples, 50.0),
            p99: percentile(&samples, 99.0),
        }
    }
}

/// The suite's report: printed rows and the JSON written at the end.
#[derive(Debug, Default)]
pub struct Report {
    rows: Vec<Value>,
}

impl Report {
    /// Prints and records a latency row.
    pub fn latency(&mut self, scenario: &str, name: &str, lat: Latency) {
        println!(
            "{scenario:<12} {name:<52} n={:<6} median {:>9.3} ms   p99 {:>9.3} ms",
            lat.n, lat.median, lat.p99
        );
        self.rows.push(json!({"scenario": scenario, "name": name, "n": lat.n,
            "median_ms": lat.median, "p99_ms": lat.p99}));
    }

    /// Prints and records one figure with its unit.
    pub fn value(&mut self, scenario: &str, name: &str, value: f64, unit: &str) {
        println!("{scenario:<12} {name:<52} {value:>12.3} {unit}");
        self.rows
            .push(json!({"scenario": scenario, "name": name, "value": value, "unit": unit}));
    }

    /// Prints and records a note (something that could not be measured, and why).
    pub fn note(&mut self, scenario: &str, text: &str) {
        println!("{scenario:<12} NOTE: {text}");
        self.rows.push(json!({"scenario": scenario, "note": text}));
    }

    /// Every row as JSON.
    pub fn json(&self, meta: Value) -> Value {
        json!({"meta": meta, "rows": self.rows})
    }
}

/// Clock ticks (utime + stime) a process has used, from `/proc/<pid>/stat`.
pub fn cpu_ticks(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the command: state is field 3, utime 14 and stime 15 (1-based, whole line).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 on Linux).
pub const TICKS_PER_SECOND: f64 = 100.0;

/// CPU use of `pids` (sum) between two readings, as % of one core.
pub struct CpuMeter {
    pids: Vec<i32>,
    start_ticks: u64,
    start: Instant,
}

impl CpuMeter {
    /// Starts measuring `pids`.
    pub fn start(pids: Vec<i32>) -> Self {
        let start_ticks = pids.iter().filter_map(|p| cpu_ticks(*p)).sum();
        Self {
            pids,
            start_ticks,
            start: Instant::now(),
        }
    }

    /// % of one core used since the start.
    pub fn percent(&self) -> f64 {
        let now: u64 = self.pids.iter().filter_map(|p| cpu_ticks(*p)).sum();
        let secs = self.start.elapsed().as_secs_f64();
        now.saturating_sub(self.start_ticks) as f64 / TICKS_PER_SECOND / secs * 100.0
    }
}

/// Resident memory of a process in MiB.
pub fn rss_mib(pid: i32) -> f64 {
    crate::procfs::rss_bytes(pid).unwrap_or(0) as f64 / (1024.0 * 1024.0)
}

/// Open descriptors of a process.
pub fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Raises this process's `RLIMIT_NOFILE` (children inherit it); returns the soft limit now.
pub fn raise_nofile(wanted: u64) -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((1024, 1024));
    // Root may raise the hard limit too; otherwise stay under it.
    if setrlimit(Resource::RLIMIT_NOFILE, wanted, wanted.max(hard)).is_err() {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, wanted.min(hard), hard);
    }
    getrlimit(Resource::RLIMIT_NOFILE).map_or(0, |(soft, _)| soft)
}

/// fork/exec of `echo` with a pipe, until its line is read (ms).
pub fn trivial_spawn_ms() -> Option<f64> {
    let start = Instant::now();
    let mut child = Command::new("echo").arg("ready").stdout(Stdio::piped()).spawn().ok()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take()?).read_line(&mut line).ok()?;
    let elapsed = start.elapsed();
    let _ = child.wait();
    Some(elapsed.as_secs_f64() * 1000.0)
}

/// A Node child with an IPC channel at fd 3, until its `orb_ready` line arrives (ms).
pub fn node_spawn_ms() -> Option<f64> {
    let (parent, child_end) = std::os::unix::net::UnixStream::pair().ok()?;
    // Let the child inherit its end (std marks descriptors close-on-exec).
    fcntl(&child_end, FcntlArg::F_SETFD(FdFlag::empty())).ok()?;
    let start = Instant::now();
    let mut child = Command::new("node")
        .args([
            "-e",
            "process.send({type:'orb_ready',roomId:'bench'}); process.disconnect();",
        ])
        .env("NODE_CHANNEL_FD", child_end.as_raw_fd().to_string())
        .stdout(Stdio::null())
        .spawn()
        .ok()?;
    drop(child_end);
    let mut line = String::new();
    parent.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    BufReader::new(&parent).read_line(&mut line).ok()?;
    let elapsed = start.elapsed();
    let _ = child.wait();
    line.contains("orb_ready").then_some(elapsed.as_secs_f64() * 1000.0)
}

/// Every `ready_ms=` figure of the `orb ready` lines in a server log.
pub fn ready_ms(log: &str) -> Vec<f64> {
    log.lines()
        .filter(|l| l.contains("orb ready"))
        .filter_map(|l| {
            let plain = strip_ansi(l);
            plain.split("ready_ms=").nth(1)?.split_whitespace().next()?.parse().ok()
        })
        .collect()
}

/// `line` without ANSI colour sequences.
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The value of a Prometheus sample whose line starts with `prefix` (summed over matches).
pub fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The machine: CPU model, cores, memory, kernel, load (for the report).
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or(String::new(), |(_, m)| m.trim().to_owned());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    json!({
        "cpu": model,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "memory": mem.trim(),
        "kernel": kernel.trim(),
        "loadavg_at_start": load.trim(),
    })
}
