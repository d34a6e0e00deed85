//! Pieces of the chaos soak (`tests/chaos_soak.rs`): the misbehaving orb
//! script, process counting from `/proc`, fault counters, and a
//! sequence-checked pair of peers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::ws::{Client, Read};

/// Every chaos room name starts with this (orbs are found by `--room=cz…`).
pub const PREFIX: &str = "cz";

/// The orb program: picks a behaviour by room name (after the `manager_kit` prelude).
/// `czr*` execs the real gpu-orb (`ORB_REAL_BIN`); `czf*` floods stdout; `czt*`
/// ignores SIGTERM; `czg*` forks a grandchild that outlives it unless its group is
/// killed; `cze*` exits with an error after becoming ready; others are healthy.
pub const CHAOS_ORB: &str = r#"case "$room" in
  czr*) exec "$ORB_REAL_BIN" "$@" ;;
  czf*) ready; while beat; do yes 'flood flood flood flood flood flood flood flood' | head -n 3000; sleep 0.2; done ;;
  czt*) trap '' TERM; ready; while beat; do sleep 0.2; done ;;
  czg*) ( while :; do sleep 1; done ) & ready; while beat; do sleep 0.2; done ;;
  cze*) ready; sleep 0.5; echo "failing on purpose" >&2; exit 3 ;;
  *) ready; while beat; do sleep 0.2; done ;;
esac
"#;

/// Live (non-zombie) processes of the server on `port` (`--cpu-host=127.0.0.1:PORT`)
/// carrying a `--room=cz…` argument: (pid, pgrp, room). Leftovers of other runs
/// (other ports) are not counted.
pub fn chaos_processes(port: u16) -> Vec<(i32, i32, String)> {
    let needle = format!("--room={PREFIX}");
    let host = format!("--cpu-host=127.0.0.1:{port}");
    crate::procfs::all()
        .into_iter()
        .filter(|p| p.state != 'Z')
        .filter_map(|p| {
            let argv = crate::procfs::cmdline(p.pid);
            if !argv.contains(&host) {
                return None;
            }
            let room = argv
                .into_iter()
                .find_map(|a| a.strip_prefix(&needle).map(|r| format!("{PREFIX}{r}")))?;
            Some((p.pid, p.pgrp, room))
        })
        .collect()
}

/// SIGKILLs every process [`chaos_processes`] finds (cleanup after a failed run).
pub fn kill_all(port: u16) {
    for (pid, _, _) in chaos_processes(port) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
}

/// Orbs alive: one per process group led by a `--room=cz…` process (a shell
/// orb's forked-but-not-exec'd children share its group and are not counted twice).
pub fn orb_leaders(port: u16) -> Vec<(i32, String)> {
    let mut leaders: Vec<(i32, String)> = chaos_processes(port)
        .into_iter()
        .filter(|(pid, pgrp, _)| pid == pgrp)
        .map(|(pid, _, room)| (pid, room))
        .collect();
    leaders.sort();
    leaders.dedup();
    leaders
}

/// Counts of everything the soak did, printed at the end.
#[derive(Debug, Default, Clone)]
pub struct Counts(pub BTreeMap<&'static str, u64>);

impl Counts {
    /// Adds one to `what`.
    pub fn add(&mut self, what: &'static str) {
        *self.0.entry(what).or_default() += 1;
    }

    /// As JSON.
    pub fn json(&self) -> Value {
        json!(self.0)
    }
}

/// What the sequence checker saw: frames checked, epochs (reconnections) and violations.
#[derive(Debug, Default)]
pub struct SeqState {
    /// Frames received in order.
    pub checked: u64,
    /// Connections (re)established.
    pub epochs: u64,
    /// Lost or reordered frames on a live pair.
    pub violations: Vec<String>,
}

async fn join(url: &str, user: &str) -> Option<Client> {
    let mut client = Client::connect(url).await.ok()?;
    client
        .send(json!({"type":"join","userId":user,"userName":user,"userRole":"client"}))
        .await;
    client.try_recv_type("peer-discovery", Duration::from_secs(10)).await?;
    Some(client)
}

/// Two healthy peers in `url`'s room: `a` sends bursts of numbered `client_signal`s
/// to `b`, which must receive every one, in order, while both stay connected.
/// Reconnects (a new epoch) whenever a socket drops, e.g. across server restarts.
pub async fn sequence_pair(url: String, state: Arc<Mutex<SeqState>>, stop: Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::Ordering;
    while !stop.load(Ordering::Relaxed) {
        let (Some(mut a), Some(mut b)) = (join(&url, "seq-a").await, join(&url, "seq-b").await) else {
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        };
        if let Ok(mut s) = state.lock() {
            s.epochs += 1;
        }
        let mut seq: u64 = 0;
        'epoch: while !stop.load(Ordering::Relaxed) {
            for i in 0..10 {
                a.send(json!({"type":"client_signal","action":"seq","toId":"seq-b","seq":seq + i}))
                    .await;
            }
            for i in 0..10 {
                let want = seq + i;
                let got = loop {
                    match b.read(Duration::from_secs(20)).await {
                        Read::Json(v) if v["type"] == "client_signal" => break v["seq"].as_u64(),
                        Read::Json(_) => continue,
                        Read::Closed(_) => break 'epoch,
                        Read::Timeout => {
                            // A live socket that delivers nothing for 20 s lost the frame,
                            // unless the sender's side is gone too (server restarting).
                            if matches!(a.read(Duration::from_millis(10)).await, Read::Closed(_)) {
                                break 'epoch;
                            }
                            break None;
                        }
                    }
                };
                let mut s = match state.lock() {
                    Ok(s) => s,
                    Err(_) => return,
                };
                if got == Some(want) {
                    s.checked += 1;
                } else {
                    let epoch = s.epochs;
                    s.violations
                        .push(format!("sequence: expected {want}, got {got:?} (epoch {epoch})"));
                    break 'epoch;
                }
            }
            seq += 10;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        a.close().await;
        b.close().await;
    }
}
