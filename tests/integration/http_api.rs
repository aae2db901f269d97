//! The HTTP API over a real socket, against a real broker and simulated devices, including every
//! error status a client can provoke.

use std::sync::Arc;
use std::time::Duration;

use crate::support::{test_image, wait_for};
use reqwest::StatusCode;
use rocky::broker::{EmbeddedBroker, free_port};
use rocky::firmware::{Library, LoadLimits};
use rocky::http::{ApiState, serve};
use rocky::runtime::{BrokerUrl, Runtime, RuntimeConfig};
use rocky::sim::{Behavior, BehaviorPlan, Fleet, FleetConfig, Selection};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Api {
    base: String,
    client: reqwest::Client,
    runtime: Option<Runtime>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    firmware_dir: tempfile::TempDir,
}

impl Api {
    async fn start(broker: BrokerUrl, max_image_bytes: u64) -> Self {
        let mut config = RuntimeConfig::new(broker);
        config.engine.request_timeout = Duration::from_secs(30);
        let runtime = Runtime::start(config, Arc::new(Library::new()));
        let firmware_dir = tempfile::tempdir().unwrap();
        let mut state = ApiState::new(runtime.handle.clone(), firmware_dir.path().to_path_buf());
        state.limits = LoadLimits { max_bytes: max_image_bytes, ..LoadLimits::default() };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, state, async move {
            let _ = stopped.await;
        }));
        Self { base, client: reqwest::Client::new(), runtime: Some(runtime), stop: Some(stop), firmware_dir }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text:?}"));
        (status, value)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn raw(&self, path: &str, content_type: Option<&str>, body: Vec<u8>) -> (StatusCode, Value) {
        let mut request = self.client.post(format!("{}{path}", self.base)).body(body);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn wait_state(&self, id: u64, state: &str) -> Value {
        wait_for(Duration::from_secs(20), &format!("job {id} {state}"), || async {
            let (_, job) = self.get(&format!("/jobs/{id}")).await;
            (job["state"] == state).then_some(job)
        })
        .await
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown().await;
        }
    }
}

/// Serves `body` with `status` to any GET, for firmware URLs.
async fn file_server(status: &'static str, body: Vec<u8>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = vec![0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let head =
                format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(&body).await;
        }
    });
    format!("http://{addr}/fw/image.bin")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_created_watched_listed_and_cancelled_over_http() {
    let broker = EmbeddedBroker::start(None).unwrap();
    let mut fleet_config = FleetConfig::new(broker.url(), 3);
    fleet_config.plan = BehaviorPlan::default().with(Behavior::Silent, Selection::parse("dev-03").unwrap());
    let fleet = Fleet::start(&fleet_config).unwrap();
    assert!(fleet.wait_connected(Duration::from_secs(20)).await);
    let api = Api::start(broker.url(), 1024 * 1024).await;

    let health = wait_for(Duration::from_secs(10), "healthz 200", || async {
        let (status, health) = api.get("/healthz").await;
        (status == StatusCode::OK).then_some(health)
    })
    .await;
    assert_eq!(health["connected"], true);
    assert_eq!(health["connection"]["state"], "connected");

    // Upload, then refer to the upload by path and by hash.
    let image = test_image(100_000, 5);
    let (status, upload) = api.raw("/firmware?name=fw-1.0.bin", None, image.to_vec()).await;
    assert_eq!(status, StatusCode::CREATED, "{upload}");
    assert_eq!(upload["size"], 100_000);
    let sha = upload["sha256"].as_str().unwrap().to_owned();
    assert!(api.firmware_dir.path().join("fw-1.0.bin").is_file());

    // SSE: subscribe before creating, then see the job succeed on the stream.
    let mut sse = api.client.get(format!("{}/events", api.base)).send().await.unwrap();
    assert_eq!(sse.headers()["content-type"], "text/event-stream");

    let (status, created) =
        api.post("/jobs", json!({"device_ids": ["dev-01", "dev-02"], "firmware": {"path": "fw-1.0.bin"}, "chunk_size": 1024})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let jobs = created["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0]["image"]["sha256"], sha.as_str());
    assert_eq!(jobs[0]["chunks_total"], 98);
    let first = jobs[0]["id"].as_u64().unwrap();
    let done = api.wait_state(first, "succeeded").await;
    assert_eq!(done["chunks_done"], 98);
    assert_eq!(done["bytes_sent"], 100_000);
    assert!(done["finished_at"].as_u64().unwrap() >= done["created_at"].as_u64().unwrap());

    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains("\"to\":\"succeeded\"") {
        let chunk =
            tokio::time::timeout_at(deadline, sse.chunk()).await.expect("SSE in time").unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: job_created"), "{seen}");
    assert!(seen.contains("event: traffic") && seen.contains("FOTA_REQUEST"), "traffic is on the stream");

    let (status, by_hash) =
        api.post("/jobs", json!({"device_id": "dev-02", "firmware": {"sha256": sha}})).await;
    assert_eq!(status, StatusCode::CREATED, "{by_hash}");

    // From a URL, and through the original endpoint.
    let url = file_server("200 OK", test_image(5000, 9).to_vec()).await;
    let (status, from_url) =
        api.post("/jobs", json!({"device_id": "dev-01", "firmware": {"url": url}})).await;
    assert_eq!(status, StatusCode::CREATED, "{from_url}");
    assert_eq!(from_url["jobs"][0]["image"]["name"], "image.bin");
    let (status, original) = api.post("/job", json!({"device_id": "dev-02", "url": url})).await;
    assert_eq!(status, StatusCode::CREATED, "{original}");
    let id = original["jobs"][0]["id"].as_u64().unwrap();
    api.wait_state(id, "succeeded").await;

    // Filters.
    let (_, listed) = api.get("/jobs?device=dev-01&state=succeeded").await;
    let listed = listed["jobs"].as_array().unwrap().clone();
    assert!(
        !listed.is_empty() && listed.iter().all(|j| j["device_id"] == "dev-01" && j["state"] == "succeeded")
    );

    // Cancel an active job (the silent device), then again (409).
    let (_, silent) =
        api.post("/jobs", json!({"device_id": "dev-03", "firmware": {"path": "fw-1.0.bin"}})).await;
    let silent_id = silent["jobs"][0]["id"].as_u64().unwrap();
    let (status, cancelled) = api.call(reqwest::Method::DELETE, &format!("/jobs/{silent_id}"), None).await;
    assert_eq!((status, cancelled["state"].as_str()), (StatusCode::OK, Some("cancelled")));
    let (status, again) = api.call(reqwest::Method::DELETE, &format!("/jobs/{silent_id}"), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");

    api.stop().await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_gets_its_status_and_a_json_error() {
    let broker = EmbeddedBroker::start(None).unwrap();
    let api = Api::start(broker.url(), 2000).await;
    std::fs::write(api.firmware_dir.path().join("ok.bin"), b"image").unwrap();
    let outside = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(outside.path(), b"secret").unwrap();
    let missing_url = file_server("404 Not Found", b"gone".to_vec()).await;
    let fw = json!({"path": "ok.bin"});
    let cases: Vec<(&str, Value, StatusCode)> = vec![
        ("bad device id", json!({"device_id": "a+b", "firmware": fw}), StatusCode::BAD_REQUEST),
        (
            "both device fields",
            json!({"device_id": "a", "device_ids": ["b"], "firmware": fw}),
            StatusCode::BAD_REQUEST,
        ),
        ("no device", json!({"firmware": fw}), StatusCode::BAD_REQUEST),
        ("empty device list", json!({"device_ids": [], "firmware": fw}), StatusCode::BAD_REQUEST),
        (
            "two firmware sources",
            json!({"device_id": "a", "firmware": {"path": "ok.bin", "url": "http://x"}}),
            StatusCode::BAD_REQUEST,
        ),
        ("unknown field", json!({"device_id": "a", "firmware": fw, "colour": 1}), StatusCode::BAD_REQUEST),
        (
            "rate not a rate",
            json!({"device_id": "a", "firmware": fw, "max_rate": "fast"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "rate far too low",
            json!({"device_id": "a", "firmware": fw, "max_rate": 10}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "chunk size too small",
            json!({"device_id": "a", "firmware": fw, "chunk_size": 10}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "path outside",
            json!({"device_id": "a", "firmware": {"path": outside.path()}}),
            StatusCode::FORBIDDEN,
        ),
        ("missing path", json!({"device_id": "a", "firmware": {"path": "nope.bin"}}), StatusCode::NOT_FOUND),
        (
            "unknown sha256",
            json!({"device_id": "a", "firmware": {"sha256": "00".repeat(32)}}),
            StatusCode::NOT_FOUND,
        ),
        (
            "malformed sha256",
            json!({"device_id": "a", "firmware": {"sha256": "zz"}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "url answering 404",
            json!({"device_id": "a", "firmware": {"url": missing_url}}),
            StatusCode::BAD_GATEWAY,
        ),
        (
            "ftp url",
            json!({"device_id": "a", "firmware": {"url": "ftp://127.0.0.1/x"}}),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (name, body, expected) in cases {
        let (status, value) = api.post("/jobs", body).await;
        assert_eq!(status, expected, "{name}: {value}");
        assert!(value["error"].as_str().is_some_and(|e| !e.is_empty()), "{name}: {value}");
    }
    let (status, value) = api.raw("/jobs", Some("application/json"), b"{not json".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{value}");
    let (status, value) = api.raw("/jobs", None, b"{}".to_vec()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{value}");
    // Past POST /jobs's limit: 64 KiB plus room for http.max_jobs_per_request ids (2.6 MB).
    let huge = format!("{{\"device_id\": \"{}\"}}", "a".repeat(3_000_000));
    let (status, value) = api.raw("/jobs", Some("application/json"), huge.into_bytes()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{value}");
    assert!(value["error"].is_string());

    let (status, _) = api.raw("/firmware?name=../evil", None, b"x".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = api.raw("/firmware?name=empty.bin", None, Vec::new()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, value) = api.raw("/firmware?name=big.bin", None, vec![1u8; 5000]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{value}");
    assert!(!api.firmware_dir.path().join("big.bin").exists());

    let (status, _) = api.get("/jobs?state=bogus").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = api.get("/jobs?device=a%2Fb").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = api.get("/jobs/abc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = api.get("/jobs/999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api.call(reqwest::Method::DELETE, "/jobs/999", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, value) = api.get("/no/such/thing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(value["error"].is_string());
    // Nothing above created a job.
    let (_, jobs) = api.get("/jobs").await;
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 0);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_503_while_the_broker_is_unreachable() {
    let port = free_port().unwrap(); // nothing listens here
    let api = Api::start(BrokerUrl::local(port), 1000).await;
    let (status, value) = api.get("/healthz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{value}");
    assert_eq!(value["connected"], false);
    api.stop().await;
}

/// A byte-rate cap becomes the pause between a job's chunks: chunk size / rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_rate_paces_a_job_by_its_chunk_size() {
    let broker = EmbeddedBroker::start(None).unwrap();
    let api = Api::start(broker.url(), 2000).await;
    std::fs::write(api.firmware_dir.path().join("ok.bin"), b"image").unwrap();
    let cases = [(json!("40KiB/s"), 1024, 25), (json!(2048), 512, 250), (json!("1 MB/s"), 4096, 4)];
    for (rate, chunk, pause_ms) in cases {
        let body = json!({"device_id": "slow-1", "firmware": {"path": "ok.bin"}, "chunk_size": chunk, "max_rate": rate});
        let (status, answer) = api.post("/jobs", body).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        assert_eq!(answer["jobs"][0]["chunk_interval_ms"], pause_ms, "{rate} at {chunk} B chunks: {answer}");
    }
}
