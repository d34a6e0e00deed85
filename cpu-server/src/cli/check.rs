//! `cpu-server check`: a doctor for the setup. Prints every finding; each
//! problem comes with its fix; exits non-zero if there is any.

use std::net::SocketAddr;
use std::path::Path;

use nix::sys::resource::{Resource, getrlimit};

use crate::orbs::orb_command;
use crate::settings::Settings;

/// Descriptors cpu-server needs besides orbs and clients.
const BASE_FDS: u64 = 128;
/// Descriptors per orb: stdio pipes, IPC socket, log file, its room sockets.
const FDS_PER_ORB: u64 = 16;
/// Client sockets expected per orb room (coach, client, spares).
const CLIENTS_PER_ROOM: u64 = 8;

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Fine.
    Ok(String),
    /// A problem and its fix.
    Problem {
        /// What is wrong.
        what: String,
        /// How to fix it.
        fix: String,
    },
}

fn problem(what: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding::Problem {
        what: what.into(),
        fix: fix.into(),
    }
}

/// Whether a file can be created in `dir` (created if missing).
fn writable_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(format!(".cpu-server-check-{}", std::process::id()));
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(&probe)
}

fn check_dir(name: &str, dir: &Path, findings: &mut Vec<Finding>) {
    match writable_dir(dir) {
        Ok(()) => findings.push(Finding::Ok(format!("{name} directory {} is writable", dir.display()))),
        Err(e) => findings.push(problem(
            format!("{name} directory {} is not writable: {e}", dir.display()),
            format!(
                "create it and give it to the service user (e.g. `sudo install -d -o deployer {}`), or point {name} elsewhere",
                dir.display()
            ),
        )),
    }
}

fn check_port(name: &str, addr: SocketAddr, findings: &mut Vec<Finding>) {
    match std::net::TcpListener::bind(addr) {
        Ok(_) => findings.push(Finding::Ok(format!("{name}={addr} is free"))),
        Err(e) => findings.push(problem(
            format!("{name}={addr} cannot be bound: {e}"),
            format!(
                "stop whatever listens there (`ss -ltnp 'sport = :{}'`; a running cpu-server?) or set {name}",
                addr.port()
            ),
        )),
    }
}

/// The file-descriptor limit needed for `max_orbs` orbs and their clients.
pub fn fds_needed(max_orbs: u64) -> u64 {
    BASE_FDS + max_orbs * (FDS_PER_ORB + CLIENTS_PER_ROOM)
}

/// Every finding for `settings`.
pub fn findings(settings: &Settings) -> Vec<Finding> {
    let mut findings = vec![Finding::Ok("settings are valid".to_owned())];
    match orb_command::resolve(&settings.orbs) {
        Ok(command) => findings.push(Finding::Ok(format!(
            "orb program {} is executable",
            command.program.display()
        ))),
        Err(e) => {
            let text = e.to_string();
            let (what, fix) = text
                .split_once(": ")
                .unwrap_or((text.as_str(), "set GPU_SERVER_PATH or ORB_COMMAND"));
            findings.push(problem(what, fix));
        }
    }
    check_dir("ORB_LOG_DIR", &settings.orbs.log_dir, &mut findings);
    if let Some(dir) = settings.logs.file.as_deref().and_then(Path::parent) {
        check_dir("CPU_LOG_FILE", dir, &mut findings);
    }
    if settings.admin.token.is_none() {
        check_dir("STATE_DIR", &settings.admin.state_dir, &mut findings);
    }
    check_port("CPU_HOST", settings.listen, &mut findings);
    if let Some(admin) = settings.admin.host {
        check_port("ADMIN_HOST", admin, &mut findings);
    }
    let needed = fds_needed(settings.orbs.max_concurrent as u64);
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, _)) if soft >= needed => {
            findings.push(Finding::Ok(format!("ulimit -n {soft} is enough (need {needed})")));
        }
        Ok((soft, hard)) => findings.push(problem(
            format!(
                "ulimit -n is {soft}; MAX_CONCURRENT_ORBS={} and their clients need about {needed}",
                settings.orbs.max_concurrent
            ),
            format!("raise it: LimitNOFILE=65536 in the systemd unit, or `ulimit -n {needed}` before starting (hard limit {hard})"),
        )),
        Err(e) => findings.push(problem(format!("cannot read the descriptor limit: {e}"), "check `ulimit -n` by hand")),
    }
    findings
}

/// Prints the findings; `true` when there is no problem.
pub fn report(findings: &[Finding]) -> bool {
    let mut ok = true;
    for finding in findings {
        match finding {
            Finding::Ok(text) => println!("ok       {text}"),
            Finding::Problem { what, fix } => {
                ok = false;
                println!("PROBLEM  {what}\n         fix: {fix}");
            }
        }
    }
    let problems = findings.iter().filter(|f| matches!(f, Finding::Problem { .. })).count();
    println!("{problems} problem(s)");
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_budget_grows_with_orbs() {
        assert_eq!(fds_needed(0), BASE_FDS);
        assert!(fds_needed(8) < 1024, "the default 8 orbs fit the usual soft limit");
        assert!(fds_needed(100) > 1024);
    }
}
