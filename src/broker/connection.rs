//! One client of the embedded broker: MQTT 3.1.1 read from its socket (packets decoded by
//! rumqttc's codec), its publishes routed, and a writer that sends what the router queued for
//! it, in order, with at most [`MAX_INFLIGHT`] QoS 1 messages unacknowledged.
//!
//! A client that sends an MQTT 5 CONNECT is disconnected without a word, as a 3.1.1-only broker
//! does (Rocky then speaks 3.1.1). Persistent sessions are not kept: every session is clean.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, PubAck, PubComp, PubRec, Publish, UnsubAck,
};
use rumqttc::mqttbytes::{Error as CodecError, Protocol, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::filter::valid_topic;
use super::router::{ConnId, Message, Out, Router, cost, qos_of, release_all};

/// QoS 1 messages sent to one client and not yet acknowledged; the rest wait, in order.
pub const MAX_INFLIGHT: usize = 100;
/// The largest packet a client may send (a 256 KiB chunk fits with room; a stranger's
/// megabytes do not).
pub const MAX_PACKET: usize = crate::mqtt::MAX_PACKET_BYTES;
/// A client that has not sent CONNECT by then is dropped.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that takes no bytes from the broker for this long is dropped: a hung device must not
/// keep its queue (and the broker's budget) for ever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

fn lock(router: &Mutex<Router>) -> std::sync::MutexGuard<'_, Router> {
    router.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn qos_level(qos: QoS) -> u8 {
    match qos {
        QoS::AtMostOnce => 0,
        QoS::AtLeastOnce => 1,
        QoS::ExactlyOnce => 2,
    }
}

/// Reads the next packet, reading more from `socket` as needed; `None` when the connection
/// ended, broke the protocol or sent a packet over [`MAX_PACKET`].
async fn next_packet(socket: &mut tokio::net::tcp::OwnedReadHalf, buffer: &mut BytesMut) -> Option<Packet> {
    loop {
        match Packet::read(buffer, MAX_PACKET) {
            Ok(packet) => return Some(packet),
            Err(CodecError::InsufficientBytes(_)) => {}
            Err(_) => return None,
        }
        buffer.reserve(8 * 1024);
        match socket.read_buf(buffer).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Serves one client until it disconnects, breaks the protocol, goes silent past its keep-alive
/// or is taken over by a new connection with its client id.
pub async fn serve(stream: TcpStream, router: Arc<Mutex<Router>>) {
    let _ = stream.set_nodelay(true);
    let (mut reader, writer) = stream.into_split();
    let mut buffer = BytesMut::with_capacity(8 * 1024);
    let connect = match tokio::time::timeout(CONNECT_TIMEOUT, next_packet(&mut reader, &mut buffer)).await {
        Ok(Some(Packet::Connect(connect))) if connect.protocol == Protocol::V4 => connect,
        _ => return,
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let (id, total) = lock(&router).connect(&connect.client_id, tx.clone(), queued.clone());
    let _ = tx.send(Out::Packet(Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false))));
    let mut write_task = tokio::spawn(write(writer, rx, queued.clone(), total.clone()));
    // MQTT: a client silent for one and a half keep-alives is gone (0: no keep-alive).
    let silence = match connect.keep_alive {
        0 => Duration::from_secs(24 * 3600),
        secs => Duration::from_millis(u64::from(secs) * 1500),
    };
    loop {
        let packet = tokio::select! {
            // The writer ended: the socket broke, or a new connection took the client id.
            _ = &mut write_task => break,
            read = tokio::time::timeout(silence, next_packet(&mut reader, &mut buffer)) => match read {
                Ok(Some(packet)) => packet,
                _ => break,
            },
        };
        if !handle(packet, id, &router, &tx) {
            break;
        }
    }
    lock(&router).disconnect(id);
    // Give the writer a moment to send what is queued (a DISCONNECT's last PUBACKs), then stop
    // it; once it has stopped and the router no longer lists this connection, what is still
    // queued leaves the broker's total.
    if !write_task.is_finished()
        && tokio::time::timeout(Duration::from_secs(1), &mut write_task).await.is_err()
    {
        write_task.abort();
        let _ = write_task.await;
    }
    release_all(&queued, &total);
}

/// One packet from the client; false when the connection must end.
fn handle(packet: Packet, id: ConnId, router: &Mutex<Router>, tx: &mpsc::UnboundedSender<Out>) -> bool {
    match packet {
        Packet::Publish(publish) => {
            if !valid_topic(&publish.topic) {
                return false;
            }
            let qos = qos_level(publish.qos);
            lock(router).publish(&publish.topic, publish.payload, qos.min(1), publish.retain);
            // Acknowledged once routed: it is in every subscriber's queue by then.
            match qos {
                1 => tx.send(Out::Packet(Packet::PubAck(PubAck::new(publish.pkid)))).is_ok(),
                2 => tx.send(Out::Packet(Packet::PubRec(PubRec::new(publish.pkid)))).is_ok(),
                _ => true,
            }
        }
        Packet::PubAck(ack) => tx.send(Out::Acked(ack.pkid)).is_ok(),
        Packet::PubRel(rel) => tx.send(Out::Packet(Packet::PubComp(PubComp::new(rel.pkid)))).is_ok(),
        Packet::Subscribe(subscribe) => {
            let filters = subscribe.filters.into_iter().map(|f| (f.path, qos_level(f.qos))).collect();
            lock(router).subscribe(id, subscribe.pkid, filters);
            true
        }
        Packet::Unsubscribe(unsubscribe) => {
            lock(router).unsubscribe(id, &unsubscribe.topics);
            tx.send(Out::Packet(Packet::UnsubAck(UnsubAck::new(unsubscribe.pkid)))).is_ok()
        }
        Packet::PingReq => tx.send(Out::Packet(Packet::PingResp)).is_ok(),
        // DISCONNECT, a second CONNECT, or a packet only a server sends: the end.
        _ => false,
    }
}

/// The writer's state: packet ids in use and QoS 1 messages waiting for room.
struct Outbox {
    inflight: HashSet<u16>,
    waiting: VecDeque<Message>,
    next_pkid: u16,
}

impl Outbox {
    fn pkid(&mut self) -> u16 {
        loop {
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
            if !self.inflight.contains(&self.next_pkid) {
                return self.next_pkid;
            }
        }
    }
}

/// Writes what the router and the reader queued, in order. Once a QoS 1 message waits for
/// room, every later message waits behind it, so the order holds.
async fn write(
    mut socket: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Out>,
    queued: Arc<AtomicUsize>,
    total: Arc<AtomicUsize>,
) {
    let mut outbox = Outbox { inflight: HashSet::new(), waiting: VecDeque::new(), next_pkid: 0 };
    let mut buffer = BytesMut::with_capacity(16 * 1024);
    let release = |len: usize| {
        queued.fetch_sub(len, Ordering::Relaxed);
        total.fetch_sub(len, Ordering::Relaxed);
    };
    // Only what this writer takes off is subtracted here; what is left when the connection
    // ends is subtracted once by `serve` (`release_all`).
    let mut open = true;
    while open {
        let Some(first) = rx.recv().await else { break };
        // Take what else is queued now (up to a bound), then write it in one go.
        let mut batch = vec![first];
        while batch.len() < 256 {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        for item in batch {
            match item {
                Out::Packet(packet) => {
                    let _ = packet.write(&mut buffer, usize::MAX);
                }
                Out::Deliver(message) => {
                    let full = message.qos == 1 && outbox.inflight.len() >= MAX_INFLIGHT;
                    if full || !outbox.waiting.is_empty() {
                        outbox.waiting.push_back(message);
                    } else {
                        encode(&mut outbox, &mut buffer, message, &release);
                    }
                }
                Out::Acked(pkid) => {
                    outbox.inflight.remove(&pkid);
                    while outbox.inflight.len() < MAX_INFLIGHT {
                        let Some(message) = outbox.waiting.pop_front() else { break };
                        encode(&mut outbox, &mut buffer, message, &release);
                    }
                }
                Out::Close => {
                    open = false;
                    break;
                }
            }
        }
        if !buffer.is_empty() {
            match tokio::time::timeout(WRITE_TIMEOUT, socket.write_all(&buffer)).await {
                Ok(Ok(())) => {}
                _ => break,
            }
        }
        buffer.clear();
        // A burst's buffer is not kept for the connection's life.
        if buffer.capacity() > 1024 * 1024 {
            buffer = BytesMut::with_capacity(16 * 1024);
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.shutdown()).await;
}

fn encode(outbox: &mut Outbox, buffer: &mut BytesMut, message: Message, release: &impl Fn(usize)) {
    let len = cost(&message);
    let mut publish = Publish::from_bytes(message.topic.as_ref(), qos_of(message.qos), message.payload);
    publish.retain = message.retain;
    if message.qos >= 1 {
        publish.pkid = outbox.pkid();
        outbox.inflight.insert(publish.pkid);
    }
    let _ = Packet::Publish(publish).write(buffer, usize::MAX);
    release(len);
}

/// The `broker_packets` fuzz target's body: any bytes, read as the packets a connected client
/// sends and handled as a connection handles them (subscribing, publishing to itself,
/// unsubscribing). Nothing may panic, and the bytes queued for the client must be exactly what
/// its channel holds, and all of them released when it goes.
pub fn handle_bytes(data: &[u8]) {
    let router = Mutex::new(Router::default());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let (id, total) = lock(&router).connect("fuzz", tx.clone(), queued.clone());
    let mut buffer = BytesMut::from(data);
    while let Ok(packet) = Packet::read(&mut buffer, MAX_PACKET) {
        if !handle(packet, id, &router, &tx) {
            break;
        }
    }
    let mut held = 0;
    while let Ok(item) = rx.try_recv() {
        if let Out::Deliver(message) = item {
            held += cost(&message);
        }
    }
    assert_eq!(queued.load(Ordering::Relaxed), held, "queued bytes and the queue disagree");
    lock(&router).disconnect(id);
    release_all(&queued, &total);
    assert_eq!(total.load(Ordering::Relaxed), 0, "bytes left counted after the client went");
}
