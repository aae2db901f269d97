//! The configuration file's shape. The key names are a contract: outside tools write them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::engine::Settings;
use crate::firmware::{ChunkSize, DEFAULT_MAX_IMAGE_BYTES};
use crate::mqtt::{BrokerConnection, MqttVersion};
use crate::protocol::{HashEncoding, Topics};
use crate::runtime::{BrokerUrl, RuntimeConfig};

#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub mqtt: MqttSection,
    pub jobs: JobsSection,
    pub http: HttpSection,
    pub console: ConsoleSection,
    pub store: StoreSection,
    pub firmware: FirmwareSection,
    /// Devices that run AWS's OTA agent.
    pub aws_ota: AwsOtaSection,
    /// `[[notify]]` receivers of signed webhooks (none by default).
    pub notify: Vec<crate::notify::NotifySection>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttSection {
    pub url: String,
    /// Empty means a unique id per process (`rocky-<host>-<random>`).
    pub client_id: String,
    pub topic_prefix: String,
    pub hash_encoding: HashEncoding,
    /// `auto` (MQTT 5, 3.1.1 for a broker without 5), `5` or `4` (3.1.1).
    pub version: MqttVersion,
    pub username: String,
    /// The password is read from this file or from `ROCKY_MQTT_PASSWORD`, never from a flag.
    pub password_file: String,
    /// PEM bundle of CAs to trust for `mqtts://`; empty means the system's roots.
    pub ca_file: String,
    /// PEM client certificate and key for mutual TLS.
    pub client_cert: String,
    pub client_key: String,
}

impl Default for MqttSection {
    fn default() -> Self {
        Self {
            url: "mqtt://127.0.0.1:1883".into(),
            client_id: String::new(),
            topic_prefix: "/fota".into(),
            hash_encoding: HashEncoding::Array,
            version: MqttVersion::Auto,
            username: String::new(),
            password_file: String::new(),
            ca_file: String::new(),
            client_cert: String::new(),
            client_key: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobsSection {
    /// Jobs transferring (ACK to verdict) at once.
    pub max_active: u32,
    /// Jobs waiting for an answer to FOTA_REQUEST at once.
    pub max_requests: u32,
    pub chunk_size: u32,
    pub chunk_interval_ms: u64,
    /// The default byte-rate cap per job (`"80KiB/s"` or bytes a second; 0: none).
    pub max_rate: crate::units::Rate,
    pub request_timeout_s: f64,
    pub request_attempts: u32,
    pub done_timeout_s: f64,
    /// Flow control: seconds without FOTA_PROGRESS, while chunks are outstanding, before Rocky
    /// sends again from what the device confirmed.
    pub progress_timeout_s: f64,
    /// Flow control: such stalls in a row before the job ends `timed_out`.
    pub progress_stalls: u32,
    /// A job sent more than this many times its image's bytes ends `failed`.
    pub max_send_factor: u32,
    /// Flow control: a job whose device rewound this many times ends `failed`.
    pub max_rewinds: u32,
    /// A device that confirms updates has this long after FOTA_DONE_SUCCESS to report the new
    /// image (a status after its next boot) before the job ends `timed_out`.
    pub confirm_timeout_s: f64,
}

impl Default for JobsSection {
    fn default() -> Self {
        Self {
            max_active: 64,
            max_requests: 1024,
            chunk_size: 4096,
            chunk_interval_ms: 0,
            max_rate: crate::units::Rate(0),
            request_timeout_s: 30.0,
            request_attempts: 3,
            done_timeout_s: 60.0,
            progress_timeout_s: 10.0,
            progress_stalls: 5,
            max_send_factor: 3,
            max_rewinds: 16,
            confirm_timeout_s: 600.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSection {
    pub listen: String,
    /// Empty means `uploads` inside the data directory.
    pub firmware_dir: String,
    pub max_image_bytes: u64,
    /// The API's bearer token is read from this file or from `ROCKY_HTTP_TOKEN`.
    pub token_file: String,
    /// A TOML file of named tokens with roles (`[[token]]` `name`, `role`, `sha256`); read
    /// again on SIGHUP.
    pub tokens_file: String,
    /// PEM certificate chain and key: when both are set the API speaks HTTPS.
    pub tls_cert: String,
    pub tls_key: String,
    /// Web origins (`https://ops.example.com`) allowed to call the API from a browser.
    pub allowed_origins: Vec<String>,
    /// Jobs one request may create.
    pub max_jobs_per_request: u64,
    /// Clients reading `/events` at once.
    pub max_event_clients: u64,
    /// URL prefixes firmware may be downloaded from (and redirected to); empty allows any.
    pub firmware_url_allow: Vec<String>,
    /// The longest one firmware download may take.
    pub firmware_download_timeout_s: f64,
    /// HTTP connections at once (also capped by the descriptor limit, less a reserve).
    pub max_connections: u64,
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7878".into(),
            firmware_dir: String::new(),
            max_image_bytes: DEFAULT_MAX_IMAGE_BYTES,
            token_file: String::new(),
            tokens_file: String::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            allowed_origins: Vec::new(),
            max_jobs_per_request: 10_000,
            max_event_clients: 64,
            firmware_url_allow: Vec::new(),
            firmware_download_timeout_s: 120.0,
            max_connections: 256,
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleSection {
    /// Lines of traffic the console keeps; older ones are dropped and counted.
    pub traffic_lines: usize,
    /// Colours for a dark or a light terminal background (`NO_COLOR` turns colour off).
    pub palette: Palette,
}

impl Default for ConsoleSection {
    fn default() -> Self {
        Self { traffic_lines: 10_000, palette: Palette::Dark }
    }
}

/// The console's colours, for the terminal's background.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Palette {
    Dark,
    Light,
}

/// How much image data Rocky keeps, in memory and in the firmware directory.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FirmwareSection {
    /// Bytes of images no queued or active job needs that stay in memory (most recently used).
    pub cache_bytes: u64,
    /// The firmware directory's size limit: an upload that would pass it is refused (507).
    pub max_store_bytes: u64,
    /// A PKCS#8 PEM private key (`rocky keys generate`): Rocky signs images with it on upload
    /// (`POST /firmware?version=…&seq=…`). Empty: Rocky holds no key (sign offline instead).
    pub signing_key_file: String,
    /// Public keys whose manifests Rocky accepts (`PUT /firmware/{sha256}/manifest`): PEM, hex,
    /// or the path of a file holding either.
    pub trusted_keys: Vec<String>,
    /// Refuse every job whose image has no manifest from a trusted key.
    pub require_signed: bool,
    /// `auto`: send a device that speaks `delta-bsdiff4` a patch from the image it runs, when
    /// that saves enough; `off`: always the whole image.
    pub delta: DeltaMode,
    /// A patch is sent when it is at most this share of the image (0 to 1).
    pub delta_max_share: f64,
    /// Neither image of a pair may be larger than this to be diffed.
    pub delta_max_image_bytes: u64,
    /// The longest one patch build may take (then the image goes whole).
    pub delta_build_timeout_s: f64,
    /// Patch builds at once.
    pub delta_builds: u32,
}

/// `firmware.delta`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeltaMode {
    #[default]
    Auto,
    Off,
}

impl Default for FirmwareSection {
    fn default() -> Self {
        Self {
            cache_bytes: crate::firmware::DEFAULT_CACHE_BYTES,
            max_store_bytes: 4 * 1024 * 1024 * 1024,
            signing_key_file: String::new(),
            trusted_keys: Vec::new(),
            require_signed: false,
            delta: DeltaMode::Auto,
            delta_max_share: 0.5,
            delta_max_image_bytes: 64 * 1024 * 1024,
            delta_build_timeout_s: 300.0,
            delta_builds: 1,
        }
    }
}

/// How long finished jobs are kept (zero keeps them all, the default), and how many devices
/// the inventory holds.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    /// Where Rocky keeps its data; empty means the platform data directory.
    pub data_dir: String,
    /// Keep at most this many finished jobs (the newest); 0 = no limit.
    pub keep_jobs: u64,
    /// Forget finished jobs older than this many days (audit entries too); 0 = no limit.
    pub keep_days: f64,
    /// Keep at most this many audit entries (the newest); at least 1.
    pub keep_audit: u64,
    /// The most devices the inventory holds (registered or seen on the wire).
    pub max_devices: u64,
    /// A PostgreSQL database shared by several instances (`postgres://USER@HOST:PORT/DB`);
    /// empty keeps jobs in SQLite in the data directory.
    pub url: String,
    /// The PostgreSQL password, read from this file (else `ROCKY_STORE_PASSWORD`).
    pub password_file: String,
    /// With PostgreSQL: how long an instance's claim on its jobs lasts without a heartbeat, so
    /// how long a dead instance's jobs wait before another takes them over.
    pub lease_s: f64,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            data_dir: String::new(),
            keep_jobs: 0,
            keep_days: 0.0,
            keep_audit: crate::audit::DEFAULT_KEEP,
            max_devices: crate::inventory::DEFAULT_MAX_DEVICES as u64,
            url: String::new(),
            password_file: String::new(),
            lease_s: 15.0,
        }
    }
}

impl StoreSection {
    pub fn keep(&self) -> Option<usize> {
        (self.keep_jobs > 0).then(|| usize::try_from(self.keep_jobs).unwrap_or(usize::MAX))
    }

    /// `lease_s` as a duration (checked to be 1 s to 1 h when the config is read).
    pub fn lease(&self) -> Duration {
        Duration::from_secs_f64(self.lease_s.clamp(1.0, 3600.0))
    }

    pub fn max_age(&self) -> Option<Duration> {
        (self.keep_days > 0.0 && self.keep_days.is_finite() && self.keep_days < 1e6)
            .then(|| Duration::from_secs_f64(self.keep_days * 86_400.0))
    }
}

/// What the job document of a device that runs AWS's OTA agent names (`[aws_ota]`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AwsOtaSection {
    /// Where the code-signing certificate is on the device (`certfile`); required for jobs to
    /// AWS devices.
    pub certfile: String,
    /// Where the device writes the image (`filepath`); empty: `firmware.bin`.
    pub filepath: String,
    /// How long a job waits for an AWS device that did not answer its offers to ask for it
    /// (it does whenever it connects); 0: such a job times out like any other.
    pub device_wait_s: f64,
}

impl Default for AwsOtaSection {
    fn default() -> Self {
        Self { certfile: String::new(), filepath: String::new(), device_wait_s: 86_400.0 }
    }
}

/// A value that passed the file's type check but not Rocky's rules; `key` is its dotted name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct Invalid {
    pub key: &'static str,
    pub reason: String,
}

fn seconds(key: &'static str, value: f64) -> Result<Duration, Invalid> {
    if value.is_finite() && value > 0.0 && value < 1e9 {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(Invalid { key, reason: format!("{value} is not a positive number of seconds") })
    }
}

impl Config {
    pub fn broker(&self) -> Result<BrokerUrl, Invalid> {
        BrokerUrl::parse(&self.mqtt.url).map_err(|e| Invalid { key: "mqtt.url", reason: e.to_string() })
    }

    pub fn topics(&self) -> Result<Topics, Invalid> {
        Topics::new(&self.mqtt.topic_prefix)
            .map_err(|e| Invalid { key: "mqtt.topic_prefix", reason: e.to_string() })
    }

    pub fn listen(&self) -> Result<SocketAddr, Invalid> {
        self.http.listen.parse().map_err(|_| Invalid {
            key: "http.listen",
            reason: format!("{:?} is not an address like 127.0.0.1:7878", self.http.listen),
        })
    }

    pub fn engine_settings(&self) -> Result<Settings, Invalid> {
        let jobs = &self.jobs;
        if jobs.max_active == 0 {
            return Err(Invalid { key: "jobs.max_active", reason: "must be at least 1".into() });
        }
        if jobs.max_requests == 0 {
            return Err(Invalid { key: "jobs.max_requests", reason: "must be at least 1".into() });
        }
        if jobs.progress_stalls == 0 {
            return Err(Invalid { key: "jobs.progress_stalls", reason: "must be at least 1".into() });
        }
        if jobs.request_attempts == 0 {
            return Err(Invalid { key: "jobs.request_attempts", reason: "must be at least 1".into() });
        }
        if jobs.max_send_factor == 0 {
            return Err(Invalid {
                key: "jobs.max_send_factor",
                reason: "must be at least 1 (each byte of the image is sent at least once)".into(),
            });
        }
        if jobs.max_rewinds == 0 {
            return Err(Invalid { key: "jobs.max_rewinds", reason: "must be at least 1".into() });
        }
        Ok(Settings {
            max_active: jobs.max_active as usize,
            max_requests: jobs.max_requests as usize,
            request_timeout: seconds("jobs.request_timeout_s", jobs.request_timeout_s)?,
            request_attempts: jobs.request_attempts,
            done_timeout: seconds("jobs.done_timeout_s", jobs.done_timeout_s)?,
            chunk_size: ChunkSize::new(u64::from(jobs.chunk_size))
                .map_err(|reason| Invalid { key: "jobs.chunk_size", reason })?,
            chunk_interval: Duration::from_millis(jobs.chunk_interval_ms),
            max_rate: jobs.max_rate.0,
            hash_encoding: self.mqtt.hash_encoding,
            progress_timeout: seconds("jobs.progress_timeout_s", jobs.progress_timeout_s)?,
            progress_stalls: jobs.progress_stalls,
            max_send_factor: jobs.max_send_factor,
            max_rewinds: jobs.max_rewinds,
            confirm_timeout: seconds("jobs.confirm_timeout_s", jobs.confirm_timeout_s)?,
            aws_device_wait: if self.aws_ota.device_wait_s == 0.0 {
                Duration::ZERO
            } else {
                seconds("aws_ota.device_wait_s", self.aws_ota.device_wait_s)?
            },
        })
    }

    /// The runtime's settings, with a connection that has no secrets or TLS files read yet
    /// (see [`super::broker_connection`], which reads them).
    pub fn runtime_config(&self) -> Result<RuntimeConfig, Invalid> {
        if self.mqtt.client_id.len() > 256 {
            return Err(Invalid { key: "mqtt.client_id", reason: "must be at most 256 bytes".into() });
        }
        let mut connection = BrokerConnection::plain(self.broker()?);
        if !self.mqtt.client_id.is_empty() {
            connection.client_id = self.mqtt.client_id.clone();
        }
        connection.version = self.mqtt.version;
        connection.username = Some(self.mqtt.username.clone()).filter(|u| !u.is_empty());
        let mut config = RuntimeConfig::with_connection(connection);
        config.topics = self.topics()?;
        config.engine = self.engine_settings()?;
        config.max_devices = usize::try_from(self.store.max_devices).unwrap_or(usize::MAX);
        config.aws_ota = crate::runtime::AwsOtaSettings {
            cert_file: self.aws_ota.certfile.clone(),
            file_path: Some(self.aws_ota.filepath.clone())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "firmware.bin".into()),
        };
        Ok(config)
    }

    /// How images are loaded: size cap, download deadline, allowed URL prefixes.
    pub fn load_limits(&self) -> crate::firmware::LoadLimits {
        crate::firmware::LoadLimits {
            max_bytes: self.http.max_image_bytes,
            total_timeout: seconds("http.firmware_download_timeout_s", self.http.firmware_download_timeout_s)
                .unwrap_or(Duration::from_secs(120)),
            url_allow: self.http.firmware_url_allow.clone(),
            ..Default::default()
        }
    }

    /// The directory API paths and uploads live in: as configured, or `uploads` under
    /// `data_dir` (`firmware/` there is the store's own content-addressed image store).
    pub fn firmware_dir(&self, data_dir: &std::path::Path) -> PathBuf {
        if self.http.firmware_dir.is_empty() {
            data_dir.join("uploads")
        } else {
            PathBuf::from(&self.http.firmware_dir)
        }
    }

    /// The image library, its cache bounded by `firmware.cache_bytes`, signing and checking
    /// manifests with `firmware.signing_key_file` and `firmware.trusted_keys`.
    pub fn library(&self) -> Result<crate::firmware::Library, Invalid> {
        let library =
            crate::firmware::Library::with_signing(self.firmware.cache_bytes, self.signing_policy()?);
        Ok(library.with_deltas(self.delta_policy()?))
    }

    /// `[firmware]`'s delta settings, checked.
    pub fn delta_policy(&self) -> Result<crate::firmware::DeltaPolicy, Invalid> {
        let f = &self.firmware;
        if !(f.delta_max_share > 0.0 && f.delta_max_share <= 1.0) {
            return Err(Invalid {
                key: "firmware.delta_max_share",
                reason: "must be above 0 and at most 1".into(),
            });
        }
        if f.delta_max_image_bytes == 0 {
            return Err(Invalid {
                key: "firmware.delta_max_image_bytes",
                reason: "must be at least 1".into(),
            });
        }
        if !(1..=64).contains(&f.delta_builds) {
            return Err(Invalid { key: "firmware.delta_builds", reason: "must be between 1 and 64".into() });
        }
        Ok(crate::firmware::DeltaPolicy {
            enabled: f.delta == DeltaMode::Auto,
            max_share: f.delta_max_share,
            max_image_bytes: f.delta_max_image_bytes,
            build_timeout: seconds("firmware.delta_build_timeout_s", f.delta_build_timeout_s)?,
            builds: f.delta_builds as usize,
            ..crate::firmware::DeltaPolicy::default()
        })
    }

    /// `[firmware]`'s keys, read. Errors name the key and file, never a key's bytes.
    pub fn signing_policy(&self) -> Result<crate::firmware::SigningPolicy, Invalid> {
        let signer = match self.firmware.signing_key_file.as_str() {
            "" => None,
            path => Some(
                crate::signing::read_signing_key(std::path::Path::new(path))
                    .map_err(|e| Invalid { key: "firmware.signing_key_file", reason: e.to_string() })?,
            ),
        };
        let trusted =
            crate::signing::TrustedKeys::from_entries(&self.firmware.trusted_keys, std::path::Path::new(""))
                .map_err(|e| Invalid { key: "firmware.trusted_keys", reason: e.to_string() })?;
        if self.firmware.require_signed && signer.is_none() && trusted.is_empty() {
            return Err(Invalid {
                key: "firmware.require_signed",
                reason: "is set, and no key is trusted (set firmware.trusted_keys or signing_key_file): every job \
                         would be refused"
                    .into(),
            });
        }
        Ok(crate::firmware::SigningPolicy {
            signer,
            trusted,
            require_signed: self.firmware.require_signed,
            default_seq: 0,
        })
    }

    /// Checks every rule at once, so a bad file is reported before anything starts.
    pub fn validate(&self) -> Result<(), Invalid> {
        self.runtime_config()?;
        self.listen()?;
        seconds("http.firmware_download_timeout_s", self.http.firmware_download_timeout_s)?;
        for prefix in &self.http.firmware_url_allow {
            crate::firmware::check_url_prefix(prefix)
                .map_err(|reason| Invalid { key: "http.firmware_url_allow", reason })?;
        }
        if self.http.max_connections == 0 {
            return Err(Invalid { key: "http.max_connections", reason: "must be at least 1".into() });
        }
        if self.http.max_jobs_per_request == 0 {
            return Err(Invalid { key: "http.max_jobs_per_request", reason: "must be at least 1".into() });
        }
        if let Some(bad) = self
            .http
            .allowed_origins
            .iter()
            .find(|o| !(o.starts_with("http://") || o.starts_with("https://")))
        {
            return Err(Invalid {
                key: "http.allowed_origins",
                reason: format!("{bad:?} is not an origin like https://ops.example.com"),
            });
        }
        self.signing_policy()?;
        self.delta_policy()?;
        if self.firmware.max_store_bytes == 0 {
            return Err(Invalid { key: "firmware.max_store_bytes", reason: "must be at least 1".into() });
        }
        if self.http.max_image_bytes == 0 {
            return Err(Invalid { key: "http.max_image_bytes", reason: "must be at least 1".into() });
        }
        if !(1..=10_000_000).contains(&self.store.max_devices) {
            return Err(Invalid {
                key: "store.max_devices",
                reason: "must be between 1 and 10000000".into(),
            });
        }
        if !(self.store.lease_s >= 1.0 && self.store.lease_s <= 3600.0) {
            return Err(Invalid {
                key: "store.lease_s",
                reason: "must be between 1 and 3600 seconds".into(),
            });
        }
        crate::notify::check(&self.notify).map_err(|reason| Invalid { key: "notify", reason })?;
        for (key, value) in
            [("aws_ota.certfile", &self.aws_ota.certfile), ("aws_ota.filepath", &self.aws_ota.filepath)]
        {
            if !value.is_empty() {
                crate::runtime::check_aws_path(key, value)
                    .map_err(|reason| Invalid { key, reason: reason.replacen(&format!("{key} "), "", 1) })?;
            }
        }
        if self.store.keep_audit == 0 {
            return Err(Invalid {
                key: "store.keep_audit",
                reason: "must be at least 1 (the audit trail cannot be turned off)".into(),
            });
        }
        if !(self.store.keep_days >= 0.0 && self.store.keep_days < 1e6) {
            return Err(Invalid { key: "store.keep_days", reason: "must be between 0 and 1000000".into() });
        }
        if self.console.traffic_lines == 0 {
            return Err(Invalid { key: "console.traffic_lines", reason: "must be at least 1".into() });
        }
        Ok(())
    }
}
