//! cpu-server: the client-facing room server and the OrbManager.
//!
//! # Layout
//! - [`settings`]: flags, environment, `.env` and defaults, validated at once.
//! - [`rooms`]: the room registry and relay; [`rooms::events`] is the seam to the OrbManager.
//! - [`orbs`]: the OrbManager, one supervised gpu-orb process per room.

pub mod orbs;
pub mod rooms;
pub mod settings;
