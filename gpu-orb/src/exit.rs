//! Exit codes of the orb process (also listed in the crate docs).

/// Normal end: signal, `shutdown_graceful`, lifetime, idle, `end_session`, manager gone.
pub const OK: i32 = 0;
/// Internal failure before the session could run (runtime, signal handlers).
pub const INTERNAL: i32 = 1;
/// The room stayed unreachable for longer than `ORB_RECONNECT_GRACE`.
pub const ROOM_UNREACHABLE: i32 = 2;
/// The room server refused the orb (`forbidden`/`unauthorized`, HTTP 401/403).
pub const REFUSED: i32 = 3;
/// Bad settings (`EX_USAGE`), including an unusable `NODE_CHANNEL_FD`.
pub const USAGE: i32 = shared::settings::EXIT_USAGE;
/// A second SIGTERM/SIGINT arrived during the graceful shutdown (128 + SIGINT).
pub const FORCED: i32 = 130;
