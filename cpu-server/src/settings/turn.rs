//! Settings of the ICE servers handed to browsers (STUN/TURN).

use clap::Args;
use shared::settings::Validator;

/// Raw flags of this area (each also readable from its environment variable).
#[derive(Debug, Clone, Default, Args)]
pub struct TurnArgs {}

/// Typed settings of this area.
#[derive(Debug, Clone, Default)]
pub struct TurnSettings {}

impl TurnArgs {
    /// Validates into [`TurnSettings`], recording every error in `v`.
    pub fn validate(self, _v: &mut Validator<'_>, _production: bool) -> TurnSettings {
        TurnSettings {}
    }
}
