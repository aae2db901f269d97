//! Devices of Rocky's protocol on one MQTT connection: the IO around their `DeviceMachine`s.
//!
//! A device on a connection of its own is the group of one (its client id is its device id).
//! `rocky sim --per-connection K` puts K devices on each connection, so a fleet larger than
//! this machine's open-files limit allows on connections of their own (about 19,000 here) can
//! still reach Rocky through one broker: what Rocky holds and does per device is the same
//! either way, since it talks to topics, not connections.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use rumqttc::{Event, Packet, QoS, SubscribeFilter};
use tokio::sync::watch;

use super::device::{SimDevice, Wake, connect, wait};
use super::machine::DeviceMachine;
use crate::protocol::{DeviceId, TopicKind};

/// Filters one SUBSCRIBE carries: a group's subscriptions go out in packets of this many.
const FILTERS_PER_SUBSCRIBE: usize = 64;

/// The devices of one connection and when each next wants its timer.
struct Members {
    devices: Vec<SimDevice>,
    machines: Vec<DeviceMachine>,
    by_id: HashMap<DeviceId, usize>,
    /// (when, member) for every member whose machine has a timer set; `due[i]` is member i's.
    timers: BTreeSet<(Instant, usize)>,
    due: Vec<Option<Instant>>,
}

impl Members {
    fn new(devices: Vec<SimDevice>) -> Self {
        let machines = devices
            .iter()
            .map(|d| DeviceMachine::new(d.behavior, d.slow_delay, d.model.clone(), d.report.clone()))
            .collect();
        let by_id = devices.iter().enumerate().map(|(i, d)| (d.id.clone(), i)).collect();
        let due = vec![None; devices.len()];
        Self { devices, machines, by_id, timers: BTreeSet::new(), due }
    }

    /// Sends what member `i` has to say and files its next timer.
    fn flush(&mut self, i: usize, now: Instant, outbox: &super::device::Outbox) {
        let (device, machine) = (&self.devices[i], &mut self.machines[i]);
        while let Some(frame) = machine.poll_answer(now) {
            let _ = outbox.send((device.topics.cmd_resp(&device.id), frame, false));
        }
        while let Some(frame) = machine.poll_status(now) {
            let _ = outbox.send((device.topics.status(&device.id), frame, true));
        }
        let next = machine.next_wakeup();
        if self.due[i] != next {
            if let Some(old) = self.due[i] {
                self.timers.remove(&(old, i));
            }
            if let Some(at) = next {
                self.timers.insert((at, i));
            }
            self.due[i] = next;
        }
    }

    fn next_wakeup(&self) -> Option<Instant> {
        self.timers.first().map(|(at, _)| *at)
    }

    /// Ticks every member whose timer is due by `now`.
    fn tick_due(&mut self, now: Instant, outbox: &super::device::Outbox) {
        while let Some(&(at, i)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.remove(&(at, i));
            self.due[i] = None;
            self.machines[i].tick(now);
            self.flush(i, now, outbox);
        }
    }

    fn set_connected(&self, connected: bool) {
        for device in &self.devices {
            if connected {
                device.set_refused(false);
            }
            device.set_connected(connected);
        }
    }

    /// The broker refused a subscription of the connection's: every member is deaf.
    fn set_refused(&self) {
        for device in &self.devices {
            device.refuse();
        }
    }
}

/// Runs `devices` (at least one, all of Rocky's protocol, sharing the first one's connection
/// settings, start delay and fleet counters) on one connection as `client_id` until `stop`.
pub async fn run(devices: Vec<SimDevice>, client_id: String, mut stop: watch::Receiver<bool>) {
    let Some(first) = devices.first() else { return };
    let (connection, topics, start_delay) =
        (first.connection.clone(), first.topics.clone(), first.start_delay);
    if !start_delay.is_zero() {
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(start_delay) => {}
        }
    }
    let (client, mut eventloop, outbox) = connect(&connection, &client_id);
    let mut members = Members::new(devices);
    let filters: Vec<SubscribeFilter> = members
        .devices
        .iter()
        .flat_map(|d| topics.device_filters(&d.id))
        .map(|path| SubscribeFilter::new(path, QoS::AtLeastOnce))
        .collect();
    let packets = filters.len().div_ceil(FILTERS_PER_SUBSCRIBE);
    let mut acked = 0usize;
    let mut failures = 0u32;
    let now = || tokio::time::Instant::now().into_std();
    loop {
        let event = match wait(&mut eventloop, &mut stop, members.next_wakeup()).await {
            Wake::Stop => break,
            Wake::Timer => {
                members.tick_due(now(), &outbox);
                continue;
            }
            Wake::Event(event) => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                failures = 0;
                acked = 0;
                // From a task of its own: the client's request queue (64) may be full of
                // answers, and it empties only while this loop polls the connection.
                let (client, filters) = (client.clone(), filters.clone());
                tokio::spawn(async move {
                    for batch in filters.chunks(FILTERS_PER_SUBSCRIBE) {
                        if client.subscribe_many(batch.to_vec()).await.is_err() {
                            break;
                        }
                    }
                });
                let at = now();
                for i in 0..members.machines.len() {
                    members.machines[i].on_connect(at);
                    members.flush(i, at, &outbox);
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                // A refused filter (an ACL that allows each device only its own client id's
                // topics) leaves the connection's devices deaf: they do not count as connected.
                let refused = super::device::refuses(&ack);
                if refused {
                    members.set_refused();
                }
                acked = if refused { usize::MAX } else { acked.saturating_add(1) };
                if acked == packets {
                    members.set_connected(true);
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let (id, chunk) = match topics.parse(&publish.topic) {
                    Some(TopicKind::Cmd(id)) => (id, None),
                    Some(TopicKind::Data(id, chunk)) => (id, Some(chunk)),
                    _ => continue,
                };
                let Some(&i) = members.by_id.get(&id) else { continue };
                let at = now();
                let store = match chunk {
                    None => {
                        members.machines[i].on_command(&publish.payload, at);
                        std::time::Duration::ZERO
                    }
                    Some(chunk) => {
                        let store = members.machines[i].store_time(publish.payload.len());
                        members.machines[i].on_chunk(chunk, publish.payload, at);
                        store
                    }
                };
                members.flush(i, at, &outbox);
                // Storing takes its time, and the connection is not read meanwhile.
                if !store.is_zero() {
                    tokio::time::sleep(store).await;
                }
            }
            Ok(_) => {}
            Err(why) => {
                failures = failures.saturating_add(1);
                members.set_connected(false);
                if !members.devices[0].pause_after_error(&mut stop, failures, &why).await {
                    break;
                }
            }
        }
    }
    let _ = client.try_disconnect();
}
