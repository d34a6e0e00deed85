//! `cpu-server orbs logs ROOM [-f]`: prints `ORB_LOG_DIR/orb-<room>.log`;
//! `-f` follows it (polling, bounded interval) until Ctrl-C, across rotations.

use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

/// How often `-f` looks for new lines.
const POLL: Duration = Duration::from_millis(200);

/// Copies what the file holds from `offset` to `out`; the new offset.
fn copy_from(path: &Path, offset: u64, out: &mut impl Write) -> std::io::Result<u64> {
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let copied = std::io::copy(&mut file, out)?;
    out.flush()?;
    Ok(offset + copied)
}

/// Prints the log; with `follow`, keeps printing new lines until Ctrl-C.
/// A renamed or truncated file is read again from its start.
pub async fn show(path: &Path, follow: bool) -> Result<(), String> {
    let describe = |e: std::io::Error| format!("cannot read {}: {e} (is ORB_LOG_DIR the server's?)", path.display());
    let mut stdout = std::io::stdout();
    let mut offset = copy_from(path, 0, &mut stdout).map_err(describe)?;
    if !follow {
        return Ok(());
    }
    let mut inode = std::fs::metadata(path).map(|m| m.ino()).ok();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            () = tokio::time::sleep(POLL) => {}
        }
        let Ok(meta) = std::fs::metadata(path) else { continue };
        if Some(meta.ino()) != inode || meta.len() < offset {
            inode = Some(meta.ino());
            offset = 0;
        }
        if meta.len() > offset {
            offset = copy_from(path, offset, &mut stdout).map_err(describe)?;
        }
    }
}
