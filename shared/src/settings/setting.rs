//! One declaration per setting: its names, its default and its doc, written once.
//!
//! Each settings area declares `const X: Setting = …` and uses it everywhere
//! the setting is named: in the clap attribute
//! (`#[arg(long = X.long(), env = X.env(), help = X.help())]`), in the
//! validator call (`v.millis(&X, given, min)`, which parses `X`'s default with
//! the same rule as a given value) and in the error naming it. A table of an
//! area's declarations lets its tests check that each one is documented with
//! its default ([`undocumented`]).

use super::Key;

/// What a setting is when nobody gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// A built-in value, parsed by the same rule as a given one; shown as `[default: VALUE]`.
    Value(&'static str),
    /// No built-in value: unset, or derived in code from other settings; the
    /// text says which (shown as `[default: TEXT]`).
    Derived(&'static str),
    /// The doc itself says what happens when it is not given (e.g. required).
    InDoc,
}

/// One setting: names, default, doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// Its environment variable and flag.
    pub key: Key,
    /// What it is when not given.
    pub default: Fallback,
    /// Help text, without the default (one line, no final period).
    pub doc: &'static str,
}

impl Setting {
    /// A setting with a built-in value, e.g. `"30000"`.
    pub const fn new(key: Key, default: &'static str, doc: &'static str) -> Self {
        Self {
            key,
            default: Fallback::Value(default),
            doc,
        }
    }

    /// A setting without a built-in value; `default` says what applies instead.
    pub const fn derived(key: Key, default: &'static str, doc: &'static str) -> Self {
        Self {
            key,
            default: Fallback::Derived(default),
            doc,
        }
    }

    /// A setting whose doc says what happens when it is not given.
    pub const fn documented(key: Key, doc: &'static str) -> Self {
        Self {
            key,
            default: Fallback::InDoc,
            doc,
        }
    }

    /// The environment variable (also looked up in `.env`).
    pub const fn env(&self) -> &'static str {
        self.key.env
    }

    /// The flag without dashes.
    ///
    /// # Panics
    /// When the setting has no flag (a declaration mistake that `--help` shows at once).
    pub const fn long(&self) -> &'static str {
        match self.key.flag {
            Some(flag) => flag,
            None => panic!("this setting has no flag"),
        }
    }

    /// The built-in value, if there is one.
    pub const fn value(&self) -> Option<&'static str> {
        match self.default {
            Fallback::Value(value) => Some(value),
            Fallback::Derived(_) | Fallback::InDoc => None,
        }
    }

    /// The `--help` text: the doc and, unless the doc says it, `[default: …]`.
    pub fn help(&self) -> String {
        match self.default {
            Fallback::Value(text) | Fallback::Derived(text) => format!("{} [default: {text}]", self.doc),
            Fallback::InDoc => self.doc.to_owned(),
        }
    }
}

/// The settings of `table` that `doc` does not document: each needs a line
/// naming it in backticks and, when it has a built-in value, showing that
/// value on the same line (as `` `VALUE` `` or a bare number). Returns one
/// sentence per problem.
pub fn undocumented(table: &[&Setting], doc: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for setting in table {
        let name = format!("`{}`", setting.env());
        let lines: Vec<&str> = doc.lines().filter(|line| line.contains(&name)).collect();
        if lines.is_empty() {
            problems.push(format!("{} is not documented", setting.env()));
            continue;
        }
        if let Some(value) = setting.value() {
            let quoted = format!("`{value}`");
            let shown = |line: &&str| {
                let rest = line.split_once(&name).map_or("", |(_, rest)| rest);
                rest.contains(&quoted) || rest.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| w == value)
            };
            if !lines.iter().any(shown) {
                problems.push(format!("{} is documented without its default {value}", setting.env()));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Setting = Setting::new(Key::new("MAX_ROOMS", "max-rooms"), "1000", "Most rooms");
    const B: Setting = Setting::derived(Key::env("ORB_MEMORY_LIMIT_MB"), "no limit", "Memory limit, MB");
    const C: Setting = Setting::documented(Key::new("ROOM_ID", "room"), "Room to join (required)");

    #[test]
    fn help_shows_the_default_once() {
        assert_eq!(A.help(), "Most rooms [default: 1000]");
        assert_eq!(B.help(), "Memory limit, MB [default: no limit]");
        assert_eq!(C.help(), "Room to join (required)");
        assert_eq!((A.env(), A.long(), A.value()), ("MAX_ROOMS", "max-rooms", Some("1000")));
        assert_eq!(B.value(), None);
    }

    #[test]
    fn undocumented_finds_missing_names_and_defaults() {
        let doc = "| `MAX_ROOMS` | `1000` | rooms |\n| `ORB_MEMORY_LIMIT_MB` | unset | |\n";
        assert!(undocumented(&[&A, &B], doc).is_empty());
        assert!(
            undocumented(&[&A], "| `MAX_ROOMS` | 1000 (≥ 1) | |").is_empty(),
            "bare number"
        );
        assert_eq!(undocumented(&[&A], "| `MAX_ROOMS` | `10000` | |").len(), 1);
        assert_eq!(undocumented(&[&C], doc), ["ROOM_ID is not documented"]);
    }
}
