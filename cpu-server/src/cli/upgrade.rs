//! `cpu-server upgrade`: asks the running server to upgrade in place to the
//! binary now at its installed path, and waits until the new image serves.
//!
//! Exit 0 once the new image reports this upgrade `done`; exit 1 with the
//! reason when it was refused (busy, or the preflight failed: the server then
//! runs on unchanged), or when the server
//! did not come back as the new image in time.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::client::{AdminClient, ClientError};
use super::orbs::api_error;
use crate::settings::Settings;

/// Bound of the request: the preflight runs within it.
const PREFLIGHT: Duration = Duration::from_secs(60);
/// Bound of one status request (connections wait in the backlog while the server drains).
const POLL: Duration = Duration::from_secs(10);
/// Pause between status requests.
const POLL_EVERY: Duration = Duration::from_millis(200);
/// Longest wait for the new image: the drain (orbs' stop grace, sockets) and its start.
const COMMIT: Duration = Duration::from_secs(180);
/// Refused this long after the commit: the process is gone (an upgrade never
/// closes the listening socket; systemd restarts a failed service after 2 s).
const GONE: Duration = Duration::from_secs(3);

/// Runs the command; `restart_orbs`: the orbs are stopped (their rooms get new
/// ones) instead of handed over.
pub async fn run(settings: &Settings, restart_orbs: bool) -> Result<(), String> {
    let client = super::admin_client(settings)?;
    let path = if restart_orbs {
        "/api/upgrade?restart_orbs=true"
    } else {
        "/api/upgrade"
    };
    let answer = client
        .request("POST", path, None, PREFLIGHT)
        .await
        .map_err(|e| e.to_string())?;
    if answer.status != 202 {
        return Err(format!("upgrade refused: {}", api_error(&answer)));
    }
    let accepted: Value = serde_json::from_str(&answer.body).map_err(|e| format!("unexpected answer: {e}"))?;
    let id = accepted["id"].as_str().unwrap_or_default().to_owned();
    println!(
        "preflight passed: build {} -> {}; draining and replacing the program image",
        accepted["from_build"].as_str().unwrap_or("?"),
        accepted["to_build"].as_str().unwrap_or("?")
    );
    let status = wait_for(&client, &id).await?;
    println!(
        "upgraded: pid {} now runs build {} (pause {} ms; {} upgrades since the service started)",
        status["pid"],
        status["last"]["to_build"].as_str().unwrap_or("?"),
        status["last"]["pause_ms"],
        status["completed"]
    );
    Ok(())
}

/// Polls `GET /api/upgrade` until upgrade `id` is reported done.
async fn wait_for(client: &AdminClient, id: &str) -> Result<Value, String> {
    let deadline = Instant::now() + COMMIT;
    let mut refused_since: Option<Instant> = None;
    let mut last_error = String::new();
    while Instant::now() < deadline {
        match client.request("GET", "/api/upgrade", None, POLL).await {
            Ok(answer) if answer.status == 200 => {
                refused_since = None;
                let status: Value = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
                if status["last"]["id"] == id && status["last"]["result"] == "done" {
                    return Ok(status);
                }
                if status["state"] == "idle" {
                    return Err(format!(
                        "the server is serving again but not as this upgrade ({}): it restarted instead \
                         (the new image failed after the exec? see the journal)",
                        status["last"]
                    ));
                }
            }
            Ok(answer) => last_error = api_error(&answer),
            // The listening socket never closes during an upgrade: refused means the process is gone.
            Err(ClientError::Refused(addr)) => {
                let since = *refused_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= GONE {
                    return Err(format!(
                        "nothing listens on {addr} since the upgrade was committed: the new program image \
                         failed after the exec and the process ended (under systemd it is restarted, without \
                         the rooms; see journalctl -u myultracoach)"
                    ));
                }
            }
            Err(e) => last_error = e.to_string(),
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
    Err(format!(
        "the new image did not report upgrade {id} within {} s (last: {last_error})",
        COMMIT.as_secs()
    ))
}
