//! The admin token's state file (`STATE_DIR/admin-token`, mode 0600).
//!
//! When `ADMIN_TOKEN` is unset the server generates a 128-bit token at start
//! and writes it here (atomically: a 0600 temp file renamed over the old one);
//! the CLI reads it. The token itself is never logged.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why the token file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    /// The system has no entropy source.
    #[error("cannot generate a random admin token: {0}")]
    Random(String),
    /// Creating, writing or renaming failed.
    #[error(
        "cannot write the admin token file {path:?}: {source} (set STATE_DIR to a writable directory, or set ADMIN_TOKEN)"
    )]
    Write {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Reading failed.
    #[error(
        "cannot read the admin token file {path:?}: {source} (is cpu-server running with this STATE_DIR? or set ADMIN_TOKEN)"
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// A fresh 128-bit random token, hex-encoded (32 characters).
pub fn random_token() -> Result<String, StateFileError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| StateFileError::Random(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Generates a token and writes it to `path` with mode 0600.
pub fn generate(path: &Path) -> Result<String, StateFileError> {
    let token = random_token()?;
    write_secret(path, &token).map_err(|source| StateFileError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(token)
}

fn write_secret(path: &Path, secret: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(secret.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// `ADMIN_TOKEN` when set; otherwise a fresh token written to `STATE_DIR/admin-token`.
pub fn admin_token(admin: &crate::settings::AdminSettings) -> Result<String, StateFileError> {
    if let Some(token) = &admin.token {
        return Ok(token.clone());
    }
    let path = admin.token_file();
    let token = generate(&path)?;
    tracing::info!(path = %path.display(), "ADMIN_TOKEN unset: generated an admin token into this file (mode 0600)");
    Ok(token)
}

/// Reads the token written by [`generate`].
pub fn read(path: &Path) -> Result<String, StateFileError> {
    std::fs::read_to_string(path)
        .map(|text| text.trim().to_owned())
        .map_err(|source| StateFileError::Read {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_is_private_and_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state/admin-token");
        let token = generate(&path).expect("generate");
        assert_eq!(token.len(), 32);
        assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read(&path).expect("read"), token);
        let again = generate(&path).expect("again");
        assert_ne!(again, token);
        assert_eq!(read(&path).expect("read"), again);
    }
}
