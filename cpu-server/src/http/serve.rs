//! The accept loop of a listener (plain or native TLS): admits each connection
//! under the caps of [`super::conn_limits`] or closes it at once with a
//! rate-limited warning naming the setting, pauses instead of spinning when
//! `accept` itself fails (descriptors exhausted), and on `stop` lets the
//! listener go and waits for the connections in flight ([`super::conn`]),
//! which keep being served until `finish`, then end gracefully.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use super::conn::{self, Shared};
use super::conn_limits::{ConnLimits, Refusal};
use crate::settings::ConnectionSettings;

/// Pause after an `accept` error other than a vanished peer (e.g. EMFILE).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// At most one warning of each kind per this period (the others are counted).
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Descriptors kept for everything but client connections (orbs' pipes, logs, files).
const FD_RESERVE: u64 = 256;

/// Serves `app` on `listener` (TLS with `tls`) until `stop`, then waits for the
/// open HTTP connections, shut down gracefully from `finish` on (room sockets
/// are tracked by their own tasks). Peers in `trusted_proxies` are exempt from
/// the per-address cap.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<ServerConfig>>,
    settings: ConnectionSettings,
    trusted_proxies: Vec<IpAddr>,
    stop: CancellationToken,
    finish: CancellationToken,
) {
    let limits = ConnLimits::new(settings.max_connections, settings.max_pending_per_ip, &trusted_proxies);
    let shared = Arc::new(Shared::new(app, tls.map(TlsAcceptor::from), &settings));
    let connections = TaskTracker::new();
    let mut warnings = Warnings::default();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        match accepted {
            Ok((stream, peer)) => match limits.admit(peer.ip()) {
                Ok(slot) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(conn::run(
                        stream,
                        peer,
                        Arc::new(slot),
                        Arc::clone(&shared),
                        finish.clone(),
                    ));
                }
                Err(refusal) => {
                    drop(stream);
                    warnings.refused(refusal, peer.ip(), &settings);
                }
            },
            Err(e) if is_peer_gone(&e) => {}
            Err(e) => {
                warnings.accept_failed(&e);
                tokio::select! {
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    () = stop.cancelled() => break,
                }
            }
        }
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// A connection that went away before it was accepted: nothing to pause for.
fn is_peer_gone(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset, Interrupted};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    )
}

/// Warns once at start when `MAX_CONNECTIONS` does not fit under the
/// descriptor limit: `accept` would then fail (EMFILE) before the cap refuses.
pub fn warn_if_above_fd_limit(max_connections: usize) {
    let Ok((soft, _)) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) else {
        return;
    };
    if (max_connections as u64).saturating_add(FD_RESERVE) > soft {
        warn!(
            max_connections,
            open_file_limit = soft,
            "MAX_CONNECTIONS is above the open-file limit (minus {FD_RESERVE} kept for the rest): accept fails \
             before the cap refuses; lower MAX_CONNECTIONS or raise the limit (LimitNOFILE)"
        );
    }
}

/// Rate-limited warnings of the accept loop.
#[derive(Debug, Default)]
struct Warnings {
    total: Throttle,
    pending: Throttle,
    accept: Throttle,
}

impl Warnings {
    fn refused(&mut self, refusal: Refusal, peer: IpAddr, settings: &ConnectionSettings) {
        match refusal {
            Refusal::Total => {
                if let Some(suppressed) = self.total.hit() {
                    warn!(
                        max_connections = settings.max_connections,
                        refused_since_last_warning = suppressed,
                        "connection refused: MAX_CONNECTIONS reached (new connections are closed at once \
                         until some close; raise MAX_CONNECTIONS and LimitNOFILE if this is real load)"
                    );
                }
            }
            Refusal::PendingPerIp => {
                if let Some(suppressed) = self.pending.hit() {
                    warn!(
                        %peer,
                        max_pending_connections_per_ip = settings.max_pending_per_ip,
                        refused_since_last_warning = suppressed,
                        "connection refused: MAX_PENDING_CONNECTIONS_PER_IP reached for this address \
                         (connections that are not room sockets yet)"
                    );
                }
            }
        }
    }

    fn accept_failed(&mut self, e: &std::io::Error) {
        if let Some(suppressed) = self.accept.hit() {
            warn!(
                error = %e,
                failures_since_last_warning = suppressed,
                "accept failed: pausing {} ms (out of descriptors? lower MAX_CONNECTIONS or raise LimitNOFILE)",
                ACCEPT_BACKOFF.as_millis()
            );
        }
    }
}

/// Lets one event through per [`WARN_EVERY`] and counts the others.
#[derive(Debug, Default)]
struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// `Some(events suppressed since the last one let through)` when this one may be logged.
    fn hit(&mut self) -> Option<u64> {
        self.hit_at(Instant::now())
    }

    fn hit_at(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|last| now.duration_since(last) < WARN_EVERY) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_period_and_the_rest_counted() {
        let mut throttle = Throttle::default();
        let start = Instant::now();
        assert_eq!(throttle.hit_at(start), Some(0));
        assert_eq!(throttle.hit_at(start), None);
        assert_eq!(throttle.hit_at(start + WARN_EVERY / 2), None);
        assert_eq!(throttle.hit_at(start + WARN_EVERY), Some(2));
        assert_eq!(throttle.hit_at(start + WARN_EVERY), None);
    }
}
