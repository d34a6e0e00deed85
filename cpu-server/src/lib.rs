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
//! - [`upgrade`]: replacing the running image in place (`cpu-server upgrade`, SIGUSR2).
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
pub mod upgrade;
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
    let start = Start {
        public: listener,
        admin: None,
        upgrade: None,
    };
    serve_until(start, settings, shutdown, force).await.map(drop)
}

/// What the server starts with besides its settings.
#[derive(Debug)]
pub struct Start {
    /// The bound `CPU_HOST` listener.
    pub public: TcpListener,
    /// The bound `ADMIN_HOST` listener (bound here from the settings when `None`).
    pub admin: Option<TcpListener>,
    /// The binary's upgrade context; `None` (in-process servers): upgrades are refused.
    pub upgrade: Option<UpgradeStart>,
}

/// What a server that can upgrade in place knows at start.
#[derive(Debug)]
pub struct UpgradeStart {
    /// Its executable and arguments.
    pub installed: upgrade::preflight::Installed,
    /// What the previous image handed over, adopted, if this image is an upgrade.
    pub carried: Option<upgrade::inherit::Carried>,
    /// The orb spawner, run on the thread that will replace the image.
    pub spawner: orbs::spawner::Spawner,
}

/// How [`serve_until`] ended.
#[derive(Debug)]
pub enum Ending {
    /// Stopped (drained) on request.
    Stopped,
    /// Drained for an upgrade: the caller replaces the image with this.
    Upgrade(upgrade::Exec),
}

/// Serves until `shutdown` (or a committed upgrade), then drains; see [`run_until`].
pub async fn serve_until(
    start: Start,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
    force: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Ending> {
    let Start {
        public: listener,
        admin: admin_listener,
        upgrade: mut upgrade_start,
    } = start;
    let (handover_taken, resumed, seats, orbs_taken) = match upgrade_start.as_mut().and_then(|u| u.carried.take()) {
        Some(c) => (Some(c.handover), c.sockets, c.seats, c.orbs),
        None => (None, Vec::new(), Vec::new(), None),
    };
    let local = listener.local_addr()?;
    let tls = settings.tls.as_ref().map(http::tls::load_config).transpose()?;
    let inherited = handover_taken.as_ref();
    // A generated token survives an upgrade (its file still holds it); `ADMIN_TOKEN` wins.
    let generated = inherited
        .and_then(|h| h.admin_token.clone())
        .filter(|_| settings.admin.token.is_none());
    let admin_token: Arc<str> = match generated {
        Some(token) => token,
        None => state_file::admin_token(&settings.admin)?,
    }
    .into();
    let admin_host = settings.admin.host;
    // What an upgrade hands over: the generated token only (a set one is in the environment).
    let carried_token = settings.admin.token.is_none().then(|| admin_token.to_string());
    let stats = Arc::new(RelayStats::starting_at(
        inherited.map(|h| h.counters).unwrap_or_default(),
    ));
    let metrics = Arc::new(metrics::Metrics::new());
    if let Some(started) = inherited.map(|h| h.started_at_s).filter(|s| *s > 0.0) {
        metrics.started_at(started);
    }
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
        (events_rx, Arc::new(registry.clone())),
        (local, loopback_host(local)),
        settings.security.isolation(),
        Arc::clone(&metrics),
        (upgrade_start.as_ref().map(|u| u.spawner.clone()), orbs_taken),
    );
    reopen_orb_logs_on_sighup(orbs.clone())?;
    if let Some(handover) = inherited {
        orbs.import_summaries(handover.summaries.clone()).await;
    }
    let auth = auth::Auth::new(&settings.security, Arc::new(orbs.clone()));
    auth.log_startup();
    let lifecycle = Lifecycle::default();
    let relay_loops = crate::ws::loops::RelayLoops::start(settings.connections.relay_threads)
        .map_err(|e| anyhow::anyhow!("cannot start the relay's event loops (RELAY_THREADS): {e}"))?;
    info!(
        loops = settings.connections.relay_threads,
        "room sockets' relay loops started"
    );
    let admin_listener = match (admin_host, admin_listener) {
        (None, _) => None,
        (Some(_), Some(listener)) => Some(listener),
        (Some(addr), None) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on ADMIN_HOST={addr}: {e}"))?,
        ),
    };
    // Copies of the listening sockets, kept for an upgrade: once the accept
    // loops let theirs go, these keep the sockets listening across the exec.
    let kept = upgrade::KeptListeners::of(&listener, admin_listener.as_ref())?;
    let done = inherited.map(|h| upgrade::controller::done(&h.upgrade));
    if let Some(done) = &done {
        info!(
            id = %done.id,
            from = %done.from_build,
            to = %done.to_build,
            pause_ms = done.pause_ms,
            "upgraded in place: serving the handed-over listeners"
        );
    }
    let (upgrades, mut commits) = upgrade::controller::spawn(upgrade::controller::Setup {
        installed: upgrade_start.as_ref().map(|u| u.installed.clone()),
        preview: kept.preview(Arc::clone(&stats), inherited_count(inherited)),
        inherited: done,
        completed: inherited_count(inherited),
        timeout: upgrade::preflight::TIMEOUT,
    });
    upgrade_on_sigusr2(upgrades.clone())?;
    let connections = settings.connections;
    let trusted_proxies = settings.rooms.trusted_proxies.clone();
    let started_at_s = metrics.start_time_seconds();
    let admin = http::admin_state::AdminState {
        orbs: orbs.clone(),
        registry: registry.clone(),
        stats: Arc::clone(&stats),
        metrics,
        connections: lifecycle.connections.clone(),
        token: admin_token,
        upgrades,
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
    upgrade::resume::resume(&state, resumed).await;
    upgrade::resume::resume_seats(&state, seats).await;
    let (public, admin_server) = match admin_listener {
        None => {
            let events = http::pages::events_router(admin.clone(), lifecycle.draining.clone());
            (
                http::router(state).merge(http::admin::router(admin)).merge(events),
                None,
            )
        }
        Some(admin_listener) => {
            info!(admin = ?admin_host, "admin API and /metrics only on ADMIN_HOST");
            let operator = http::pages::operator_router(admin.clone(), lifecycle.draining.clone());
            // Its own caps: a flood of the public port never locks the operator out.
            let serve = http::serve::serve(
                admin_listener,
                http::admin::router(admin).merge(operator),
                None,
                connections.clone(),
                trusted_proxies.clone(),
                lifecycle.draining.clone(),
                lifecycle.http.clone(),
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
        lifecycle.http.clone(),
    );
    let mut server = tokio::spawn(public);
    let systemd = systemd::Systemd::ready();
    let vital = (orbs.clone(), vital_registry);
    let commit = tokio::select! {
        () = shutdown => None,
        Some(commit) = commits.recv() => Some(commit),
        result = &mut server => {
            result?;
            anyhow::bail!("the HTTP server stopped by itself");
        }
        () = vital.0.failed() => return fatal(&orbs, &lifecycle, "the OrbManager"),
        () = vital.1.failed() => return fatal(&orbs, &lifecycle, "the room registry"),
    };
    // Orbs go to the new image alive unless asked otherwise (or, found at the
    // handover, they cannot: then they are stopped).
    let keep_orbs = match &commit {
        Some(commit) if commit.restart_orbs => {
            info!("the orbs are stopped for the upgrade, as asked (restart_orbs)");
            false
        }
        Some(commit) if commit.format < upgrade::handover::FORMAT => {
            info!(
                format = commit.format,
                "the orbs are stopped for the upgrade: the new binary reads an older handover format"
            );
            false
        }
        Some(_) => true,
        None => false,
    };
    // Stops and launches under way settle while the server still serves (bounded).
    if keep_orbs && let Err(why) = orbs.settle().await {
        // The handover after the drain waits (bounded) again, or stops the orbs.
        warn!(%why, "the orbs did not settle before the upgrade's drain");
    }
    let committed_at_ms = upgrade::controller::now_ms();
    let mut kept = Some(kept);
    match &commit {
        None => {
            info!("shutdown requested: draining");
            systemd.stopping();
            drop(kept.take()); // the listeners close as the accept loops stop
        }
        Some(commit) => {
            info!(id = %commit.record.id, "upgrade committed: draining, the listening sockets stay open");
            systemd.reloading();
        }
    }
    lifecycle.draining.cancel();
    let drained = async {
        match &commit {
            None => lifecycle.drain(&orbs).await,
            Some(_) => lifecycle.park(&orbs, keep_orbs).await,
        }
    };
    tokio::select! {
        () = drained => {}
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
        relayed = stats.relayed.get(),
        errors = RelayStats::get(&stats.errors),
        slow_consumers = RelayStats::get(&stats.slow_consumers),
        "stopped"
    );
    let (Some(commit), Some(upgrade_start), Some(kept)) = (commit, upgrade_start, kept) else {
        return Ok(Ending::Stopped);
    };
    let record = upgrade::handover::UpgradeRecord {
        committed_at_ms,
        ..commit.record
    };
    let mut handover = kept.handover(record, &stats, inherited_count(inherited), carried_token);
    // Warm orbs' seats go over only with their orbs.
    let seats = lifecycle.closing.parked.take_seats();
    let (entries, mut keep) = upgrade::sockets::entries(&vital.1, &lifecycle.closing.parked).await;
    handover.sockets = entries;
    handover.started_at_s = started_at_s;
    let mut fds = kept.into_fds();
    fds.append(&mut keep);
    if keep_orbs {
        match orbs.hand_over().await {
            Ok(orbs) => {
                handover.orbs = Some(orbs.document);
                fds.extend(orbs.fds);
                let (seats, mut seat_fds) = upgrade::sockets::seat_entries(seats);
                handover.seats = seats;
                fds.append(&mut seat_fds);
            }
            Err(why) => {
                // Their sockets are handed over; the new image sees them leave as the orbs stop.
                warn!(%why, "the orbs cannot be handed over; stopping them");
                orbs.shutdown().await;
            }
        }
    }
    handover.summaries = orbs.export_summaries().await;
    let handover = handover.written_as(commit.format);
    let exec = upgrade::Exec::prepare(&handover, fds, upgrade_start.installed)
        .map_err(|e| anyhow::anyhow!("cannot prepare the handover: {e}"))?;
    Ok(Ending::Upgrade(exec))
}

/// Upgrades completed before the one being committed.
fn inherited_count(inherited: Option<&upgrade::handover::Handover>) -> u64 {
    inherited.map_or(0, |h| h.upgrades_before + 1)
}

/// SIGUSR2 asks for an upgrade, as `cpu-server upgrade` does; the outcome is logged.
fn upgrade_on_sigusr2(upgrades: upgrade::UpgradeHandle) -> std::io::Result<()> {
    let mut signals = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined2())?;
    tokio::spawn(async move {
        while signals.recv().await.is_some() {
            if let Err(refusal) = upgrades.request(upgrade::Origin::Signal).await {
                warn!(%refusal, "SIGUSR2: no upgrade");
            }
        }
    });
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

fn fatal(orbs: &orbs::OrbsHandle, lifecycle: &Lifecycle, what: &str) -> anyhow::Result<Ending> {
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
