//! `cpu-server check --handover FILE|-`: the new binary's side of an upgrade's
//! preflight. With its settings already validated (a bad one exits 64 before
//! this runs), it reads the running server's handover document and says
//! whether it can take over: the format must be readable and the listeners
//! must be the ones its settings name (an upgrade keeps the listening sockets;
//! moving `CPU_HOST` or `ADMIN_HOST` needs a restart). It answers
//! `build_id=<id>` on success; exit 65 for an unreadable document, 64 for
//! settings that contradict it.

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use shared::settings::EXIT_USAGE;

use crate::settings::Settings;
use crate::upgrade::handover::{Handover, ListenerRole, MAX_BYTES, readable};

/// Exit status for a document this binary cannot read (`EX_DATAERR`).
pub const EXIT_UNREADABLE: u8 = 65;

/// Runs the check; `source` is a file or `-` for stdin.
pub fn run(source: &Path, settings: &Settings) -> ExitCode {
    let mut bytes = Vec::new();
    let read = if source == Path::new("-") {
        std::io::stdin().take(MAX_BYTES as u64 + 1).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(source).and_then(|f| f.take(MAX_BYTES as u64 + 1).read_to_end(&mut bytes))
    };
    if let Err(e) = read {
        eprintln!("cannot read the handover from {}: {e}", source.display());
        return ExitCode::from(EXIT_UNREADABLE);
    }
    if bytes.len() > MAX_BYTES {
        eprintln!("the handover preview is larger than {MAX_BYTES} bytes");
        return ExitCode::from(EXIT_UNREADABLE);
    }
    let handover = match Handover::parse(&bytes) {
        Ok(handover) => handover,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_UNREADABLE);
        }
    };
    if let Err(problem) = listeners_match(&handover, settings.listen, settings.admin.host) {
        eprintln!("{problem}");
        return ExitCode::from(EXIT_USAGE as u8);
    }
    println!(
        "handover: format {} readable (from build {}, {} listening sockets)",
        handover.format,
        handover.upgrade.from_build,
        handover.listeners.len()
    );
    let formats = readable();
    println!("formats={}-{}", formats.start(), formats.end());
    println!("build_id={}", crate::build_id::current());
    ExitCode::SUCCESS
}

/// The settings' addresses against the handed-over listeners (port 0 in a
/// setting matches any port: it was the kernel's choice).
pub fn listeners_match(handover: &Handover, listen: SocketAddr, admin: Option<SocketAddr>) -> Result<(), String> {
    let same = |setting: SocketAddr, bound: SocketAddr| {
        setting.ip() == bound.ip() && (setting.port() == 0 || setting.port() == bound.port())
    };
    let public = handover.listener(ListenerRole::Public).map(|l| l.addr);
    match public {
        Some(bound) if same(listen, bound) => {}
        Some(bound) => {
            return Err(format!(
                "CPU_HOST={listen} but the running server listens on {bound}: an upgrade keeps the listening \
                 sockets; set CPU_HOST back, or restart the service to move it"
            ));
        }
        None => return Err("the handover has no CPU_HOST listener".to_owned()),
    }
    match (admin, handover.listener(ListenerRole::Admin).map(|l| l.addr)) {
        (None, None) => Ok(()),
        (Some(setting), Some(bound)) if same(setting, bound) => Ok(()),
        (setting, bound) => Err(format!(
            "ADMIN_HOST={} but the running server's admin listener is {}: an upgrade keeps the listening \
             sockets; set ADMIN_HOST back, or restart the service to change it",
            setting.map_or("(unset)".to_owned(), |a| a.to_string()),
            bound.map_or("(none)".to_owned(), |a| a.to_string())
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upgrade::handover::{Listener, UpgradeRecord};

    fn handover(listeners: &[(ListenerRole, &str)]) -> Handover {
        let listeners = listeners
            .iter()
            .enumerate()
            .map(|(i, (role, addr))| Listener {
                role: *role,
                fd: 3 + i as i32,
                addr: addr.parse().expect("addr"),
            })
            .collect();
        Handover::bare(UpgradeRecord::default(), listeners)
    }

    fn addr(a: &str) -> SocketAddr {
        a.parse().expect("addr")
    }

    #[test]
    fn settings_must_name_the_handed_over_listeners() {
        let public = handover(&[(ListenerRole::Public, "127.0.0.1:3000")]);
        assert_eq!(listeners_match(&public, addr("127.0.0.1:3000"), None), Ok(()));
        assert_eq!(listeners_match(&public, addr("127.0.0.1:0"), None), Ok(()));
        let moved = listeners_match(&public, addr("127.0.0.1:3001"), None).expect_err("moved");
        assert!(
            moved.contains("CPU_HOST=127.0.0.1:3001") && moved.contains("restart"),
            "{moved}"
        );
        let added = listeners_match(&public, addr("127.0.0.1:3000"), Some(addr("127.0.0.1:9000")));
        assert!(added.expect_err("admin added").contains("ADMIN_HOST=127.0.0.1:9000"));
        let both = handover(&[
            (ListenerRole::Public, "0.0.0.0:3000"),
            (ListenerRole::Admin, "127.0.0.1:9000"),
        ]);
        assert_eq!(
            listeners_match(&both, addr("0.0.0.0:3000"), Some(addr("127.0.0.1:9000"))),
            Ok(())
        );
        assert!(
            listeners_match(&both, addr("0.0.0.0:3000"), None).is_err(),
            "admin removed"
        );
    }
}
