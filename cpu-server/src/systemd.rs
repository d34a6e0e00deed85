//! systemd service notifications (`Type=notify`, `WatchdogSec=`), without unsafe code.
//!
//! When `NOTIFY_SOCKET` is set (systemd sets it for `Type=notify` units) the
//! server sends datagrams to it: `READY=1` once listening, `WATCHDOG=1` every
//! half `WATCHDOG_USEC` while it runs (only if `WATCHDOG_PID`, when set, is our
//! pid), and `STOPPING=1` when the drain starts. Abstract sockets (`@name`) and
//! path sockets are both supported. Without `NOTIFY_SOCKET` everything is a no-op.
//! Send errors are logged once at debug level and otherwise ignored: the
//! notifications must never take the server down.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::{debug, info};

/// A socket to systemd's notification address.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// A notifier for `NOTIFY_SOCKET`, or `None` when it is unset or unusable.
    pub fn from_env() -> Option<Self> {
        let raw = std::env::var_os("NOTIFY_SOCKET")?;
        let raw = raw.to_str()?;
        match Self::connect(raw) {
            Ok(notifier) => Some(notifier),
            Err(e) => {
                info!(error = %e, socket = raw, "NOTIFY_SOCKET is unusable; not notifying systemd");
                None
            }
        }
    }

    /// A notifier for `address`: a path, or `@name` for an abstract socket.
    pub fn connect(address: &str) -> io::Result<Self> {
        let addr = notify_addr(address)?;
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        Ok(Self { socket, addr })
    }

    /// Sends one notification, e.g. `READY=1`.
    pub fn notify(&self, state: &str) -> io::Result<()> {
        self.socket.send_to_addr(state.as_bytes(), &self.addr).map(drop)
    }
}

/// Parses a `NOTIFY_SOCKET` value.
fn notify_addr(address: &str) -> io::Result<SocketAddr> {
    match address.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt as _;
            SocketAddr::from_abstract_name(name.as_bytes())
        }
        None if address.starts_with('/') => SocketAddr::from_pathname(address),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "NOTIFY_SOCKET must be an absolute path or @abstract-name",
        )),
    }
}

/// How often to ping the watchdog: half of `WATCHDOG_USEC`, if the watchdog is
/// meant for `our_pid` (`WATCHDOG_PID` unset or equal).
pub fn watchdog_period(usec: Option<&str>, pid: Option<&str>, our_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok()? != our_pid
    {
        return None;
    }
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

/// The server's link to systemd for one run: `READY=1` sent, watchdog pinging.
/// Dropping it stops the pings.
#[derive(Debug, Default)]
pub struct Systemd {
    notifier: Option<std::sync::Arc<Notifier>>,
    watchdog: Option<JoinHandle<()>>,
}

impl Systemd {
    /// Sends `READY=1` and starts the watchdog pings, if systemd asked for them.
    /// Call once the listener is serving; needs a Tokio runtime.
    pub fn ready() -> Self {
        let Some(notifier) = Notifier::from_env().map(std::sync::Arc::new) else {
            return Self::default();
        };
        send(&notifier, "READY=1");
        let period = watchdog_period(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        let watchdog = period.map(|period| {
            info!(period_ms = period.as_millis() as u64, "systemd watchdog enabled");
            let notifier = std::sync::Arc::clone(&notifier);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    send(&notifier, "WATCHDOG=1");
                }
            })
        });
        Self {
            notifier: Some(notifier),
            watchdog,
        }
    }

    /// Sends `RELOADING=1` (an upgrade in place started; the new image sends
    /// `READY=1`), with `MONOTONIC_USEC`, which systemd 253 and later expect.
    pub fn reloading(&self) {
        if let Some(notifier) = &self.notifier {
            let usec = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
                .map_or(0, |t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000);
            send(notifier, &format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
        }
    }

    /// Sends `STOPPING=1` (the drain started). The watchdog keeps pinging until drop.
    pub fn stopping(&self) {
        if let Some(notifier) = &self.notifier {
            send(notifier, "STOPPING=1");
        }
    }
}

impl Drop for Systemd {
    fn drop(&mut self) {
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.abort();
        }
    }
}

fn send(notifier: &Notifier, state: &str) {
    if let Err(e) = notifier.notify(state) {
        debug!(error = %e, state, "systemd notification failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recv(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 256];
        let n = socket.recv(&mut buf).expect("recv");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn path_socket_receives_notifications() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let systemd = UnixDatagram::bind(&path).expect("bind");
        systemd.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let notifier = Notifier::connect(path.to_str().expect("utf-8 path")).expect("connect");
        notifier.notify("READY=1").expect("send");
        notifier.notify("STOPPING=1").expect("send");
        assert_eq!(recv(&systemd), "READY=1");
        assert_eq!(recv(&systemd), "STOPPING=1");
    }

    #[test]
    fn abstract_socket_receives_notifications() {
        use std::os::linux::net::SocketAddrExt as _;
        let name = format!("cpu-server-test-{}-{}", std::process::id(), fastrand::u64(..));
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
        let systemd = UnixDatagram::bind_addr(&addr).expect("bind abstract");
        systemd.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let notifier = Notifier::connect(&format!("@{name}")).expect("connect");
        notifier.notify("WATCHDOG=1").expect("send");
        assert_eq!(recv(&systemd), "WATCHDOG=1");
    }

    #[test]
    fn relative_paths_are_refused() {
        assert!(Notifier::connect("relative.sock").is_err());
    }

    #[test]
    fn watchdog_period_is_half_the_interval_for_our_pid_only() {
        assert_eq!(
            watchdog_period(Some("200000"), None, 7),
            Some(Duration::from_millis(100))
        );
        assert_eq!(
            watchdog_period(Some("200000"), Some("7"), 7),
            Some(Duration::from_millis(100))
        );
        assert_eq!(watchdog_period(Some("200000"), Some("8"), 7), None);
        assert_eq!(watchdog_period(Some("0"), None, 7), None);
        assert_eq!(watchdog_period(Some("x"), None, 7), None);
        assert_eq!(watchdog_period(None, None, 7), None);
    }
}
