//! Settings of cpu-server's own logs: file and format.

use clap::Args;
use shared::settings::Validator;

/// Raw flags of this area (each also readable from its environment variable).
#[derive(Debug, Clone, Default, Args)]
pub struct LogsArgs {}

/// Typed settings of this area.
#[derive(Debug, Clone, Default)]
pub struct LogsSettings {}

impl LogsArgs {
    /// Validates into [`LogsSettings`], recording every error in `v`.
    pub fn validate(self, _v: &mut Validator<'_>, _production: bool) -> LogsSettings {
        LogsSettings {}
    }
}
