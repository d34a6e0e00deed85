//! The environment an orb gets: an explicit allowlist, never the server's whole
//! environment (docs/protocol.md §2.2; §6.10: orbs used to inherit every secret).

use super::orb_command::OrbLaunch;
use super::process_control::LaunchEnv;
use crate::settings::OrbSettings;

/// Every variable one orb starts with, wherever it runs: the allowlisted part of the
/// server's environment and `.env`, then its own (room, session, token, marker).
pub fn launch_vars(
    settings: &OrbSettings,
    launch: &OrbLaunch,
    env: &LaunchEnv,
    cpu_host: &str,
) -> Vec<(String, String)> {
    let inherited = with_dotenv(std::env::vars(), &settings.dotenv_vars.0);
    let mut vars = filter_env(inherited, &settings.env_passthrough);
    if !launch.warm {
        // A warm orb gets its room, session and room token later, in `orb_assign`.
        vars.extend([
            ("ROOM_ID".to_owned(), launch.room.clone()),
            ("SESSION_ID".to_owned(), launch.session.clone()),
        ]);
    }
    // A warm orb's token is its process's own: it opens its room socket (`/orb-seat`) with it.
    vars.push(("ORB_AUTH_TOKEN".to_owned(), env.auth_token.clone()));
    vars.extend([
        ("CPU_SERVER_HOST".to_owned(), cpu_host.to_owned()),
        ("ORB_LOG_DIR".to_owned(), settings.log_dir.display().to_string()),
        (
            "ORB_HEARTBEAT_INTERVAL".to_owned(),
            env.heartbeat_interval_ms.to_string(),
        ),
        ("ORB_SUPERVISED".to_owned(), "1".to_owned()),
    ]);
    if settings.test_mode {
        vars.push(("ORB_TEST_MODE".to_owned(), "true".to_owned()));
    }
    vars
}

/// Names passed through by default; `PREFIX_*` entries match by prefix.
pub const DEFAULT_ALLOWLIST: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "TZ",
    "RUST_LOG",
    "ORB_*",
    "CPU_*",
    "OPENAI_*",
    "ELEVENLABS_*",
    "NODE_ENV",
];

/// Server-side names that match the default prefixes but must never reach an orb.
/// (`ORB_WARM` is set by the manager alone, through `--warm` for pool members.)
const NEVER_PASSED: &[&str] = &[
    "ORB_AUTH_TOKEN",
    "ORB_COMMAND",
    "ORB_ENV_PASSTHROUGH",
    "ORB_WARM",
    "ADMIN_TOKEN",
];

/// Whether `name` matches one allowlist entry (`NAME` exactly, or `PREFIX_*`).
fn matches(entry: &str, name: &str) -> bool {
    match entry.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => entry == name,
    }
}

/// The server's variables as an orb may inherit them: the process
/// environment, plus the `.env` pairs it does not set (as dotenv would have
/// loaded them into the environment), before [`filter_env`].
pub fn with_dotenv(
    process: impl IntoIterator<Item = (String, String)>,
    dotenv: &[(String, String)],
) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = process.into_iter().collect();
    for (name, value) in dotenv {
        if !vars.iter().any(|(n, _)| n == name) {
            vars.push((name.clone(), value.clone()));
        }
    }
    vars
}

/// Filters `vars` (e.g. `std::env::vars()`) down to what an orb may see.
pub fn filter_env(vars: impl IntoIterator<Item = (String, String)>, extra_allow: &[String]) -> Vec<(String, String)> {
    vars.into_iter()
        .filter(|(name, _)| !NEVER_PASSED.contains(&name.as_str()))
        .filter(|(name, _)| {
            DEFAULT_ALLOWLIST.iter().any(|entry| matches(entry, name))
                || extra_allow.iter().any(|entry| matches(entry, name))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(vars: Vec<(String, String)>) -> Vec<String> {
        let mut names: Vec<String> = vars.into_iter().map(|(n, _)| n).collect();
        names.sort();
        names
    }

    /// Rule (audit item 7): allowlisted `.env` values reach orbs; the environment wins.
    #[test]
    fn dotenv_values_reach_orbs_unless_the_environment_sets_them() {
        let process = [("PATH", "/bin"), ("OPENAI_MODEL", "from-env")].map(|(a, b)| (a.to_owned(), b.to_owned()));
        let dotenv = [
            ("OPENAI_API_KEY", "from-dotenv"),
            ("OPENAI_MODEL", "from-dotenv"),
            ("JWT_SECRET", "never"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()));
        let mut vars = filter_env(with_dotenv(process, &dotenv), &[]);
        vars.sort();
        let expected = [
            ("OPENAI_API_KEY", "from-dotenv"),
            ("OPENAI_MODEL", "from-env"),
            ("PATH", "/bin"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()));
        assert_eq!(vars, expected);
    }

    #[test]
    fn only_allowlisted_names_pass() {
        let vars = [
            ("PATH", "/bin"),
            ("DATABASE_PASSWORD", "secret"),
            ("OPENAI_API_KEY", "k"),
            ("ORB_TEST_MODE", "true"),
            ("AWS_SECRET_ACCESS_KEY", "x"),
            ("ORB_AUTH_TOKEN", "server's own"),
            ("MY_FLAG", "1"),
            ("TEAM_A", "a"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()));
        assert_eq!(
            names(filter_env(vars.clone(), &[])),
            ["OPENAI_API_KEY", "ORB_TEST_MODE", "PATH"]
        );
        let extra = vec!["MY_FLAG".to_owned(), "TEAM_*".to_owned()];
        assert_eq!(
            names(filter_env(vars, &extra)),
            ["MY_FLAG", "OPENAI_API_KEY", "ORB_TEST_MODE", "PATH", "TEAM_A"]
        );
    }
}
