//! Requests a stranger or a web page can make, refused on real sockets: foreign origins and
//! rebinding host names, requests that name a device twice or ask for too many jobs, firmware
//! paths that would probe the file system.

use std::sync::Arc;

use rocky::broker::EmbeddedBroker;
use rocky::firmware::Library;
use rocky::http::{ApiPolicy, ApiState};
use rocky::runtime::{Runtime, RuntimeConfig};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Api {
    addr: std::net::SocketAddr,
    runtime: Runtime,
    dir: tempfile::TempDir,
}

async fn start(policy: ApiPolicy) -> (Api, EmbeddedBroker) {
    start_with(policy, rocky::firmware::LoadLimits::default()).await
}

async fn start_with(policy: ApiPolicy, limits: rocky::firmware::LoadLimits) -> (Api, EmbeddedBroker) {
    let broker = EmbeddedBroker::start(None).unwrap();
    let runtime = Runtime::start(RuntimeConfig::new(broker.url()), Arc::new(Library::new()));
    let dir = tempfile::tempdir().unwrap();
    let mut state = ApiState::new(runtime.handle.clone(), dir.path().to_path_buf());
    state.policy = Arc::new(policy);
    state.limits = limits;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(rocky::http::serve(listener, state, std::future::pending()));
    (Api { addr, runtime, dir }, broker)
}

/// One raw HTTP/1.1 request with exactly the headers given; returns the status and the body.
async fn raw(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("{head}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_page_from_another_origin_cannot_upload_or_create_jobs() {
    let (api, _broker) = start(ApiPolicy::default()).await;
    let host = format!("host: 127.0.0.1:{}", api.addr.port());
    let (status, body) = raw(
        api.addr,
        &format!("POST /firmware?name=fw.bin HTTP/1.1\r\n{host}\r\norigin: http://evil.example\r\ncontent-type: text/plain"),
        b"not the operator's image",
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("evil.example") && body.contains("http.allowed_origins"), "{body}");
    assert!(!api.dir.path().join("fw.bin").exists(), "nothing was written");
    let (status, _) = raw(
        api.addr,
        &format!("POST /jobs HTTP/1.1\r\n{host}\r\norigin: null\r\ncontent-type: application/json"),
        br#"{"device_id": "dev-01", "firmware": {"path": "x"}}"#,
    )
    .await;
    assert_eq!(status, 403, "an opaque origin is foreign too");
    // The API's own origin and no origin at all (curl, scripts) are fine.
    let (status, _) = raw(
        api.addr,
        &format!("GET /jobs HTTP/1.1\r\n{host}\r\norigin: http://127.0.0.1:{}", api.addr.port()),
        b"",
    )
    .await;
    assert_eq!(status, 200);
    api.runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_origin_gets_cors_and_others_do_not() {
    let policy =
        ApiPolicy { allowed_origins: vec!["https://ops.example.com".into()], ..ApiPolicy::default() };
    let (api, _broker) = start(policy).await;
    let host = format!("host: localhost:{}", api.addr.port());
    let mut stream = tokio::net::TcpStream::connect(api.addr).await.unwrap();
    let request = format!(
        "GET /jobs HTTP/1.1\r\n{host}\r\norigin: https://ops.example.com\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.to_lowercase().contains("access-control-allow-origin: https://ops.example.com"),
        "{answer}"
    );
    let (status, _) =
        raw(api.addr, &format!("OPTIONS /jobs HTTP/1.1\r\n{host}\r\norigin: https://ops.example.com"), b"")
            .await;
    assert_eq!(status, 204, "preflight for the allowed origin");
    let (status, _) =
        raw(api.addr, &format!("GET /jobs HTTP/1.1\r\n{host}\r\norigin: https://other.example.com"), b"")
            .await;
    assert_eq!(status, 403);
    api.runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebound_host_name_is_refused_on_a_loopback_listener() {
    let (api, _broker) = start(ApiPolicy::default()).await;
    let (status, body) = raw(api.addr, "GET /jobs HTTP/1.1\r\nhost: attacker.example", b"").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("loopback"), "{body}");
    let (status, _) = raw(api.addr, "GET /healthz HTTP/1.1\r\nhost: attacker.example:7878", b"").await;
    assert_eq!(status, 403, "health too: a rebinding page learns nothing");
    for host in
        ["localhost", &format!("127.0.0.1:{}", api.addr.port()), &format!("[::1]:{}", api.addr.port())]
    {
        let (status, _) = raw(api.addr, &format!("GET /jobs HTTP/1.1\r\nhost: {host}"), b"").await;
        assert_eq!(status, 200, "{host}");
    }
    api.runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_named_twice_or_too_many_jobs_is_a_400_that_says_so() {
    let policy = ApiPolicy { max_jobs_per_request: 3, ..ApiPolicy::default() };
    let (api, _broker) = start(policy).await;
    std::fs::write(api.dir.path().join("fw.bin"), b"image").unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://{}", api.addr);
    let post = |body: Value| client.post(format!("{base}/jobs")).json(&body).send();
    let twice = json!({"device_ids": ["dev-01", "dev-02", "dev-01"], "firmware": {"path": "fw.bin"}});
    let response = post(twice).await.unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("\"dev-01\" is named more than once"), "{body}");
    let many = json!({"device_ids": ["a", "b", "c", "d"], "firmware": {"path": "fw.bin"}});
    let response = post(many).await.unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("http.max_jobs_per_request"), "{body}");
    let jobs: Value = client.get(format!("{base}/jobs")).send().await.unwrap().json().await.unwrap();
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(0), "nothing was created");
    api.runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_paths_outside_the_directory_answer_alike_and_never_show_a_server_path() {
    let (api, _broker) = start(ApiPolicy::default()).await;
    let client = reqwest::Client::new();
    let base = format!("http://{}", api.addr);
    let ask = |path: &str| {
        client
            .post(format!("{base}/jobs"))
            .json(&json!({"device_id": "dev-01", "firmware": {"path": path}}))
            .send()
    };
    let mut answers = Vec::new();
    for path in ["/etc/passwd", "/etc/no-such-file", "../../../etc/passwd", "../../../no-such-file"] {
        let response = ask(path).await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        answers.push((status, body["error"].as_str().unwrap_or_default().replace(path, "<path>")));
    }
    assert!(answers.iter().all(|a| a == &answers[0]), "one answer for everything outside: {answers:?}");
    assert_eq!(answers[0].0, 403);
    let response = ask(".").await.unwrap();
    assert_eq!(response.status(), 400);
    let text = response.text().await.unwrap();
    assert!(!text.contains(&api.dir.path().display().to_string()), "no server path: {text}");
    api.runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_clients_are_capped_and_a_slot_frees_when_a_client_leaves() {
    let policy = ApiPolicy { max_event_clients: 2, ..ApiPolicy::default() };
    let (api, _broker) = start(policy).await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/events", api.addr);
    let first = client.get(&url).send().await.unwrap();
    let second = client.get(&url).send().await.unwrap();
    assert_eq!((first.status().as_u16(), second.status().as_u16()), (200, 200));
    let third = client.get(&url).send().await.unwrap();
    assert_eq!(third.status().as_u16(), 503);
    let body: Value = third.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("http.max_event_clients"), "{body}");
    drop(first);
    crate::support::wait_for(std::time::Duration::from_secs(10), "a freed /events slot", || async {
        let response = client.get(&url).send().await.ok()?;
        (response.status().as_u16() == 200).then_some(())
    })
    .await;
    drop(second);
    api.runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_frame_from_a_stranger_is_kept_only_as_a_preview() {
    use rocky::runtime::{Received, RuntimeEvent};
    let broker = EmbeddedBroker::start(None).unwrap();
    let mut config = RuntimeConfig::new(broker.url());
    config.connection.version = rocky::mqtt::MqttVersion::V311;
    let runtime = Runtime::start(config, Arc::new(Library::new()));
    crate::support::wait_for(std::time::Duration::from_secs(20), "Rocky to connect", || async {
        runtime.handle.status().await.ok().filter(|s| s.connection.is_connected()).map(|_| ())
    })
    .await;
    let mut events = runtime.handle.subscribe();
    let mut options = rumqttc::MqttOptions::new("stranger", "127.0.0.1", broker.url().port);
    options.set_max_packet_size(2 * 1024 * 1024, 2 * 1024 * 1024);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 10);
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    client
        .publish("/fota/cmd_resp/dev-x", rumqttc::QoS::AtLeastOnce, false, vec![0xEE; 600 * 1024])
        .await
        .unwrap();
    let traffic = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            if let Some(Received::Event(envelope)) = events.recv().await
                && let RuntimeEvent::Traffic(t) = &envelope.event
                && t.topic == "/fota/cmd_resp/dev-x"
            {
                return t.clone();
            }
        }
    })
    .await
    .expect("the frame shows as traffic");
    assert_eq!(traffic.size, 600 * 1024, "the size is the frame's");
    assert_eq!(traffic.payload.len(), 4096, "the event keeps a preview only");
    assert!(traffic.decode_error);
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_urls_outside_the_allowed_prefixes_are_refused_before_any_request() {
    // An internal service the API must not become a proxy to.
    let internal = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let internal_addr = internal.local_addr().unwrap();
    let asked = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = asked.clone();
    tokio::spawn(async move {
        while let Ok((_sock, _)) = internal.accept().await {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let limits = rocky::firmware::LoadLimits {
        url_allow: vec!["https://firmware.example.com/releases/".into()],
        ..Default::default()
    };
    let (api, _broker) = start_with(ApiPolicy::default(), limits).await;
    let response = reqwest::Client::new()
        .post(format!("http://{}/jobs", api.addr))
        .json(&json!({"device_id": "dev-01", "firmware": {"url": format!("http://{internal_addr}/internal_secret.txt")}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("http.firmware_url_allow"), "{body}");
    assert!(!asked.load(std::sync::atomic::Ordering::SeqCst), "no connection was made");
    api.runtime.shutdown().await;
}

/// The hidden files in the firmware directory (uploads in progress).
fn partial_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.starts_with('.'))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_upload_is_streamed_to_disk_and_removed_when_abandoned() {
    let limits = rocky::firmware::LoadLimits { max_bytes: 1_000_000, ..Default::default() };
    let (api, _broker) = start_with(ApiPolicy::default(), limits).await;
    let mut stream = tokio::net::TcpStream::connect(api.addr).await.unwrap();
    let head = format!(
        "POST /firmware?name=big.bin HTTP/1.1\r\nhost: 127.0.0.1:{}\r\ncontent-length: 900000\r\n\r\n",
        api.addr.port()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&vec![0x42; 300_000]).await.unwrap();
    // The part sent so far is on disk, in a hidden file, not in memory.
    let dir = api.dir.path().to_path_buf();
    crate::support::wait_for(std::time::Duration::from_secs(10), "the partial upload on disk", || {
        let dir = dir.clone();
        async move {
            let names = partial_files(&dir);
            let size: u64 =
                names.iter().filter_map(|n| std::fs::metadata(dir.join(n)).ok()).map(|m| m.len()).sum();
            (names.len() == 1 && size >= 200_000).then_some(())
        }
    })
    .await;
    drop(stream); // the client goes away mid-upload
    crate::support::wait_for(std::time::Duration::from_secs(10), "the partial file removed", || {
        let dir = dir.clone();
        async move { partial_files(&dir).is_empty().then_some(()) }
    })
    .await;
    assert!(!api.dir.path().join("big.bin").exists());

    // Over the limit: 413 and nothing left behind either.
    let response = reqwest::Client::new()
        .post(format!("http://{}/firmware?name=huge.bin", api.addr))
        .body(vec![0u8; 1_500_000])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert!(partial_files(api.dir.path()).is_empty() && !api.dir.path().join("huge.bin").exists());
    // A whole upload lands under its name and its content hash.
    let response = reqwest::Client::new()
        .post(format!("http://{}/firmware", api.addr))
        .body(b"Hello, world!".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["name"], "315f5bdb76d078c43b8ac0064e4a0164612b1fce77c869345bfc94c75894edd3.bin");
    api.runtime.shutdown().await;
}

/// `http.max_jobs_per_request` (10,000) jobs fit in one `POST /jobs`: the body limit grows with
/// it, so the documented limit is never refused as too large (issue 20, C24).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_number_of_jobs_fits_in_one_request() {
    let (api, _broker) = start(ApiPolicy::default()).await;
    std::fs::write(api.dir.path().join("fw.bin"), b"image").unwrap();
    // Ids of 40 bytes: 10,000 of them make a 430 KB body, far past the 64 KiB of other routes.
    let ids: Vec<String> = (0..10_000).map(|i| format!("a-device-with-a-longish-id-number-{i:06}")).collect();
    let body = json!({"device_ids": ids, "firmware": {"path": "fw.bin"}});
    let response =
        reqwest::Client::new().post(format!("http://{}/jobs", api.addr)).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["jobs"].as_array().map(Vec::len), Some(10_000));
    api.runtime.shutdown().await;
}

/// Jobs and rollouts for devices Rocky has never seen are made, and the answer says so with how
/// many and which (issue 20, C22); a registered device is no news.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_for_devices_never_seen_are_made_with_a_warning() {
    let (api, _broker) = start(ApiPolicy::default()).await;
    std::fs::write(api.dir.path().join("fw.bin"), b"image").unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://{}", api.addr);
    let put =
        client.put(format!("{base}/devices/known-1")).json(&json!({"labels": {}})).send().await.unwrap();
    assert_eq!(put.status(), 201);
    let body = json!({"device_ids": ["known-1", "typo-1", "typo-2"], "firmware": {"path": "fw.bin"}});
    let response = client.post(format!("{base}/jobs")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["jobs"].as_array().map(Vec::len), Some(3), "nothing refused");
    assert_eq!(answer["never_seen"], 2);
    let warning = answer["warning"].as_str().unwrap();
    assert!(warning.starts_with("2 devices Rocky has never seen (typo-1, typo-2)"), "{warning}");
    let body = json!({"device_id": "known-1", "firmware": {"path": "fw.bin"}});
    let answer: Value =
        client.post(format!("{base}/jobs")).json(&body).send().await.unwrap().json().await.unwrap();
    assert!(answer.get("warning").is_none(), "{answer}");
    // A rollout says the same, and starts all the same.
    let body = json!({
        "name": "with typos",
        "firmware": {"path": "fw.bin"},
        "targets": {"devices": ["known-1", "typo-3"]},
    });
    let response = client.post(format!("{base}/rollouts")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["device_count"], 2, "nothing refused: {answer}");
    assert_eq!(answer["never_seen"], 1);
    let warning = answer["warning"].as_str().unwrap();
    assert!(warning.starts_with("1 device Rocky has never seen (typo-3)"), "{warning}");
    // The listing and the answer to an action count its devices too.
    let id = answer["id"].as_u64().unwrap();
    let listed: Value = client.get(format!("{base}/rollouts")).send().await.unwrap().json().await.unwrap();
    let listed = listed["rollouts"].as_array().unwrap().iter().find(|r| r["id"] == id).cloned().unwrap();
    assert_eq!(listed["device_count"], 2, "{listed}");
    let paused: Value =
        client.post(format!("{base}/rollouts/{id}/pause")).send().await.unwrap().json().await.unwrap();
    assert_eq!(paused["device_count"], 2, "{paused}");
    api.runtime.shutdown().await;
}
