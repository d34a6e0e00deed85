//! The upgrade controller: one task that takes upgrade requests one at a time,
//! runs the preflight and, when it passes, hands the commit to the server's
//! main loop (which drains and execs). It owns the upgrade status that
//! `GET /api/upgrade` shows.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use super::handover::{FORMAT, Handover, PREVIOUS, UpgradeRecord};
use super::preflight::{self, Installed};

/// Requests waiting behind the one being handled.
const QUEUE: usize = 4;

/// Who asked for an upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `POST /api/upgrade` (`cpu-server upgrade`).
    Api,
    /// SIGUSR2.
    Signal,
}

impl Origin {
    fn name(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Signal => "SIGUSR2",
        }
    }
}

/// The end of one upgrade request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// The upgrade's id.
    pub id: String,
    /// Who asked.
    pub origin: String,
    /// The build that was running.
    pub from_build: String,
    /// The build asked for (empty if the preflight could not tell).
    pub to_build: String,
    /// `done` (this image is the new one) or `refused`.
    pub result: &'static str,
    /// Why it was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// From the commit to the new image serving, in ms (done only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_ms: Option<u64>,
    /// When it ended, in ms since the Unix epoch.
    pub at_ms: u64,
}

/// What `GET /api/upgrade` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// `idle`, `preflight` or `committing`.
    pub state: &'static str,
    /// The installed binary an upgrade would run.
    pub binary: Option<String>,
    /// The last upgrade that ended (a `done` one survives into the new image).
    pub last: Option<Outcome>,
    /// Upgrades completed since the service started.
    pub completed: u64,
    /// This process (the same before and after an upgrade).
    pub pid: u32,
}

/// A passed preflight: the server must now drain and exec.
#[derive(Debug)]
pub struct Commit {
    /// The upgrade (its `committed_at_ms` is set when the drain starts).
    pub record: UpgradeRecord,
    /// Stop the orbs (their rooms get new ones) rather than hand them over.
    pub restart_orbs: bool,
    /// The handover format the new binary reads ([`FORMAT`], or [`PREVIOUS`] for
    /// a rollback to the previous release: then its orbs are stopped).
    pub format: u32,
}

/// A request's answer once its preflight passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Accepted {
    /// The upgrade's id.
    pub id: String,
    /// The running build.
    pub from_build: String,
    /// The build the new binary reported.
    pub to_build: String,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Another request is being handled, or an upgrade is committing.
    #[error("{0}")]
    Busy(String),
    /// This server cannot upgrade (it does not know its executable).
    #[error("{0}")]
    Unavailable(String),
    /// The new binary failed its preflight; the server carries on unchanged.
    #[error("preflight failed: {0}")]
    Preflight(String),
}

type Reply = oneshot::Sender<Result<Accepted, Refusal>>;

/// Handle to the controller; cheap to clone.
#[derive(Debug, Clone)]
pub struct UpgradeHandle {
    requests: mpsc::Sender<(Origin, bool, Reply)>,
    status: watch::Receiver<Status>,
}

impl UpgradeHandle {
    /// Asks for an upgrade; answers once the preflight passed or with why not.
    pub async fn request(&self, origin: Origin) -> Result<Accepted, Refusal> {
        self.request_with(origin, false).await
    }

    /// [`UpgradeHandle::request`]; `restart_orbs`: the orbs are stopped (their
    /// rooms get new ones) instead of handed over.
    pub async fn request_with(&self, origin: Origin, restart_orbs: bool) -> Result<Accepted, Refusal> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .try_send((origin, restart_orbs, reply))
            .map_err(|_| Refusal::Busy("an upgrade is already under way".to_owned()))?;
        answer
            .await
            .unwrap_or_else(|_| Err(Refusal::Busy("the server is stopping".to_owned())))
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }
}

/// What the controller needs from the server.
pub struct Setup {
    /// The executable to run again (`None`: upgrades are refused).
    pub installed: Option<Installed>,
    /// Builds the handover the preflight feeds the new binary (the listeners
    /// and counters as they are now).
    pub preview: Box<dyn Fn(UpgradeRecord) -> Handover + Send>,
    /// What a previous image handed over (this image is its upgrade).
    pub inherited: Option<Outcome>,
    /// Upgrades completed before this image.
    pub completed: u64,
    /// Bound of the preflight.
    pub timeout: Duration,
}

/// Starts the controller; commits arrive on the returned receiver (at most one).
pub fn spawn(setup: Setup) -> (UpgradeHandle, mpsc::Receiver<Commit>) {
    let (requests, mut inbox) = mpsc::channel::<(Origin, bool, Reply)>(QUEUE);
    let (commits, commit_rx) = mpsc::channel(1);
    let Setup {
        installed,
        preview,
        inherited,
        completed,
        timeout,
    } = setup;
    let (status_tx, status) = watch::channel(Status {
        state: "idle",
        binary: installed.as_ref().map(|i| i.path.display().to_string()),
        last: inherited,
        completed,
        pid: std::process::id(),
    });
    tokio::spawn(async move {
        let mut committed = false;
        while let Some((origin, restart_orbs, reply)) = inbox.recv().await {
            if committed {
                let _ = reply.send(Err(Refusal::Busy("an upgrade is being committed".to_owned())));
                continue;
            }
            let Some(installed) = &installed else {
                let _ = reply.send(Err(Refusal::Unavailable(
                    "this server cannot upgrade in place: it does not run from an executable it knows".to_owned(),
                )));
                continue;
            };
            status_tx.send_modify(|s| s.state = "preflight");
            let record = UpgradeRecord {
                id: uuid::Uuid::new_v4().to_string(),
                from_build: crate::build_id::current().to_owned(),
                to_build: String::new(),
                origin: origin.name().to_owned(),
                committed_at_ms: 0,
            };
            info!(id = %record.id, origin = %record.origin, binary = %installed.path.display(), "upgrade requested: running the new binary's preflight");
            let document = preview(record.clone()).to_json();
            let mut format = FORMAT;
            let mut checked = preflight::run(installed, &document, timeout).await;
            if let Err(reason) = &checked
                && preflight::unreadable_format(reason)
            {
                // A binary of the previous release (a rollback): it gets that format.
                info!(id = %record.id, %reason, "the new binary does not read format {FORMAT}: trying format {PREVIOUS}");
                let older = preview(record.clone()).written_as(PREVIOUS).to_json();
                checked = preflight::run(installed, &older, timeout).await;
                format = PREVIOUS;
            }
            match checked {
                Err(reason) => {
                    warn!(id = %record.id, %reason, "upgrade refused: the running server carries on unchanged");
                    status_tx.send_modify(|s| {
                        s.state = "idle";
                        s.last = Some(Outcome {
                            id: record.id.clone(),
                            origin: record.origin.clone(),
                            from_build: record.from_build.clone(),
                            to_build: String::new(),
                            result: "refused",
                            reason: Some(reason.clone()),
                            pause_ms: None,
                            at_ms: now_ms(),
                        });
                    });
                    let _ = reply.send(Err(Refusal::Preflight(reason)));
                }
                Ok(passed) => {
                    let record = UpgradeRecord {
                        to_build: passed.build_id,
                        ..record
                    };
                    info!(id = %record.id, from = %record.from_build, to = %record.to_build, format, "preflight passed: committing the upgrade");
                    status_tx.send_modify(|s| s.state = "committing");
                    let _ = reply.send(Ok(Accepted {
                        id: record.id.clone(),
                        from_build: record.from_build.clone(),
                        to_build: record.to_build.clone(),
                    }));
                    committed = commits
                        .send(Commit {
                            record,
                            restart_orbs,
                            format,
                        })
                        .await
                        .is_ok();
                }
            }
        }
    });
    (UpgradeHandle { requests, status }, commit_rx)
}

/// The outcome a new image records for the upgrade that started it.
pub fn done(record: &UpgradeRecord) -> Outcome {
    let at_ms = now_ms();
    Outcome {
        id: record.id.clone(),
        origin: record.origin.clone(),
        from_build: record.from_build.clone(),
        to_build: crate::build_id::current().to_owned(),
        result: "done",
        reason: None,
        pause_ms: Some(at_ms.saturating_sub(record.committed_at_ms)),
        at_ms,
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn setup(installed: Option<Installed>) -> Setup {
        Setup {
            installed,
            preview: Box::new(|upgrade| Handover::bare(upgrade, Vec::new())),
            inherited: None,
            completed: 0,
            timeout: Duration::from_secs(10),
        }
    }

    fn sh(script: &str) -> Installed {
        Installed {
            path: PathBuf::from("/bin/sh"),
            args: vec!["-c".into(), script.into(), "sh".into()],
        }
    }

    #[tokio::test]
    async fn a_failed_preflight_is_refused_and_recorded_then_a_passing_one_commits_once() {
        let (handle, mut commits) = spawn(setup(Some(sh("cat >/dev/null; echo refusing >&2; exit 64"))));
        let refused = handle.request(Origin::Api).await.expect_err("script refuses");
        assert!(
            matches!(&refused, Refusal::Preflight(r) if r.contains("exit 64") && r.contains("refusing")),
            "{refused}"
        );
        let status = handle.status();
        assert_eq!(status.state, "idle");
        assert_eq!(status.last.as_ref().map(|o| o.result), Some("refused"));
        assert!(commits.try_recv().is_err(), "nothing committed");

        // The preview reaches the check: it passes only on this format.
        let script = format!(r#"case "$(cat)" in *'"format":{FORMAT},'*) echo build_id=b2;; *) exit 65;; esac"#);
        let (handle, mut commits) = spawn(setup(Some(sh(&script))));
        let accepted = handle.request(Origin::Signal).await.expect("passes");
        assert_eq!(accepted.to_build, "b2");
        let commit = commits.recv().await.expect("committed");
        assert_eq!(commit.record.id, accepted.id);
        assert_eq!(commit.record.origin, "SIGUSR2");
        assert_eq!(handle.status().state, "committing");
        let again = handle.request(Origin::Api).await.expect_err("one commit only");
        assert!(matches!(again, Refusal::Busy(_)), "{again}");
    }

    /// Rule: a binary that cannot read this format but reads the previous one (a
    /// rollback to the previous release) passes with that format; one that reads
    /// neither is refused with the first refusal's reason.
    #[tokio::test]
    async fn a_binary_of_the_previous_format_passes_with_that_format() {
        let unreadable =
            format!("handover format {FORMAT} is not readable by this binary (it reads formats 1 to {PREVIOUS})");
        let script = format!(
            r#"case "$(cat)" in *'"format":{PREVIOUS},'*) echo build_id=old;; *) echo '{unreadable}' >&2; exit 65;; esac"#
        );
        let (handle, mut commits) = spawn(setup(Some(sh(&script))));
        let accepted = handle
            .request(Origin::Api)
            .await
            .expect("passes with the previous format");
        assert_eq!(accepted.to_build, "old");
        let commit = commits.recv().await.expect("committed");
        assert_eq!(commit.format, PREVIOUS);
        let (handle, _commits) = spawn(setup(Some(sh(&format!(
            "cat >/dev/null; echo '{unreadable}' >&2; exit 65"
        )))));
        let refused = handle.request(Origin::Api).await.expect_err("reads neither");
        assert!(
            matches!(&refused, Refusal::Preflight(r) if r.contains("exit 65")),
            "{refused}"
        );
        // This binary's own format passes as it is.
        let (handle, mut commits) = spawn(setup(Some(sh("cat >/dev/null; echo build_id=new"))));
        handle.request(Origin::Api).await.expect("passes");
        assert_eq!(commits.recv().await.expect("committed").format, FORMAT);
    }

    #[tokio::test]
    async fn a_server_without_an_executable_refuses_upgrades() {
        let (handle, _commits) = spawn(setup(None));
        let refused = handle.request(Origin::Api).await.expect_err("no executable");
        assert!(matches!(refused, Refusal::Unavailable(_)));
        assert_eq!(handle.status().binary, None);
    }
}
