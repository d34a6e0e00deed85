//! The one long-lived thread that starts orb processes.
//!
//! Fork/exec, program resolution and reading the environment are blocking
//! work: done on the manager's runtime thread they stalled every orb's
//! supervision (and, through the room events, every room). They run here
//! instead, one job after another, off the runtime.
//!
//! Why one dedicated thread and not `spawn_blocking`: `PR_SET_PDEATHSIG`
//! fires when the *thread* that forked the child exits, and the blocking
//! pool's threads exit after a few idle seconds, which would SIGKILL their
//! orbs. This thread lives as long as the manager that owns it.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

/// A unit of work for the spawner thread.
pub type SpawnJob = Box<dyn FnOnce() + Send + 'static>;

/// Handle to the spawner thread; the thread ends when every clone is dropped.
#[derive(Debug, Clone)]
pub struct Spawner {
    jobs: SyncSender<SpawnJob>,
}

impl Spawner {
    /// Starts the thread. Jobs run inside `runtime`'s context, so they can
    /// create tokio child processes and sockets. At most `capacity` jobs wait.
    pub fn start(runtime: tokio::runtime::Handle, capacity: usize) -> std::io::Result<Self> {
        let (jobs, rx) = sync_channel(capacity.max(1));
        std::thread::Builder::new()
            .name("orb-spawner".to_owned())
            .spawn(move || run(&runtime, &rx))?;
        Ok(Self { jobs })
    }

    /// Queues `job`; gives it back when the queue is full or the thread is gone.
    pub fn submit(&self, job: SpawnJob) -> Result<(), SpawnJob> {
        self.jobs.try_send(job).map_err(|error| match error {
            TrySendError::Full(job) | TrySendError::Disconnected(job) => job,
        })
    }
}

fn run(runtime: &tokio::runtime::Handle, jobs: &Receiver<SpawnJob>) {
    let _context = runtime.enter();
    while let Ok(job) = jobs.recv() {
        job();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Rule: every job runs on the same thread, which outlives idle periods
    /// longer than the blocking pool's keep-alive (so PDEATHSIG never fires early).
    #[tokio::test]
    async fn jobs_run_on_one_long_lived_thread() {
        let spawner = Spawner::start(tokio::runtime::Handle::current(), 4).expect("thread");
        let mut threads = Vec::new();
        for pause in [0, 50] {
            tokio::time::sleep(Duration::from_millis(pause)).await;
            let (tx, rx) = tokio::sync::oneshot::channel();
            spawner
                .submit(Box::new(move || {
                    let _ = tx.send(std::thread::current().id());
                }))
                .map_err(|_| "queue")
                .expect("submitted");
            threads.push(rx.await.expect("job ran"));
        }
        assert_eq!(threads[0], threads[1]);
        assert_ne!(threads[0], std::thread::current().id());
    }

    #[tokio::test]
    async fn jobs_can_start_tokio_processes() {
        let spawner = Spawner::start(tokio::runtime::Handle::current(), 1).expect("thread");
        let (tx, rx) = tokio::sync::oneshot::channel();
        spawner
            .submit(Box::new(move || {
                let child = tokio::process::Command::new("true").spawn();
                let _ = tx.send(child);
            }))
            .map_err(|_| "queue")
            .expect("submitted");
        let mut child = rx.await.expect("job ran").expect("spawned");
        assert!(child.wait().await.expect("reaped").success());
    }
}
