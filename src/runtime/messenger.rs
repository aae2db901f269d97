//! The one task that owns the rumqttc event loop.
//!
//! It connects, subscribes to every device's responses, forwards what arrives to the driver and
//! reconnects with capped exponential backoff when the broker goes away. It reports `Connected`
//! only after the broker acknowledged the subscription, so no response can arrive before Rocky
//! is listening for it.

use std::time::Duration;

use bytes::Bytes;
use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, NetworkOptions, Packet, QoS};
use tokio::sync::{mpsc, watch};

use super::{ConnectionState, RuntimeConfig};

/// Largest MQTT packet accepted or sent: a 256 KiB chunk plus topic and header, with room.
pub const MAX_PACKET_BYTES: usize = 1024 * 1024;

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What the messenger tells the driver.
#[derive(Debug)]
pub enum FromBroker {
    Connection(ConnectionState),
    Message {
        topic: String,
        payload: Bytes,
        qos: u8,
    },
    /// The broker acknowledged one of our QoS 1 publishes.
    PubAck,
    /// The messenger has stopped for good.
    Stopped,
}

pub struct Messenger {
    eventloop: EventLoop,
    client: AsyncClient,
    to_driver: mpsc::Sender<FromBroker>,
    filter: String,
    stop: watch::Receiver<bool>,
}

impl Messenger {
    pub fn new(
        config: &RuntimeConfig,
        to_driver: mpsc::Sender<FromBroker>,
        stop: watch::Receiver<bool>,
    ) -> (AsyncClient, Self) {
        let mut options = MqttOptions::new(&config.client_id, &config.broker.host, config.broker.port);
        options
            .set_keep_alive(config.keep_alive)
            .set_clean_session(true)
            .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES)
            .set_inflight(config.window.max(1));
        // The request channel holds at most `window` publishes (the driver never has more
        // unacknowledged) plus subscribe and disconnect requests.
        let (client, mut eventloop) = AsyncClient::new(options, usize::from(config.window) + 16);
        let mut network = NetworkOptions::new();
        // Small commands must not wait ~40 ms for Nagle's algorithm to batch them.
        network.set_tcp_nodelay(true);
        network.set_connection_timeout(5);
        eventloop.set_network_options(network);
        let filter = config.topics.cmd_resp_filter();
        (client.clone(), Self { eventloop, client, to_driver, filter, stop })
    }

    pub async fn run(mut self) {
        let mut attempt: u32 = 0;
        let mut subscribed = false;
        self.report(ConnectionState::Connecting).await;
        loop {
            let polled = tokio::select! {
                biased;
                _ = self.stop.changed() => break,
                polled = self.eventloop.poll() => polled,
            };
            match polled {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    subscribed = false;
                    if self.client.subscribe(&self.filter, QoS::AtLeastOnce).await.is_err() {
                        break;
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) if !subscribed => {
                    let refused =
                        ack.return_codes.iter().any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure));
                    if refused {
                        let reason = format!("broker refused the subscription to {}", self.filter);
                        self.report(ConnectionState::Disconnected { reason }).await;
                        let _ = self.client.disconnect().await;
                        continue;
                    }
                    subscribed = true;
                    attempt = 0;
                    self.report(ConnectionState::Connected).await;
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    let message = FromBroker::Message {
                        topic: publish.topic,
                        payload: publish.payload,
                        qos: publish.qos as u8,
                    };
                    if self.to_driver.send(message).await.is_err() {
                        break;
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    if self.to_driver.send(FromBroker::PubAck).await.is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(ConnectionError::RequestsDone) => break,
                Err(error) => {
                    subscribed = false;
                    attempt = attempt.saturating_add(1);
                    let delay = backoff(attempt);
                    let reason = describe_error(&error);
                    tracing::warn!(%reason, attempt, "broker connection lost");
                    self.report(ConnectionState::Disconnected { reason: reason.clone() }).await;
                    let delay_ms = delay.as_millis() as u64;
                    self.report(ConnectionState::Reconnecting { attempt, delay_ms, reason }).await;
                    tokio::select! {
                        _ = self.stop.changed() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        self.close().await;
        self.report(ConnectionState::Stopped).await;
        let _ = self.to_driver.send(FromBroker::Stopped).await;
    }

    /// Says goodbye to the broker (best effort, bounded) so it drops the session at once.
    async fn close(&mut self) {
        if self.client.try_disconnect().is_err() {
            return;
        }
        let eventloop = &mut self.eventloop;
        let _ = tokio::time::timeout(Duration::from_millis(500), async move {
            while let Ok(event) = eventloop.poll().await {
                if matches!(event, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                    break;
                }
            }
        })
        .await;
    }

    async fn report(&mut self, state: ConnectionState) {
        let _ = self.to_driver.send(FromBroker::Connection(state)).await;
    }
}

/// 100 ms, 200 ms, 400 ms … capped at 5 s: quick after a blip, gentle on a broker that is down.
fn backoff(attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
    (BACKOFF_START * factor).min(BACKOFF_MAX)
}

fn describe_error(error: &ConnectionError) -> String {
    match error {
        ConnectionError::Io(e) => e.to_string(),
        ConnectionError::ConnectionRefused(code) => format!("broker refused the connection: {code:?}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(4), Duration::from_millis(800));
        assert_eq!(backoff(10), BACKOFF_MAX);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }
}
