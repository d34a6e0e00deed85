//! The relay's event loops: a few single-threaded tokio runtimes, each on its
//! own thread with its own epoll, that plain-TCP room sockets are spread over
//! (round robin) once their upgrade is done. A socket's task then reads, routes
//! and writes without ever being moved or woken across threads: a relayed frame
//! is written into the recipient's socket by the sender's task (see
//! [`super::outbox`]), whichever loop the recipient lives on. Everything else
//! (HTTP, TLS sockets, the registry, the OrbManager) stays on the main runtime.
//!
//! The loops live as long as the process; a loop whose runtime cannot be built
//! stops start-up with the reason.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::{Builder, Handle};

/// Handles on the relay's loops.
#[derive(Debug, Clone)]
pub struct RelayLoops {
    handles: Arc<[Handle]>,
    next: Arc<AtomicUsize>,
}

impl RelayLoops {
    /// Starts `count` loops (at least one), named `relay-<n>`.
    pub fn start(count: usize) -> std::io::Result<Self> {
        let mut handles = Vec::with_capacity(count.max(1));
        for n in 0..count.max(1) {
            let runtime = Builder::new_current_thread().enable_all().build()?;
            handles.push(runtime.handle().clone());
            std::thread::Builder::new()
                .name(format!("relay-{n}"))
                // Runs the loop for the life of the process.
                .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
        }
        Ok(Self {
            handles: handles.into(),
            next: Arc::default(),
        })
    }

    /// Runs `task` on the next loop.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let n = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        drop(self.handles[n].spawn(task));
    }
}
