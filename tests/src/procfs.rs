//! Reading `/proc` to check process hygiene from the outside.

use std::path::PathBuf;

/// One process as `/proc/<pid>/stat` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    /// Process id.
    pub pid: i32,
    /// State letter (`R`, `S`, `Z`, `T`…).
    pub state: char,
    /// Parent pid.
    pub ppid: i32,
    /// Process group.
    pub pgrp: i32,
}

/// Parses `/proc/<pid>/stat`; `None` if the process is gone.
pub fn stat(pid: i32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces.
    let after = &text[text.rfind(')')? + 2..];
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(ProcStat { pid, state, ppid, pgrp })
}

/// Every process visible now.
pub fn all() -> Vec<ProcStat> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(stat)
        .collect()
}

/// The command line of a process, arguments split.
pub fn cmdline(pid: i32) -> Vec<String> {
    nul_separated(&format!("/proc/{pid}/cmdline"))
}

/// A `/proc` file of NUL-separated strings (empty when unreadable).
fn nul_separated(path: &str) -> Vec<String> {
    std::fs::read(path)
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Live (non-zombie) processes whose command line has an argument equal to `arg`.
pub fn with_arg(arg: &str) -> Vec<i32> {
    all()
        .into_iter()
        .filter(|p| p.state != 'Z' && cmdline(p.pid).iter().any(|a| a == arg))
        .map(|p| p.pid)
        .collect()
}

/// Every descendant of `pid` (children, grandchildren…).
pub fn descendants(pid: i32) -> Vec<ProcStat> {
    let procs = all();
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for p in procs.iter().filter(|p| p.ppid == parent) {
            frontier.push(p.pid);
            found.push(p.clone());
        }
    }
    found
}

/// Zombie children of `pid`.
pub fn zombie_children(pid: i32) -> Vec<i32> {
    all()
        .into_iter()
        .filter(|p| p.ppid == pid && p.state == 'Z')
        .map(|p| p.pid)
        .collect()
}

/// Members of process group `pgrp` that are still alive (not zombies).
pub fn live_group_members(pgrp: i32) -> Vec<i32> {
    all()
        .into_iter()
        .filter(|p| p.pgrp == pgrp && p.state != 'Z')
        .map(|p| p.pid)
        .collect()
}

/// The targets of a process's open descriptors (`/proc/<pid>/fd/*`), by fd number.
pub fn fds(pid: i32) -> Vec<(i32, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let mut out: Vec<(i32, PathBuf)> = entries
        .filter_map(|e| {
            let e = e.ok()?;
            let fd = e.file_name().to_str()?.parse().ok()?;
            Some((fd, std::fs::read_link(e.path()).ok()?))
        })
        .collect();
    out.sort();
    out
}

/// The environment of a process as `NAME=value` strings.
pub fn environ(pid: i32) -> Vec<String> {
    nul_separated(&format!("/proc/{pid}/environ"))
}

/// Resident set size in bytes, from `/proc/<pid>/statm`.
pub fn rss_bytes(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
