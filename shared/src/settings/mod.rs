//! Settings helpers used by both binaries.
//!
//! Sources, highest first: command-line flag, environment variable, `.env`
//! file in the working directory, built-in default. Each setting is declared
//! once as a [`Setting`] (names, default, doc). Each binary declares its flags
//! with clap from those declarations (`env = X.env()`, so clap resolves flag >
//! environment and `--help` shows the names and defaults), then builds its
//! typed settings through a [`Validator`], which falls back to the `.env` file
//! and then to the declared default (read by the same [`Rule`] as a given
//! value), and collects every bad value so that all of them are reported at once.

mod dotenv;
mod setting;
mod validate;

pub use dotenv::{DotEnv, parse_dotenv};
pub use setting::{Fallback, Setting, undocumented};
pub use validate::{EXIT_USAGE, Key, MAX_DURATION_MS, Rule, SettingError, SettingErrors, Validator};
