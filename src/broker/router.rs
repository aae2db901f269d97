//! Who is connected, who subscribed to what, and the retained messages: the embedded broker's
//! shared state. A publish is routed while the publisher's connection holds the lock, straight
//! into each subscriber's queue, so every subscriber receives messages in the order they were
//! published — across topics too (a chunk on a data topic never arrives after the FOTA_DONE that
//! followed it on the command topic), which MQTT itself promises only per topic.
//!
//! Bounded: a connection's queue holds at most [`MAX_QUEUED_BYTES`] of payload, all queues
//! together [`MAX_TOTAL_QUEUED_BYTES`] (beyond that messages for that subscriber are dropped and
//! counted, as mosquitto drops past `max_queued_messages`); retained messages at most
//! [`MAX_RETAINED`] topics and [`MAX_RETAINED_BYTES`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::filter::{FilterIndex, valid_filter};

/// Payload bytes one subscriber may have queued before messages for it are dropped.
pub const MAX_QUEUED_BYTES: usize = 16 * 1024 * 1024;
/// Payload bytes all subscribers together may have queued.
pub const MAX_TOTAL_QUEUED_BYTES: usize = 512 * 1024 * 1024;
pub const MAX_RETAINED: usize = 100_000;
/// Retained payloads and topics together.
pub const MAX_RETAINED_BYTES: usize = 64 * 1024 * 1024;
/// Filters one connection may hold (a device has two; Rocky three).
pub const MAX_FILTERS: usize = 10_000;
/// What a queued message costs beyond its payload and topic (the message, the channel).
const MESSAGE_OVERHEAD: usize = 64;

/// What a message counts against the queue bounds: payload, topic and bookkeeping.
pub fn cost(message: &Message) -> usize {
    message.payload.len() + message.topic.len() + MESSAGE_OVERHEAD
}

pub type ConnId = u64;

/// A message on its way to one subscriber.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: Arc<str>,
    pub payload: Bytes,
    /// The QoS it is delivered at: the lower of the publish's and the subscription's.
    pub qos: u8,
    /// Sent because of a new subscription to a retained topic.
    pub retain: bool,
}

/// What a connection's writer is asked to do, in order.
#[derive(Debug)]
pub enum Out {
    /// A control packet (CONNACK, PUBACK, SUBACK, …).
    Packet(rumqttc::mqttbytes::v4::Packet),
    Deliver(Message),
    /// The client acknowledged our publish `pkid`.
    Acked(u16),
    /// End the connection (another took its client id, or it ended).
    Close,
}

struct Conn {
    client_id: String,
    tx: mpsc::UnboundedSender<Out>,
    filters: std::collections::HashSet<String>,
    /// Payload bytes queued for this connection (the writer takes off what it writes).
    queued: Arc<AtomicUsize>,
    /// Messages dropped for this connection, last said.
    dropped: u64,
}

/// Counts the broker keeps for its log and tests.
#[derive(Debug, Default)]
pub struct Counters {
    pub dropped: AtomicU64,
}

pub struct Router {
    index: FilterIndex<ConnId>,
    conns: HashMap<ConnId, Conn>,
    clients: HashMap<String, ConnId>,
    retained: BTreeMap<String, Bytes>,
    retained_bytes: usize,
    next: ConnId,
    /// Payload bytes queued for all connections.
    total_queued: Arc<AtomicUsize>,
    pub counters: Arc<Counters>,
}

impl Default for Router {
    fn default() -> Self {
        Self {
            index: FilterIndex::default(),
            conns: HashMap::new(),
            clients: HashMap::new(),
            retained: BTreeMap::new(),
            retained_bytes: 0,
            next: 1,
            total_queued: Arc::default(),
            counters: Arc::default(),
        }
    }
}

impl Router {
    /// A new connection for `client_id`; one already using that id is told to close (MQTT's
    /// session takeover). Returns its id and the counter of all queued bytes.
    pub fn connect(
        &mut self,
        client_id: &str,
        tx: mpsc::UnboundedSender<Out>,
        queued: Arc<AtomicUsize>,
    ) -> (ConnId, Arc<AtomicUsize>) {
        let id = self.next;
        self.next += 1;
        // MQTT 3.1.1: an empty client id gets one of the server's, unique to the connection.
        let client_id = if client_id.is_empty() { format!("$auto-{id}") } else { client_id.to_owned() };
        if let Some(old) = self.clients.insert(client_id.clone(), id) {
            self.disconnect(old);
        }
        let conn = Conn { client_id, tx, filters: Default::default(), queued, dropped: 0 };
        self.conns.insert(id, conn);
        (id, self.total_queued.clone())
    }

    /// Forgets a connection and its subscriptions, and tells its writer to close. Nothing is
    /// queued for it from now on; its connection releases what was (see [`release_all`]).
    pub fn disconnect(&mut self, id: ConnId) {
        let Some(conn) = self.conns.remove(&id) else { return };
        for filter in &conn.filters {
            self.index.remove(filter, id);
        }
        if self.clients.get(&conn.client_id) == Some(&id) {
            self.clients.remove(&conn.client_id);
        }
        let _ = conn.tx.send(Out::Close);
    }

    /// Subscribes `id` to `filters` (`(filter, qos)`), sends the SUBACK `pkid` with a code per
    /// filter (a bad filter is refused), then the retained messages they match.
    pub fn subscribe(&mut self, id: ConnId, pkid: u16, filters: Vec<(String, u8)>) {
        use rumqttc::mqttbytes::v4::{Packet, SubAck, SubscribeReasonCode};
        let Some(conn) = self.conns.get_mut(&id) else { return };
        let mut codes = Vec::with_capacity(filters.len());
        let mut granted = Vec::new();
        for (filter, qos) in filters {
            let room = conn.filters.contains(&filter) || conn.filters.len() < MAX_FILTERS;
            if !valid_filter(&filter) || !room {
                codes.push(SubscribeReasonCode::Failure);
                continue;
            }
            let qos = qos.min(1);
            self.index.insert(&filter, id, qos);
            conn.filters.insert(filter.clone());
            codes.push(SubscribeReasonCode::Success(qos_of(qos)));
            granted.push((filter, qos));
        }
        let _ = conn.tx.send(Out::Packet(Packet::SubAck(SubAck::new(pkid, codes))));
        for (filter, qos) in granted {
            for (topic, payload) in retained_matching(&self.retained, &filter) {
                let message = Message { topic: topic.into(), payload, qos, retain: true };
                self.deliver(id, message);
            }
        }
    }

    pub fn unsubscribe(&mut self, id: ConnId, filters: &[String]) {
        let Some(conn) = self.conns.get_mut(&id) else { return };
        for filter in filters {
            if conn.filters.remove(filter) {
                self.index.remove(filter, id);
            }
        }
    }

    /// Routes a publish to every matching subscriber, and keeps or clears it as retained.
    pub fn publish(&mut self, topic: &str, payload: Bytes, qos: u8, retain: bool) {
        if retain {
            self.retain(topic, &payload);
        }
        let topic: Arc<str> = topic.into();
        for (id, granted) in self.index.matches(&topic) {
            let message = Message {
                topic: topic.clone(),
                payload: payload.clone(),
                qos: qos.min(granted),
                retain: false,
            };
            self.deliver(id, message);
        }
    }

    fn retain(&mut self, topic: &str, payload: &Bytes) {
        if let Some(old) = self.retained.remove(topic) {
            self.retained_bytes -= old.len() + topic.len();
        }
        if payload.is_empty() {
            return; // a zero-length retained message clears the topic
        }
        let size = payload.len() + topic.len();
        if self.retained.len() >= MAX_RETAINED || self.retained_bytes + size > MAX_RETAINED_BYTES {
            tracing::warn!(%topic, "embedded broker: retained message not kept (the retained store is full)");
            return;
        }
        self.retained_bytes += size;
        // A copy: the publish's bytes share the connection's read buffer, which a message
        // kept for ever must not pin.
        self.retained.insert(topic.to_owned(), Bytes::copy_from_slice(payload));
    }

    /// Queues `message` for `id`, or drops it (counted, said once per connection a thousand)
    /// when that connection or the broker holds too much.
    fn deliver(&mut self, id: ConnId, message: Message) {
        let Some(conn) = self.conns.get_mut(&id) else { return };
        let len = cost(&message);
        let over = conn.queued.load(Ordering::Relaxed) + len > MAX_QUEUED_BYTES
            || self.total_queued.load(Ordering::Relaxed) + len > MAX_TOTAL_QUEUED_BYTES;
        if over {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            if conn.dropped % 1000 == 0 {
                tracing::warn!(
                    client_id = %conn.client_id,
                    dropped = conn.dropped + 1,
                    "embedded broker: a subscriber is too far behind; messages for it are dropped"
                );
            }
            conn.dropped += 1;
            return;
        }
        conn.queued.fetch_add(len, Ordering::Relaxed);
        self.total_queued.fetch_add(len, Ordering::Relaxed);
        if conn.tx.send(Out::Deliver(message)).is_err() {
            conn.queued.fetch_sub(len, Ordering::Relaxed);
            self.total_queued.fetch_sub(len, Ordering::Relaxed);
        }
    }
}

/// What a closed connection still had queued leaves the broker's total. Called once its writer
/// has stopped and the router no longer lists it, so nothing adds or takes off meanwhile.
pub fn release_all(queued: &AtomicUsize, total: &AtomicUsize) {
    let left = queued.swap(0, Ordering::Relaxed);
    total.fetch_sub(left, Ordering::Relaxed);
}

pub fn qos_of(qos: u8) -> rumqttc::QoS {
    match qos {
        0 => rumqttc::QoS::AtMostOnce,
        1 => rumqttc::QoS::AtLeastOnce,
        _ => rumqttc::QoS::ExactlyOnce,
    }
}

/// Retained messages whose topic `filter` matches: a plain filter is looked up, a wildcard one
/// scans.
fn retained_matching(retained: &BTreeMap<String, Bytes>, filter: &str) -> Vec<(String, Bytes)> {
    if !filter.contains(['+', '#']) {
        return retained.get(filter).map(|p| vec![(filter.to_owned(), p.clone())]).unwrap_or_default();
    }
    let mut index = FilterIndex::default();
    index.insert(filter, 0u8, 0);
    retained
        .iter()
        .filter(|(topic, _)| !index.matches(topic).is_empty())
        .map(|(topic, payload)| (topic.clone(), payload.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(router: &mut Router, client: &str) -> (ConnId, mpsc::UnboundedReceiver<Out>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (id, _) = router.connect(client, tx, Arc::default());
        (id, rx)
    }

    fn topics(rx: &mut mpsc::UnboundedReceiver<Out>) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(item) = rx.try_recv() {
            if let Out::Deliver(m) = item {
                out.push(m.topic.to_string());
            }
        }
        out
    }

    #[test]
    fn a_subscriber_gets_messages_in_publish_order_across_its_filters() {
        let mut router = Router::default();
        let (device, mut rx) = conn(&mut router, "dev-1");
        router.subscribe(device, 1, vec![("/fota/cmd/dev-1".into(), 1), ("/fota/data/dev-1/+".into(), 1)]);
        for n in 1..=50 {
            router.publish(&format!("/fota/data/dev-1/{n}"), Bytes::from_static(b"x"), 1, false);
        }
        router.publish("/fota/cmd/dev-1", Bytes::from_static(b"done"), 1, false);
        let got = topics(&mut rx);
        assert_eq!(got.len(), 51);
        assert_eq!(got.last().map(String::as_str), Some("/fota/cmd/dev-1"), "FOTA_DONE after every chunk");
    }

    #[test]
    fn retained_messages_are_kept_cleared_and_sent_on_subscribe() {
        let mut router = Router::default();
        router.publish("/fota/status/a", Bytes::from_static(b"1"), 1, true);
        router.publish("/fota/status/b", Bytes::from_static(b"2"), 1, true);
        router.publish("/fota/status/b", Bytes::new(), 1, true);
        let (id, mut rx) = conn(&mut router, "rocky");
        router.subscribe(id, 1, vec![("/fota/status/+".into(), 1)]);
        assert_eq!(topics(&mut rx), vec!["/fota/status/a"]);
    }

    #[test]
    fn a_second_connection_with_the_same_client_id_takes_over() {
        let mut router = Router::default();
        let (old, mut old_rx) = conn(&mut router, "same");
        router.subscribe(old, 1, vec![("t".into(), 0)]);
        let (_new, _rx) = conn(&mut router, "same");
        let mut closed = false;
        while let Ok(item) = old_rx.try_recv() {
            closed |= matches!(item, Out::Close);
        }
        assert!(closed);
        router.publish("t", Bytes::from_static(b"x"), 0, false);
        assert!(topics(&mut old_rx).is_empty(), "its subscriptions went with it");
    }

    #[test]
    fn a_subscriber_too_far_behind_loses_messages_and_the_queue_stays_bounded() {
        let mut router = Router::default();
        let (id, mut rx) = conn(&mut router, "slow");
        router.subscribe(id, 1, vec![("big".into(), 1)]);
        let chunk = Bytes::from(vec![0u8; 1024 * 1024]);
        for _ in 0..20 {
            router.publish("big", chunk.clone(), 1, false);
        }
        assert_eq!(topics(&mut rx).len(), 15, "16 MiB queued (payload, topic, overhead), the rest dropped");
        assert_eq!(router.counters.dropped.load(Ordering::Relaxed), 5);
    }
}
