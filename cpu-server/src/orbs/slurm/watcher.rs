//! The one task that reads the state of every orb job: one `squeue` call per
//! `ORB_SLURM_POLL_INTERVAL` for all jobs at once (rate-limited by construction,
//! however many orbs there are), each job's state published on its own `watch`.
//!
//! When the controller does not answer, every job keeps its last state and the
//! watcher says so ([`Watcher::controller`]); it tries again at the next tick and
//! recovers by itself. A job `squeue` no longer lists after having listed it is
//! taken as ended (purged after `MinJobAge`, or cancelled by somebody else).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::command::{self, SlurmError};
use super::job_state::{EndState, JobState, SQUEUE_FORMAT, parse_squeue};

/// Passes in a row a job may be missing from `squeue` before it counts as ended.
const MISSING_PASSES: u32 = 3;

/// What a driver watches of its job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobView {
    /// The last state read (`None`: not read yet).
    pub state: Option<JobState>,
    /// The controller's last failure to answer, while it lasts.
    pub unreachable: Option<String>,
}

#[derive(Debug)]
struct Watched {
    view: watch::Sender<JobView>,
    missing: u32,
}

/// Handle to the watcher task; cheap to clone.
#[derive(Debug, Clone)]
pub struct Watcher {
    jobs: Arc<Mutex<HashMap<String, Watched>>>,
}

impl Watcher {
    /// Starts the task: every `period`, one `squeue` with `env`, bounded by `timeout`.
    pub fn start(env: Vec<(String, String)>, period: Duration, timeout: Duration, stop: CancellationToken) -> Self {
        let watcher = Self { jobs: Arc::default() };
        let task = watcher.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let ids = task.ids();
                if ids.is_empty() {
                    continue;
                }
                let args = vec![
                    "--noheader".to_owned(),
                    "--states=all".to_owned(),
                    format!("--jobs={}", ids.join(",")),
                    format!("--format={SQUEUE_FORMAT}"),
                ];
                let answer = command::run("squeue", &args, &env, None, timeout).await;
                task.publish(answer);
            }
        });
        watcher
    }

    /// Starts watching `job`.
    pub fn watch(&self, job: &str) -> watch::Receiver<JobView> {
        let (tx, rx) = watch::channel(JobView {
            state: None,
            unreachable: None,
        });
        lock(&self.jobs).insert(job.to_owned(), Watched { view: tx, missing: 0 });
        rx
    }

    /// Stops watching `job`.
    pub fn forget(&self, job: &str) {
        lock(&self.jobs).remove(job);
    }

    fn ids(&self) -> Vec<String> {
        lock(&self.jobs).keys().cloned().collect()
    }

    fn publish(&self, answer: Result<String, SlurmError>) {
        let mut jobs = lock(&self.jobs);
        match answer {
            Ok(output) => {
                let mut states = parse_squeue(&output);
                for (id, watched) in jobs.iter_mut() {
                    match states.remove(id) {
                        Some(state) => {
                            watched.missing = 0;
                            watched.view.send_if_modified(|view| {
                                let changed = view.state.as_ref() != Some(&state) || view.unreachable.is_some();
                                view.state = Some(state);
                                view.unreachable = None;
                                changed
                            });
                        }
                        None => {
                            watched.missing += 1;
                            // The controller answered: whatever it says of this job.
                            watched.view.send_if_modified(|view| view.unreachable.take().is_some());
                            if watched.missing >= MISSING_PASSES {
                                watched.view.send_modify(|view| {
                                    view.state = Some(JobState::Ended(EndState::Other));
                                    view.unreachable = None;
                                });
                            }
                        }
                    }
                }
            }
            // Every id unknown to Slurm (all purged): each counts as missing.
            Err(SlurmError::Failed { stderr, .. }) if stderr.to_ascii_lowercase().contains("invalid job id") => {
                for watched in jobs.values_mut() {
                    watched.missing += 1;
                    watched.view.send_if_modified(|view| view.unreachable.take().is_some());
                    if watched.missing >= MISSING_PASSES {
                        watched
                            .view
                            .send_modify(|view| view.state = Some(JobState::Ended(EndState::Other)));
                    }
                }
            }
            Err(error) => {
                let text = error.to_string();
                for watched in jobs.values() {
                    watched.view.send_if_modified(|view| {
                        let changed = view.unreachable.as_deref() != Some(text.as_str());
                        view.unreachable = Some(text.clone());
                        changed
                    });
                }
            }
        }
    }
}

/// The map's lock; a panic while it was held leaves only plain data behind.
fn lock(jobs: &Mutex<HashMap<String, Watched>>) -> std::sync::MutexGuard<'_, HashMap<String, Watched>> {
    jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watcher() -> Watcher {
        Watcher { jobs: Arc::default() }
    }

    /// Rule: a controller that does not answer changes no job's state (it is only said);
    /// a job Slurm stops listing counts as ended after a few passes, not at the first.
    #[test]
    fn states_survive_an_unreachable_controller_and_missing_jobs_end() {
        let w = watcher();
        let mut a = w.watch("1");
        let b = w.watch("2");
        w.publish(Ok("1|RUNNING|None|n1\n2|PENDING|Resources|\n".into()));
        assert_eq!(
            a.borrow_and_update().state,
            Some(JobState::Running { node: "n1".into() })
        );
        w.publish(Err(SlurmError::TimedOut {
            program: "squeue",
            ms: 10,
        }));
        let seen = a.borrow_and_update().clone();
        assert_eq!(seen.state, Some(JobState::Running { node: "n1".into() }));
        assert!(seen.unreachable.is_some_and(|e| e.contains("no answer")));
        for _ in 0..MISSING_PASSES - 1 {
            w.publish(Ok("2|PENDING|Resources|\n".into()));
        }
        assert_eq!(
            a.borrow_and_update().state,
            Some(JobState::Running { node: "n1".into() })
        );
        assert!(a.borrow().unreachable.is_none(), "the controller answered again");
        w.publish(Ok("2|RUNNING|None|n2\n".into()));
        assert_eq!(a.borrow().state, Some(JobState::Ended(EndState::Other)));
        assert_eq!(b.borrow().state, Some(JobState::Running { node: "n2".into() }));
        w.forget("2");
        assert_eq!(w.ids(), ["1"]);
    }
}
