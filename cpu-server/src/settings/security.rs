//! Settings of client authentication and orb isolation.

use clap::Args;
use shared::settings::Validator;

/// Raw flags of this area (each also readable from its environment variable).
#[derive(Debug, Clone, Default, Args)]
pub struct SecurityArgs {}

/// Typed settings of this area.
#[derive(Debug, Clone, Default)]
pub struct SecuritySettings {}

impl SecurityArgs {
    /// Validates into [`SecuritySettings`], recording every error in `v`.
    pub fn validate(self, _v: &mut Validator<'_>, _production: bool) -> SecuritySettings {
        SecuritySettings {}
    }
}
