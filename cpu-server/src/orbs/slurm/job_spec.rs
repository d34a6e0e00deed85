//! What one orb job is: the `sbatch` arguments, the job script given on its stdin,
//! and the environment `sbatch` runs with. Pure.
//!
//! Secrets never reach a command line: `sbatch` runs with a cleared environment holding
//! exactly the orb's allowlisted variables plus what `sbatch` itself needs (`PATH`,
//! `SLURM_CONF`, …), and `--export=ALL` hands the job that environment. (`--export=NAMES`
//! without `ALL` would also load the user's login environment on the node, Slurm's
//! `--get-user-env`, and cost 0.5–1.5 s per start.)

use std::path::Path;
use std::time::Duration;

use crate::settings::SlurmSettings;

/// Prefix of every orb job's name (`orb-<room>`).
pub const JOB_NAME_PREFIX: &str = "orb-";

/// Variables of the server's environment `sbatch` needs to reach the cluster (not
/// passed to the orb).
pub const SBATCH_OWN_VARS: &[&str] = &["PATH", "SLURM_CONF", "MUNGE_SOCKET", "HOME", "LANG"];

/// Variables the job script sets rather than `sbatch`'s environment: the orb marker,
/// which the orphan reaper looks for in the server's children (`reaper`). In `sbatch`'s
/// own environment it would make a slow `sbatch` (a controller not answering) look like
/// an orphaned orb, killed after a second. (Not on `--export`: anything there but `ALL`
/// alone makes Slurm load the user's login environment.)
pub const BY_VALUE: &[&str] = &["ORB_SUPERVISED"];

/// One orb job.
#[derive(Debug, Clone)]
pub struct JobSpec<'a> {
    /// The room.
    pub room: &'a str,
    /// `--comment`: who submitted it (this server), for the sweep after a restart.
    pub comment: &'a str,
    /// The orb program and its arguments.
    pub program: &'a Path,
    /// Its arguments (leading arguments of `ORB_COMMAND` first).
    pub args: &'a [String],
    /// `--chdir`.
    pub cwd: &'a Path,
    /// `--output` (stdout and stderr, appended).
    pub log: &'a Path,
    /// The orb's environment (names and values).
    pub env: &'a [(String, String)],
    /// `MAX_ORB_LIFETIME`, if any, and the stop escalation after it.
    pub lifetime: Option<Duration>,
    /// How long the stop escalation may take after the lifetime.
    pub stop_bound: Duration,
}

/// `sbatch`'s arguments (the script comes on stdin).
pub fn sbatch_args(spec: &JobSpec<'_>, settings: &SlurmSettings) -> Vec<String> {
    let mut args = vec![
        "--parsable".to_owned(),
        format!("--job-name={JOB_NAME_PREFIX}{}", spec.room),
        format!("--comment={}", spec.comment),
        // A job whose node failed must not run a second time by itself: the
        // supervisor starts the replacement, or a room would get two AIs.
        "--no-requeue".to_owned(),
        // sbatch's own (cleared) environment; exactly `ALL` (see the module's doc).
        "--export=ALL".to_owned(),
        format!("--chdir={}", spec.cwd.display()),
        format!("--output={}", spec.log.display()),
        "--open-mode=append".to_owned(),
    ];
    if let Some(minutes) = time_limit_minutes(spec.lifetime, spec.stop_bound) {
        args.push(format!("--time={minutes}"));
    }
    if let Some(gres) = &settings.gres {
        args.push(format!("--gres={gres}"));
    }
    if let Some(partition) = &settings.partition {
        args.push(format!("--partition={partition}"));
    }
    if let Some(account) = &settings.account {
        args.push(format!("--account={account}"));
    }
    args.extend(settings.extra_args.iter().cloned());
    args
}

/// The job's time limit in whole minutes: the orb's lifetime and its stop, rounded up
/// (the lifecycle ends it first; Slurm's limit is the backstop). `None`: no lifetime.
pub fn time_limit_minutes(lifetime: Option<Duration>, stop_bound: Duration) -> Option<u64> {
    let total = lifetime? + stop_bound;
    Some(total.as_secs().div_ceil(60).max(1))
}

/// The batch script: the [`BY_VALUE`] variables of `env`, then `exec` the orb, so that
/// Slurm's signals reach it directly.
pub fn job_script(program: &Path, args: &[String], env: &[(String, String)]) -> String {
    let mut script = String::from("#!/bin/sh\n");
    for (name, value) in env.iter().filter(|(name, _)| BY_VALUE.contains(&name.as_str())) {
        script.push_str(&format!("export {name}={}\n", shell_quote(value)));
    }
    let mut line = String::from("exec ");
    line.push_str(&shell_quote(&program.display().to_string()));
    for arg in args {
        line.push(' ');
        line.push_str(&shell_quote(arg));
    }
    script.push_str(&line);
    script.push('\n');
    script
}

/// `value` in single quotes for `sh`.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// `sbatch`'s environment: its own variables from `server_env`, then the orb's.
pub fn sbatch_env(
    server_env: impl Iterator<Item = (String, String)>,
    orb: &[(String, String)],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = server_env
        .filter(|(name, _)| SBATCH_OWN_VARS.contains(&name.as_str()))
        .filter(|(name, _)| !orb.iter().any(|(n, _)| n == name))
        .collect();
    env.extend(
        orb.iter()
            .filter(|(name, _)| !BY_VALUE.contains(&name.as_str()))
            .cloned(),
    );
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SlurmSettings {
        SlurmSettings {
            gres: Some("gpu:1".into()),
            partition: Some("gpu".into()),
            account: None,
            extra_args: vec!["--qos=rt".into()],
            poll_interval: Duration::from_secs(1),
            command_timeout: Duration::from_secs(10),
        }
    }

    /// Rule: the token's value is never on the command line, and the job never runs
    /// twice by itself.
    #[test]
    fn arguments_name_the_environment_without_values() {
        let env = vec![
            ("ROOM_ID".to_owned(), "r1".to_owned()),
            ("ORB_AUTH_TOKEN".to_owned(), "s3cret".to_owned()),
            ("ORB_SUPERVISED".to_owned(), "1".to_owned()),
        ];
        let args = ["--room=r1".to_owned()];
        let spec = JobSpec {
            room: "r1",
            comment: "muc-orb:ws://h/ws-simple",
            program: Path::new("/opt/gpu-orb"),
            args: &args,
            cwd: Path::new("/opt"),
            log: Path::new("/var/log/orbs/orb-r1.log"),
            env: &env,
            lifetime: Some(Duration::from_secs(7200)),
            stop_bound: Duration::from_secs(20),
        };
        let line = sbatch_args(&spec, &settings());
        assert!(!line.iter().any(|a| a.contains("s3cret")), "{line:?}");
        for expected in [
            "--parsable",
            "--job-name=orb-r1",
            "--no-requeue",
            "--export=ALL",
            "--time=121",
            "--gres=gpu:1",
            "--partition=gpu",
            "--qos=rt",
            "--output=/var/log/orbs/orb-r1.log",
        ] {
            assert!(line.iter().any(|a| a == expected), "{expected} missing from {line:?}");
        }
        assert!(!line.iter().any(|a| a.starts_with("--account")));
    }

    #[test]
    fn the_script_execs_the_orb_with_quoted_arguments() {
        let env = [
            ("ORB_SUPERVISED".to_owned(), "1".to_owned()),
            ("ROOM_ID".to_owned(), "r".to_owned()),
        ];
        let script = job_script(Path::new("/opt/my orb"), &["--room=it's".to_owned()], &env);
        assert_eq!(
            script,
            "#!/bin/sh\nexport ORB_SUPERVISED='1'\nexec '/opt/my orb' '--room=it'\\''s'\n"
        );
    }

    #[test]
    fn sbatch_keeps_only_its_own_variables_of_the_server() {
        let server = vec![
            ("PATH".to_owned(), "/usr/bin".to_owned()),
            ("JWT_SECRET".to_owned(), "x".to_owned()),
            ("SLURM_CONF".to_owned(), "/c".to_owned()),
        ];
        let orb = vec![
            ("ROOM_ID".to_owned(), "r".to_owned()),
            ("ORB_SUPERVISED".to_owned(), "1".to_owned()),
        ];
        let env = sbatch_env(server.into_iter(), &orb);
        let names: Vec<&str> = env.iter().map(|(n, _)| n.as_str()).collect();
        // Regression: sbatch carrying the orb marker was SIGKILLed by the orphan reaper
        // as soon as it waited more than a second for the controller.
        assert_eq!(names, ["PATH", "SLURM_CONF", "ROOM_ID"]);
        assert_eq!(time_limit_minutes(None, Duration::from_secs(5)), None);
        assert_eq!(
            time_limit_minutes(Some(Duration::from_secs(30)), Duration::ZERO),
            Some(1)
        );
    }
}
