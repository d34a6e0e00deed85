//! The orb's brain requests: one in flight at a time, a small bounded FIFO of
//! waiting `say`s behind it, and a refusal (`busy`) beyond that.
//!
//! A client can send `say` as often as the server's rate limit lets it; each
//! one is a paid request to the AI endpoint. Answering them one after the other
//! bounds the cost and the quota used by one room, and keeps the answers in the
//! order they were asked. The queue owns the brain and the request task; the
//! session only asks and waits for [`BrainQueue::next_reply`].

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::task::JoinSet;

use super::{Brain, BrainError};

/// `say`s that may wait behind the one in flight; the next one is refused.
pub const MAX_WAITING: usize = 4;

/// One `say`: who asked (the server's `fromId`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// The asker's user id.
    pub from: Option<String>,
    /// What they said.
    pub text: String,
}

/// What became of an [`Ask`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Sent to the brain now.
    Started,
    /// Waiting; `position` 1 is the next to start.
    Queued {
        /// Place in the queue.
        position: usize,
    },
    /// Refused: one in flight and [`MAX_WAITING`] waiting already.
    Busy,
}

/// A finished request.
#[derive(Debug)]
pub struct Answered {
    /// Who asked.
    pub from: Option<String>,
    /// The answer.
    pub result: Result<String, BrainError>,
    /// Whether a waiting ask was started in its place.
    pub next_started: bool,
}

/// The brain behind a one-at-a-time queue.
pub struct BrainQueue<B> {
    brain: Arc<B>,
    /// At most one task.
    in_flight: JoinSet<Result<String, BrainError>>,
    /// The asker of the one in flight.
    current: Option<Option<String>>,
    waiting: VecDeque<Ask>,
    capacity: usize,
}

impl<B: Brain> BrainQueue<B> {
    /// A queue with room for `capacity` waiting asks (the orb uses [`MAX_WAITING`]).
    pub fn new(brain: B, capacity: usize) -> Self {
        Self {
            brain: Arc::new(brain),
            in_flight: JoinSet::new(),
            current: None,
            waiting: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Starts `ask`, queues it, or refuses it.
    pub fn ask(&mut self, ask: Ask) -> Admission {
        if self.current.is_none() {
            self.start(ask);
            Admission::Started
        } else if self.waiting.len() < self.capacity {
            self.waiting.push_back(ask);
            Admission::Queued {
                position: self.waiting.len(),
            }
        } else {
            Admission::Busy
        }
    }

    /// Requests started or waiting.
    pub fn len(&self) -> usize {
        usize::from(self.current.is_some()) + self.waiting.len()
    }

    /// Whether nothing is in flight (then nothing waits either).
    pub fn is_empty(&self) -> bool {
        self.current.is_none()
    }

    /// The next answer, starting the next waiting ask in its place. Never
    /// resolves while nothing is in flight. Cancel-safe (for `select!`).
    pub async fn next_reply(&mut self) -> Answered {
        let Some(done) = self.in_flight.join_next().await else {
            return std::future::pending().await;
        };
        let from = self.current.take().flatten();
        let result = done.unwrap_or_else(|e| Err(BrainError::Crashed(e.to_string())));
        let next_started = match self.waiting.pop_front() {
            Some(ask) => {
                self.start(ask);
                true
            }
            None => false,
        };
        Answered {
            from,
            result,
            next_started,
        }
    }

    /// Drops everything: the request in flight is aborted, the waiting ones forgotten.
    pub fn abort_all(&mut self) {
        self.in_flight.abort_all();
        self.waiting.clear();
        self.current = None;
    }

    fn start(&mut self, ask: Ask) {
        let brain = self.brain.clone();
        self.current = Some(ask.from);
        let text = ask.text;
        self.in_flight.spawn(async move { brain.reply(text).await });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;

    /// Answers after a second, counting how many requests run at once.
    #[derive(Default)]
    struct SlowBrain {
        running: AtomicUsize,
        most: AtomicUsize,
        calls: AtomicUsize,
    }

    impl Brain for SlowBrain {
        async fn reply(&self, text: String) -> Result<String, BrainError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(1)).await;
            self.running.fetch_sub(1, Ordering::SeqCst);
            Ok(format!("re: {text}"))
        }
    }

    fn ask(n: usize) -> Ask {
        Ask {
            from: Some(format!("u{n}")),
            text: format!("q{n}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn one_request_in_flight_four_waiting_the_rest_busy() {
        let brain = Arc::new(SlowBrain::default());
        let mut queue = BrainQueue::new(brain.clone(), MAX_WAITING);
        let admissions: Vec<Admission> = (1..=7).map(|n| queue.ask(ask(n))).collect();
        assert_eq!(
            admissions,
            [
                Admission::Started,
                Admission::Queued { position: 1 },
                Admission::Queued { position: 2 },
                Admission::Queued { position: 3 },
                Admission::Queued { position: 4 },
                Admission::Busy,
                Admission::Busy,
            ]
        );
        assert_eq!(queue.len(), 5);
        let start = Instant::now();
        let mut answered = Vec::new();
        for _ in 0..5 {
            let done = queue.next_reply().await;
            answered.push((done.from, done.result.expect("answer"), done.next_started));
        }
        assert_eq!(Instant::now() - start, Duration::from_secs(5), "one after the other");
        assert_eq!(brain.most.load(Ordering::SeqCst), 1, "never two requests at once");
        assert_eq!(
            brain.calls.load(Ordering::SeqCst),
            5,
            "the refused asks never reached the brain"
        );
        let expected: Vec<_> = (1..=5)
            .map(|n| (Some(format!("u{n}")), format!("re: q{n}"), n < 5))
            .collect();
        assert_eq!(answered, expected, "in the order asked");
        assert!(queue.is_empty());
        // Nothing in flight: no reply ever comes, and a new ask starts at once.
        assert!(
            tokio::time::timeout(Duration::from_secs(60), queue.next_reply())
                .await
                .is_err()
        );
        assert_eq!(queue.ask(ask(8)), Admission::Started);
    }

    #[tokio::test(start_paused = true)]
    async fn room_frees_up_as_answers_come() {
        let brain = Arc::new(SlowBrain::default());
        let mut queue = BrainQueue::new(brain.clone(), 1);
        assert_eq!(queue.ask(ask(1)), Admission::Started);
        assert_eq!(queue.ask(ask(2)), Admission::Queued { position: 1 });
        assert_eq!(queue.ask(ask(3)), Admission::Busy);
        let done = queue.next_reply().await;
        assert!(done.next_started);
        assert_eq!(queue.ask(ask(4)), Admission::Queued { position: 1 });
        queue.abort_all();
        assert!(queue.is_empty());
        assert_eq!(queue.ask(ask(5)), Admission::Started);
        assert_eq!(queue.next_reply().await.from.as_deref(), Some("u5"));
    }
}
