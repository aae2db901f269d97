//! The embedded MQTT broker (rumqttd) for `rocky demo`, `rocky broker`, tests and benchmarks:
//! a real broker on a loopback port with no set-up.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, SegmentConfig, ServerSettings};

use crate::runtime::BrokerUrl;

/// What rumqttd keeps per subscription filter: the newest messages, delivered or not, in up to
/// `SEGMENTS` segments of `SEGMENT_BYTES` (payload + topic); when the newest is full the oldest is
/// dropped. It never drops a message because every subscriber has it, nor a filter nobody
/// subscribes to any more, so each device's chunk filter holds this much for as long as the
/// broker runs (it was 4 x 16 MiB, so memory grew with every job). rumqttd acknowledges a publish
/// once stored, not once delivered, so a subscriber more than `RETAINED_PER_FILTER` behind loses
/// messages: 1 MiB covers a push-mode transfer of an image up to 1 MiB to a device that lags by
/// all of it; a flow-controlled device lags by its window only. Each stored message also keeps
/// its connection's 8 KiB read buffer alive, so count about twice this per device.
const SEGMENT_BYTES: usize = 128 * 1024;
const SEGMENTS: usize = 9;
pub const RETAINED_PER_FILTER: usize = SEGMENT_BYTES * (SEGMENTS - 1);
/// `rocky bench`'s raw subscriptions keep less: the raw publisher paces itself to them.
pub const RAW_BENCH_FILTERS: &str = "rocky-bench-raw/#";
const RAW_SEGMENT_BYTES: usize = 64 * 1024;
const RAW_SEGMENTS: usize = 3;
pub const RAW_BENCH_RETAINED: usize = RAW_SEGMENT_BYTES * (RAW_SEGMENTS - 1);

/// A running embedded broker. rumqttd offers no way to stop its threads, so the broker lives as
/// long as the process; each test or demo starts its own on a fresh port.
pub struct EmbeddedBroker {
    addr: SocketAddr,
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot find a free port on 127.0.0.1: {0}")]
    NoPort(std::io::Error),
    #[error("the embedded broker failed to start: {0}")]
    Start(String),
    #[error("the embedded broker did not accept connections on {0} within 5 s")]
    NotListening(SocketAddr),
    #[error(
        "port {port} on 127.0.0.1 is taken ({reason}): is another broker running? Choose another with --port"
    )]
    PortTaken { port: u16, reason: String },
}

impl EmbeddedBroker {
    /// Starts a broker on `127.0.0.1:port`, or on a free port when `port` is `None`, and returns
    /// once it accepts connections.
    pub fn start(port: Option<u16>) -> Result<Self, BrokerError> {
        match port {
            Some(port) => Self::start_on(port),
            // A free port can be taken by another process before the broker binds it: then
            // another one is tried (a few times), since no one asked for that port.
            None => {
                let mut tries = 0;
                loop {
                    let port = free_port().map_err(BrokerError::NoPort)?;
                    match Self::start_on(port) {
                        Err(BrokerError::PortTaken { .. }) if tries < 8 => tries += 1,
                        other => return other,
                    }
                }
            }
        }
    }

    fn start_on(port: u16) -> Result<Self, BrokerError> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        // rumqttd reports a port it cannot bind only in its log and goes on, and a probe would
        // then find whatever else listens there: find out first, and say so.
        if let Err(e) = TcpListener::bind(addr) {
            return Err(BrokerError::PortTaken { port, reason: e.to_string() });
        }
        let mut broker = Broker::new(config(addr));
        let (done_tx, done_rx) = std::sync::mpsc::channel::<String>();
        std::thread::Builder::new()
            .name("rumqttd".into())
            .spawn(move || {
                // `start` blocks for the broker's life and returns only on failure.
                if let Err(e) = broker.start() {
                    let _ = done_tx.send(e.to_string());
                }
            })
            .map_err(|e| BrokerError::Start(e.to_string()))?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(reason) = done_rx.try_recv() {
                return Err(BrokerError::Start(reason));
            }
            if probe(addr) {
                return Ok(Self { addr });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(BrokerError::NotListening(addr))
    }

    pub fn url(&self) -> BrokerUrl {
        BrokerUrl::local(self.addr.port())
    }
}

/// A port the OS says is free right now on loopback.
/// Whether something listens on `addr` now. On Linux the kernel's socket table says so without
/// a connection (rumqttd logs every connection that ends without a session as an error); elsewhere
/// a plain connect.
fn probe(addr: SocketAddr) -> bool {
    match std::fs::read_to_string("/proc/net/tcp") {
        Ok(table) => listening_in(&table, addr.port()),
        Err(_) => TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok(),
    }
}

/// Whether `/proc/net/tcp` text lists a socket listening (state 0A) on `port`.
fn listening_in(table: &str, port: u16) -> bool {
    table.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace();
        let local = fields.nth(1).unwrap_or_default();
        let state = fields.nth(1).unwrap_or_default();
        let local_port = local.rsplit(':').next().and_then(|hex| u16::from_str_radix(hex, 16).ok());
        state == "0A" && local_port == Some(port)
    })
}

pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn config(listen: SocketAddr) -> Config {
    let connections = ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: crate::runtime::MAX_PACKET_BYTES,
        max_inflight_count: 500,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server =
        ServerSettings { name: "v4".into(), listen, tls: None, next_connection_delay_ms: 0, connections };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: 10_010,
            max_outgoing_packet_count: 200,
            // Per subscription filter: see `SEGMENT_BYTES`.
            max_segment_size: SEGMENT_BYTES,
            max_segment_count: SEGMENTS,
            custom_segment: Some(HashMap::from([(
                RAW_BENCH_FILTERS.to_owned(),
                SegmentConfig { max_segment_size: RAW_SEGMENT_BYTES, max_segment_count: RAW_SEGMENTS },
            )])),
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("1".to_owned(), server)])),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_socket_is_found_in_the_kernel_table() {
        let table =
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:075B 00000000:0000 0A 00000000:00000000 00:00000000 00000000   108        0 1 1
   1: 0100007F:C350 0100007F:075B 01 00000000:00000000 00:00000000 00000000     0        0 2 1";
        assert!(listening_in(table, 1883));
        assert!(!listening_in(table, 50000), "an established connection is not a listener");
        assert!(!listening_in(table, 1884));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(probe(addr));
        drop(listener);
        assert!(!probe(addr));
    }

    #[test]
    fn a_taken_port_is_refused_with_its_number() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let error = EmbeddedBroker::start(Some(port)).err().expect("refused");
        assert!(error.to_string().starts_with(&format!("port {port} on 127.0.0.1 is taken")), "{error}");
    }
}
