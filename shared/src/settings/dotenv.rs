//! `.env` files, read the way Node's `dotenv` package reads them.
//!
//! The operators' `.env` files were written for Node's `dotenv`, which does no
//! variable expansion: `PASSWORD="p@ss#word$1"` means exactly `p@ss#word$1`.
//! `dotenvy` expands `$1` inside double quotes (to an empty string), which
//! would silently change such passwords, so this small parser follows
//! `dotenv`'s rules instead: optional `export `, `KEY=value` or `KEY: value`,
//! single, double or backtick quotes (multi-line allowed), `\n`/`\r` escapes in
//! double quotes only, `#` starts a comment outside quotes, unquoted values are
//! trimmed, later duplicates win.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The variables of one `.env` file.
#[derive(Debug, Clone, Default)]
pub struct DotEnv {
    vars: HashMap<String, String>,
    path: Option<PathBuf>,
}

impl DotEnv {
    /// Reads `dir/.env`; a missing file gives an empty set.
    pub fn load_from_dir(dir: &Path) -> std::io::Result<Self> {
        let path = dir.join(".env");
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Self {
                vars: parse_dotenv(&text).into_iter().collect(),
                path: Some(path),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e),
        }
    }

    /// A set built from pairs (tests, or settings given as a map).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self {
            vars: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
            path: None,
        }
    }

    /// The value of `name`, if the file sets it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// Every `(name, value)` the file sets, in no particular order.
    pub fn vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The file read, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

/// Parses `.env` text into `(name, value)` pairs in file order.
pub fn parse_dotenv(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (line_end, next) = match rest.find('\n') {
            Some(i) => (i, i + 1),
            None => (rest.len(), rest.len()),
        };
        let line = &rest[..line_end];
        match parse_assignment(line, rest) {
            Some((name, value, consumed)) => {
                out.push((name, value));
                rest = &rest[consumed.max(next).min(rest.len())..];
            }
            None => rest = &rest[next..],
        }
    }
    out
}

/// Parses one assignment starting at the head of `rest` (whose first line is
/// `line`). Returns the name, the value and how many bytes of `rest` it used
/// (more than one line for a multi-line quoted value).
fn parse_assignment(line: &str, rest: &str) -> Option<(String, String, usize)> {
    let trimmed = line.trim_start();
    let offset = line.len() - trimmed.len();
    let body = trimmed.strip_prefix("export ").map(str::trim_start).unwrap_or(trimmed);
    let body_offset = offset + (trimmed.len() - body.len());
    let name_len = body.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-'))?;
    if name_len == 0 {
        return None;
    }
    let name = &body[..name_len];
    let after_name = &body[name_len..];
    let after_ws = after_name.trim_start_matches([' ', '\t']);
    let value_part = after_ws.strip_prefix('=').or_else(|| after_ws.strip_prefix(':'))?;
    let value_start = body_offset + name_len + (after_name.len() - value_part.len());
    let value_text = &rest[value_start..];
    let leading = value_text.len() - value_text.trim_start_matches([' ', '\t']).len();
    let value_text = &value_text[leading..];
    let quote = value_text.chars().next().filter(|c| matches!(c, '"' | '\'' | '`'));
    if let Some(q) = quote
        && let Some(close) = value_text[1..].find(q)
    {
        let inner = &value_text[1..1 + close];
        let value = if q == '"' {
            inner.replace("\\n", "\n").replace("\\r", "\r")
        } else {
            inner.to_owned()
        };
        let used = value_start + leading + close + 2;
        // Skip the remainder of the closing line (trailing comment).
        let line_rest = rest[used..].find('\n').map_or(rest.len(), |i| used + i + 1);
        return Some((name.to_owned(), value, line_rest));
    }
    // Unquoted (or an unmatched quote): up to `#` on this line, trimmed.
    let first_line = &value_text[..value_text.find('\n').unwrap_or(value_text.len())];
    let value = first_line.split('#').next().unwrap_or("").trim();
    Some((name.to_owned(), value.to_owned(), line.len() + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(text: &str, name: &str) -> Option<String> {
        parse_dotenv(text)
            .into_iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    #[test]
    fn quoted_hash_and_dollar_read_back_exactly() {
        assert_eq!(get("A=\"p@ss#word$1\"\n", "A").as_deref(), Some("p@ss#word$1"));
        assert_eq!(get("A='p@ss#word$1'\n", "A").as_deref(), Some("p@ss#word$1"));
        assert_eq!(get("A=`p@ss#word$1`", "A").as_deref(), Some("p@ss#word$1"));
    }

    #[test]
    fn unquoted_hash_starts_a_comment() {
        assert_eq!(get("A=abc#def\n", "A").as_deref(), Some("abc"));
        assert_eq!(get("A = spaced value   # note\n", "A").as_deref(), Some("spaced value"));
    }

    #[test]
    fn export_prefix_comments_and_blank_lines() {
        let text = "# comment\n\nexport CPU_HOST=127.0.0.1:4000\n  MAX_CONCURRENT_ORBS=3 # three\nnot a line\n";
        let vars = parse_dotenv(text);
        assert_eq!(
            vars,
            vec![
                ("CPU_HOST".to_owned(), "127.0.0.1:4000".to_owned()),
                ("MAX_CONCURRENT_ORBS".to_owned(), "3".to_owned())
            ]
        );
    }

    #[test]
    fn double_quotes_expand_newlines_single_quotes_do_not() {
        assert_eq!(get("A=\"a\\nb\"", "A").as_deref(), Some("a\nb"));
        assert_eq!(get("A='a\\nb'", "A").as_deref(), Some("a\\nb"));
    }

    #[test]
    fn multi_line_quoted_value_and_following_lines() {
        let text = "KEY=\"line1\nline2\" # c\nNEXT=2\n";
        assert_eq!(get(text, "KEY").as_deref(), Some("line1\nline2"));
        assert_eq!(get(text, "NEXT").as_deref(), Some("2"));
    }

    #[test]
    fn empty_values_and_later_duplicates() {
        assert_eq!(get("A=\nB=1", "A").as_deref(), Some(""));
        assert_eq!(get("A=1\nA=2\n", "A").as_deref(), Some("2"));
        assert_eq!(get("A=\"unterminated\nB=1", "B").as_deref(), Some("1"));
    }

    #[test]
    fn crlf_lines() {
        assert_eq!(get("A=1\r\nB='x'\r\n", "A").as_deref(), Some("1"));
        assert_eq!(get("A=1\r\nB='x'\r\n", "B").as_deref(), Some("x"));
    }
}
