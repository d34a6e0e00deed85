//! cpu-server binary entry point (placeholder until the room server lands).

fn main() {}
