//! Helpers shared by the integration tests: real brokers on free loopback ports, and waiting on
//! a condition with a deadline (never sleeping and hoping).

#![allow(dead_code)]

use std::future::Future;
use std::io::Write as _;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rocky::broker::free_port;
use rocky::runtime::BrokerUrl;

/// Polls `check` every 20 ms until it returns `Some` or `timeout` passes.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A mosquitto process on a free loopback port, killed on drop.
pub struct Mosquitto {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

fn mosquitto_binary() -> Option<PathBuf> {
    let candidates = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"];
    candidates.iter().map(PathBuf::from).find(|p| p.exists()).or_else(|| {
        std::env::var_os("PATH")?
            .to_str()?
            .split(':')
            .map(|d| PathBuf::from(d).join("mosquitto"))
            .find(|p| p.exists())
    })
}

impl Mosquitto {
    /// Starts mosquitto, or returns `None` (and says so) when it is not installed. With
    /// `ROCKY_REQUIRE_MOSQUITTO` set (as CI sets it) a missing mosquitto is a failure.
    pub fn start(test: &str) -> Option<Self> {
        let Some(binary) = mosquitto_binary() else {
            assert!(
                std::env::var_os("ROCKY_REQUIRE_MOSQUITTO").is_none(),
                "mosquitto not found and ROCKY_REQUIRE_MOSQUITTO is set"
            );
            // Written straight to stderr: libtest would swallow eprintln! of a passing test.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: mosquitto not found (install it to run the mosquitto tests)"
            );
            return None;
        };
        let port = free_port().expect("free port");
        Some(Self::start_on(&binary, port, tempfile::tempdir().expect("temp dir")))
    }

    fn start_on(binary: &PathBuf, port: u16, dir: tempfile::TempDir) -> Self {
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 max_queued_messages 100000\nlog_dest stderr\nlog_type error\n"
            ),
        )
        .expect("write mosquitto.conf");
        let child = Command::new(binary)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mosquitto");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { port, child, dir }
    }

    pub fn url(&self) -> BrokerUrl {
        BrokerUrl::local(self.port)
    }

    /// Kills the broker (SIGKILL: no goodbye to anyone) and waits for it to exit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a fresh broker on the same port (no state survives, as after a crash).
    pub fn restart(&mut self) {
        self.kill();
        let binary = mosquitto_binary().expect("mosquitto ran before");
        let dir = tempfile::tempdir().expect("temp dir");
        // The old value's drop kills an already-reaped process again, which is harmless.
        *self = Self::start_on(&binary, self.port, dir);
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A deterministic pseudo-random image (not compressible, not all zeros).
pub use rocky::sim::sample_image as test_image;
