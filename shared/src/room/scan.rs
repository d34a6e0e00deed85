//! A strict single pass over JSON text, for the relay's fast path: it checks a
//! value as `serde_json::Value` would accept it and reports where things are,
//! without decoding or allocating anything.
//!
//! It only ever errs on the safe side: whatever it accepts, serde_json accepts
//! too; what it is unsure of (numbers with an exponent or hundreds of digits,
//! which may overflow a float, and nesting deeper than [`MAX_DEPTH`]) it refuses,
//! and the caller then takes the full parse, which decides.

use std::ops::Range;

/// Deepest nesting accepted here (serde_json's own limit is 128).
const MAX_DEPTH: usize = 64;
/// Longest integer part accepted here: a float overflows from 309 digits on.
const MAX_INT_DIGITS: usize = 300;

/// A position in the text being read.
#[derive(Debug)]
pub(super) struct Cursor<'a> {
    bytes: &'a [u8],
    /// The next byte to read.
    pub at: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `text`.
    pub fn new(text: &'a str) -> Self {
        Self {
            bytes: text.as_bytes(),
            at: 0,
        }
    }

    /// Skips JSON whitespace.
    pub fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte, consumed.
    pub fn next(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    /// The next byte, not consumed.
    pub fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// Consumes `b` if it comes next.
    pub fn eat(&mut self, b: u8) -> bool {
        let next = self.peek() == Some(b);
        self.at += usize::from(next);
        next
    }

    /// Whether everything was read.
    pub fn at_end(&self) -> bool {
        self.at == self.bytes.len()
    }

    /// A string starting at its opening quote: the range of its contents and
    /// whether they hold an escape (so differ from what they decode to).
    pub fn string(&mut self) -> Option<(Range<usize>, bool)> {
        if !self.eat(b'"') {
            return None;
        }
        let start = self.at;
        let mut escaped = false;
        // Bounded: each round consumes at least the quote or backslash it found.
        loop {
            let rest = &self.bytes[self.at..];
            let stop = memchr::memchr2(b'"', b'\\', rest)?;
            // No early exit: the compiler checks the run as vectors.
            if rest[..stop].iter().fold(u8::MAX, |low, &b| low.min(b)) < 0x20 {
                return None;
            }
            self.at += stop + 1;
            if rest[stop] == b'"' {
                return Some((start..self.at - 1, escaped));
            }
            escaped = true;
            self.escape()?;
        }
    }

    /// The rest of an escape after its backslash; a `\u` surrogate must pair.
    fn escape(&mut self) -> Option<()> {
        match self.next()? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(()),
            b'u' => match self.hex4()? {
                0xD800..=0xDBFF => {
                    let pair = self.eat(b'\\') && self.eat(b'u');
                    (pair && (0xDC00..=0xDFFF).contains(&self.hex4()?)).then_some(())
                }
                0xDC00..=0xDFFF => None,
                _ => Some(()),
            },
            _ => None,
        }
    }

    fn hex4(&mut self) -> Option<u16> {
        let digits = self.bytes.get(self.at..self.at + 4)?;
        let mut unit = 0u16;
        for &d in digits {
            unit = unit << 4 | u16::from((d as char).to_digit(16)? as u8);
        }
        self.at += 4;
        Some(unit)
    }

    /// Any value, starting at its first byte, `depth` levels deep.
    pub fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => self.container(depth, b'}', true),
            b'[' => self.container(depth, b']', false),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// An object (`keyed`) or an array, from its opening bracket to `close`.
    fn container(&mut self, depth: usize, close: u8, keyed: bool) -> Option<()> {
        if depth >= MAX_DEPTH {
            return None;
        }
        self.at += 1;
        self.skip_ws();
        if self.eat(close) {
            return Some(());
        }
        // Bounded: each round consumes at least one member or element.
        loop {
            if keyed {
                self.string()?;
                self.skip_ws();
                if !self.eat(b':') {
                    return None;
                }
                self.skip_ws();
            }
            self.value(depth + 1)?;
            self.skip_ws();
            match self.next()? {
                b',' => self.skip_ws(),
                b if b == close => return Some(()),
                _ => return None,
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let found = self.bytes.get(self.at..self.at + word.len())? == word;
        self.at += word.len();
        found.then_some(())
    }

    /// A number as JSON writes it; one with an exponent or a very long integer
    /// part is refused (it may overflow: the full parse decides).
    fn number(&mut self) -> Option<()> {
        self.eat(b'-');
        let int_start = self.at;
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.at - int_start > MAX_INT_DIGITS {
            return None;
        }
        if self.eat(b'.') {
            let fraction = self.at;
            self.digits();
            if self.at == fraction {
                return None;
            }
        }
        match self.peek() {
            Some(b'e' | b'E') => None,
            _ => Some(()),
        }
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
    }
}

/// Calls `f` with every prefix of `seed` and every change of one of its bytes
/// to one of `swaps` that is still UTF-8 (tests of what reads JSON).
#[cfg(test)]
pub(super) fn variants(seed: &str, swaps: &[u8], mut f: impl FnMut(&str)) {
    let bytes = seed.as_bytes();
    for end in 0..=bytes.len() {
        if let Ok(prefix) = std::str::from_utf8(&bytes[..end]) {
            f(prefix);
        }
    }
    for at in 0..bytes.len() {
        for &b in swaps {
            let mut changed = bytes.to_vec();
            changed[at] = b;
            if let Ok(text) = String::from_utf8(changed) {
                f(&text);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A whole text as one value, as the tests read it.
    fn accepts(text: &str) -> bool {
        let mut c = Cursor::new(text);
        c.skip_ws();
        let ok = c.value(0).is_some();
        c.skip_ws();
        ok && c.at_end()
    }

    /// Rule: whatever the scan accepts, serde_json accepts.
    fn agrees(text: &str) {
        if accepts(text) {
            assert!(
                serde_json::from_str::<serde_json::Value>(text).is_ok(),
                "accepted what serde_json refuses: {text:?}"
            );
        }
    }

    #[test]
    fn a_long_string_ends_at_its_quote_and_fails_on_any_control_byte() {
        let plain = "p".repeat(100);
        for at in 0..plain.len() {
            let mut bytes = plain.clone().into_bytes();
            bytes[at] = 0x1F;
            let text = format!("\"{}\"", String::from_utf8(bytes).expect("ascii"));
            assert!(!accepts(&text), "a control byte at {at}");
            let text = format!("\"{}\"{}\"", &plain[..at], &plain[at..]);
            assert!(!accepts(&text), "a quote at {at} ends the string early");
            let text = format!("\"{}\\n{}\"", &plain[..at], &plain[at..]);
            assert!(accepts(&text), "an escape at {at}");
        }
    }

    #[test]
    fn plain_values_are_accepted() {
        for text in [
            "0",
            "-0",
            "12.5",
            "-0.001",
            "true",
            "false",
            "null",
            r#""""#,
            r#""caf\u00e9 \"q\" \\ \/ \b\f\n\r\t""#,
            r#""\ud83d\ude00""#,
            "\"\u{7f} é 日本\"",
            "[]",
            "{}",
            r#" { "a" : [ 1 , { "b" : null } ] , "c" : "d" } "#,
            "\"a string longer than eight bytes, with no escape at all in it\"",
        ] {
            assert!(accepts(text), "{text:?}");
            agrees(text);
        }
    }

    #[test]
    fn bad_or_unsure_values_are_refused() {
        for text in [
            "",
            "01",
            "-",
            "1.",
            ".5",
            "+1",
            "1e5",
            "1E-5",
            "tru",
            "nul",
            "True",
            r#""open"#,
            r#""\x""#,
            r#""\u12""#,
            r#""\ud800""#,
            r#""\ud800\u0041""#,
            r#""\udc00""#,
            "\"tab\there\"",
            "\"a control \u{1} byte after eight\"",
            "[1,]",
            "[1 2]",
            "{\"a\"}",
            "{\"a\":1,}",
            "{1:2}",
            "{'a':1}",
            "[",
            "{\"a\":1",
        ] {
            assert!(!accepts(text), "{text:?}");
        }
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(!accepts(&deep), "too deep");
        let fine = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(accepts(&fine));
        assert!(!accepts(&"9".repeat(MAX_INT_DIGITS + 1)), "may overflow");
    }

    /// Rule, checked over many texts: each prefix and each one-byte change of a
    /// set of frames (deterministic, bounded) is accepted only if serde_json
    /// accepts it; unchanged, every one is accepted.
    #[test]
    fn never_accepts_what_serde_json_refuses() {
        let seeds = [
            r#"{"type":"offer","toId":"b","offer":{"sdp":"v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\n","type":"offer"}}"#,
            r#"{"type":"ice-candidate","candidate":{"candidate":"candidate:1 1 udp 2122 10.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0},"targetId":"c"}"#,
            r#"{"a":[true,false,null,-1.25,0,{"b":"\u00e9\ud83d\ude00"}],"c":""}"#,
        ];
        let swaps = b"\"\\{}[]:,0-.eE tfnu\x01x";
        let mut checked = 0;
        for seed in seeds {
            assert!(accepts(seed), "{seed}");
            variants(seed, swaps, |text| {
                agrees(text);
                checked += 1;
            });
        }
        assert!(checked > 5_000, "{checked}");
    }
}
