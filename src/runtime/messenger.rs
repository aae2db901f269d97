//! The one task that owns the broker session.
//!
//! It connects, subscribes to every device's responses, forwards what arrives to the driver and
//! reconnects with capped exponential backoff when the broker goes away. It reports `Connected`
//! only after the broker accepted the subscription, so no response can arrive before Rocky is
//! listening for it, and a refused subscription is an error, not a connection.
//!
//! Backoff resets only after a connection has stayed up for [`STABLE_AFTER`]: a broker that
//! accepts and then drops Rocky at once (a client id taken over by another process, a message
//! too large) is retried ever more gently instead of five times a second. Each new reason is
//! logged once, not once per retry.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use super::{ConnectionState, RuntimeConfig, sleep_until};
use crate::metrics::Metrics;
use crate::mqtt::{
    BrokerConnection, Failure, FailureKind, Filter, Incoming, MqttVersion, Protocol, Publisher, Session,
};

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A connection up this long counts as healthy: the next failure starts the backoff afresh.
pub const STABLE_AFTER: Duration = Duration::from_secs(30);

/// What the messenger tells the driver.
#[derive(Debug)]
pub enum FromBroker {
    Connection(ConnectionState),
    /// The session was rebuilt (a 3.1.1-only broker): publish through this from now on.
    Publisher(Publisher),
    Message {
        topic: String,
        payload: Bytes,
        qos: u8,
    },
    /// The broker acknowledged one of our QoS 1 publishes (or, under MQTT 5, refused it).
    PubAck {
        pkid: u16,
        refused: Option<String>,
    },
    /// A publish went out under this packet id, in the order the driver queued them.
    Sent(u16),
    /// The largest packet this broker takes from Rocky, when it says (MQTT 5): a job whose
    /// chunks would not fit is refused when it is created.
    MaximumPacket(Option<u32>),
    /// Whether the command filter was granted: the delivery probe and the watch for commands
    /// Rocky did not send work only then.
    Watching(bool),
    /// The messenger has stopped for good.
    Stopped,
}

pub struct Messenger {
    connection: BrokerConnection,
    protocol: Protocol,
    session: Session,
    publisher: Publisher,
    capacity: usize,
    inflight: u16,
    to_driver: mpsc::Sender<FromBroker>,
    /// Every device's responses (required), then every device's commands (watched for
    /// commands Rocky did not send; its delivery probe comes back on it too).
    /// Responses, commands (for the delivery probe and others' commands) and statuses, in the
    /// order the SUBACK answers them.
    /// Responses, commands, statuses, then the AWS OTA profile's topics.
    filters: Vec<Filter>,
    stop: watch::Receiver<bool>,
    /// The driver asks for a new session here when the broker stopped delivering to Rocky.
    restart: mpsc::Receiver<String>,
    /// The command filter's refusal, last said (said once per new reason).
    commands_refused: Option<String>,
    /// Why the broker refused the status filter, once said.
    statuses_refused: Option<String>,
    /// Why the broker refused the AWS OTA profile's topics, said once.
    aws_refused: Option<String>,
    /// MQTT 5 CONNECTs in a row that got no answer from a broker that took the connection.
    silent_connects: u32,
    metrics: Metrics,
    /// The broker's receive maximum last logged, so a reconnect does not say it again.
    receive_maximum_noted: Option<u16>,
}

impl Messenger {
    pub fn new(
        config: &RuntimeConfig,
        to_driver: mpsc::Sender<FromBroker>,
        stop: watch::Receiver<bool>,
        restart: mpsc::Receiver<String>,
        metrics: Metrics,
    ) -> (Publisher, Self) {
        let protocol = match config.connection.version {
            MqttVersion::V311 => Protocol::V311,
            MqttVersion::V5 | MqttVersion::Auto => Protocol::V5,
        };
        // The driver keeps at most `window` publishes unacknowledged, but publishes it queued
        // just before a failure it learns of later go out on the next session, uncounted; twice
        // the window (plus subscribe and disconnect requests) keeps the driver from ever
        // waiting on a full channel.
        let capacity = 2 * usize::from(config.window) + 16;
        let inflight = config.window.max(1);
        let (publisher, session) = Session::new(&config.connection, protocol, capacity, inflight);
        let news = |topic: String| Filter { topic, retained: false };
        let mut filters = vec![
            news(config.topics.cmd_resp_filter()),
            news(config.topics.cmd_filter()),
            Filter { topic: config.topics.status_filter(), retained: true },
        ];
        filters.extend(crate::protocol::aws::SUBSCRIPTIONS.iter().map(|topic| news((*topic).to_owned())));
        let messenger = Self {
            connection: config.connection.clone(),
            protocol,
            session,
            publisher: publisher.clone(),
            capacity,
            inflight,
            to_driver,
            filters,
            stop,
            restart,
            commands_refused: None,
            statuses_refused: None,
            aws_refused: None,
            silent_connects: 0,
            metrics,
            receive_maximum_noted: None,
        };
        (publisher, messenger)
    }

    pub async fn run(mut self) {
        let mut attempt: u32 = 0;
        let mut subscribed = false;
        let mut acked = false;
        let mut up_since: Option<Instant> = None;
        let mut last_logged: Option<String> = None;
        // Once this broker has answered a version 5 CONNECT, a later close is never read as
        // "does not speak MQTT 5" (a restart behind a proxy looks the same).
        let mut spoke_v5 = false;
        // When a refused subscription is asked for again; the session keeps being polled
        // meanwhile, so its keep-alive pings go on.
        let mut resubscribe_at: Option<tokio::time::Instant> = None;
        if self.connection.insecure_tls {
            tracing::warn!(
                broker = %self.connection.url,
                "--insecure-tls: the broker's certificate is NOT verified; anyone on the path can impersonate it"
            );
        }
        self.report(ConnectionState::Connecting).await;
        loop {
            let polled = tokio::select! {
                biased;
                _ = self.stop.changed() => break,
                _ = sleep_until(resubscribe_at), if resubscribe_at.is_some() => {
                    resubscribe_at = None;
                    if self.publisher.subscribe(&self.filters).await.is_err() {
                        break;
                    }
                    continue;
                }
                Some(reason) = self.restart.recv() => {
                    // The driver's probe did not come back: the broker holds Rocky's messages
                    // back (mosquitto 2.0 keeps the in-flight quota of QoS 1 messages it drops
                    // as too large, and once it is used up delivers nothing more). A new clean
                    // session starts from nothing.
                    self.metrics.set_connected(false);
                    self.metrics.delivery_stall();
                    tracing::warn!(broker = %self.connection.url, %reason, "reconnecting with a clean session");
                    self.report(ConnectionState::Disconnected { reason }).await;
                    up_since = None;
                    acked = false;
                    subscribed = false;
                    resubscribe_at = None;
                    let (publisher, session) =
                        Session::new(&self.connection, self.protocol, self.capacity, self.inflight);
                    self.session = session;
                    self.publisher = publisher.clone();
                    if self.to_driver.send(FromBroker::Publisher(publisher)).await.is_err() {
                        break;
                    }
                    self.report(ConnectionState::Connecting).await;
                    continue;
                }
                polled = self.session.poll(&self.connection) => polled,
            };
            match polled {
                Ok(Incoming::ConnAck { receive_maximum, maximum_packet_size }) => {
                    self.note_receive_maximum(receive_maximum);
                    if self.to_driver.send(FromBroker::MaximumPacket(maximum_packet_size)).await.is_err() {
                        break;
                    }
                    acked = true;
                    spoke_v5 |= self.protocol == Protocol::V5;
                    subscribed = false;
                    resubscribe_at = None;
                    if self.publisher.subscribe(&self.filters).await.is_err() {
                        break;
                    }
                }
                Ok(Incoming::SubAck(results))
                    if !subscribed && results.first().is_some_and(Result::is_ok) =>
                {
                    let watching = results.get(1).is_some_and(Result::is_ok);
                    self.note_command_watch(results.get(1).cloned().unwrap_or(Err("no answer".into())));
                    self.note_status_watch(results.get(2).cloned().unwrap_or(Err("no answer".into())));
                    self.note_aws_watch(results.get(3..).unwrap_or_default());
                    subscribed = true;
                    up_since = Some(Instant::now());
                    tracing::info!(
                        broker = %self.connection.url,
                        client_id = %self.connection.client_id,
                        protocol = self.protocol.label(),
                        "connected to the broker"
                    );
                    last_logged = None;
                    self.metrics.set_connected(true);
                    self.report(ConnectionState::Connected).await;
                    if self.to_driver.send(FromBroker::Watching(watching)).await.is_err() {
                        break;
                    }
                }
                Ok(Incoming::SubAck(results)) if !subscribed => {
                    let reason = match results.into_iter().next() {
                        Some(Err(reason)) => reason,
                        _ => "the broker answered the subscription with nothing".to_owned(),
                    };
                    // Connected but deaf: an error state. Ask again later (an ACL may be fixed).
                    attempt = attempt.saturating_add(1);
                    let delay = backoff(attempt);
                    Self::log_once(&mut last_logged, &reason, attempt);
                    self.metrics.reconnect(FailureKind::Refused);
                    let delay_ms = delay.as_millis() as u64;
                    self.report(ConnectionState::Reconnecting { attempt, delay_ms, reason }).await;
                    resubscribe_at = Some(tokio::time::Instant::now() + delay);
                }
                Ok(Incoming::Publish { topic, payload, qos }) => {
                    let message = FromBroker::Message { topic, payload, qos };
                    if self.to_driver.send(message).await.is_err() {
                        break;
                    }
                }
                Ok(Incoming::PubAck { pkid, refused }) => {
                    if self.to_driver.send(FromBroker::PubAck { pkid, refused }).await.is_err() {
                        break;
                    }
                }
                Ok(Incoming::Sent(pkid)) => {
                    if self.to_driver.send(FromBroker::Sent(pkid)).await.is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(mut failure) => {
                    let was_up = up_since.take();
                    if was_up.is_some() && failure.kind == FailureKind::Closed {
                        // MQTT 3.1.1 brokers, and some 5 ones (mosquitto 2.0), close a session
                        // taken over by another client without a word; say what it may be.
                        failure.reason = format!(
                            "the broker closed the connection without saying why: a broker restart does \
                             this, and so does another client connecting with the same client id {:?} \
                             (give each Rocky its own mqtt.client_id, or leave it empty for a unique one)",
                            self.connection.client_id
                        );
                    }
                    if was_up.is_some_and(|since| since.elapsed() >= STABLE_AFTER) {
                        attempt = 0;
                    }
                    if was_up.is_some() {
                        self.metrics.set_connected(false);
                        self.report(ConnectionState::Disconnected { reason: failure.reason.clone() }).await;
                    }
                    let first_answer_missing = !acked;
                    // Closed before a CONNACK: a TLS port given as mqtt://, or a plain one as
                    // mqtts://, looks just like this; the port is asked which it speaks.
                    if first_answer_missing
                        && matches!(
                            failure.kind,
                            FailureKind::Closed | FailureKind::NoAnswer | FailureKind::Other
                        )
                        && let Some(mismatch) = crate::mqtt::tls_mismatch(&self.connection).await
                    {
                        failure = mismatch;
                    }
                    acked = false;
                    subscribed = false;
                    resubscribe_at = None;
                    if first_answer_missing && !spoke_v5 && self.fall_back(&failure).await {
                        continue;
                    }
                    attempt = attempt.saturating_add(1);
                    let delay = backoff(attempt);
                    Self::log_once(&mut last_logged, &failure.reason, attempt);
                    self.metrics.reconnect(failure.kind);
                    let delay_ms = delay.as_millis() as u64;
                    let reason = failure.reason;
                    self.report(ConnectionState::Reconnecting { attempt, delay_ms, reason }).await;
                    if !self.pause(delay).await {
                        break;
                    }
                }
            }
        }
        self.close().await;
        self.metrics.set_connected(false);
        self.report(ConnectionState::Stopped).await;
        let _ = self.to_driver.send(FromBroker::Stopped).await;
    }

    /// Under `mqtt.version = auto`, a broker that closed the door on a version 5 CONNECT without
    /// a CONNACK, and never answered one, is asked again in 3.1.1, at once and for the rest of
    /// the process (set `mqtt.version = 5` to rule that out).
    async fn fall_back(&mut self, failure: &Failure) -> bool {
        let auto = self.connection.version == MqttVersion::Auto;
        if !(auto && self.protocol == Protocol::V5) {
            return false;
        }
        let how = match failure.kind {
            FailureKind::Closed => "closed the connection on an MQTT 5 CONNECT",
            // No CONNACK within the connection timeout: a broker that cannot parse a version
            // 5 CONNECT may just wait for more. Only if it takes TCP connections at all, so a
            // broker that is merely down is not taken for a 3.1.1 one, and only the second time
            // in a row, so a broker slow once (a proxy whose broker restarts) is not either.
            FailureKind::NoAnswer
                if accepts_tcp(self.connection.url.host.clone(), self.connection.url.port).await =>
            {
                self.silent_connects += 1;
                if self.silent_connects < 2 {
                    return false;
                }
                "took the connection but did not answer an MQTT 5 CONNECT within 5 s, twice"
            }
            _ => {
                self.silent_connects = 0;
                return false;
            }
        };
        tracing::warn!(
            broker = %self.connection.url,
            "the broker {how}, so it does not speak MQTT 5; using MQTT 3.1.1 (set mqtt.version = 4 to skip the \
             try). Under 3.1.1 a message over 1 MiB on a response topic closes the connection unless the broker \
             limits message sizes (mosquitto: message_size_limit)"
        );
        self.protocol = Protocol::V311;
        let (publisher, session) =
            Session::new(&self.connection, self.protocol, self.capacity, self.inflight);
        self.session = session;
        self.publisher = publisher.clone();
        self.to_driver.send(FromBroker::Publisher(publisher)).await.is_ok()
    }

    /// Says once (per new reason) when the broker refuses the status filter: Rocky then learns
    /// nothing of what devices run (the status extension).
    fn note_status_watch(&mut self, result: Result<(), String>) {
        match result {
            Ok(()) => self.statuses_refused = None,
            Err(reason) if self.statuses_refused.as_ref() != Some(&reason) => {
                tracing::warn!(
                    filter = %self.filters[2].topic,
                    %reason,
                    "Rocky may not subscribe to devices' status topics: what devices run is unknown to it \
                     (allow it in the broker's ACL)"
                );
                self.statuses_refused = Some(reason);
            }
            Err(_) => {}
        }
    }

    /// Says once when the broker refuses the AWS OTA profile's topics: devices that run AWS's
    /// agent cannot reach Rocky then (an ACL that does not allow `$aws/things/#`).
    fn note_aws_watch(&mut self, results: &[Result<(), String>]) {
        let refused = results.iter().find_map(|result| result.as_ref().err()).cloned();
        if refused.is_some() && refused != self.aws_refused {
            tracing::info!(
                reason = refused.as_deref().unwrap_or_default(),
                "the broker does not let Rocky subscribe to $aws/things/+/jobs/… and …/streams/…: devices running \
                 AWS's OTA agent cannot reach it (allow them in the broker's ACL if you have such devices)"
            );
        }
        self.aws_refused = refused;
    }

    /// Says once (per new reason) when the broker refuses the command filter: Rocky then
    /// cannot see its delivery probe or commands others publish to its devices.
    fn note_command_watch(&mut self, result: Result<(), String>) {
        match result {
            Ok(()) => self.commands_refused = None,
            Err(reason) if self.commands_refused.as_ref() != Some(&reason) => {
                tracing::warn!(
                    filter = %self.filters[1].topic,
                    %reason,
                    "Rocky may not subscribe to every device's command topic: its delivery probe and the watch \
                     for commands it did not send are off (allow it in the broker's ACL)"
                );
                self.commands_refused = Some(reason);
            }
            Err(_) => {}
        }
    }

    /// Says once when the broker's receive maximum (MQTT 5) is below Rocky's window: it caps the
    /// unacknowledged publishes, and with them throughput (mosquitto's default of 20 gave about
    /// two thirds of the rate of 128 in `rocky bench --mosquitto`, see the README).
    fn note_receive_maximum(&mut self, receive_maximum: Option<u16>) {
        let Some(limit) = receive_maximum.filter(|limit| *limit < self.inflight) else { return };
        if self.receive_maximum_noted == Some(limit) {
            return;
        }
        self.receive_maximum_noted = Some(limit);
        tracing::info!(
            broker = %self.connection.url,
            receive_maximum = limit,
            window = self.inflight,
            "the broker accepts at most {limit} unacknowledged publishes from Rocky, under its window of {}; \
             raise the broker's limit for more throughput (mosquitto: max_inflight_messages)",
            self.inflight
        );
    }

    /// A reason goes to the log when it differs from the last one logged, so a broker that
    /// refuses Rocky for an hour writes one line, not thousands.
    fn log_once(last: &mut Option<String>, reason: &str, attempt: u32) {
        if last.as_deref() == Some(reason) {
            tracing::debug!(%reason, attempt, "broker connection still failing");
        } else {
            tracing::warn!(%reason, attempt, "broker connection failed");
            *last = Some(reason.to_owned());
        }
    }

    /// Waits `delay`; false when asked to stop meanwhile.
    async fn pause(&mut self, delay: Duration) -> bool {
        tokio::select! {
            _ = self.stop.changed() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }

    /// Says goodbye to the broker (best effort, bounded) so it drops the session at once.
    async fn close(&mut self) {
        if self.publisher.try_disconnect().is_err() {
            return;
        }
        let session = &mut self.session;
        let connection = &self.connection;
        let _ = tokio::time::timeout(Duration::from_millis(500), async move {
            while let Ok(incoming) = session.poll(connection).await {
                if matches!(incoming, Incoming::DisconnectSent) {
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

/// Whether `host:port` takes a TCP connection within 2 s.
async fn accepts_tcp(host: String, port: u16) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect((host, port))).await,
        Ok(Ok(_))
    )
}

/// 100 ms, 200 ms, 400 ms … capped at 30 s: quick after a blip, gentle on a broker that keeps
/// refusing.
fn backoff(attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
    (BACKOFF_START * factor).min(BACKOFF_MAX)
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
