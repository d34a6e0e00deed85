//! The readable orb table of `cpu-server orbs list` and the media and voice sections of
//! `cpu-server orbs show` (pure formatting).

use serde_json::Value;

/// `1h02m`, `3m07s`, `12s`.
pub fn uptime(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// `512B`, `1.5KiB`, `92.0MiB`, `1.2GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}

fn cell(value: &Value, key: &str, format: impl Fn(&Value) -> Option<String>) -> String {
    value.get(key).and_then(format).unwrap_or_else(|| "-".to_owned())
}

/// One row per orb record: room, pid, state, uptime, restarts, RSS, CPU, the GPU
/// when any orb has one (`ORB_GPUS`), GPU memory when NVML measures it, and the Slurm job and node (or why it waits)
/// when any orb is a cluster job.
pub fn orb_table(records: &[Value]) -> String {
    let gpus = records.iter().any(|r| r["gpu"].is_string());
    let mut header = ["ROOM", "PID", "STATE", "UPTIME", "RESTARTS", "RSS", "CPU"]
        .map(str::to_owned)
        .to_vec();
    if gpus {
        header.push("GPU".to_owned());
    }
    let gpu_memory = records.iter().any(|r| r["gpu_memory_bytes"].is_u64());
    if gpu_memory {
        header.push("GPU MEM".to_owned());
    }
    let jobs = records.iter().any(|r| r["placement"].is_object());
    if jobs {
        header.push("JOB".to_owned());
        header.push("NODE".to_owned());
    }
    let mut rows = vec![header];
    for r in records {
        let mut row = vec![
            cell(r, "room", |v| v.as_str().map(str::to_owned)),
            cell(r, "pid", |v| v.as_u64().map(|p| p.to_string())),
            cell(r, "state", |v| v.as_str().map(str::to_owned)),
            cell(r, "uptime_ms", |v| v.as_u64().map(uptime)),
            cell(r, "restarts", |v| v.as_u64().map(|n| n.to_string())),
            cell(r, "rss_bytes", |v| v.as_u64().map(bytes)),
            cell(r, "cpu_percent", |v| v.as_f64().map(|c| format!("{c:.1}%"))),
        ];
        if gpus {
            row.push(cell(r, "gpu", |v| v.as_str().map(str::to_owned)));
        }
        if gpu_memory {
            row.push(cell(r, "gpu_memory_bytes", |v| v.as_u64().map(bytes)));
        }
        if jobs {
            let placement = &r["placement"];
            row.push(cell(placement, "job", |v| v.as_str().map(str::to_owned)));
            // A waiting job shows Slurm's reason where a running one shows its node.
            let gpu = placement["gpu"]
                .as_str()
                .map(|g| format!(" (GPU {g})"))
                .unwrap_or_default();
            let node = cell(placement, "node", |v| v.as_str().map(|n| format!("{n}{gpu}")));
            let reason = cell(placement, "reason", |v| v.as_str().map(|r| format!("({r})")));
            row.push(if node == "-" { reason } else { node });
        }
        rows.push(row);
    }
    let mut out = aligned(&rows);
    if records.is_empty() {
        out.push_str("(no orbs)\n");
    }
    out
}

/// Rows as left-aligned columns two spaces apart, one line each.
fn aligned(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|col| rows.iter().map(|row| row[col].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(text, width)| format!("{text:<width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The `media` of an orb record (its last heartbeat's per-peer snapshot,
/// docs/protocol.md §4): one row per peer, then each peer's packets per source address.
pub fn media_section(media: &Value) -> String {
    let Some(peers) = media.as_array() else {
        return "media: none reported (ORB_MEDIA=false, or no heartbeat yet)\n".to_owned();
    };
    if peers.is_empty() {
        return "media: no peer connections\n".to_owned();
    }
    let header = ["PEER", "ICE", "DTLS", "IN", "OUT", "LAST PACKET", "FWD P99"].map(str::to_owned);
    let mut rows = vec![header.to_vec()];
    let mut sources = String::new();
    let count = |p: &Value, n: &str| p.get(n).and_then(Value::as_u64).unwrap_or(0);
    for p in peers {
        let peer = cell(p, "peer", |v| v.as_str().map(str::to_owned));
        rows.push(vec![
            peer.clone(),
            cell(p, "ice", |v| v.as_str().map(str::to_owned)),
            cell(p, "dtls", |v| v.as_str().map(str::to_owned)),
            format!("{} pkt / {}", count(p, "packets_in"), bytes(count(p, "bytes_in"))),
            format!("{} pkt / {}", count(p, "packets_out"), bytes(count(p, "bytes_out"))),
            cell(p, "last_packet_age_ms", |v| v.as_u64().map(|ms| format!("{ms} ms ago"))),
            cell(p, "forward_delay_p99_us", |v| v.as_u64().map(|us| format!("≤{us} µs"))),
        ]);
        let mut from: Vec<String> = p
            .get("sources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|s| format!("{} ({})", s["address"].as_str().unwrap_or("?"), count(s, "packets")))
            .collect();
        let others = count(p, "other_sources");
        if others > 0 {
            from.push(format!("others ({others})"));
        }
        sources.push_str(&format!(
            "  {peer} from: {}\n",
            if from.is_empty() {
                "-".to_owned()
            } else {
                from.join(", ")
            }
        ));
    }
    let mut out = format!("media: {} peer connection(s)\n", peers.len());
    for line in aligned(&rows).lines() {
        out.push_str(&format!("  {line}\n"));
    }
    out.push_str(&sources);
    out
}

/// The `voice` of an orb record (its last heartbeat's pipeline, docs/protocol.md §4) in one line.
pub fn voice_section(voice: &Value) -> String {
    if !voice.is_object() {
        return "voice: off (test mode, or no heartbeat yet)\n".to_owned();
    }
    let n = |name: &str| voice.get(name).and_then(Value::as_u64);
    let mut out = format!(
        "voice: {} for {}",
        voice["stage"].as_str().unwrap_or("?"),
        n("stage_age_ms").map_or("?".to_owned(), |ms| format!("{:.1}s", ms as f64 / 1000.0))
    );
    if let Some(ms) = n("pending_ms") {
        out.push_str(&format!(", utterance pending {ms} ms"));
    }
    out.push_str(&format!(
        "; {}/{} answered",
        n("answers").unwrap_or(0),
        n("utterances").unwrap_or(0)
    ));
    if let Some(errors) = n("errors").filter(|e| *e > 0) {
        let last = voice["last_error"].as_str().unwrap_or("?");
        out.push_str(&format!("; {errors} error(s), last {last}"));
    }
    if let Some(ms) = n("last_latency_ms") {
        out.push_str(&format!("; first audio {ms} ms"));
        if let Some(provider) = n("last_provider_ms") {
            out.push_str(&format!(" ({provider} ms in providers)"));
        }
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn units() {
        assert_eq!(uptime(12_400), "12s");
        assert_eq!(uptime(187_000), "3m07s");
        assert_eq!(uptime(3_720_000), "1h02m");
        assert_eq!(bytes(512), "512B");
        assert_eq!(bytes(1536), "1.5KiB");
        assert_eq!(bytes(92 * 1024 * 1024), "92.0MiB");
    }

    #[test]
    fn table_aligns_columns_and_marks_missing_values() {
        let records = [
            json!({"room": "r1", "pid": 4242, "state": "ready", "uptime_ms": 65_000, "restarts": 0,
                   "rss_bytes": 10_485_760, "cpu_percent": 3.34}),
            json!({"room": "long-room-name", "pid": null, "state": "queued", "uptime_ms": 0, "restarts": 2,
                   "rss_bytes": null, "cpu_percent": null}),
        ];
        let table = orb_table(&records);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "ROOM            PID   STATE   UPTIME  RESTARTS  RSS      CPU");
        assert_eq!(
            lines[1],
            "r1              4242  ready   1m05s   0         10.0MiB  3.3%"
        );
        assert_eq!(lines[2], "long-room-name  -     queued  0s      2         -        -");
        assert_eq!(
            orb_table(&[]),
            "ROOM  PID  STATE  UPTIME  RESTARTS  RSS  CPU\n(no orbs)\n"
        );
    }

    #[test]
    fn media_section_lists_peers_and_their_sources() {
        let media = json!([{"peer": "coach-1", "ice": "connected", "dtls": "connected",
            "packets_in": 1200, "bytes_in": 150_000, "packets_out": 1190, "bytes_out": 149_000,
            "frames_in": 1000, "frames_out": 1000, "last_packet_age_ms": 12,
            "sources": [{"address": "10.77.0.1:50000", "packets": 1200}], "other_sources": 3,
            "forward_delay_p99_us": 63, "forward_delay_max_us": 900}]);
        let text = media_section(&media);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "media: 1 peer connection(s)");
        assert_eq!(
            lines[1],
            "  PEER     ICE        DTLS       IN                   OUT                  LAST PACKET  FWD P99"
        );
        assert_eq!(
            lines[2],
            "  coach-1  connected  connected  1200 pkt / 146.5KiB  1190 pkt / 145.5KiB  12 ms ago    ≤63 µs"
        );
        assert_eq!(lines[3], "  coach-1 from: 10.77.0.1:50000 (1200), others (3)");
        assert_eq!(media_section(&json!([])), "media: no peer connections\n");
        assert!(media_section(&Value::Null).starts_with("media: none reported"));
    }

    #[test]
    fn voice_section_says_stage_counts_errors_and_latency() {
        let voice = json!({"stage": "thinking", "stage_age_ms": 1500, "pending_ms": 1500,
            "utterances": 5, "answers": 2, "errors": 1, "last_error": "stt_failed",
            "last_latency_ms": 27, "last_provider_ms": 26});
        assert_eq!(
            voice_section(&voice),
            "voice: thinking for 1.5s, utterance pending 1500 ms; 2/5 answered; 1 error(s), last stt_failed; first audio 27 ms (26 ms in providers)\n"
        );
        let quiet = json!({"stage": "listening", "stage_age_ms": 200, "pending_ms": null,
            "utterances": 0, "answers": 0, "errors": 0, "last_error": null,
            "last_latency_ms": null, "last_provider_ms": null});
        assert_eq!(voice_section(&quiet), "voice: listening for 0.2s; 0/0 answered\n");
        assert!(voice_section(&Value::Null).starts_with("voice: off"));
    }

    #[test]
    fn the_gpu_column_appears_when_an_orb_has_one() {
        let records = [
            json!({"room": "a", "pid": 1, "state": "ready", "uptime_ms": 0, "restarts": 0, "gpu": "0"}),
            json!({"room": "b", "state": "queued", "uptime_ms": 0, "restarts": 0}),
        ];
        let table = orb_table(&records);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].ends_with("CPU  GPU"), "{table}");
        assert!(lines[1].ends_with(" 0"), "{table}");
        assert!(lines[2].ends_with(" -"), "{table}");
    }

    #[test]
    fn the_gpu_memory_column_appears_when_nvml_measures_it() {
        let records = [
            json!({"room": "a", "state": "ready", "uptime_ms": 0, "restarts": 0, "gpu_memory_bytes": 52428800u64}),
            json!({"room": "b", "state": "queued", "uptime_ms": 0, "restarts": 0, "gpu_memory_bytes": null}),
        ];
        let table = orb_table(&records);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].ends_with("CPU  GPU MEM"), "{table}");
        assert!(lines[1].ends_with(" 50.0MiB"), "{table}");
        assert!(lines[2].ends_with(" -"), "{table}");
        let without = orb_table(&records[1..]);
        assert!(!without.contains("GPU MEM"), "{without}");
    }

    #[test]
    fn slurm_jobs_show_their_node_or_why_they_wait() {
        let records = [
            json!({"room": "a", "state": "ready", "uptime_ms": 0, "restarts": 0,
                "placement": {"state": "running", "job": "12", "node": "gpu07", "gpu": "1"}}),
            json!({"room": "b", "state": "spawning", "uptime_ms": 0, "restarts": 0,
                "placement": {"state": "pending", "job": "13", "reason": "Resources"}}),
        ];
        let table = orb_table(&records);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].ends_with("JOB  NODE"), "{table}");
        assert!(lines[1].ends_with("12   gpu07 (GPU 1)"), "{table}");
        assert!(lines[2].ends_with("13   (Resources)"), "{table}");
    }
}
