//! The task that owns the engine: it feeds the engine requests, broker messages and timer ticks,
//! and carries out what the engine asks for, never sending more than `window` unacknowledged
//! publishes. Because it never waits on anything but its own inputs, no subscriber, client or
//! device can stall it.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use rumqttc::{AsyncClient, QoS};
use tokio::sync::{broadcast, mpsc, watch};

use super::handle::Request;
use super::messenger::FromBroker;
use super::{Clock, ConnectionState, Envelope, RuntimeEvent, Traffic, TrafficDirection};
use crate::engine::{Engine, Publish, PublishKind};
use crate::protocol::{TopicKind, decode_response, describe};

pub struct Driver {
    pub engine: Engine,
    pub client: AsyncClient,
    pub requests: mpsc::Receiver<Request>,
    pub from_broker: mpsc::Receiver<FromBroker>,
    pub events: broadcast::Sender<Arc<Envelope>>,
    pub clock: Clock,
    /// At most this many publishes are unacknowledged (at least 1).
    pub window: u16,
    /// Publishes handed to rumqttc and not yet acknowledged by the broker.
    pub outstanding: u16,
    pub connection: ConnectionState,
    pub seq: u64,
    /// Tells the messenger to stop when the driver ends.
    pub stop: watch::Sender<bool>,
}

impl Driver {
    pub async fn run(mut self) {
        let mut shutdown_reply = None;
        loop {
            self.pump().await;
            let wake = self.engine.next_wakeup().map(tokio::time::Instant::from_std);
            tokio::select! {
                request = self.requests.recv() => match request {
                    Some(Request::Shutdown(reply)) => {
                        shutdown_reply = Some(reply);
                        break;
                    }
                    Some(request) => self.handle_request(request),
                    None => break,
                },
                message = self.from_broker.recv() => match message {
                    Some(FromBroker::Stopped) | None => break,
                    Some(message) => self.handle_broker(message),
                },
                _ = sleep_until(wake), if wake.is_some() => {}
            }
        }
        let _ = self.stop.send(true);
        // Let the messenger say goodbye to the broker, then report the end.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
            while let Some(message) = self.from_broker.recv().await {
                if matches!(message, FromBroker::Stopped) {
                    break;
                }
            }
        })
        .await;
        self.emit(SystemTime::now(), RuntimeEvent::Connection(ConnectionState::Stopped));
        if let Some(reply) = shutdown_reply {
            let _ = reply.send(());
        }
    }

    /// Fires due timers, sends what the window allows and publishes the engine's events.
    async fn pump(&mut self) {
        let now = self.clock.now();
        self.engine.tick(now);
        while self.outstanding < self.window {
            let Some(publish) = self.engine.poll_publish(now) else { break };
            self.send(publish).await;
        }
        while let Some((at, event)) = self.engine.poll_event() {
            self.emit(self.clock.wall(at), RuntimeEvent::Engine(event));
        }
    }

    async fn send(&mut self, publish: Publish) {
        if self.has_subscribers() {
            let text = describe(self.engine.topics(), &publish.topic, &publish.payload);
            let chunk = match publish.kind {
                PublishKind::Chunk { id, .. } => Some(id),
                PublishKind::Command(_) => None,
            };
            let traffic = Traffic {
                direction: TrafficDirection::Out,
                topic: publish.topic.clone(),
                qos: 1,
                size: publish.payload.len(),
                text,
                payload: publish.payload.clone(),
                device: Some(publish.device.clone()),
                job: Some(publish.job),
                decode_error: false,
                chunk,
            };
            self.emit(SystemTime::now(), RuntimeEvent::Traffic(traffic));
        }
        match self.client.publish_bytes(publish.topic, QoS::AtLeastOnce, false, publish.payload).await {
            Ok(()) => self.outstanding += 1,
            Err(e) => tracing::error!(error = %e, "publish could not be queued"),
        }
    }

    fn handle_request(&mut self, request: Request) {
        let now = self.clock.now();
        match request {
            Request::Submit(specs, reply) => {
                let result = specs.iter().try_for_each(|spec| self.engine.check(spec)).and_then(|()| {
                    let mut views = Vec::with_capacity(specs.len());
                    for spec in specs {
                        let id = self.engine.submit(spec, now)?;
                        views.extend(self.engine.job(id));
                    }
                    Ok(views)
                });
                let _ = reply.send(result);
            }
            Request::Cancel(id, reply) => {
                let result = self.engine.cancel(id, now).map(|()| self.engine.job(id));
                let _ =
                    reply.send(result.and_then(|view| view.ok_or(crate::engine::CancelError::NotFound(id))));
            }
            Request::Job(id, reply) => {
                let _ = reply.send(self.engine.job(id));
            }
            Request::Jobs(filter, reply) => {
                let _ = reply.send(self.engine.jobs().filter(|j| filter.matches(j)).collect());
            }
            Request::Status(reply) => {
                let _ = reply.send((self.connection.clone(), self.engine.counts()));
            }
            Request::Shutdown(reply) => {
                let _ = reply.send(());
            }
        }
    }

    fn handle_broker(&mut self, message: FromBroker) {
        let now = self.clock.now();
        match message {
            FromBroker::Connection(state) => {
                match &state {
                    ConnectionState::Connected => {
                        self.outstanding = 0;
                        self.engine.set_connected(true, now);
                    }
                    ConnectionState::Disconnected { .. } => {
                        // A clean session drops whatever was in flight; the engine re-sends.
                        self.outstanding = 0;
                        self.engine.set_connected(false, now);
                    }
                    _ => {}
                }
                self.connection = state.clone();
                self.emit(SystemTime::now(), RuntimeEvent::Connection(state));
            }
            FromBroker::PubAck => self.outstanding = self.outstanding.saturating_sub(1),
            FromBroker::Message { topic, payload, qos } => self.handle_message(topic, payload, qos, now),
            FromBroker::Stopped => {}
        }
    }

    fn handle_message(&mut self, topic: String, payload: bytes::Bytes, qos: u8, now: Instant) {
        let device = match self.engine.topics().parse(&topic) {
            Some(TopicKind::CmdResp(device)) => Some(device),
            _ => None,
        };
        let decoded = decode_response(&payload);
        if self.has_subscribers() {
            let traffic = Traffic {
                direction: TrafficDirection::In,
                text: describe(self.engine.topics(), &topic, &payload),
                size: payload.len(),
                job: decoded.as_ref().ok().map(|r| r.job_id),
                decode_error: device.is_some() && decoded.is_err(),
                device: device.clone(),
                topic: topic.clone(),
                qos,
                payload: payload.clone(),
                chunk: None,
            };
            self.emit(SystemTime::now(), RuntimeEvent::Traffic(traffic));
        }
        match (device, decoded) {
            (Some(device), Ok(response)) => self.engine.handle_response(&device, response, now),
            (Some(device), Err(error)) => tracing::warn!(%device, %error, "undecodable response ignored"),
            (None, _) => tracing::debug!(%topic, "message on an unexpected topic ignored"),
        }
    }

    fn has_subscribers(&self) -> bool {
        self.events.receiver_count() > 0
    }

    fn emit(&mut self, time: SystemTime, event: RuntimeEvent) {
        self.seq += 1;
        if self.has_subscribers() {
            let _ = self.events.send(Arc::new(Envelope { seq: self.seq, time, event }));
        }
    }
}

async fn sleep_until(wake: Option<tokio::time::Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
