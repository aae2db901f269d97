//! The API's token, `/metrics`, and secrets kept out of everything Rocky prints, on real
//! sockets and real processes.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::support::{Mosquitto, mosquitto_password_file, test_image, wait_for};
use reqwest::StatusCode;
use rocky::broker::{EmbeddedBroker, free_port};
use rocky::firmware::Library;
use rocky::http::{ApiState, Token};
use rocky::mqtt::Secret;
use rocky::runtime::{Runtime, RuntimeConfig};
use rocky::sim::{Fleet, FleetConfig};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_rocky");
const TOKEN: &str = "tok-7f3a9c1e5b2d8046";

struct Api {
    base: String,
    runtime: Runtime,
    _dir: tempfile::TempDir,
}

async fn start_api(broker: rocky::runtime::BrokerUrl, token: Option<&str>) -> Api {
    let runtime = Runtime::start(RuntimeConfig::new(broker), Arc::new(Library::new()));
    let dir = tempfile::tempdir().unwrap();
    let token = token.map(|t| Token::new(&Secret::from_env("ROCKY_HTTP_TOKEN", t.to_owned()).unwrap()));
    let mut state = ApiState::new(runtime.handle.clone(), dir.path().to_path_buf());
    state.token = token;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(rocky::http::serve(listener, state, std::future::pending()));
    Api { base, runtime, _dir: dir }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_but_healthz_needs_the_token() {
    let broker = EmbeddedBroker::start(None).unwrap();
    let api = start_api(broker.url(), Some(TOKEN)).await;
    let client = reqwest::Client::new();
    let routes = [
        ("GET", "/jobs"),
        ("POST", "/jobs"),
        ("POST", "/job"),
        ("GET", "/jobs/1"),
        ("DELETE", "/jobs/1"),
        ("GET", "/jobs/1/events"),
        ("POST", "/firmware?name=x.bin"),
        ("GET", "/events"),
        ("GET", "/metrics"),
        ("GET", "/no-such-route"),
    ];
    for (method, path) in routes {
        let request = |auth: Option<&str>| {
            let mut builder = client
                .request(method.parse().unwrap(), format!("{}{path}", api.base))
                .timeout(Duration::from_secs(5));
            if method == "POST" {
                builder = builder.header("content-type", "application/json").body("{}");
            }
            if let Some(auth) = auth {
                builder = builder.header("authorization", auth);
            }
            builder.send()
        };
        for bad in [None, Some("Bearer wrong"), Some(TOKEN), Some("Basic dG9rZW4=")] {
            let response = request(bad).await.unwrap();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{method} {path} with {bad:?}");
            let body: Value = response.json().await.unwrap();
            assert!(body["error"].as_str().is_some_and(|e| e.contains("token")), "{body}");
        }
        let response = request(Some(&format!("Bearer {TOKEN}"))).await.unwrap();
        assert_ne!(response.status(), StatusCode::UNAUTHORIZED, "{method} {path} with the token");
    }
    let health = client.get(format!("{}/healthz", api.base)).send().await.unwrap();
    assert_ne!(health.status(), StatusCode::UNAUTHORIZED, "/healthz stays open");
    let text = health.text().await.unwrap();
    assert!(!text.contains(TOKEN), "{text}");
    api.runtime.shutdown().await;
}

#[test]
fn serve_refuses_a_public_address_without_a_token() {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--http", "0.0.0.0:0", "--broker", "mqtt://127.0.0.1:9", "--config", "/dev/null"])
        .arg("--data-dir")
        .arg(data.path())
        .env_remove("ROCKY_HTTP_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to serve the API on 0.0.0.0:0 without a token") && err.contains("--no-auth"),
        "{err}"
    );
}

/// One sample's value from a parsed scrape, matching every label given.
fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
            prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
        .sum()
}

async fn scrape(client: &reqwest::Client, base: &str) -> prometheus_parse::Scrape {
    let text = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    prometheus_parse::Scrape::parse(lines).unwrap_or_else(|e| panic!("not Prometheus text ({e}):\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_move_during_a_rollout() {
    let broker = EmbeddedBroker::start(None).unwrap();
    let fleet = Fleet::start(&FleetConfig::new(broker.url(), 3)).unwrap();
    assert!(fleet.wait_connected(Duration::from_secs(20)).await);
    let api = start_api(broker.url(), None).await;
    let client = reqwest::Client::new();
    let before = scrape(&client, &api.base).await;
    assert_eq!(sample(&before, "rocky_chunks_sent_total", &[]), 0.0);
    let image = test_image(20_000, 7);
    let path = api._dir.path().join("m.bin");
    std::fs::write(&path, &image).unwrap();
    let devices: Vec<String> = fleet.ids().iter().map(ToString::to_string).collect();
    let response = client
        .post(format!("{}/jobs", api.base))
        .json(&json!({"device_ids": devices, "firmware": {"path": "m.bin"}, "chunk_size": 1024}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED, "{}", response.text().await.unwrap_or_default());
    let after = wait_for(Duration::from_secs(30), "three succeeded jobs in /metrics", || async {
        let scraped = scrape(&client, &api.base).await;
        // The job gauges (read from the engine) and the counters (bumped as its events are
        // published) are taken a moment apart in one scrape: wait until both have moved.
        let finished = sample(&scraped, "rocky_jobs_finished_total", &[("outcome", "succeeded")]) == 3.0;
        let gauge = sample(&scraped, "rocky_jobs", &[("state", "succeeded")]) == 3.0;
        (finished && gauge).then_some(scraped)
    })
    .await;
    assert_eq!(sample(&after, "rocky_chunks_sent_total", &[]), 3.0 * 20.0, "20 chunks of 1 KiB each");
    assert_eq!(sample(&after, "rocky_chunk_bytes_sent_total", &[]), 3.0 * 20_000.0);
    assert_eq!(sample(&after, "rocky_responses_total", &[("type", "FOTA_REQUEST_ACK")]), 3.0);
    assert_eq!(sample(&after, "rocky_responses_total", &[("type", "FOTA_DONE_SUCCESS")]), 3.0);
    assert_eq!(sample(&after, "rocky_jobs", &[("state", "succeeded")]), 3.0);
    assert_eq!(sample(&after, "rocky_broker_connected", &[]), 1.0);
    api.runtime.shutdown().await;
    fleet.stop().await;
}

/// CPU seconds a process has used (user + system), from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_reported_once_and_no_secret_is_ever_printed() {
    let dir = tempfile::tempdir().unwrap();
    let passwords = mosquitto_password_file(dir.path(), "rocky", "the-right-one");
    let extra = format!("allow_anonymous false\npassword_file {}\n", passwords.display());
    let Some(mosquitto) = Mosquitto::start_with("wrong_password_process", &extra) else { return };
    let wrong = "pw-WRONG-5ecret-4242";
    let port = free_port().unwrap();
    let config = dir.path().join("rocky.toml");
    std::fs::write(&config, "[mqtt]\nusername = \"rocky\"\n").unwrap();
    let child =
        crate::support::serve_command(&mosquitto.url().to_string(), port, &config, &dir.path().join("data"))
            .env("ROCKY_MQTT_PASSWORD", wrong)
            .env("ROCKY_HTTP_TOKEN", TOKEN)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    let pid = child.id();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let health: Value = wait_for(Duration::from_secs(20), "/healthz to report the refusal", || async {
        let response = client.get(format!("{base}/healthz")).send().await.ok()?;
        let body: Value = response.json().await.ok()?;
        body["reason"].as_str().is_some_and(|r| r.contains("not authorised")).then_some(body)
    })
    .await;
    let cpu_start = cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let cpu = cpu_seconds(pid) - cpu_start;
    assert!(cpu < 1.0, "a refused Rocky idles: {cpu} CPU seconds in 5 s");
    let metrics = client.get(format!("{base}/metrics")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    let metrics = metrics.text().await.unwrap();
    terminate(pid);
    let out = child.wait_with_output().unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let failures = log.lines().filter(|l| l.contains("broker connection failed")).count();
    assert_eq!(failures, 1, "one line per new reason, not one per retry:\n{log}");
    for (what, text) in
        [("log", log.as_str()), ("healthz", &health.to_string()), ("metrics", metrics.as_str())]
    {
        assert!(!text.contains(wrong) && !text.contains(TOKEN), "{what} shows a secret:\n{text}");
    }
    let shown = Command::new(BIN)
        .args(["config", "--config"])
        .arg(&config)
        .env("ROCKY_MQTT_PASSWORD", wrong)
        .env("ROCKY_HTTP_TOKEN", TOKEN)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("(set, from ROCKY_MQTT_PASSWORD)") && shown.contains("(set, from ROCKY_HTTP_TOKEN)"),
        "{shown}"
    );
    assert!(!shown.contains(wrong) && !shown.contains(TOKEN), "{shown}");
}

use crate::support::terminate;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_speaks_https_with_a_configured_certificate() {
    let pki = crate::support::Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let config = dir.path().join("rocky.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            pki.path("server.pem").display(),
            pki.path("server.key").display()
        ),
    )
    .unwrap();
    let mut child =
        crate::support::serve_command("mqtt://127.0.0.1:9", port, &config, &dir.path().join("data"))
            .env("ROCKY_HTTP_TOKEN", TOKEN)
            .spawn()
            .unwrap();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(pki.path("ca.pem")).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .resolve("localhost", std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .build()
        .unwrap();
    let base = format!("https://localhost:{port}");
    let status = wait_for(Duration::from_secs(20), "the HTTPS API to answer", || async {
        client.get(format!("{base}/jobs")).bearer_auth(TOKEN).send().await.ok().map(|r| r.status())
    })
    .await;
    assert_eq!(status, StatusCode::OK);
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await;
    assert!(plain.is_err() || plain.is_ok_and(|r| !r.status().is_success()), "plain HTTP is not served");
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_logs_one_json_object_per_line_with_log_format_json() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let mut child =
        crate::support::serve_command("mqtt://127.0.0.1:9", port, Path::new("/dev/null"), dir.path())
            .args(["--log-format", "json"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Read until the connection failure is logged (the broker port is closed), then stop.
    let lines = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let done = line.contains("broker connection failed");
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    });
    let lines =
        tokio::time::timeout(Duration::from_secs(20), lines).await.expect("a failure is logged").unwrap();
    let _ = child.kill();
    let _ = child.wait();
    for line in &lines {
        let object: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(object["level"].is_string() && object["timestamp"].is_string(), "{line}");
    }
    let failure: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert!(failure["reason"].as_str().unwrap_or_default().contains("connection refused"), "{failure}");
}

/// A wrong token is reported as refused, a missing one as missing (issue 20, C14).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_tells_a_refused_token_from_a_missing_one() {
    let broker = EmbeddedBroker::start(None).unwrap();
    let api = start_api(broker.url(), Some(TOKEN)).await;
    let home = tempfile::tempdir().unwrap();
    let run = |token: Option<&str>| {
        let out = cli_at(&api, home.path(), token, &["devices", "list"]);
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, err) = run(Some("not-the-token"));
    assert!(!ok && err.contains("refused the API token (from ROCKY_HTTP_TOKEN)"), "{err}");
    assert!(!err.contains("not-the-token"), "the token itself is never shown: {err}");
    let (ok, err) = run(None);
    assert!(!ok && err.contains("needs an API token"), "{err}");
    let (ok, err) = run(Some(TOKEN));
    assert!(ok, "{err}");
    api.runtime.shutdown().await;
}

/// `rocky ARGS --server <api>` with its own HOME and, when given, the API token; its output.
fn cli_at(api: &Api, home: &Path, token: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(BIN);
    command.args(args).args(["--server", &api.base]).env("HOME", home).stdin(Stdio::null());
    command.env_remove("ROCKY_HTTP_TOKEN");
    if let Some(token) = token {
        command.env("ROCKY_HTTP_TOKEN", token);
    }
    command.output().unwrap()
}

/// A device id may hold a line break or a terminal escape (the protocol allows them): the CLI's
/// tables show them as escapes, one row a device, nothing moving the cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_ids_with_control_characters_stay_on_their_row() {
    let broker = EmbeddedBroker::start(None).unwrap();
    let api = start_api(broker.url(), Some(TOKEN)).await;
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = cli_at(&api, home.path(), Some(TOKEN), args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let id = "dev-1\nFORGED\u{1b}[2J";
    let labelled = run(&["devices", "label", id, "site=a"]);
    assert!(labelled.contains("dev-1\\nFORGED\\u{1b}[2J") && labelled.lines().count() == 1, "{labelled}");
    let listed = run(&["devices", "list"]);
    assert_eq!(listed.lines().count(), 3, "a header, one row, the count: {listed}");
    assert!(listed.lines().nth(1).unwrap_or("").starts_with("dev-1\\nFORGED\\u{1b}[2J "), "{listed}");
    assert!(!listed.contains('\u{1b}'), "{listed}");
    let shown = run(&["devices", "show", id]);
    assert!(shown.starts_with("device      dev-1\\nFORGED\\u{1b}[2J\n"), "{shown}");
    api.runtime.shutdown().await;
}

/// The errors the HTTP framework writes itself (a wrong method, a body past a raw route's limit,
/// a path that is not UTF-8) are JSON objects with a reason, as every other error is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_answer_is_a_json_object_with_a_reason() {
    let broker = EmbeddedBroker::start(None).unwrap();
    let api = start_api(broker.url(), None).await;
    let client = reqwest::Client::new();
    let error_of = |response: reqwest::Response| async move {
        let status = response.status();
        let kind = response.headers().get("content-type").map(|v| v.to_str().unwrap_or("").to_owned());
        let body: Value = response.json().await.unwrap_or_else(|e| panic!("{status}: not JSON: {e}"));
        assert_eq!(kind.as_deref(), Some("application/json"), "{status}");
        (status, body["error"].as_str().unwrap_or_default().to_owned())
    };
    let (status, error) = error_of(client.patch(format!("{}/jobs", api.base)).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(error.contains("/jobs does not take PATCH"), "{error}");
    let (status, error) =
        error_of(client.delete(format!("{}/healthz", api.base)).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{error}");
    let (status, error) =
        error_of(client.get(format!("{}/devices/%ff%fe", api.base)).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error.contains("UTF-8"), "{error}");
    // Its own errors are as they were.
    let (status, error) = error_of(client.get(format!("{}/jobs/99", api.base)).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{error}");
    // Last, on a connection of its own: the server answers a body past the limit before reading
    // it all and closes that connection, which a pooled client could try to use again.
    let big = vec![b'a'; 5 * 1024 * 1024];
    let response =
        reqwest::Client::new().post(format!("{}/devices/import", api.base)).body(big).send().await.unwrap();
    let (status, error) = error_of(response).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(error.contains("length limit"), "{error}");
    api.runtime.shutdown().await;
}

/// `--server https://…` to an API that speaks plain HTTP says TLS is the trouble, not that no
/// Rocky runs there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_to_a_plain_api_says_the_tls_handshake_failed() {
    let broker = EmbeddedBroker::start(None).unwrap();
    let api = start_api(broker.url(), None).await;
    let home = tempfile::tempdir().unwrap();
    let https = api.base.replacen("http://", "https://", 1);
    let out = Command::new(BIN)
        .args(["jobs", "--server", &https])
        .env("HOME", home.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("over TLS") && err.contains("use http://"), "{err}");
    assert!(!err.contains("no Rocky answers"), "{err}");
    api.runtime.shutdown().await;
}

/// `rocky devices label ID --remove KEY` on a device nobody registered says so and registers
/// nothing (it used to register the device with no labels).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_label_from_an_unknown_device_registers_nothing() {
    let broker = EmbeddedBroker::start(None).unwrap();
    let api = start_api(broker.url(), None).await;
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| cli_at(&api, home.path(), None, args);
    let out = run(&["devices", "label", "nosuch", "--remove", "k"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("no device nosuch is registered"), "{err}");
    let listed = run(&["devices", "list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("0 devices"), "nothing registered");
    let out = run(&["devices", "label", "nosuch", "site=a", "--remove", "k"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("registered nosuch"));
    api.runtime.shutdown().await;
}
