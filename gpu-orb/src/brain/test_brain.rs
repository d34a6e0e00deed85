//! The test-mode brain: answers `echo: <text>`, calls nothing.

use super::{Brain, BrainError};

/// Deterministic brain used with `--test-mode`.
#[derive(Debug, Default, Clone, Copy)]
pub struct TestBrain;

impl Brain for TestBrain {
    async fn reply(&self, text: String) -> Result<String, BrainError> {
        Ok(format!("echo: {text}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn echoes() {
        assert_eq!(TestBrain.reply("hi".into()).await.expect("reply"), "echo: hi");
    }
}
