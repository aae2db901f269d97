//! What the rollout tests start from: an embedded broker, a simulated fleet on it, `rocky serve`
//! on a free port (healthy), and one image uploaded; and `rocky rollout` run against it.

use std::path::Path;

use reqwest::StatusCode;
use rocky::broker::{EmbeddedBroker, free_port};
use rocky::sim::{Fleet, FleetConfig};

use super::{Serve, healthy};

/// Fields drop in order: the server first, the broker last.
pub struct ServedFleet {
    pub serve: Serve,
    pub fleet: Fleet,
    pub data: tempfile::TempDir,
    pub client: reqwest::Client,
    pub base: String,
    pub broker: EmbeddedBroker,
}

impl ServedFleet {
    /// `count` devices (`dev-01`, … unless `configure` says otherwise), connected; `rocky serve`
    /// answering; `image` uploaded as `name`.
    pub async fn start(
        count: usize,
        configure: impl FnOnce(&mut FleetConfig),
        name: &str,
        image: &[u8],
    ) -> Self {
        Self::start_with_config(count, configure, name, image, "").await
    }

    /// Like [`ServedFleet::start`], with `rocky serve` reading `config` (TOML).
    pub async fn start_with_config(
        count: usize,
        configure: impl FnOnce(&mut FleetConfig),
        name: &str,
        image: &[u8],
        config_text: &str,
    ) -> Self {
        let broker = EmbeddedBroker::start(None).unwrap();
        let mut config = FleetConfig::new(broker.url(), count);
        configure(&mut config);
        let fleet = Fleet::start(&config).unwrap();
        assert!(fleet.wait_connected(std::time::Duration::from_secs(30)).await);
        let data = tempfile::tempdir().unwrap();
        let port = free_port().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        std::fs::write(data.path().join("test-config.toml"), config_text).unwrap();
        let serve = Serve::start(&broker.url().to_string(), port, data.path());
        healthy(&client, &base).await;
        let upload =
            client.post(format!("{base}/firmware?name={name}")).body(image.to_vec()).send().await.unwrap();
        assert_eq!(upload.status(), StatusCode::CREATED);
        Self { serve, fleet, data, client, base, broker }
    }

    /// The fleet's device ids.
    pub fn ids(&self) -> Vec<String> {
        self.fleet.ids().iter().map(|d| d.to_string()).collect()
    }

    /// `rocky rollout ARGS` against this server: its exit code, stdout and stderr.
    pub fn rollout_cli(&self, args: &[&str]) -> (Option<i32>, String, String) {
        rollout_cli(&self.base, self.data.path(), args)
    }
}

/// `rocky rollout ARGS` against `base`, with the test config in `data`: its exit code, stdout
/// and stderr.
pub fn rollout_cli(base: &str, data: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rocky"))
        .args(["rollout", "--server", base])
        .args(args)
        .arg("--config")
        .arg(data.join("test-config.toml"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("rocky rollout runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
