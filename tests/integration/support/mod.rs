//! Helpers shared by the integration tests: real brokers on free loopback ports, and waiting on
//! a condition with a deadline (never sleeping and hoping).

#![allow(dead_code)]

pub mod aws_device;
pub mod cbor_items;
pub mod delta_device;
pub mod served_fleet;
pub mod signed_device;
pub mod tmux;
pub mod wire_device;

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
    /// Listener and security lines added to the configuration (TLS, passwords, ACLs).
    extra: String,
}

pub fn mosquitto_binary() -> Option<PathBuf> {
    let candidates = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"];
    candidates.iter().map(PathBuf::from).find(|p| p.exists()).or_else(|| {
        std::env::var_os("PATH")?
            .to_str()?
            .split(':')
            .map(|d| PathBuf::from(d).join("mosquitto"))
            .find(|p| p.exists())
    })
}

/// The mosquitto binary, or `None` (said on stderr) when it is not installed. With
/// `ROCKY_REQUIRE_MOSQUITTO` set (as CI sets it) a missing mosquitto is a failure.
pub fn find_mosquitto(test: &str) -> Option<PathBuf> {
    let binary = mosquitto_binary();
    if binary.is_none() {
        assert!(
            std::env::var_os("ROCKY_REQUIRE_MOSQUITTO").is_none(),
            "mosquitto not found and ROCKY_REQUIRE_MOSQUITTO is set"
        );
        // Written straight to stderr: libtest would swallow eprintln! of a passing test.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: mosquitto not found (install it to run the mosquitto tests)"
        );
    }
    binary
}

impl Mosquitto {
    /// Starts mosquitto, or returns `None` (and says so) when it is not installed.
    pub fn start(test: &str) -> Option<Self> {
        Self::start_with(test, "")
    }

    /// A mosquitto that refuses every subscription with a SUBACK failure, as managed brokers'
    /// ACLs do (mosquitto's own `acl_file` never refuses one: it drops what it forbids, so
    /// nothing can tell; its dynamic-security plugin answers with a refusal). The directory
    /// holds the plugin's rules and must outlive the broker.
    pub fn start_refusing_subscriptions(test: &str) -> Option<(Self, tempfile::TempDir)> {
        let dir = tempfile::tempdir().expect("temp dir");
        let rules = dir.path().join("dynsec.json");
        std::fs::write(
            &rules,
            r#"{"defaultACLAccess":{"publishClientSend":true,"publishClientReceive":true,"subscribe":false,
                "unsubscribe":true},"clients":[],"groups":[{"groupname":"anonymous","roles":[]}],"roles":[],
                "anonymousGroup":"anonymous"}"#,
        )
        .expect("dynamic-security rules");
        let plugin = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so";
        if !std::path::Path::new(plugin).exists() {
            assert!(
                std::env::var_os("ROCKY_REQUIRE_MOSQUITTO").is_none(),
                "mosquitto's dynamic-security plugin is not at {plugin}"
            );
            let _ = writeln!(std::io::stderr(), "SKIPPED {test}: no {plugin}");
            return None;
        }
        let extra = format!("plugin {plugin}\nplugin_opt_config_file {}\n", rules.display());
        Some((Self::start_with(test, &extra)?, dir))
    }

    /// Like [`Mosquitto::start`], with `extra` lines for the listener (`cafile …`,
    /// `password_file …`, `acl_file …`); without an `allow_anonymous` line anyone may connect.
    /// They come last, so they may set again what the tests' defaults set (the tests' own
    /// `max_queued_messages 100000`, for one).
    pub fn start_with(test: &str, extra: &str) -> Option<Self> {
        let binary = find_mosquitto(test)?;
        // A free port is free when asked, not necessarily when mosquitto binds it: the tests run
        // side by side, so another may take it in between. Then mosquitto exits, and another
        // port is tried.
        let mut tried = Vec::new();
        for _ in 0..5 {
            let port = free_port().expect("free port");
            match Self::start_on(&binary, port, tempfile::tempdir().expect("temp dir"), extra) {
                Ok(mosquitto) => return Some(mosquitto),
                Err(why) => tried.push(why),
            }
        }
        panic!("mosquitto did not start: {tried:?}");
    }

    /// Mosquitto listening on `port`, or why not (it exited: the port was taken).
    fn start_on(binary: &PathBuf, port: u16, dir: tempfile::TempDir, extra: &str) -> Result<Self, String> {
        let conf = dir.path().join("mosquitto.conf");
        let anonymous = if extra.contains("allow_anonymous") { "" } else { "allow_anonymous true\n" };
        // `user root`: started as root, mosquitto would otherwise read the test's files as the
        // `mosquitto` user, who cannot see into the test's private temp directory.
        std::fs::write(
            &conf,
            format!(
                "per_listener_settings false\nuser root\nlistener {port} 127.0.0.1\n{anonymous}\
                 persistence false\nmax_queued_messages 100000\nlog_dest stderr\nlog_type error\n{extra}\n"
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
        let mut mosquitto = Self { port, child, dir, extra: extra.to_owned() };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = mosquitto.child.try_wait() {
                return Err(format!("port {port}: mosquitto exited ({status})"));
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                // Something listens: ours, unless it is about to exit because another process
                // holds the port.
                std::thread::sleep(Duration::from_millis(50));
                if let Ok(Some(status)) = mosquitto.child.try_wait() {
                    return Err(format!("port {port}: taken, mosquitto exited ({status})"));
                }
                return Ok(mosquitto);
            }
            assert!(Instant::now() < deadline, "mosquitto did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
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
        let extra = self.extra.clone();
        *self = Self::start_on(&binary, self.port, dir, &extra).expect("mosquitto back on its port");
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A deterministic pseudo-random image (not compressible, not all zeros).
#[allow(unused_imports)]
pub use rocky::sim::sample_image as test_image;

/// One `[[token]]` entry of an `http.tokens_file`: `name` with `role`, for the token `token`.
#[allow(dead_code)] // not every test binary uses every helper
pub fn token_entry(name: &str, role: &str, token: &str) -> String {
    use sha2::Digest;
    format!(
        "[[token]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{}\"\n\n",
        hex::encode(sha2::Sha256::digest(token))
    )
}

impl Mosquitto {
    /// The directory the broker's files live in (for password and ACL files).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

/// A test PKI made with rcgen at test time: a CA, a server certificate for `localhost` only
/// (so connecting by IP is a name mismatch), an EC client certificate, and an unrelated CA.
pub struct Pki {
    pub dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let dir = tempfile::tempdir().expect("temp dir");
        let write =
            |name: &str, text: String| std::fs::write(dir.path().join(name), text).expect("write pem");
        let ca = |name: &str| {
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("ca key")).expect("ca cert")
        };
        let issuer = ca("Rocky test CA");
        let other = ca("Some other CA");
        write("ca.pem", issuer.pem());
        write("other-ca.pem", other.pem());
        let leaf = |names: Vec<String>, cn: &str| {
            let key = KeyPair::generate().expect("leaf key");
            let mut params = CertificateParams::new(names).expect("leaf params");
            params.distinguished_name.push(DnType::CommonName, cn);
            let cert = params.signed_by(&key, &issuer).expect("leaf cert");
            (cert.pem(), key.serialize_pem())
        };
        let (server, server_key) = leaf(vec!["localhost".into()], "localhost");
        write("server.pem", server);
        write("server.key", server_key);
        let (client, client_key) = leaf(Vec::new(), "rocky-client");
        write("client.pem", client);
        write("client.key", client_key);
        Self { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// mosquitto lines for a TLS listener that demands a client certificate from this CA.
    pub fn mosquitto_tls_lines(&self) -> String {
        format!(
            "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
            self.path("ca.pem").display(),
            self.path("server.pem").display(),
            self.path("server.key").display()
        )
    }
}

/// Writes a mosquitto password file with one user, through `mosquitto_passwd`.
pub fn mosquitto_password_file(dir: &std::path::Path, user: &str, password: &str) -> PathBuf {
    let path = dir.join("passwords");
    let status = Command::new("mosquitto_passwd")
        .arg("-b")
        .arg("-c")
        .arg(&path)
        .args([user, password])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("mosquitto_passwd runs (it comes with the mosquitto package)");
    assert!(status.success(), "mosquitto_passwd failed");
    path
}

/// Runs `command` with its standard output closed before it writes a byte (as `| head` does
/// once it has read enough), and what it left: its status and standard error.
#[allow(dead_code)] // not every test binary uses every helper
pub fn run_with_stdout_closed(command: &mut Command) -> std::process::Output {
    let mut child =
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

/// `rocky serve` on `127.0.0.1:port` with a config file and a data directory, its output
/// discarded unless the caller pipes it; add flags and variables, then spawn.
pub fn serve_command(broker: &str, port: u16, config: &std::path::Path, data: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rocky"));
    command
        .args(["serve", "--broker", broker, "--http", &format!("127.0.0.1:{port}")])
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// Writes five finished (succeeded) jobs straight into the store in `data`, job `i` (from 0) of
/// `image(i)` in `chunks_total` chunks of `chunk_size`: a store as a Rocky that ran them leaves it.
#[allow(dead_code)] // not every test binary uses every helper
pub async fn store_finished_jobs(
    data: &std::path::Path,
    image: impl Fn(u64) -> rocky::firmware::Image,
    chunk_size: u32,
    chunks_total: u32,
) {
    let store = rocky::store::Store::open(data).unwrap();
    let jobs = (0..5u64)
        .map(|i| rocky::store::NewJob {
            id: Some(rocky::engine::JobId::new(i as u32 + 1)),
            device: format!("dev-{i}"),
            image: image(i),
            chunk_size,
            chunk_interval_ms: 0,
            chunks_total,
            created_at: 1_700_000_000_000 + i,
            rollout: None,
            force: false,
            manifest: None,
            delta: None,
            aws: None,
        })
        .collect();
    store.create(jobs).await.unwrap();
    let (mut records, _) = store.load().await.unwrap();
    for record in records.iter_mut() {
        record.state = rocky::engine::JobState::Succeeded;
        record.finished_at = Some(1_700_000_001_000 + u64::from(record.id.get()));
    }
    store.flush_and_wait(records, Vec::new()).await;
}

/// Waits until the `rocky serve` at `base` answers `/healthz` with 200 (broker connected).
#[allow(dead_code)] // not every test binary uses every helper
pub async fn healthy(client: &reqwest::Client, base: &str) {
    wait_for(Duration::from_secs(30), "rocky serve to be healthy", || async {
        let response = client.get(format!("{base}/healthz")).send().await.ok()?;
        (response.status() == reqwest::StatusCode::OK).then_some(())
    })
    .await;
}

/// Waits until the Rocky at `base` has heard `count` statuses of devices it does not hold
/// (retained ones arrive at its subscription), so jobs made next know what the devices run.
#[allow(dead_code)]
pub async fn statuses_heard(client: &reqwest::Client, base: &str, count: u64) {
    wait_for(Duration::from_secs(20), "the devices' statuses", || async {
        let text = client.get(format!("{base}/metrics")).send().await.ok()?.text().await.ok()?;
        let line = "rocky_statuses_total{outcome=\"unlisted\"} ";
        let n: u64 = text.lines().find_map(|l| l.strip_prefix(line))?.trim().parse().ok()?;
        (n >= count).then_some(())
    })
    .await;
}

/// `rocky serve` as a child process on `127.0.0.1:port`, with an empty config file in `data`
/// unless one is there; killed (SIGKILL) on drop or with [`Serve::kill9`].
#[allow(dead_code)] // not every test binary uses every helper
pub struct Serve(pub std::process::Child);

#[allow(dead_code)]
impl Serve {
    pub fn start(broker: &str, port: u16, data: &std::path::Path) -> Self {
        let config = data.join("test-config.toml");
        if !config.exists() {
            std::fs::write(&config, "").unwrap();
        }
        Serve(serve_command(broker, port, &config, data).spawn().expect("rocky serve starts"))
    }

    /// SIGKILL: no flush, no goodbye.
    pub fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `rocky serve` sharing `db` with other instances: client id (and instance id) `name`, a lease
/// of `lease_s`, its own data directory; killed (SIGKILL) on drop or with [`Instance::kill9`].
pub struct Instance {
    pub serve: Serve,
    pub base: String,
    _data: tempfile::TempDir,
}

impl Instance {
    pub fn start(name: &str, broker: &str, db: &rocky::store::ScratchDatabase, lease_s: u32) -> Self {
        let data = tempfile::tempdir().unwrap();
        let config = format!(
            "[mqtt]\nclient_id = \"{name}\"\n\n[store]\nurl = \"{}\"\nlease_s = {lease_s}\n",
            db.settings().url()
        );
        std::fs::write(data.path().join("test-config.toml"), config).unwrap();
        let port = free_port().unwrap();
        let serve = Serve::start(broker, port, data.path());
        Self { serve, base: format!("http://127.0.0.1:{port}"), _data: data }
    }

    pub async fn wait_healthy(&self, client: &reqwest::Client) {
        wait_for(Duration::from_secs(30), "the instance to be healthy", || async {
            let response = client.get(format!("{}/healthz", self.base)).send().await.ok()?;
            (response.status() == reqwest::StatusCode::OK).then_some(())
        })
        .await;
    }

    pub fn kill9(&mut self) {
        self.serve.kill9();
    }
}

/// SIGTERM, as a service manager stops Rocky.
#[allow(dead_code)]
pub fn terminate(pid: u32) {
    let pid = libc::pid_t::try_from(pid).expect("a process id");
    // SAFETY: kill(2) with a process id of the test's own child and a valid signal number.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "kill({pid}, SIGTERM)");
}

/// A FOTA_REQUEST_ACK `[job, 2]`, as a device answers an offer.
#[allow(dead_code)]
pub fn ack_frame(job: u32) -> Vec<u8> {
    let mut out = vec![0x82, 0x1a];
    out.extend_from_slice(&job.to_be_bytes());
    out.push(0x02);
    out
}

/// The number after `name ` in Prometheus text (0 when it is not there).
#[allow(dead_code)]
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0)
}
