//! Settings of the operator surface: admin API token and address, state directory.

use clap::Args;
use shared::settings::Validator;

/// Raw flags of this area (each also readable from its environment variable).
#[derive(Debug, Clone, Default, Args)]
pub struct AdminArgs {}

/// Typed settings of this area.
#[derive(Debug, Clone, Default)]
pub struct AdminSettings {}

impl AdminArgs {
    /// Validates into [`AdminSettings`], recording every error in `v`.
    pub fn validate(self, _v: &mut Validator<'_>, _production: bool) -> AdminSettings {
        AdminSettings {}
    }
}
