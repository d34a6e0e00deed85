//! Paths of the workspace binaries under test.

use std::path::PathBuf;

/// The directory holding the binaries of the profile the tests were built with.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test-binary>
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("profile dir").to_path_buf()
}

/// Path of a workspace binary; panics with the fix when it is not built.
pub fn bin(name: &str) -> PathBuf {
    let path = target_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the binaries first with `cargo build --workspace --bins` (tests/run.sh does it)",
        path.display()
    );
    path
}

/// `target/<profile>/cpu-server`.
pub fn cpu_server() -> PathBuf {
    bin("cpu-server")
}

/// `target/<profile>/gpu-orb`.
pub fn gpu_orb() -> PathBuf {
    bin("gpu-orb")
}
