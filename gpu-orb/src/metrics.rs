//! The orb's own resource figures, from `/proc/self` (no sysinfo needed).
//!
//! CPU % is the `utime + stime` delta of `/proc/self/stat` over the wall time
//! between two samples (percent of one core); memory is the resident set of
//! `/proc/self/statm` in MB.

use std::time::Instant;

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;
/// Page size assumed for `statm` (4 KiB on x86-64 and most arm64 kernels).
const PAGE_BYTES: u64 = 4096;

/// Remembers the previous CPU sample to compute a rate.
#[derive(Debug)]
pub struct CpuSampler {
    last: Option<(u64, Instant)>,
}

impl Default for CpuSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuSampler {
    /// A sampler whose first reading covers the time since it was created.
    pub fn new() -> Self {
        Self {
            last: read_ticks().map(|t| (t, Instant::now())),
        }
    }

    /// CPU use since the previous sample, percent of one core (0 if unknown).
    pub fn sample(&mut self) -> f64 {
        let Some(ticks) = read_ticks() else { return 0.0 };
        let now = Instant::now();
        let percent = match self.last {
            Some((prev, at)) => cpu_percent(ticks.saturating_sub(prev), (now - at).as_secs_f64()),
            None => 0.0,
        };
        self.last = Some((ticks, now));
        percent
    }
}

/// Percent of one core used by `ticks` clock ticks over `wall_secs`.
pub fn cpu_percent(ticks: u64, wall_secs: f64) -> f64 {
    if wall_secs <= 0.0 {
        return 0.0;
    }
    (ticks as f64 / TICKS_PER_SEC) / wall_secs * 100.0
}

/// Resident memory of this process in MB (0 if unreadable).
pub fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|text| parse_statm_rss_pages(&text))
        .map_or(0.0, |pages| (pages * PAGE_BYTES) as f64 / (1024.0 * 1024.0))
}

fn read_ticks() -> Option<u64> {
    parse_stat_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// `utime + stime` from the text of `/proc/<pid>/stat`.
pub fn parse_stat_ticks(text: &str) -> Option<u64> {
    // The command name is in parentheses and may contain spaces; fields after
    // it start at field 3 (state), so utime (14) and stime (15) are 11th/12th.
    let after = text.get(text.rfind(')')? + 1..)?;
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Resident pages (second field) from the text of `/proc/<pid>/statm`.
pub fn parse_statm_rss_pages(text: &str) -> Option<u64> {
    text.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat = "1234 (gpu orb) S 1 1234 1234 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 100 1000 200";
        assert_eq!(parse_stat_ticks(stat), Some(10));
        assert_eq!(parse_statm_rss_pages("5000 1200 300 10 0 400 0"), Some(1200));
        assert_eq!(cpu_percent(50, 1.0), 50.0);
        assert_eq!(cpu_percent(5, 0.0), 0.0);
    }

    #[test]
    fn reads_this_process() {
        let mb = rss_mb();
        assert!(mb > 0.0 && mb < 4096.0, "{mb}");
        let mut cpu = CpuSampler::new();
        assert!(cpu.sample() >= 0.0);
    }
}
