//! Settings helpers used by both binaries.
//!
//! Sources, highest first: command-line flag, environment variable, `.env`
//! file in the working directory, built-in default. Each binary declares its
//! flags with clap (`env = "NAME"`, so clap resolves flag > environment and
//! `--help` shows the names), then builds its typed settings through a
//! [`Validator`], which falls back to the `.env` file and then to the default,
//! and collects every bad value so that all of them are reported at once.

mod dotenv;
mod validate;

pub use dotenv::{DotEnv, parse_dotenv};
pub use validate::{EXIT_USAGE, Key, MAX_DURATION_MS, SettingError, SettingErrors, Validator};
