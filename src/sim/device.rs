//! One simulated device: AWS's OTA agent on its own MQTT connection, or a device of Rocky's
//! protocol (its IO in `shared.rs`, which also puts several on one connection).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, Packet, QoS};
use tokio::sync::watch;

use super::aws_agent::{AgentOut, AwsAgent};
use super::{Behavior, DeviceModel, DeviceReport};
use crate::mqtt::BrokerConnection;
use crate::protocol::{DeviceId, Topics};

pub struct SimDevice {
    pub id: DeviceId,
    pub behavior: Behavior,
    pub slow_delay: Duration,
    pub model: DeviceModel,
    pub topics: Topics,
    pub connection: BrokerConnection,
    pub report: Arc<Mutex<DeviceReport>>,
    /// How long after the fleet's start it first connects (a fleet connects at a bounded rate).
    pub start_delay: Duration,
    /// The fleet's count of subscribed devices (read without visiting every device).
    pub connected: Arc<AtomicUsize>,
}

/// The first pause after a failed connection; it doubles at each failure in a row.
const FIRST_RETRY: Duration = Duration::from_millis(200);
/// The longest pause between tries: a broker that refuses a large fleet is not hammered.
const LONGEST_RETRY: Duration = Duration::from_secs(10);

impl SimDevice {
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        if self.model.profile != crate::inventory::Profile::AwsIotOta {
            // It waits its start delay there, as a connection of several does.
            return self.run_rocky(stop).await;
        }
        if !self.start_delay.is_zero() {
            tokio::select! {
                _ = stop.changed() => return,
                () = tokio::time::sleep(self.start_delay) => {}
            }
        }
        self.run_aws(stop).await;
    }

    /// A device that runs AWS's OTA agent: the IO around an `AwsAgent`.
    async fn run_aws(self, mut stop: watch::Receiver<bool>) {
        let (client, mut eventloop, outbox) = connect(&self.connection, self.id.as_str());
        let mut failures = 0u32;
        let mut agent =
            AwsAgent::new(self.id.clone(), self.behavior, &self.model, self.slow_delay, self.report.clone());
        let now = || tokio::time::Instant::now().into_std();
        let flush = |agent: &mut AwsAgent, now: std::time::Instant| {
            while let Some(out) = agent.poll_out(now) {
                match out {
                    AgentOut::Publish { topic, payload } => {
                        let _ = outbox.send((topic, payload, false));
                    }
                    AgentOut::Subscribe(topic) => {
                        let _ = client.try_subscribe(topic, QoS::AtLeastOnce);
                    }
                    AgentOut::Unsubscribe(topic) => {
                        let _ = client.try_unsubscribe(topic);
                    }
                }
            }
        };
        loop {
            let event = match wait(&mut eventloop, &mut stop, agent.next_wakeup()).await {
                Wake::Stop => break,
                Wake::Timer => {
                    agent.tick(now());
                    flush(&mut agent, now());
                    continue;
                }
                Wake::Event(event) => event,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    failures = 0;
                    self.set_refused(false);
                    agent.on_connect(now());
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    // Its job topics may come in several SUBACKs: one refusal makes it deaf.
                    // Until the next CONNACK clears it.
                    if refuses(&ack) {
                        self.refuse();
                    } else if !self.refused() {
                        self.set_connected(true);
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    agent.on_message(&publish.topic, &publish.payload, now());
                }
                Ok(_) => {}
                Err(why) => {
                    failures = failures.saturating_add(1);
                    if !self.pause_after_error(&mut stop, failures, &why).await {
                        break;
                    }
                }
            }
            flush(&mut agent, now());
        }
        let _ = client.try_disconnect();
    }

    /// A device of Rocky's protocol: the group of one on a connection of its own.
    async fn run_rocky(self, stop: watch::Receiver<bool>) {
        let client_id = self.id.to_string();
        super::shared::run(vec![self], client_id, stop).await;
    }

    /// The connection failed (`failures` times in a row, the last for `why`): a pause before it
    /// is tried again, doubling from 200 ms to at most 10 s, with a random part so that a fleet
    /// refused at once does not come back at once; `false` when stopped meanwhile.
    pub(super) async fn pause_after_error(
        &self,
        stop: &mut watch::Receiver<bool>,
        failures: u32,
        why: &rumqttc::ConnectionError,
    ) -> bool {
        self.set_connected(false);
        self.report.lock().unwrap_or_else(|p| p.into_inner()).last_failure = Some(why.to_string());
        let pause = retry_pause(failures, (crate::random::random_u64() >> 11) as f64 / (1u64 << 53) as f64);
        tokio::select! {
            _ = stop.changed() => false,
            _ = tokio::time::sleep(pause) => true,
        }
    }

    /// Marks whether the broker refused one of its subscriptions.
    pub(super) fn set_refused(&self, refused: bool) {
        self.report.lock().unwrap_or_else(|p| p.into_inner()).refused_subscription = refused;
    }

    /// The broker refused one of its subscriptions: it is deaf, so not connected.
    pub(super) fn refuse(&self) {
        self.set_refused(true);
        self.set_connected(false);
    }

    fn refused(&self) -> bool {
        self.report.lock().unwrap_or_else(|p| p.into_inner()).refused_subscription
    }

    /// Marks it subscribed or not, counting the change in the fleet's total.
    pub(super) fn set_connected(&self, connected: bool) {
        let mut report = self.report.lock().unwrap_or_else(|p| p.into_inner());
        if report.connected != connected {
            report.connected = connected;
            if connected {
                self.connected.fetch_add(1, Ordering::Relaxed);
            } else {
                self.connected.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// What woke a device's task.
pub(super) enum Wake {
    Stop,
    /// Its machine's timer is due.
    Timer,
    Event(Result<Event, rumqttc::ConnectionError>),
}

/// Waits for the stop, the machine's timer at `wake`, or the connection's next event.
pub(super) async fn wait(
    eventloop: &mut EventLoop,
    stop: &mut watch::Receiver<bool>,
    wake: Option<std::time::Instant>,
) -> Wake {
    let wake = wake.map(tokio::time::Instant::from_std);
    tokio::select! {
        _ = stop.changed() => Wake::Stop,
        () = crate::clock::sleep_until(wake), if wake.is_some() => Wake::Timer,
        event = eventloop.poll() => Wake::Event(event),
    }
}

/// The device's publishes (topic, frame, retained), sent from a task of their own in the
/// order the machine gave them, so publishing never waits on the event loop this device's task
/// polls.
pub(super) type Outbox = tokio::sync::mpsc::UnboundedSender<(String, Vec<u8>, bool)>;

/// An MQTT connection as `client_id` and the outbox its publishes go through. A device's client
/// id is its device id, as real fleets usually do (AWS IoT's thing name), so a broker ACL can
/// give each device only its own topics (mosquitto `pattern … %c`); devices speak MQTT 3.1.1, as
/// most deployed devices do.
pub(super) fn connect(connection: &BrokerConnection, client_id: &str) -> (AsyncClient, EventLoop, Outbox) {
    let (options, network) = connection.v311_options(client_id);
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    eventloop.set_network_options(network);
    let outbox = start_outbox(client.clone());
    (client, eventloop, outbox)
}

fn start_outbox(client: AsyncClient) -> Outbox {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Vec<u8>, bool)>();
    tokio::spawn(async move {
        while let Some((topic, frame, retain)) = rx.recv().await {
            let _ = client.publish(topic, QoS::AtLeastOnce, retain, frame).await;
        }
    });
    tx
}

/// The pause after the `failures`-th failed connection in a row: 200 ms doubling, at most
/// 10 s, then between that and half as much again by `random` (0 to 1).
fn retry_pause(failures: u32, random: f64) -> Duration {
    let doubled = FIRST_RETRY.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let base = doubled.min(LONGEST_RETRY);
    base + base.mul_f64(random.clamp(0.0, 1.0) / 2.0)
}

/// Whether a SUBACK refuses any of the filters it answers.
pub(super) fn refuses(ack: &rumqttc::SubAck) -> bool {
    ack.return_codes.iter().any(|code| matches!(code, rumqttc::SubscribeReasonCode::Failure))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_a_bound_with_a_random_part() {
        assert_eq!(retry_pause(1, 0.0), Duration::from_millis(200));
        assert_eq!(retry_pause(2, 0.0), Duration::from_millis(400));
        assert_eq!(retry_pause(4, 1.0), Duration::from_millis(2400));
        assert_eq!(retry_pause(7, 0.0), LONGEST_RETRY);
        assert_eq!(retry_pause(u32::MAX, 1.0), LONGEST_RETRY + LONGEST_RETRY / 2);
    }
}
