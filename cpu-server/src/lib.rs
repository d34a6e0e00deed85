//! cpu-server: the client-facing room server and the OrbManager.
//!
//! [`run`] serves a bound listener until its shutdown future resolves, then
//! drains; the binary (`main.rs`) only reads settings, sets up logging, binds
//! and hands over, so tests and benches can run the same server in-process.
//!
//! # Layout
//! - [`settings`]: flags, environment, `.env` and defaults, validated at once.
//! - [`build_id`]: the running executable's GNU build id (`/health`, start-up log).
//! - [`auth`]: who may open a room socket and join as whom (client JWT, orb tokens, origins).
//! - [`http`]: routes (`/health`, `/healthz`, `/ws-simple/{room_id}`), the admin API, `/metrics`,
//!   the room and dashboard pages, `/api/turn-credentials`; plain or TLS serving.
//! - [`rooms`]: the room registry actor and the per-socket relay; [`rooms::events`] is the seam to the OrbManager.
//! - [`orbs`]: the OrbManager, one supervised gpu-orb process per room.
//! - [`shutdown`]: the bounded drain (SIGTERM/SIGINT come from `shared::signals`).
//! - [`logging`]: tracing to stderr and `CPU_LOG_FILE` (reopened on SIGHUP).
//! - [`metrics`]: Prometheus counters, gauges and histograms behind `/metrics`.
//! - [`state_file`]: the generated admin token file.
//! - [`cli`]: the operator commands (`orbs …`, `check`).
//! - [`systemd`]: `sd_notify` readiness, watchdog and stopping messages.
//! - [`ws`]: room sockets' WebSocket handshake, framing and buffers.
//!
//! # Tasks and channels
//! - one registry task owns every room (`rooms::registry`); connection tasks send it
//!   commands on a bounded channel (joins get a `oneshot` reply) and it emits
//!   `RoomEvent`s to the OrbManager on a bounded channel (`send().await`);
//! - each socket is one connection task: it reads and routes its frames (into the
//!   recipients' outboxes) and writes its own bounded outbox, which others fill with
//!   `try_send`; a full outbox drops that socket (1008);
//! - the OrbManager talks back only through `RoomNotifier` (`try_send` into the registry).

pub mod auth;
pub mod build_id;
pub mod cli;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod orbs;
pub mod rooms;
pub mod settings;
pub mod shutdown;
pub mod state_file;
pub mod systemd;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::net::TcpListener;
use tracing::{error, info, warn};

use crate::http::AppState;
use crate::rooms::events::room_event_channel;
use crate::rooms::limits::IpLimiter;
use crate::rooms::registry::spawn_registry;
use crate::rooms::stats::RelayStats;
use crate::settings::Settings;
use crate::shutdown::Lifecycle;

/// How long the HTTP server gets to finish after every socket was closed.
const SERVER_STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves `listener` until `shutdown` resolves, then drains (orbs first, then
/// client sockets, bounded) and returns.
pub async fn run(
    listener: TcpListener,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_until(listener, settings, shutdown, std::future::pending()).await
}

/// Like [`run`]; if `force` resolves during the drain (a second signal), every
/// orb's process group is SIGKILLed at once and an error is returned.
pub async fn run_until(
    listener: TcpListener,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
    force: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let local = listener.local_addr()?;
    let tls = settings.tls.as_ref().map(http::tls::load_config).transpose()?;
    let admin_token: Arc<str> = state_file::admin_token(&settings.admin)?.into();
    let admin_host = settings.admin.host;
    let stats = Arc::new(RelayStats::default());
    let metrics = Arc::new(metrics::Metrics::new());
    let (events_tx, events_rx) = room_event_channel();
    let registry = spawn_registry(
        settings.rooms.clone(),
        events_tx,
        Arc::clone(&stats),
        Arc::clone(&metrics),
    );
    let vital_registry = registry.clone();
    let orbs = orbs::spawn_manager(
        settings.orbs.clone(),
        &settings.placement,
        events_rx,
        Arc::new(registry.clone()),
        (local, loopback_host(local)),
        settings.security.isolation(),
        Arc::clone(&metrics),
    );
    reopen_orb_logs_on_sighup(orbs.clone())?;
    let auth = auth::Auth::new(&settings.security, Arc::new(orbs.clone()));
    auth.log_startup();
    let lifecycle = Lifecycle::default();
    let relay_loops = crate::ws::loops::RelayLoops::start(settings.connections.relay_threads)
        .map_err(|e| anyhow::anyhow!("cannot start the relay's event loops (RELAY_THREADS): {e}"))?;
    info!(
        loops = settings.connections.relay_threads,
        "room sockets' relay loops started"
    );
    let connections = settings.connections;
    let trusted_proxies = settings.rooms.trusted_proxies.clone();
    let admin = http::admin_state::AdminState {
        orbs: orbs.clone(),
        registry: registry.clone(),
        stats: Arc::clone(&stats),
        metrics,
        connections: lifecycle.connections.clone(),
        token: admin_token,
    };
    let state = AppState {
        registry,
        orbs: orbs.clone(),
        auth,
        ip_limiter: IpLimiter::new(settings.rooms.max_connections_per_ip),
        settings: Arc::new(settings.rooms),
        stats: Arc::clone(&stats),
        next_conn: Arc::new(AtomicU64::new(1)),
        draining: lifecycle.draining.clone(),
        closing: lifecycle.closing.clone(),
        connections: lifecycle.connections.clone(),
        turn: Arc::new(settings.turn),
        relay_loops: Some(relay_loops),
    };
    let (public, admin_server) = match admin_host {
        None => {
            let events = http::pages::events_router(admin.clone(), lifecycle.draining.clone());
            (
                http::router(state).merge(http::admin::router(admin)).merge(events),
                None,
            )
        }
        Some(addr) => {
            let admin_listener = TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on ADMIN_HOST={addr}: {e}"))?;
            info!(admin = %addr, "admin API and /metrics only on ADMIN_HOST");
            let operator = http::pages::operator_router(admin.clone(), lifecycle.draining.clone());
            // Its own caps: a flood of the public port never locks the operator out.
            let serve = http::serve::serve(
                admin_listener,
                http::admin::router(admin).merge(operator),
                None,
                connections.clone(),
                trusted_proxies.clone(),
                lifecycle.draining.clone(),
            );
            (http::router(state), Some(tokio::spawn(serve)))
        }
    };
    info!(%local, tls = tls.is_some(), build_id = crate::build_id::current(), "listening");
    http::serve::warn_if_above_fd_limit(connections.max_connections);
    let public = http::serve::serve(
        listener,
        public,
        tls,
        connections,
        trusted_proxies,
        lifecycle.draining.clone(),
    );
    let mut server = tokio::spawn(public);
    let systemd = systemd::Systemd::ready();
    let vital = (orbs.clone(), vital_registry);
    tokio::select! {
        () = shutdown => {}
        result = &mut server => {
            result?;
            anyhow::bail!("the HTTP server stopped by itself");
        }
        () = vital.0.failed() => return fatal(&orbs, &lifecycle, "the OrbManager"),
        () = vital.1.failed() => return fatal(&orbs, &lifecycle, "the room registry"),
    }
    info!("shutdown requested: draining");
    systemd.stopping();
    lifecycle.draining.cancel();
    tokio::select! {
        () = lifecycle.drain(&orbs) => {}
        () = force => {
            let killed = orbs.kill_all_now();
            warn!(killed, "second signal: SIGKILLed every orb process group");
            anyhow::bail!("forced exit by a second signal");
        }
    }
    if let Some(admin_server) = admin_server {
        admin_server.abort();
    }
    if tokio::time::timeout(SERVER_STOP_TIMEOUT, &mut server).await.is_err() {
        warn!("HTTP server did not stop in time");
        server.abort();
    }
    info!(
        connections = RelayStats::get(&stats.connections),
        relayed = RelayStats::get(&stats.relayed),
        errors = RelayStats::get(&stats.errors),
        slow_consumers = RelayStats::get(&stats.slow_consumers),
        "stopped"
    );
    Ok(())
}

/// A vital task died: `/health` fails from now on, every orb group is
/// SIGKILLed, and the error makes the process exit non-zero (dropping the
/// systemd link stops the watchdog), so systemd restarts a working server.
/// SIGHUP (logrotate's postrotate) reopens every orb's log file.
fn reopen_orb_logs_on_sighup(orbs: orbs::OrbsHandle) -> std::io::Result<()> {
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            orbs.reopen_logs();
        }
    });
    Ok(())
}

fn fatal(orbs: &orbs::OrbsHandle, lifecycle: &Lifecycle, what: &str) -> anyhow::Result<()> {
    lifecycle.draining.cancel();
    let killed = orbs.kill_all_now();
    error!(killed, "{what} died; exiting so that the service is restarted");
    anyhow::bail!("{what} died")
}

/// The address orbs use to reach this server: the listen address, with
/// loopback instead of an unspecified (`0.0.0.0`/`::`) host.
pub fn loopback_host(local: SocketAddr) -> String {
    let mut addr = local;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orbs_reach_the_server_on_loopback() {
        assert_eq!(loopback_host("0.0.0.0:3000".parse().expect("addr")), "127.0.0.1:3000");
        assert_eq!(loopback_host("[::]:3000".parse().expect("addr")), "[::1]:3000");
        assert_eq!(loopback_host("127.0.0.1:41".parse().expect("addr")), "127.0.0.1:41");
        assert_eq!(loopback_host("10.1.2.3:80".parse().expect("addr")), "10.1.2.3:80");
    }
}
