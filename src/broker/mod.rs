//! The embedded MQTT broker for `rocky demo`, `rocky broker`, tests and benchmarks: a real MQTT
//! 3.1.1 broker on a loopback port with no set-up, written for Rocky's needs. It delivers each
//! connection's messages in the order they were published, across topics too: a device's last
//! chunks on its data topic always arrive before the FOTA_DONE that followed them on its command
//! topic, even for a fleet of devices sharing one connection (rumqttd, used before, served each
//! subscription filter on its own and let commands overtake chunks).
//!
//! Its parts: [`filter`] (topic filters and their index), [`router`] (sessions, subscriptions,
//! retained messages, bounded queues), [`connection`] (one client's socket).

mod connection;
mod filter;
mod router;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::mqtt::BrokerUrl;

pub use connection::{MAX_INFLIGHT, MAX_PACKET, handle_bytes};
pub use router::{MAX_QUEUED_BYTES, MAX_RETAINED, MAX_RETAINED_BYTES, MAX_TOTAL_QUEUED_BYTES};

/// `rocky bench`'s raw publisher paces itself to what one subscriber may have queued.
pub const RAW_BENCH_RETAINED: usize = MAX_QUEUED_BYTES;

/// A running embedded broker. It lives as long as the process (its threads are not stopped);
/// each test or demo starts its own on a fresh port.
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
        let listener =
            TcpListener::bind(addr).map_err(|e| BrokerError::PortTaken { port, reason: e.to_string() })?;
        listener.set_nonblocking(true).map_err(|e| BrokerError::Start(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("rocky-broker")
            .enable_all()
            .build()
            .map_err(|e| BrokerError::Start(e.to_string()))?;
        std::thread::Builder::new()
            .name("rocky-broker".into())
            .spawn(move || runtime.block_on(accept(listener)))
            .map_err(|e| BrokerError::Start(e.to_string()))?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if probe(addr) {
                return Ok(Self { addr });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Err(BrokerError::NotListening(addr))
    }

    pub fn url(&self) -> BrokerUrl {
        BrokerUrl::local(self.addr.port())
    }
}

/// Takes connections for ever, one task each.
async fn accept(listener: TcpListener) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
    let router = Arc::new(Mutex::new(router::Router::default()));
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection::serve(stream, router.clone()));
            }
            // Out of descriptors or the like: wait a little rather than spin.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Whether something listens on `addr` now. On Linux the kernel's socket table says so without
/// a connection; elsewhere a plain connect.
fn probe(addr: SocketAddr) -> bool {
    match std::fs::read_to_string("/proc/net/tcp") {
        Ok(table) => listening_in(&table, addr.port()),
        Err(_) => TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok(),
    }
}

/// Whether `/proc/net/tcp` text lists a socket listening (state 0A) on `port`.
fn listening_in(table: &str, port: u16) -> bool {
    tcp_sockets(table).any(|s| s.state == "0A" && s.local_port == port)
}

/// One row of `/proc/net/tcp`: its ports and its state in the kernel's hex (`0A` listening,
/// `01` established).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSocket<'a> {
    pub local_port: u16,
    pub remote_port: u16,
    pub state: &'a str,
}

/// The rows of `/proc/net/tcp` text that read as sockets (the header and anything else left
/// out).
pub fn tcp_sockets(table: &str) -> impl Iterator<Item = TcpSocket<'_>> {
    let port =
        |address: &str| address.rsplit_once(':').and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok());
    table.lines().skip(1).filter_map(move |line| {
        let mut fields = line.split_whitespace().skip(1);
        let (local, remote, state) = (fields.next()?, fields.next()?, fields.next()?);
        Some(TcpSocket { local_port: port(local)?, remote_port: port(remote)?, state })
    })
}

/// A port the OS says is free right now on loopback.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
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
        let established: Vec<_> = tcp_sockets(table).filter(|s| s.state == "01").collect();
        assert_eq!(established, [TcpSocket { local_port: 50000, remote_port: 1883, state: "01" }]);
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
