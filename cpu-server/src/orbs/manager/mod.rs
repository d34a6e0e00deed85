//! The OrbManager: the IO shell around the [`Lifecycle`].
//!
//! One task owns the lifecycle and everything the rules do not decide: the
//! handles of started orbs, the timers, the reply channels, the orb tokens
//! and the published process table. Its loop selects over operator commands,
//! room events, launcher and driver reports, resource samples and its timers;
//! each input becomes a lifecycle event, and the actions that come back are
//! carried out ([`effects`]). Nothing else mutates orb state (nor the
//! timelines and session summaries it keeps).

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::Command;
use super::OrbCounts;
use super::lifecycle::{Action, Event, Lifecycle, Rules, WaiterId};
use super::process_control::{Launcher, Order, Report};
use super::process_table::TableWriter;
use super::record::ExitRecord;
use super::sampler::Sample;
use super::spawner::Spawner;
use super::summaries::Summaries;
use super::timeline::Timelines;
use crate::metrics::Metrics;
use crate::rooms::events::{RoomEventReceiver, RoomNotifier};
use crate::rooms::seat::SeatSender;
use crate::settings::OrbSettings;
use credentials::Credentials;
use timers::Timers;

mod commands;
mod credentials;
mod effects;
mod handover;
mod intake;
mod timers;

#[cfg(test)]
mod handover_tests;
#[cfg(test)]
mod tests;

/// Capacity of the reports channel (launches and drivers → manager).
const REPORT_QUEUE: usize = 1024;

/// A started orb's handle, by generation.
struct Handle {
    room: String,
    pid: Option<u32>,
    orders: mpsc::Sender<Order>,
    /// Asks its driver to let the process go (an upgrade); `None`: it cannot.
    handover: Option<super::process_control::HandoverPort>,
}

/// The actor's state and channels.
pub struct Manager {
    life: Lifecycle,
    launcher: Arc<dyn Launcher>,
    notifier: Arc<dyn RoomNotifier>,
    spawner: Spawner,
    heartbeat_interval_ms: u64,
    timers: Timers,
    handles: HashMap<u64, Handle>,
    /// Warm orbs' open room sockets (`/orb-seat`), by process generation: given
    /// the room when the orb is. Kept apart from the handles, as a seat may
    /// arrive before the launch's answer does.
    seats: HashMap<u64, SeatSender>,
    waiters: HashMap<WaiterId, oneshot::Sender<Option<ExitRecord>>>,
    next_waiter: u64,
    credentials: Credentials,
    table: TableWriter,
    counts: watch::Sender<OrbCounts>,
    reports_tx: mpsc::Sender<Report>,
    metrics: Arc<Metrics>,
    timelines: Timelines,
    summaries: Summaries,
    /// An upgrade waiting for the orbs to settle.
    pending: Option<handover::Pending>,
    /// The orbs went to the next program image: this manager has none.
    handed_over: bool,
}

/// The channels the manager listens on.
pub struct Inputs {
    /// Operator commands.
    pub commands: mpsc::Receiver<Command>,
    /// Room events from the registry.
    pub events: RoomEventReceiver,
    /// Resource samples.
    pub samples: mpsc::Receiver<Vec<Sample>>,
}

impl Manager {
    /// A manager with no orbs.
    pub fn new(
        settings: &OrbSettings,
        launcher: Arc<dyn Launcher>,
        notifier: Arc<dyn RoomNotifier>,
        table: TableWriter,
        counts: watch::Sender<OrbCounts>,
        spawner: Spawner,
        metrics: Arc<Metrics>,
    ) -> (Self, mpsc::Receiver<Report>) {
        let (reports_tx, reports_rx) = mpsc::channel(REPORT_QUEUE);
        let manager = Self {
            life: Lifecycle::new(Rules::from(settings), fastrand::u64(..)),
            launcher,
            notifier,
            spawner,
            heartbeat_interval_ms: settings.health_check_interval.as_millis() as u64,
            timers: Timers::default(),
            handles: HashMap::new(),
            seats: HashMap::new(),
            waiters: HashMap::new(),
            next_waiter: 1,
            credentials: Credentials::default(),
            table,
            counts,
            reports_tx,
            metrics,
            timelines: Timelines::default(),
            summaries: Summaries::default(),
            pending: None,
            handed_over: false,
        };
        (manager, reports_rx)
    }

    /// Runs until every handle is gone and every orb has exited.
    pub async fn run(mut self, mut inputs: Inputs, mut reports: mpsc::Receiver<Report>) {
        let warm = self.life.start(Instant::now());
        self.carry_out(warm);
        let mut commands_open = true;
        let mut events_open = true;
        loop {
            tokio::select! {
                command = inputs.commands.recv(), if commands_open => match command {
                    Some(command) => self.on_command(command),
                    None => {
                        commands_open = false;
                        self.begin_shutdown(None);
                    }
                },
                event = inputs.events.recv(), if events_open => match event {
                    Some(event) => self.on_room_event(event),
                    None => events_open = false,
                },
                Some(report) = reports.recv() => self.on_report(report),
                Some(samples) = inputs.samples.recv() => self.on_samples(samples),
                Some(timer) = self.timers.next(), if !self.timers.is_empty() => self.feed(Event::Timer(timer)),
                () = tokio::time::sleep(handover::RETRY), if self.pending.is_some() => {}
            }
            if self.pending.is_some() {
                self.try_hand_over(&mut inputs, &mut reports).await;
            }
            if !commands_open && self.life.idle() {
                break;
            }
        }
    }

    /// Passes `event` to the lifecycle and carries out what it says.
    fn feed(&mut self, event: Event) {
        let actions = self.life.on(event, Instant::now());
        self.carry_out(actions);
    }

    /// Carries out the actions the lifecycle queued outside [`Lifecycle::on`].
    fn carry_out_pending(&mut self) {
        let actions = self.life.take_actions();
        self.carry_out(actions);
    }

    fn carry_out(&mut self, actions: Vec<Action>) {
        for action in actions {
            self.apply(action);
        }
        self.publish_counts();
    }

    fn publish_counts(&self) {
        let counts = self.life.counts();
        self.counts.send_if_modified(|current| {
            let changed = *current != counts;
            *current = counts;
            changed
        });
    }

    fn new_waiter(&mut self, reply: oneshot::Sender<Option<ExitRecord>>) -> WaiterId {
        let id = WaiterId(self.next_waiter);
        self.next_waiter += 1;
        self.waiters.insert(id, reply);
        id
    }
}

/// Milliseconds since the Unix epoch, for the records operators read.
fn wall_ms() -> u64 {
    shared::clock::epoch_ms()
}
