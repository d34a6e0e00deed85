//! The readable orb table of `cpu-server orbs list` (pure formatting).

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

/// One row per orb record: room, pid, state, uptime, restarts, RSS, CPU.
pub fn orb_table(records: &[Value]) -> String {
    let header = ["ROOM", "PID", "STATE", "UPTIME", "RESTARTS", "RSS", "CPU"].map(str::to_owned);
    let mut rows = vec![header.to_vec()];
    for r in records {
        rows.push(vec![
            cell(r, "room", |v| v.as_str().map(str::to_owned)),
            cell(r, "pid", |v| v.as_u64().map(|p| p.to_string())),
            cell(r, "state", |v| v.as_str().map(str::to_owned)),
            cell(r, "uptime_ms", |v| v.as_u64().map(uptime)),
            cell(r, "restarts", |v| v.as_u64().map(|n| n.to_string())),
            cell(r, "rss_bytes", |v| v.as_u64().map(bytes)),
            cell(r, "cpu_percent", |v| v.as_f64().map(|c| format!("{c:.1}%"))),
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|col| rows.iter().map(|row| row[col].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(text, width)| format!("{text:<width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    if records.is_empty() {
        out.push_str("(no orbs)\n");
    }
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
}
