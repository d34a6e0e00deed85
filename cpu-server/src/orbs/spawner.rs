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
//!
//! The binary runs the jobs on its main thread ([`Spawner::channel`] and
//! [`SpawnJobs::run_here`]) and replaces its program image from there too: the
//! thread that calls `execve` is the only one left in the new image (its main
//! thread), so across any number of upgrades every orb ever forked has that one
//! thread as its parent, and no exec ends the parent of a handed-over orb.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

/// A unit of work for the spawner thread.
pub type SpawnJob = Box<dyn FnOnce() + Send + 'static>;

/// What the spawner thread is given: a job, or the order to stop.
enum Work {
    Job(SpawnJob),
    Stop,
}

/// Handle to the spawner thread; the thread ends when every clone is dropped
/// (or [`Spawner::stop`] is called).
#[derive(Debug, Clone)]
pub struct Spawner {
    jobs: SyncSender<Work>,
}

impl std::fmt::Debug for Work {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Job(_) => "Job",
            Self::Stop => "Stop",
        })
    }
}

/// The receiving end, to run on a thread of the caller's choosing.
#[derive(Debug)]
pub struct SpawnJobs {
    jobs: Receiver<Work>,
}

impl Spawner {
    /// Starts the thread. Jobs run inside `runtime`'s context, so they can
    /// create tokio child processes and sockets. At most `capacity` jobs wait.
    pub fn start(runtime: tokio::runtime::Handle, capacity: usize) -> std::io::Result<Self> {
        let (spawner, jobs) = Self::channel(capacity);
        std::thread::Builder::new()
            .name("orb-spawner".to_owned())
            .spawn(move || jobs.run_here(&runtime))?;
        Ok(spawner)
    }

    /// A spawner whose jobs run wherever [`SpawnJobs::run_here`] is called
    /// (the binary's main thread). At most `capacity` jobs wait.
    pub fn channel(capacity: usize) -> (Self, SpawnJobs) {
        let (jobs, rx) = sync_channel(capacity.max(1));
        (Self { jobs }, SpawnJobs { jobs: rx })
    }

    /// Queues `job`; gives it back when the queue is full or the thread is gone.
    pub fn submit(&self, job: SpawnJob) -> Result<(), SpawnJob> {
        self.jobs.try_send(Work::Job(job)).map_err(|error| match error {
            TrySendError::Full(work) | TrySendError::Disconnected(work) => match work {
                Work::Job(job) => job,
                Work::Stop => Box::new(|| {}),
            },
        })
    }

    /// Ends the thread after the jobs queued before (waits for room in the queue),
    /// even while clones are still held.
    pub fn stop(&self) {
        let _ = self.jobs.send(Work::Stop);
    }
}

impl SpawnJobs {
    /// Runs the jobs on this thread, inside `runtime`'s context, until every
    /// [`Spawner`] is dropped or one calls [`Spawner::stop`].
    pub fn run_here(self, runtime: &tokio::runtime::Handle) {
        let _context = runtime.enter();
        while let Ok(Work::Job(job)) = self.jobs.recv() {
            job();
        }
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

    /// Rule: jobs run on the thread that calls `run_here`, which returns on `stop`
    /// even while a spawner is still held.
    #[tokio::test]
    async fn jobs_run_where_the_caller_runs_them_until_stopped() {
        let (spawner, jobs) = Spawner::channel(4);
        let runtime = tokio::runtime::Handle::current();
        let (tx, rx) = tokio::sync::oneshot::channel();
        spawner
            .submit(Box::new(move || {
                let _ = tx.send(std::thread::current().id());
            }))
            .map_err(|_| "queue")
            .expect("submitted");
        spawner.stop();
        let runner = std::thread::spawn(move || {
            jobs.run_here(&runtime);
            std::thread::current().id()
        });
        let ran_on = rx.await.expect("job ran");
        let runner = runner.join().expect("returned after stop");
        assert_eq!(ran_on, runner);
        assert!(spawner.submit(Box::new(|| {})).is_err(), "the thread is gone");
    }
}
