//! A broker host name that does not exist stops Rocky at start; one the resolver cannot answer
//! for right now is retried. The lookups never leave the machine: Rocky runs in a network
//! namespace of the test's own (only loopback, its resolv.conf pointing at 127.0.0.1), where the
//! test answers DNS itself — NXDOMAIN for every name except `flaky.*`, which gets SERVFAIL. It
//! needs root (`ip netns`), as CI has.

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::wait_for;

const BIN: &str = env!("CARGO_BIN_EXE_rocky");

/// A network namespace with loopback up and its own resolv.conf; deleted on drop.
struct Namespace {
    name: String,
    etc: std::path::PathBuf,
}

impl Namespace {
    fn create(tag: &str) -> Option<Self> {
        let name = format!("rocky-{tag}-{}", std::process::id());
        let made = Command::new("ip").args(["netns", "add", &name]).stderr(Stdio::null()).status();
        if !made.is_ok_and(|s| s.success()) {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI runs as root and must be able to add a network namespace"
            );
            eprintln!("SKIPPED broker_dns: `ip netns add` needs root and iproute2");
            return None;
        }
        // `ip netns exec` mounts /etc/netns/NAME/resolv.conf over /etc/resolv.conf.
        let etc = std::path::PathBuf::from("/etc/netns").join(&name);
        let namespace = Self { name, etc };
        std::fs::create_dir_all(&namespace.etc).unwrap();
        std::fs::write(
            namespace.etc.join("resolv.conf"),
            "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
        )
        .unwrap();
        let up = namespace.command("ip").args(["link", "set", "lo", "up"]).status().unwrap();
        assert!(up.success(), "loopback up in {}", namespace.name);
        Some(namespace)
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "delete", &self.name]).status();
        let _ = std::fs::remove_dir_all(&self.etc);
    }
}

/// Queries seen, by the first label of the name asked for.
#[derive(Default)]
struct Seen {
    flaky: AtomicUsize,
    other: AtomicUsize,
}

/// A DNS server on 127.0.0.1:53 inside `namespace`, on a thread that joined it (the socket stays
/// there); stops when `stop` is set.
fn serve_dns(namespace: &Namespace, seen: Arc<Seen>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let path = format!("/run/netns/{}", namespace.name);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: setns only changes this thread's network namespace; the fd is open and valid.
        let joined = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(joined, 0, "setns into {path}");
        let socket = UdpSocket::bind("127.0.0.1:53").unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        ready_tx.send(()).unwrap();
        let mut buffer = [0u8; 512];
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, from)) = socket.recv_from(&mut buffer) else { continue };
            if let Some((answer, flaky)) = answer(&buffer[..n]) {
                let counter = if flaky { &seen.flaky } else { &seen.other };
                counter.fetch_add(1, Ordering::Relaxed);
                let _ = socket.send_to(&answer, from);
            }
        }
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).expect("the DNS server is listening");
    thread
}

/// The answer to one query: its header and question echoed with no records, SERVFAIL for a name
/// whose first label is `flaky`, NXDOMAIN for anything else. `None` for something too short.
fn answer(query: &[u8]) -> Option<(Vec<u8>, bool)> {
    let question = query.get(12..)?;
    let first_label_len = usize::from(*question.first()?);
    let flaky = question.get(1..1 + first_label_len)? == b"flaky";
    let mut reply = query.to_vec();
    reply[2] = 0x80 | (query[2] & 0x79); // QR, opcode and RD echoed
    reply[3] = 0x80 | if flaky { 2 } else { 3 }; // RA; SERVFAIL or NXDOMAIN
    reply[6..12].fill(0); // no answer, authority or additional records
    Some((reply, flaky))
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve_in(namespace: &Namespace, broker: &str, data: &std::path::Path) -> Command {
    std::fs::write(data.join("config.toml"), "").unwrap();
    let mut command = namespace.command(BIN);
    command
        .args(["serve", "--broker", broker, "--http", "127.0.0.1:0", "--config"])
        .arg(data.join("config.toml"))
        .arg("--data-dir")
        .arg(data)
        .stdin(Stdio::null());
    command
}

#[tokio::test]
async fn a_host_that_does_not_exist_stops_rocky_and_a_resolver_that_fails_now_is_retried() {
    let Some(namespace) = Namespace::create("dns") else { return };
    let seen = Arc::new(Seen::default());
    let stop = Arc::new(AtomicBool::new(false));
    let dns = serve_dns(&namespace, seen.clone(), stop.clone());

    // NXDOMAIN: the command ends at once with the name and the setting, and connects nowhere.
    let data = tempfile::tempdir().unwrap();
    let mut child = Running(
        serve_in(&namespace, "nonsense", data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let status = wait_for(Duration::from_secs(20), "rocky serve --broker nonsense to give up", || {
        let exited = child.0.try_wait().unwrap();
        async move { exited }
    })
    .await;
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "an unknown host must fail the start: {stderr}");
    assert!(stderr.contains("\"nonsense\" does not exist") && stderr.contains("--broker"), "{stderr}");
    assert!(seen.other.load(Ordering::Relaxed) >= 1, "the name was asked of the test's DNS server");

    // SERVFAIL: a resolver that cannot answer now is not a typo; Rocky keeps running and asks
    // again on each reconnect.
    let data = tempfile::tempdir().unwrap();
    let mut child = Running(
        serve_in(&namespace, "flaky.example", data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let first = wait_for(Duration::from_secs(30), "a first lookup of flaky.example", || {
        let n = seen.flaky.load(Ordering::Relaxed);
        async move { (n > 0).then_some(n) }
    })
    .await;
    wait_for(Duration::from_secs(30), "lookups of flaky.example from the reconnect loop", || {
        let n = seen.flaky.load(Ordering::Relaxed);
        async move { (n >= first + 4).then_some(()) }
    })
    .await;
    assert!(child.0.try_wait().unwrap().is_none(), "Rocky must keep running while DNS fails transiently");

    stop.store(true, Ordering::Relaxed);
    dns.join().unwrap();
}
