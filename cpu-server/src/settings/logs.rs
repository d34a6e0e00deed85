//! Settings of cpu-server's own logs: file and format.

use std::path::PathBuf;

use clap::Args;
use shared::settings::{Key, Rule, Setting, Validator};

/// The production default of `CPU_LOG_FILE`.
pub const PRODUCTION_LOG_FILE: &str = "/var/log/myultracoach/cpu.log";

/// How log lines look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

const CPU_LOG_FILE: Setting = Setting::derived(
    Key::new("CPU_LOG_FILE", "cpu-log-file"),
    "none; /var/log/myultracoach/cpu.log in production",
    "Also log to this file, reopened on SIGHUP; `-` for none",
);
const LOG_FORMAT: Setting = Setting::derived(
    Key::new("LOG_FORMAT", "log-format"),
    "json in production, text in development",
    "json or text",
);

/// This area's declarations (for the documentation checks).
#[cfg(test)]
pub(super) const SETTINGS: &[&Setting] = &[&CPU_LOG_FILE, &LOG_FORMAT];

/// Raw flags of this area (each also readable from its environment variable).
#[derive(Debug, Clone, Default, Args)]
pub struct LogsArgs {
    /// `CPU_LOG_FILE`.
    #[arg(long = CPU_LOG_FILE.long(), env = CPU_LOG_FILE.env(), help = CPU_LOG_FILE.help())]
    pub cpu_log_file: Option<String>,
    /// `LOG_FORMAT`.
    #[arg(long = LOG_FORMAT.long(), env = LOG_FORMAT.env(), help = LOG_FORMAT.help())]
    pub log_format: Option<String>,
}

/// Typed settings of this area.
#[derive(Debug, Clone, Default)]
pub struct LogsSettings {
    /// `CPU_LOG_FILE`, when logging to a file too.
    pub file: Option<PathBuf>,
    /// `LOG_FORMAT`.
    pub format: LogFormat,
}

impl LogsArgs {
    /// Validates into [`LogsSettings`], recording every error in `v`.
    pub fn validate(self, v: &mut Validator<'_>, production: bool) -> LogsSettings {
        let file = match v.optional(&CPU_LOG_FILE, self.cpu_log_file) {
            Some(path) if path == "-" => None,
            Some(path) => Some(PathBuf::from(path)),
            None if production => Some(PathBuf::from(PRODUCTION_LOG_FILE)),
            None => None,
        };
        let rule = Rule::new("json or text", |raw| match raw {
            "json" => Ok(LogFormat::Json),
            "text" => Ok(LogFormat::Text),
            _ => Err(String::new()),
        });
        let format = v.opt(&LOG_FORMAT, self.log_format, rule).unwrap_or(if production {
            LogFormat::Json
        } else {
            LogFormat::Text
        });
        LogsSettings { file, format }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::settings::DotEnv;

    #[test]
    fn production_and_development_defaults() {
        let dotenv = DotEnv::default();
        let mut v = Validator::new(&dotenv);
        let prod = LogsArgs::default().validate(&mut v, true);
        assert_eq!(prod.file, Some(PathBuf::from(PRODUCTION_LOG_FILE)));
        assert_eq!(prod.format, LogFormat::Json);
        let dev = LogsArgs::default().validate(&mut v, false);
        assert_eq!((dev.file, dev.format), (None, LogFormat::Text));
        let bad = LogsArgs {
            cpu_log_file: None,
            log_format: Some("xml".into()),
        };
        bad.validate(&mut v, false);
        assert!(v.finish().is_err());
    }
}
