//! The orb command line: which program, in which directory, with which arguments.
//!
//! The program is `GPU_SERVER_PATH/gpu-orb` unless `ORB_COMMAND` names one: an
//! absolute path, a file of that name in `GPU_SERVER_PATH`, or else a program
//! found in `PATH` (so `ORB_COMMAND="node aiorb.js"` runs the system's node on
//! `aiorb.js` in `GPU_SERVER_PATH`). It is resolved at each spawn, so a new orb
//! build is picked up without restarting the server.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::settings::OrbSettings;

/// Name of the default orb program inside `GPU_SERVER_PATH`.
pub const DEFAULT_ORB_PROGRAM: &str = "gpu-orb";

/// A resolved command: program path and its leading arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedCommand {
    /// The executable to run.
    pub program: PathBuf,
    /// Arguments before the orb's own.
    pub leading_args: Vec<String>,
}

/// Why the orb command cannot be run, with the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// `GPU_SERVER_PATH` is not a directory.
    #[error(
        "GPU_SERVER_PATH={0:?} is not a directory: set GPU_SERVER_PATH to the directory that holds the orb program (in development the directory of the cpu-server binary, after `cargo build --release`)"
    )]
    BadPath(PathBuf),
    /// The program does not exist.
    #[error(
        "orb program {0:?} not found: build it (`cargo build --release` puts gpu-orb next to cpu-server), set GPU_SERVER_PATH to its directory, or set ORB_COMMAND"
    )]
    NotFound(PathBuf),
    /// The program is not a regular file.
    #[error("orb program {0:?} is not a regular file: point ORB_COMMAND or GPU_SERVER_PATH at the executable")]
    NotAFile(PathBuf),
    /// We may not execute it (EACCES).
    #[error("orb program {0:?} is not executable by this user (EACCES): run `chmod +x {0:?}` or fix its owner")]
    NotExecutable(PathBuf),
}

/// Resolves the program to run now.
pub fn resolve(settings: &OrbSettings) -> Result<ResolvedCommand, CommandError> {
    if !settings.gpu_server_path.is_dir() {
        return Err(CommandError::BadPath(settings.gpu_server_path.clone()));
    }
    let (program, leading_args) = match &settings.orb_command {
        None => (settings.gpu_server_path.join(DEFAULT_ORB_PROGRAM), Vec::new()),
        Some(words) => {
            let (first, rest) = words
                .split_first()
                .ok_or_else(|| CommandError::NotFound(PathBuf::new()))?;
            (find_program(first, &settings.gpu_server_path), rest.to_vec())
        }
    };
    check_executable(&program)?;
    Ok(ResolvedCommand { program, leading_args })
}

/// An absolute path as is; a file of that name in `dir`; else a `PATH` lookup.
fn find_program(name: &str, dir: &Path) -> PathBuf {
    let as_path = Path::new(name);
    if as_path.is_absolute() {
        return as_path.to_path_buf();
    }
    let in_dir = dir.join(as_path);
    if in_dir.is_file() || name.contains('/') {
        return in_dir;
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|p| p.join(name))
        .find(|p| p.is_file())
        .unwrap_or(in_dir)
}

fn check_executable(program: &Path) -> Result<(), CommandError> {
    let meta = std::fs::metadata(program).map_err(|_| CommandError::NotFound(program.to_path_buf()))?;
    if !meta.is_file() {
        return Err(CommandError::NotAFile(program.to_path_buf()));
    }
    if nix::unistd::access(program, nix::unistd::AccessFlags::X_OK).is_err() || meta.permissions().mode() & 0o111 == 0 {
        return Err(CommandError::NotExecutable(program.to_path_buf()));
    }
    Ok(())
}

/// What one orb is started for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrbLaunch {
    /// The room.
    pub room: String,
    /// The session id.
    pub session: String,
    /// Coach user id, if known.
    pub coach: Option<String>,
    /// Client user id, if known.
    pub client: Option<String>,
    /// The GPU device of its slot (`ORB_GPUS`), if any.
    pub gpu: Option<String>,
    /// A warm pool member (`room` is its entry, `warm+N`): started with `--warm`,
    /// its room comes later in `orb_assign`.
    pub warm: bool,
}

/// The orb's own arguments, docs/protocol.md §2.1.
pub fn orb_args(launch: &OrbLaunch, cpu_host: &str, settings: &OrbSettings) -> Vec<String> {
    // 0 is "no limit" for gpu-orb, as for the server.
    let ms = |d: Option<Duration>| d.map_or(0, |d| d.as_millis()).to_string();
    let mut args = if launch.warm {
        vec!["--warm".to_owned()]
    } else {
        vec![
            format!("--room={}", launch.room),
            format!("--session={}", launch.session),
        ]
    };
    if !launch.warm {
        if let Some(coach) = &launch.coach {
            args.push(format!("--coach={coach}"));
        }
        if let Some(client) = &launch.client {
            args.push(format!("--client={client}"));
        }
    }
    args.push(format!("--cpu-host={cpu_host}"));
    args.push(format!("--max-lifetime={}", ms(settings.max_lifetime)));
    args.push(format!("--idle-timeout={}", ms(settings.idle_timeout)));
    if settings.test_mode {
        args.push("--test-mode".to_owned());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::OrbArgs;
    use shared::settings::{DotEnv, Validator};

    fn settings(dir: &Path, command: Option<&str>) -> OrbSettings {
        let dotenv = DotEnv::default();
        let mut v = Validator::new(&dotenv);
        let args = OrbArgs {
            gpu_server_path: Some(dir.display().to_string()),
            orb_command: command.map(str::to_owned),
            ..OrbArgs::default()
        };
        args.validate(&mut v, false, false)
    }

    #[test]
    fn missing_path_and_program_name_the_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = settings(&dir.path().join("nope"), None);
        assert!(matches!(resolve(&missing), Err(CommandError::BadPath(_))));
        let no_program = settings(dir.path(), None);
        let err = resolve(&no_program).expect_err("no gpu-orb");
        assert!(err.to_string().contains("cargo build --release"), "{err}");
    }

    #[test]
    fn non_executable_program_is_eacces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let program = dir.path().join("gpu-orb");
        std::fs::write(&program, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(
            resolve(&settings(dir.path(), None)),
            Err(CommandError::NotExecutable(_))
        ));
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(resolve(&settings(dir.path(), None)).expect("ok").program, program);
    }

    #[test]
    fn orb_command_finds_programs_in_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let resolved = resolve(&settings(dir.path(), Some("sh aiorb.js"))).expect("sh is in PATH");
        assert!(resolved.program.ends_with("sh"));
        assert_eq!(resolved.leading_args, ["aiorb.js"]);
    }

    #[test]
    fn args_follow_protocol_section_2() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = settings(dir.path(), None);
        s.test_mode = true;
        let launch = OrbLaunch {
            room: "r1".into(),
            session: "s1".into(),
            coach: Some("c".into()),
            client: None,
            gpu: None,
            warm: false,
        };
        let warm = OrbLaunch {
            room: "warm+1".into(),
            warm: true,
            ..launch.clone()
        };
        assert_eq!(orb_args(&warm, "h:1", &s)[..2], ["--warm", "--cpu-host=h:1"]);
        assert_eq!(
            orb_args(&launch, "127.0.0.1:3000", &s),
            [
                "--room=r1",
                "--session=s1",
                "--coach=c",
                "--cpu-host=127.0.0.1:3000",
                "--max-lifetime=7200000",
                "--idle-timeout=300000",
                "--test-mode"
            ]
        );
    }
}
