//! `cpu-server orbs …`: list, show, kill, kill-all, spawn, why, summary, reset, logs —
//! through the running server's admin API (logs read the file directly).

use std::time::Duration;

use clap::Subcommand;
use serde_json::{Value, json};

use super::client::Answer;
use super::table::{media_section, orb_table, voice_section};
use crate::rooms::room_id::validate_room_id;
use crate::settings::Settings;

/// Bound of a quick request.
const QUICK: Duration = Duration::from_secs(10);
/// Bound of a kill, which answers after the orb exited.
const KILL: Duration = Duration::from_secs(120);

/// Orb commands.
#[derive(Debug, Clone, Subcommand)]
pub enum OrbsCommand {
    /// Every orb: room, pid, state, uptime, restarts, RSS, CPU.
    List {
        /// The records as JSON.
        #[arg(long)]
        json: bool,
    },
    /// One room's orb record.
    Show {
        /// The room.
        room: String,
        /// The record as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stops one room's orb (graceful, then SIGTERM, then SIGKILL); waits for the exit.
    Kill {
        /// The room.
        room: String,
    },
    /// Stops every orb; waits until the last one exited (the emergency stop).
    KillAll,
    /// Starts a room's orb.
    Spawn {
        /// The room.
        room: String,
        /// Session id [default: generated].
        #[arg(long)]
        session: Option<String>,
    },
    /// Why the room's last orb ended or is not running, in one line, then its timeline.
    /// Exit 0 with an answer, 1 when the server knows nothing of the room.
    Why {
        /// The room.
        room: String,
        /// The timeline as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The room's last session summary (its transcript and summary text), kept
    /// after the orb is gone. Exit 0 with one, 1 when none is kept.
    Summary {
        /// The room.
        room: String,
        /// The answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Clears a parked orb's crash-loop state.
    Reset {
        /// The room.
        room: String,
    },
    /// The warm pool (ORB_WARM_POOL): size, ready members, assignments, failures,
    /// parked or disabled; `--reset` clears its failures (a parked pool refills now).
    Warm {
        /// Clear the pool's failure history first.
        #[arg(long)]
        reset: bool,
        /// The pool as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Prints ORB_LOG_DIR/orb-ROOM.log.
    Logs {
        /// The room.
        room: String,
        /// Keep printing new lines until Ctrl-C.
        #[arg(short, long)]
        follow: bool,
    },
}

fn room_ok(room: &str) -> Result<(), String> {
    validate_room_id(room).map_err(|e| format!("bad room id {room:?}: {e}"))
}

/// Runs `command`; `Err` is the message to print (exit 1).
pub async fn run(command: OrbsCommand, settings: &Settings) -> Result<(), String> {
    if let OrbsCommand::Logs { room, follow } = &command {
        room_ok(room)?;
        let path = settings.orbs.log_dir.join(format!("orb-{room}.log"));
        return super::logs::show(&path, *follow).await;
    }
    let client = super::admin_client(settings)?;
    match command {
        OrbsCommand::List { json } => {
            let answer = expect(client.request("GET", "/api/orbs", None, QUICK).await, 200)?;
            let records: Vec<Value> = parse(&answer)?;
            if json {
                println!("{}", answer.body);
            } else {
                print!("{}", orb_table(&records));
            }
        }
        OrbsCommand::Show { room, json } => {
            room_ok(&room)?;
            let answer = expect(
                client.request("GET", &format!("/api/orbs/{room}"), None, QUICK).await,
                200,
            )?;
            let mut record: Value = parse(&answer)?;
            if json {
                println!("{}", answer.body);
            } else {
                print!("{}", orb_table(std::slice::from_ref(&record)));
                let media = record
                    .as_object_mut()
                    .and_then(|r| r.remove("media"))
                    .unwrap_or_default();
                print!("{}", media_section(&media));
                let voice = record
                    .as_object_mut()
                    .and_then(|r| r.remove("voice"))
                    .unwrap_or_default();
                print!("{}", voice_section(&voice));
                println!("{}", serde_json::to_string_pretty(&record).unwrap_or_default());
            }
        }
        OrbsCommand::Kill { room } => {
            room_ok(&room)?;
            let answer = expect(
                client.request("DELETE", &format!("/api/orbs/{room}"), None, KILL).await,
                200,
            )?;
            let body: Value = parse(&answer)?;
            println!("stopped {room}: {}", body["exit"]);
        }
        OrbsCommand::KillAll => {
            let answer = expect(client.request("DELETE", "/api/orbs", None, KILL).await, 200)?;
            let body: Value = parse(&answer)?;
            let stopped = body["stopped"].as_array().cloned().unwrap_or_default();
            for entry in &stopped {
                println!("stopped {}: {}", entry["room"].as_str().unwrap_or("?"), entry["exit"]);
            }
            println!("{} orb(s) stopped", stopped.len());
        }
        OrbsCommand::Spawn { room, session } => {
            room_ok(&room)?;
            let body = json!({"room": room, "session": session}).to_string();
            let answer = client
                .request("POST", "/api/orbs", Some(&body), QUICK)
                .await
                .map_err(|e| e.to_string())?;
            let what = match answer.status {
                201 => "started",
                200 => "already running",
                202 => "queued",
                _ => return Err(api_error(&answer)),
            };
            let record: Value = parse(&answer)?;
            match record["queue_position"].as_u64() {
                Some(position) => println!("{room}: {what} (queue position {position})"),
                None => println!("{room}: {what} (pid {})", record["pid"]),
            }
        }
        OrbsCommand::Reset { room } => {
            room_ok(&room)?;
            let path = format!("/api/orbs/{room}/reset");
            let answer = expect(client.request("POST", &path, None, QUICK).await, 200)?;
            let record: Value = parse(&answer)?;
            println!("{room}: reset (state {})", record["state"]);
        }
        OrbsCommand::Why { room, json } => {
            room_ok(&room)?;
            let path = format!("/api/orbs/{room}/events");
            let answer = expect(client.request("GET", &path, None, QUICK).await, 200)?;
            let timeline: Value = parse(&answer)?;
            if json {
                println!("{}", answer.body);
            } else {
                print!("{}", why_text(&timeline));
            }
        }
        OrbsCommand::Summary { room, json } => {
            room_ok(&room)?;
            let path = format!("/api/orbs/{room}/summary");
            let answer = expect(client.request("GET", &path, None, QUICK).await, 200)?;
            let stored: Value = parse(&answer)?;
            if json {
                println!("{}", answer.body);
            } else {
                print!("{}", summary_text(&stored));
            }
        }
        OrbsCommand::Warm { reset, json } => {
            let (method, path) = if reset {
                ("POST", "/api/warm-pool/reset")
            } else {
                ("GET", "/api/warm-pool")
            };
            let answer = expect(client.request(method, path, None, QUICK).await, 200)?;
            let pool: Value = parse(&answer)?;
            if json {
                println!("{}", answer.body);
            } else {
                print!("{}", warm_text(&pool));
            }
        }
        OrbsCommand::Logs { .. } => {}
    }
    Ok(())
}

/// The pool in one line, then one line per member.
fn warm_text(pool: &Value) -> String {
    let n = |k: &str| pool[k].as_u64().unwrap_or(0);
    let mut out = format!(
        "warm pool: {} ready of {}, {} starting; {} assigned, {} failed",
        n("ready"),
        n("size"),
        n("starting"),
        n("assignments"),
        n("failures")
    );
    if let Some(ms) = pool["parked_for_ms"].as_u64() {
        out.push_str(&format!("; parked for {:.1} s more", ms as f64 / 1000.0));
    }
    if let Some(why) = pool["disabled"].as_str() {
        out.push_str(&format!("; disabled: {why}"));
    }
    out.push('\n');
    for member in pool["members"].as_array().into_iter().flatten() {
        let pid = member["pid"].as_u64().map_or("-".to_owned(), |p| p.to_string());
        let seat = if member["seated"] == true {
            "  room socket open"
        } else {
            ""
        };
        out.push_str(&format!(
            "  {}  pid {pid}  {}  {:.1} s{seat}\n",
            member["id"].as_str().unwrap_or("?"),
            member["state"].as_str().unwrap_or("?"),
            member["uptime_ms"].as_u64().unwrap_or(0) as f64 / 1000.0
        ));
    }
    out
}

/// A header line, the summary text, then one line per transcript entry; a
/// summary of another shape is printed as JSON.
fn summary_text(stored: &Value) -> String {
    let summary = &stored["summary"];
    let mut header = format!(
        "{}: session {}, received {}",
        stored["room"].as_str().unwrap_or("?"),
        stored["session"].as_str().unwrap_or("?"),
        clock_ms(stored["receivedAt"].as_u64().unwrap_or(0))
    );
    if let Some(turns) = summary["turns"].as_u64() {
        header.push_str(&format!(", {turns} turn(s)"));
    }
    if summary["truncated"].as_bool() == Some(true) {
        header.push_str(" (transcript truncated)");
    }
    let mut out = format!("{header}\n");
    let transcript = summary["transcript"].as_array();
    if transcript.is_none() && !summary["summary"].is_string() {
        out.push_str(&serde_json::to_string_pretty(summary).unwrap_or_default());
        out.push('\n');
        return out;
    }
    if let Some(text) = summary["summary"].as_str() {
        out.push_str(&format!("summary: {text}\n"));
    }
    for turn in transcript.into_iter().flatten() {
        let at = match turn["atMs"].as_u64() {
            // Epoch milliseconds, or an offset into the session.
            Some(ms) if ms >= 1_000_000_000_000 => clock_ms(ms),
            Some(ms) => format!("+{:.1} s", ms as f64 / 1000.0),
            None => "?".to_owned(),
        };
        out.push_str(&format!(
            "  {at} {} ({}): {}\n",
            turn["speaker"].as_str().unwrap_or("?"),
            turn["role"].as_str().unwrap_or("?"),
            turn["text"].as_str().unwrap_or_default()
        ));
    }
    out
}

/// `HH:MM:SS.mmm UTC`.
fn clock_ms(at_ms: u64) -> String {
    let secs = (at_ms / 1000) % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        at_ms % 1000
    )
}

/// The "why" line, then one line per timeline event: `HH:MM:SS.mmm event fields`.
fn why_text(timeline: &Value) -> String {
    let mut out = format!(
        "{}: {}\n",
        timeline["room"].as_str().unwrap_or("?"),
        timeline["why"].as_str().unwrap_or("?")
    );
    for event in timeline["events"].as_array().into_iter().flatten() {
        let at_ms = event["at_ms"].as_u64().unwrap_or(0);
        let secs = (at_ms / 1000) % 86_400;
        let mut fields = event.as_object().cloned().unwrap_or_default();
        fields.remove("at_ms");
        let name = fields
            .remove("event")
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let rest: Vec<String> = fields
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| format!("{k}={}", v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
            .collect();
        out.push_str(&format!(
            "  {:02}:{:02}:{:02}.{:03} {name} {}\n",
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            at_ms % 1000,
            rest.join(" ")
        ));
    }
    out
}

pub(super) fn expect(answer: Result<Answer, super::client::ClientError>, status: u16) -> Result<Answer, String> {
    let answer = answer.map_err(|e| e.to_string())?;
    if answer.status == status {
        Ok(answer)
    } else {
        Err(api_error(&answer))
    }
}

pub(super) fn api_error(answer: &Answer) -> String {
    let body: Value = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
    match (body["error"].as_str(), body["code"].as_str()) {
        (Some(error), Some(code)) => format!("{error} ({code}, HTTP {})", answer.status),
        _ => format!("unexpected answer HTTP {}: {}", answer.status, answer.body),
    }
}

fn parse<T: serde::de::DeserializeOwned>(answer: &Answer) -> Result<T, String> {
    serde_json::from_str(&answer.body).map_err(|e| format!("unexpected answer from cpu-server: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rule: a summary reads as a header, its text and one line per turn; another shape as JSON.
    #[test]
    fn the_warm_pool_reads_as_lines() {
        let pool = json!({"size": 2, "ready": 1, "starting": 1, "assignments": 3, "failures": 0,
            "parked_for_ms": null, "disabled": null,
            "members": [{"id": "warm+4", "pid": 77, "state": "ready", "uptime_ms": 1500, "seated": true},
                        {"id": "warm+5", "pid": null, "state": "spawning", "uptime_ms": 0}]});
        assert_eq!(
            warm_text(&pool),
            "warm pool: 1 ready of 2, 1 starting; 3 assigned, 0 failed\n  warm+4  pid 77  ready  1.5 s  room socket open\n  warm+5  pid -  spawning  0.0 s\n"
        );
        let off = json!({"size": 1, "ready": 0, "starting": 0, "assignments": 0, "failures": 1,
            "parked_for_ms": 2500, "disabled": "it said orb_ready", "members": []});
        assert_eq!(
            warm_text(&off),
            "warm pool: 0 ready of 1, 0 starting; 0 assigned, 1 failed; parked for 2.5 s more; disabled: it said orb_ready\n"
        );
    }

    #[test]
    fn summaries_read_as_lines() {
        let stored = json!({"room": "r1", "session": "s1", "receivedAt": 38_523_000u64, "summary": {
            "transcript": [
                {"speaker": "coach-1", "role": "coach", "text": "hello", "atMs": 1500},
                {"speaker": "ai-orb-s1", "role": "ai", "text": "echo: hello", "atMs": 1_700_000_000_250u64}
            ],
            "summary": null, "turns": 1, "truncated": true
        }});
        assert_eq!(
            summary_text(&stored),
            "r1: session s1, received 10:42:03.000 UTC, 1 turn(s) (transcript truncated)\n  \
             +1.5 s coach-1 (coach): hello\n  22:13:20.250 UTC ai-orb-s1 (ai): echo: hello\n"
        );
        let other = json!({"room": "r1", "session": "s1", "receivedAt": 0, "summary": {"turns": 3}});
        assert!(
            summary_text(&other).ends_with("{\n  \"turns\": 3\n}\n"),
            "{}",
            summary_text(&other)
        );
    }
}
