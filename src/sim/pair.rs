//! The engine and simulated devices joined by a modelled broker on virtual time: what the
//! runtime and a fleet do over MQTT, with no sockets, no tasks and no wall clock, so a transfer
//! of thousands of chunks with losses, stalls and timeouts runs in milliseconds and repeats
//! exactly.
//!
//! The broker is modelled as each direction delivering in order after `latency`, acknowledging
//! every publish at once (as a broker does on taking it, whether or not the device reads it), and
//! optionally holding at most `queue_limit` messages a device has not read yet, dropping the rest
//! (mosquitto's `max_queued_messages`). A device reads its next message only when it has stored
//! the last one (`DeviceModel::flash_rate`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Behavior, DeviceMachine, DeviceModel, DeviceReport};
use crate::engine::{Engine, Event, JobId, JobSpec, JobView, Publish, PublishKind, Settings, SubmitError};
use crate::protocol::{DeviceId, DeviceIdError, Topics, decode_response};

/// One device of a pair, as the test adds it. `model.paced` (a fleet's choice of devices) is
/// not read here: a device with a window is flow-controlled.
#[derive(Debug, Clone)]
pub struct PairDevice {
    pub behavior: Behavior,
    pub model: DeviceModel,
    /// How long a `slow` device waits before each answer.
    pub slow_delay: Duration,
}

impl PairDevice {
    pub fn new(model: DeviceModel) -> Self {
        Self { behavior: Behavior::Good, model, slow_delay: super::machine::SLOW_DELAY }
    }
}

/// A device's end of the modelled broker.
struct Link {
    machine: DeviceMachine,
    report: Arc<Mutex<DeviceReport>>,
    /// Messages for the device, each with when it reaches the device's connection.
    inbox: VecDeque<(Instant, Publish)>,
    /// Until when the device is storing the last chunk (and reads nothing).
    busy_until: Instant,
    /// Messages the broker dropped because the device's queue was full.
    dropped: u64,
}

pub struct Pair {
    pub engine: Engine,
    /// The virtual clock.
    pub now: Instant,
    /// Every event the engine emitted, in order.
    pub events: Vec<Event>,
    /// How long a message takes from one end to the other.
    pub latency: Duration,
    /// Messages the broker holds for one device before dropping (`None`: no limit).
    pub queue_limit: Option<usize>,
    /// Frames from devices the engine could not decode.
    pub undecodable: u64,
    links: BTreeMap<DeviceId, Link>,
    /// What each device last said it runs, as the runtime's inventory holds it: handed to the
    /// engine with each job, as the runtime does.
    reported: BTreeMap<DeviceId, crate::engine::Reported>,
    /// Frames on their way to the engine: `true` for a status, else a response.
    to_engine: VecDeque<(Instant, DeviceId, Vec<u8>, bool)>,
}

impl Pair {
    /// An engine with `settings`, connected, and no devices yet.
    pub fn new(settings: Settings) -> Self {
        let now = Instant::now();
        let mut engine = Engine::new(settings, Topics::default());
        engine.set_connected(true, now);
        Self {
            engine,
            now,
            events: Vec::new(),
            latency: Duration::from_millis(1),
            queue_limit: None,
            undecodable: 0,
            links: BTreeMap::new(),
            to_engine: VecDeque::new(),
            reported: BTreeMap::new(),
        }
    }

    /// Adds a device named `id`.
    pub fn add(&mut self, id: &str, device: PairDevice) -> Result<DeviceId, DeviceIdError> {
        let id = DeviceId::parse(id)?;
        let report =
            Arc::new(Mutex::new(DeviceReport { behavior: Some(device.behavior), ..Default::default() }));
        let mut machine =
            DeviceMachine::new(device.behavior, device.slow_delay, device.model, report.clone());
        // Connected from the start: its status (if it speaks the extension) goes out at once.
        machine.on_connect(self.now);
        let link = Link { machine, report, inbox: VecDeque::new(), busy_until: self.now, dropped: 0 };
        self.links.insert(id.clone(), link);
        Ok(id)
    }

    /// Submits `spec` with what its device last said it runs (unless the spec says already).
    pub fn submit(&mut self, mut spec: JobSpec) -> Result<JobId, SubmitError> {
        if spec.reported.is_none() {
            spec.reported = self.reported.get(&spec.device).cloned();
        }
        self.engine.submit(spec, self.now)
    }

    pub fn job(&self, id: JobId) -> Option<JobView> {
        self.engine.job(id)
    }

    pub fn report(&self, device: &DeviceId) -> Option<DeviceReport> {
        self.links.get(device).map(|l| l.report.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// Messages the broker dropped for `device` (its queue was full).
    pub fn dropped(&self, device: &DeviceId) -> u64 {
        self.links.get(device).map_or(0, |l| l.dropped)
    }

    /// Whether every job the engine holds has ended.
    pub fn all_final(&self) -> bool {
        self.engine.jobs().all(|job| job.state.is_final())
    }

    /// Runs virtual time until `done` holds or `limit` has passed; whether `done` holds.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Pair) -> bool) -> bool {
        let deadline = self.now + limit;
        loop {
            self.settle();
            if done(self) {
                return true;
            }
            match self.next_wakeup() {
                Some(at) if at <= deadline => {
                    self.now = if at > self.now { at } else { self.now + Duration::from_micros(1) };
                }
                _ => {
                    self.now = deadline;
                    self.settle();
                    return done(self);
                }
            }
        }
    }

    /// Runs until every job has ended, for at most `limit` of virtual time.
    pub fn run_to_end(&mut self, limit: Duration) -> bool {
        self.run_until(limit, Pair::all_final)
    }

    /// The earliest time something is due.
    fn next_wakeup(&self) -> Option<Instant> {
        let links = self.links.values().flat_map(|l| {
            let read = l.inbox.front().map(|(at, _)| (*at).max(l.busy_until));
            [l.machine.next_wakeup(), read]
        });
        let answers = self.to_engine.front().map(|(at, _, _, _)| *at);
        links.chain([self.engine.next_wakeup(), answers]).flatten().min()
    }

    /// Does everything due at `now`, until nothing moves.
    fn settle(&mut self) {
        let now = self.now;
        loop {
            let mut moved = false;
            self.engine.tick(now);
            while let Some(publish) = self.engine.poll_publish(now) {
                moved = true;
                self.route(publish);
            }
            while let Some((_, event)) = self.engine.poll_event() {
                self.events.push(event);
            }
            for (id, link) in &mut self.links {
                link.machine.tick(now);
                while link.busy_until <= now && link.inbox.front().is_some_and(|(at, _)| *at <= now) {
                    let Some((_, publish)) = link.inbox.pop_front() else { break };
                    moved = true;
                    match publish.kind {
                        PublishKind::Command(_) => link.machine.on_command(&publish.payload, now),
                        PublishKind::Chunk { id: chunk, .. } => {
                            link.busy_until = now + link.machine.store_time(publish.payload.len());
                            link.machine.on_chunk(chunk, publish.payload, now);
                        }
                        // The pair models Rocky's own devices only.
                        PublishKind::AwsExecution | PublishKind::AwsBlock { .. } => {}
                    }
                }
                while let Some(frame) = link.machine.poll_answer(now) {
                    moved = true;
                    self.to_engine.push_back((now + self.latency, id.clone(), frame, false));
                }
                while let Some(frame) = link.machine.poll_status(now) {
                    moved = true;
                    self.to_engine.push_back((now + self.latency, id.clone(), frame, true));
                }
            }
            while self.to_engine.front().is_some_and(|(at, _, _, _)| *at <= now) {
                let Some((_, device, frame, status)) = self.to_engine.pop_front() else { break };
                moved = true;
                if status {
                    // What the runtime does with a status: what the engine needs of it.
                    match crate::protocol::decode_status(&frame) {
                        Ok(crate::protocol::StatusUpdate::Reported { status, .. }) => {
                            let reported = crate::inventory::Running::new(&status, 0).reported();
                            match &reported {
                                Some(r) => self.reported.insert(device.clone(), r.clone()),
                                None => self.reported.remove(&device),
                            };
                            self.engine.device_reported(&device, reported, now);
                        }
                        Ok(crate::protocol::StatusUpdate::Cleared) => {
                            self.reported.remove(&device);
                            self.engine.device_reported(&device, None, now);
                        }
                        Err(_) => self.undecodable += 1,
                    }
                    continue;
                }
                match decode_response(&frame) {
                    Ok(response) => self.engine.handle_response(&device, response, now),
                    Err(_) => self.undecodable += 1,
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Hands a publish to the modelled broker: acknowledged at once, queued for its device or
    /// dropped when that device's queue is full.
    fn route(&mut self, publish: Publish) {
        if let PublishKind::Chunk { .. } = publish.kind {
            self.engine.chunk_acked(publish.job, self.now);
        }
        let Some(link) = self.links.get_mut(&publish.device) else { return };
        if self.queue_limit.is_some_and(|limit| link.inbox.len() >= limit) {
            link.dropped += 1;
            return;
        }
        link.inbox.push_back((self.now + self.latency, publish));
    }
}
