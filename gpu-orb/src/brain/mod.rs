//! Where the AI's answers come from, behind one small trait.
//!
//! The session only knows [`Brain`]; test mode plugs in [`TestBrain`]
//! (deterministic, no external calls) and production [`OpenAiBrain`];
//! [`BrainQueue`] keeps one request in flight per orb.

mod openai;
pub mod queue;
mod test_brain;

use std::future::Future;

pub use openai::OpenAiBrain;
pub use queue::{Admission, Answered, Ask, BrainQueue, MAX_WAITING};
pub use test_brain::TestBrain;

/// Why a brain could not answer.
#[derive(Debug, thiserror::Error)]
pub enum BrainError {
    /// The HTTP request failed or timed out.
    #[error("request failed: {0}")]
    Request(#[from] reqwest::Error),
    /// The endpoint answered with an error status.
    #[error("endpoint answered {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Start of the body.
        body: String,
    },
    /// The answer had no text.
    #[error("answer had no message content")]
    Empty,
    /// The request task panicked or was cancelled.
    #[error("request task failed: {0}")]
    Crashed(String),
}

/// Something that answers what a participant said.
pub trait Brain: Send + Sync + 'static {
    /// The AI's reply to `text`.
    fn reply(&self, text: String) -> impl Future<Output = Result<String, BrainError>> + Send;
}

/// A shared brain (typed `say` and the voice ask the same one).
impl<B: Brain> Brain for std::sync::Arc<B> {
    fn reply(&self, text: String) -> impl Future<Output = Result<String, BrainError>> + Send {
        (**self).reply(text)
    }
}
