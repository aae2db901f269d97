//! Connections a stranger can hold open are bounded: silent ones and half-sent heads are closed
//! after the header timeout, a body that stops is cut off, and however many connect, Rocky holds
//! at most `http.max_connections` descriptors for them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rocky::broker::free_port;
use rocky::firmware::Library;
use rocky::http::{ApiState, BODY_IDLE_TIMEOUT, HEADER_TIMEOUT};
use rocky::runtime::{Runtime, RuntimeConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn api() -> (std::net::SocketAddr, Runtime) {
    let runtime =
        Runtime::start(RuntimeConfig::new(rocky::runtime::BrokerUrl::local(9)), Arc::new(Library::new()));
    let dir = std::env::temp_dir();
    let state = ApiState::new(runtime.handle.clone(), dir);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(rocky::http::serve(listener, state, std::future::pending()));
    (addr, runtime)
}

/// Waits (bounded) until the server closes `stream`; returns how long that took.
async fn closed_after(stream: &mut TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue, // a 408 or similar answer before the close
            Err(_) => panic!("the server kept the connection open for {limit:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_half_sent_requests_are_closed_after_the_header_timeout() {
    let (addr, runtime) = api().await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /jobs HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow: ").await.unwrap();
    let limit = HEADER_TIMEOUT + Duration::from_secs(10);
    let (a, b) = tokio::join!(closed_after(&mut silent, limit), closed_after(&mut half, limit));
    assert!(
        a >= HEADER_TIMEOUT - Duration::from_secs(1) && b >= HEADER_TIMEOUT - Duration::from_secs(1),
        "{a:?} {b:?}"
    );
    // A kept-alive connection that goes quiet after a request is closed the same way.
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /jobs HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").await.unwrap();
    let mut first = [0u8; 12];
    kept.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    closed_after(&mut kept, limit).await;
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_is_cut_off() {
    let (addr, runtime) = api().await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"POST /firmware?name=x.bin HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 1000000\r\n\r\nsome",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    let limit = BODY_IDLE_TIMEOUT + Duration::from_secs(15);
    let read = tokio::time::timeout(limit, stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server ended the request within {limit:?}");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.is_empty() || !text.starts_with("HTTP/1.1 201"), "no upload was made: {text}");
    runtime.shutdown().await;
}

fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn however_many_connect_rocky_holds_at_most_max_connections() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let config = dir.path().join("rocky.toml");
    std::fs::write(&config, "[http]\nmax_connections = 8\n").unwrap();
    let mut child =
        crate::support::serve_command("mqtt://127.0.0.1:9", port, &config, &dir.path().join("data"))
            .spawn()
            .unwrap();
    let pid = child.id();
    let base = format!("http://127.0.0.1:{port}");
    crate::support::wait_for(Duration::from_secs(20), "rocky serve to answer", || async {
        reqwest::get(format!("{base}/jobs")).await.ok().map(|_| ())
    })
    .await;
    let before = open_descriptors(pid);
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    // Give the accept loop every chance to take more than it should.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let during = open_descriptors(pid);
    assert!(during <= before + 8 + 2, "{before} descriptors before, {during} with 100 idle connections");
    // The idle ones time out and a real request gets through.
    let status =
        crate::support::wait_for(Duration::from_secs(40), "a request among idle connections", || async {
            let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().ok()?;
            client.get(format!("{base}/jobs")).send().await.ok().map(|r| r.status())
        })
        .await;
    assert_eq!(status.as_u16(), 200);
    drop(idle);
    let _ = child.kill();
    let _ = child.wait();
}

/// A server that stops ends its `/events` streams properly (the client sees the end of the
/// stream, not a dropped connection), so a stopping `rocky serve` is not held for its grace
/// period by consoles attached to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_server_ends_event_streams_cleanly() {
    use futures_util::StreamExt;
    let runtime =
        Runtime::start(RuntimeConfig::new(rocky::runtime::BrokerUrl::local(9)), Arc::new(Library::new()));
    let state = ApiState::new(runtime.handle.clone(), std::env::temp_dir());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(rocky::http::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    let response = reqwest::get(format!("http://{addr}/events")).await.unwrap();
    let mut body = response.bytes_stream();
    // The stream is live: its first events (the connection, the job table's reset) arrive.
    let first = body.next().await.expect("an event").expect("readable");
    assert!(String::from_utf8_lossy(&first).contains("event: "), "{first:?}");
    let _ = stop.send(());
    loop {
        match body.next().await {
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("the stream was cut off instead of ended: {e}"),
            None => break,
        }
    }
    server.await.unwrap().unwrap();
    runtime.shutdown().await;
}
