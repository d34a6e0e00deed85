//! Tools for the attack tests: HS256 tokens made with the same crates the
//! server verifies with (`ring`, `base64`), raw upgrades with chosen headers,
//! orb tokens read from `/proc/<pid>/environ`, and hostile frame generators.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// A JWT over `claims`, HS256-signed with `secret`.
pub fn jwt(secret: &str, claims: &Value) -> String {
    let head = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, format!("{head}.{body}").as_bytes());
    format!("{head}.{body}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub use crate::http_client::upgrade as upgrade_with;

/// A `POST path` with an empty body and `Authorization: Bearer <token>`: status and body.
pub fn post(port: u16, path: &str, token: &str) -> Option<(u16, String)> {
    let headers = [crate::http_client::bearer(token)];
    crate::http_client::request(port, "POST", path, &headers, None, crate::http_client::DEFAULT_TIMEOUT)
}

/// The `code` of a JSON refusal body (empty when there is none).
pub fn body_code(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// `ORB_AUTH_TOKEN` of a running orb, read from its `/proc/<pid>/environ`.
pub fn orb_token(pid: i32) -> Option<String> {
    crate::procfs::environ(pid)
        .into_iter()
        .find_map(|v| v.strip_prefix("ORB_AUTH_TOKEN=").map(str::to_owned))
}

/// A `Name: value` line of `/proc/<pid>/status` (e.g. `Uid`), its value trimmed.
pub fn proc_status(pid: i32, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(|v| v.trim().to_owned()))
}

/// The soft limit named `name` (e.g. `Max open files`) in `/proc/<pid>/limits`.
pub fn proc_limit(pid: i32, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next().map(str::to_owned)
}

/// A small deterministic PRNG (xorshift64*), so a failing storm can be replayed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// Valid frames of every kind, the seeds the storm mutates.
pub const SEED_FRAMES: &[&str] = &[
    r#"{"type":"join","userId":"u1","userName":"Ann","userRole":"coach"}"#,
    r#"{"type":"join","userId":"ai-orb-x","userRole":"ai","participantType":"ai","token":"00"}"#,
    r#"{"type":"offer","offer":{"type":"offer","sdp":"v=0"},"toId":"u2"}"#,
    r#"{"type":"ice-candidate","candidate":{"candidate":"a","sdpMid":"0"},"targetId":"u2"}"#,
    r#"{"type":"client_signal","action":"hand_raised","value":true}"#,
    r#"{"type":"ai_control","action":"say","text":"hi"}"#,
    r#"{"type":"ai_status","status":"ready","sessionId":"s"}"#,
    r#"{"type":"orb_heartbeat","metrics":{"cpu":1}}"#,
    r#"{"type":"ai-orb-shutdown","reason":"error"}"#,
    r#"{"type":"ping"}"#,
    r#"{"type":"leave"}"#,
];

/// One hostile text frame: a mutated seed, a pathological shape, or an id
/// with control characters. `max` bounds its size.
pub fn hostile_text(rng: &mut Rng, max: usize) -> String {
    match rng.below(8) {
        0 => {
            let mut bytes = SEED_FRAMES[rng.below(SEED_FRAMES.len())].as_bytes().to_vec();
            for _ in 0..=rng.below(8) {
                let at = rng.below(bytes.len() + 1);
                match rng.below(3) {
                    0 if at < bytes.len() => bytes[at] = rng.next_u64() as u8,
                    1 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => bytes.insert(at, b"{}[]\",:\\0e-9"[rng.below(12)]),
                }
            }
            String::from_utf8_lossy(&bytes).into_owned()
        }
        1 => "[".repeat(rng.below(max.min(60_000)) + 1),
        2 => format!(r#"{{"type":"offer","x":{}}}"#, "{\"a\":".repeat(rng.below(2000) + 1)),
        3 => format!(
            r#"{{"type":"client_signal","value":1{}e99999999,"n":-{}}}"#,
            "9".repeat(rng.below(5000)),
            "1".repeat(rng.below(5000))
        ),
        4 => {
            let control: String = (0..rng.below(20) + 1)
                .map(|_| char::from(rng.below(32) as u8))
                .collect();
            serde_json::json!({"type":"join","userId":format!("u{control}"),"userName":control,"userRole":"coach\n"})
                .to_string()
        }
        5 => format!(
            r#"{{"type":"ai_control","text":"{}"}}"#,
            "\\u0000\\ud800".repeat(rng.below(500))
        ),
        6 => {
            let fields: String = (0..rng.below(2000)).map(|i| format!(r#","k{i}":{i}"#)).collect();
            format!(r#"{{"type":"client_signal"{fields}}}"#)
        }
        _ => {
            let len = rng.below(512);
            String::from_utf8_lossy(&rng.bytes(len)).into_owned()
        }
    }
}

/// Random bytes that are not valid UTF-8 (for binary frames and raw text).
pub fn invalid_utf8(rng: &mut Rng) -> Vec<u8> {
    let len = rng.below(256) + 1;
    let mut bytes = rng.bytes(len);
    bytes.push(0xff);
    bytes.insert(0, 0xc3);
    bytes
}
