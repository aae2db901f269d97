//! Loading images from a file or an http(s) URL, with a size cap and timeouts, so that a huge
//! file or a stalled server is an error and never a hang or an out-of-memory.

use std::path::Path;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use super::Image;

pub const DEFAULT_MAX_IMAGE_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct LoadLimits {
    pub max_bytes: u64,
    pub connect_timeout: Duration,
    /// The longest wait for the next piece of a download.
    pub read_timeout: Duration,
    /// The longest a whole download may take (`http.firmware_download_timeout_s`), so a server
    /// that sends a byte now and then cannot hold a request for ever.
    pub total_timeout: Duration,
    /// URL prefixes a download may start from or be redirected to (`http.firmware_url_allow`);
    /// empty allows any http(s) URL.
    pub url_allow: Vec<String>,
    /// Say a failed download's whole chain of causes (connection refused, timed out, …). Only
    /// for the operator at their own console: the API says less, so it cannot be used to tell
    /// a closed port from a silent one.
    pub say_why: bool,
}

impl Default for LoadLimits {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_IMAGE_BYTES,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            total_timeout: Duration::from_secs(120),
            url_allow: Vec::new(),
            say_why: false,
        }
    }
}

impl LoadLimits {
    /// Whether `url` lies under one of the allowed prefixes, compared as parsed URLs: the same
    /// scheme, host and port, no user name or password, and a path under the prefix's path on a
    /// `/` boundary (so `https://fw.example.com` never admits `https://fw.example.com.evil.net`
    /// or `https://fw.example.com@evil.net`).
    pub fn allows(&self, url: &reqwest::Url) -> bool {
        if self.url_allow.is_empty() {
            return true;
        }
        if !url.username().is_empty() || url.password().is_some() {
            return false;
        }
        self.url_allow.iter().filter_map(|prefix| reqwest::Url::parse(prefix).ok()).any(|prefix| {
            let base = prefix.path();
            let path = url.path();
            prefix.scheme() == url.scheme()
                && prefix.host_str() == url.host_str()
                && prefix.port_or_known_default() == url.port_or_known_default()
                && path.starts_with(base)
                && (base.ends_with('/') || path.len() == base.len() || path[base.len()..].starts_with('/'))
        })
    }
}

/// Checks one `http.firmware_url_allow` entry: an http(s) URL with a host and no user name.
pub fn check_url_prefix(prefix: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(prefix).map_err(|e| format!("{prefix:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("{prefix:?} is not an http:// or https:// URL with a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{prefix:?} has a user name or password"));
    }
    Ok(())
}

/// Redirects stay on the host (and port) they started from, never drop from https to http, and
/// land inside the allowed prefixes; five at most.
fn redirect_policy(limits: &LoadLimits) -> reqwest::redirect::Policy {
    let allow = limits.clone();
    reqwest::redirect::Policy::custom(move |attempt| {
        let Some(first) = attempt.previous().first() else { return attempt.follow() };
        let next = attempt.url();
        let same_place = next.host_str() == first.host_str()
            && next.port_or_known_default() == first.port_or_known_default()
            && !(first.scheme() == "https" && next.scheme() != "https");
        if attempt.previous().len() > 5 {
            attempt.error("more than 5 redirects")
        } else if !same_place {
            attempt.error("a redirect to another host")
        } else if !allow.allows(next) {
            attempt.error("a redirect outside http.firmware_url_allow")
        } else {
            attempt.follow()
        }
    })
}

/// What went wrong with a download, in words that do not tell a closed port from a silent one
/// (the API must not become a port scanner); the library's full error goes to the log.
fn fetch_failure(url: &str, error: &reqwest::Error, say_why: bool) -> FirmwareError {
    tracing::warn!(%url, error = %error_chain(error), "firmware download failed");
    if say_why {
        return FirmwareError::Fetch { url: url.to_owned(), reason: error_chain(error) };
    }
    let reason = if error.is_redirect() {
        match std::error::Error::source(error) {
            Some(why) => format!("it was redirected: {why} is not followed"),
            None => "it was redirected too often".to_owned(),
        }
    } else if error.is_body() || error.is_decode() {
        "the server stopped sending the image".to_owned()
    } else {
        "no HTTP answer (could not connect, or the server did not answer in time)".to_owned()
    };
    FirmwareError::Fetch { url: url.to_owned(), reason }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{what} is {size} bytes; the limit is {limit}")]
    TooLarge { what: String, size: u64, limit: u64 },
    #[error("{0} is empty; an image needs at least one byte")]
    Empty(String),
    #[error("unsupported URL {0:?}: only http:// and https:// are fetched")]
    BadUrl(String),
    #[error("{0} is not under any prefix in http.firmware_url_allow")]
    NotAllowed(String),
    #[error("fetching {url} failed: {reason}")]
    Fetch { url: String, reason: String },
    #[error("fetching {url} answered HTTP {status}")]
    Status { url: String, status: u16 },
}

pub async fn load_file(path: &Path, limits: &LoadLimits) -> Result<Image, FirmwareError> {
    let shown = path.display().to_string();
    let read_err = |source| FirmwareError::Read { path: shown.clone(), source };
    let meta = tokio::fs::metadata(path).await.map_err(read_err)?;
    if meta.is_dir() {
        return Err(read_err(std::io::Error::other("it is a directory")));
    }
    if meta.len() > limits.max_bytes {
        return Err(FirmwareError::TooLarge { what: shown, size: meta.len(), limit: limits.max_bytes });
    }
    let bytes = tokio::fs::read(path).await.map_err(read_err)?;
    if bytes.is_empty() {
        return Err(FirmwareError::Empty(shown));
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or(shown);
    let image_bytes = Bytes::from(bytes);
    // Hashing a large image takes a while; keep it off the async workers.
    tokio::task::spawn_blocking(move || Image::new(name, image_bytes)).await.map_err(|e| {
        FirmwareError::Read { path: path.display().to_string(), source: std::io::Error::other(e) }
    })
}

pub async fn load_url(url: &str, limits: &LoadLimits) -> Result<Image, FirmwareError> {
    let parsed = reqwest::Url::parse(url).map_err(|_| FirmwareError::BadUrl(url.to_owned()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(FirmwareError::BadUrl(url.to_owned()));
    }
    if !limits.allows(&parsed) {
        return Err(FirmwareError::NotAllowed(url.to_owned()));
    }
    let deadline = limits.total_timeout;
    match tokio::time::timeout(deadline, download(url, parsed, limits)).await {
        Ok(result) => result,
        Err(_) => Err(FirmwareError::Fetch {
            url: url.to_owned(),
            reason: format!(
                "it took longer than {} s (http.firmware_download_timeout_s)",
                deadline.as_secs()
            ),
        }),
    }
}

async fn download(url: &str, parsed: reqwest::Url, limits: &LoadLimits) -> Result<Image, FirmwareError> {
    let fetch_err = |reason: String| FirmwareError::Fetch { url: url.to_owned(), reason };
    let client = reqwest::Client::builder()
        .connect_timeout(limits.connect_timeout)
        .read_timeout(limits.read_timeout)
        .redirect(redirect_policy(limits))
        .build()
        .map_err(|e| fetch_err(e.to_string()))?;
    let response =
        client.get(parsed.clone()).send().await.map_err(|e| fetch_failure(url, &e, limits.say_why))?;
    if !response.status().is_success() {
        return Err(FirmwareError::Status { url: url.to_owned(), status: response.status().as_u16() });
    }
    let too_large = |size| FirmwareError::TooLarge { what: url.to_owned(), size, limit: limits.max_bytes };
    if let Some(len) = response.content_length().filter(|len| *len > limits.max_bytes) {
        return Err(too_large(len));
    }
    let mut body = BytesMut::new();
    let mut stream = response.bytes_stream();
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(|e| fetch_failure(url, &e, limits.say_why))?;
        if (body.len() + piece.len()) as u64 > limits.max_bytes {
            return Err(too_large((body.len() + piece.len()) as u64));
        }
        body.extend_from_slice(&piece);
    }
    if body.is_empty() {
        return Err(FirmwareError::Empty(url.to_owned()));
    }
    let name = parsed
        .path_segments()
        .and_then(|mut s| s.next_back().map(str::to_owned))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "download.bin".to_owned());
    let bytes = body.freeze();
    tokio::task::spawn_blocking(move || Image::new(name, bytes)).await.map_err(|e| fetch_err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-shot HTTP server on loopback that answers every request with `response`.
    async fn serve(response: Vec<u8>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let _ = sock.write_all(&response).await;
                let _ = sock.shutdown().await;
            }
        });
        format!("http://{addr}/images/fw-1.2.bin")
    }

    fn http(status: &str, body: &[u8]) -> Vec<u8> {
        let mut r =
            format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len())
                .into_bytes();
        r.extend_from_slice(body);
        r
    }

    #[tokio::test]
    async fn loads_a_file_and_refuses_empty_missing_and_oversized() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fw.bin");
        std::fs::write(&path, b"Hello, world!").unwrap();
        let img = load_file(&path, &LoadLimits::default()).await.unwrap();
        assert_eq!(img.name(), "fw.bin");
        assert_eq!(
            hex::encode(img.sha256()),
            "315f5bdb76d078c43b8ac0064e4a0164612b1fce77c869345bfc94c75894edd3"
        );

        let small = LoadLimits { max_bytes: 5, ..LoadLimits::default() };
        assert!(matches!(load_file(&path, &small).await, Err(FirmwareError::TooLarge { size: 13, .. })));
        std::fs::write(dir.path().join("empty.bin"), b"").unwrap();
        assert!(matches!(
            load_file(&dir.path().join("empty.bin"), &small).await,
            Err(FirmwareError::Empty(_))
        ));
        let missing = load_file(&dir.path().join("nope.bin"), &small).await.unwrap_err();
        assert!(missing.to_string().contains("nope.bin"), "{missing}");
        assert!(load_file(dir.path(), &small).await.is_err());
    }

    #[tokio::test]
    async fn loads_a_url_and_reports_status_and_size_errors() {
        let url = serve(http("200 OK", b"Hello, world!")).await;
        let img = load_url(&url, &LoadLimits::default()).await.unwrap();
        assert_eq!(img.name(), "fw-1.2.bin");
        assert_eq!(img.size(), 13);

        let url = serve(http("404 Not Found", b"no")).await;
        assert!(matches!(
            load_url(&url, &LoadLimits::default()).await,
            Err(FirmwareError::Status { status: 404, .. })
        ));

        let url = serve(http("200 OK", &[7u8; 100])).await;
        let small = LoadLimits { max_bytes: 50, ..LoadLimits::default() };
        assert!(matches!(load_url(&url, &small).await, Err(FirmwareError::TooLarge { .. })));

        assert!(matches!(load_url("ftp://127.0.0.1/x", &small).await, Err(FirmwareError::BadUrl(_))));
        // https is spoken (rustls): against a plain-HTTP server the TLS handshake fails.
        let plain = serve(http("200 OK", b"x")).await.replace("http://", "https://");
        assert!(matches!(load_url(&plain, &small).await, Err(FirmwareError::Fetch { .. })));
        assert!(matches!(load_url("not a url", &small).await, Err(FirmwareError::BadUrl(_))));
    }

    /// A server that answers every request with a redirect to `location`.
    async fn redirect_to(location: String) -> String {
        serve(
            format!(
                "HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            .into_bytes(),
        )
        .await
    }

    #[tokio::test]
    async fn only_allowed_urls_and_same_host_redirects_are_followed() {
        let target = serve(http("200 OK", b"image")).await;
        let port = reqwest::Url::parse(&target).unwrap().port().unwrap();
        let allow = LoadLimits {
            url_allow: vec![format!("http://127.0.0.1:{port}/images/")],
            ..LoadLimits::default()
        };
        assert_eq!(load_url(&target, &allow).await.unwrap().size(), 5);
        let elsewhere = format!("http://127.0.0.1:{port}/secret.txt");
        assert!(matches!(load_url(&elsewhere, &allow).await, Err(FirmwareError::NotAllowed(_))));

        // Another host (localhost is not 127.0.0.1 by name): refused, and said so.
        let away = redirect_to(target.replace("127.0.0.1", "localhost")).await;
        let err = load_url(&away, &LoadLimits::default()).await.unwrap_err().to_string();
        assert!(err.contains("another host"), "{err}");
        // Outside the allowed prefixes, even on the same host.
        let inside = redirect_to(elsewhere.clone()).await;
        let allow_all_of =
            |url: &str| LoadLimits { url_allow: vec![url.to_owned()], ..LoadLimits::default() };
        let inside_port = reqwest::Url::parse(&inside).unwrap().port().unwrap();
        let err =
            load_url(&inside, &allow_all_of(&format!("http://127.0.0.1:{inside_port}/"))).await.unwrap_err();
        assert!(matches!(err, FirmwareError::Fetch { .. }), "{err}");
    }

    #[test]
    fn allowed_prefixes_compare_hosts_and_path_boundaries_not_text() {
        let limits =
            LoadLimits { url_allow: vec!["https://fw.example.com/releases".into()], ..LoadLimits::default() };
        let allows = |url: &str| limits.allows(&reqwest::Url::parse(url).unwrap());
        assert!(allows("https://fw.example.com/releases/2.1.bin"));
        assert!(allows("https://fw.example.com:443/releases/2.1.bin"));
        for refused in [
            "https://fw.example.com.evil.net/releases/x",
            "https://fw.example.com@evil.net/releases/x",
            "https://user:pw@fw.example.com/releases/x",
            "https://fw.example.com/releases-old/x",
            "http://fw.example.com/releases/x",
            "https://fw.example.com:8443/releases/x",
        ] {
            assert!(!allows(refused), "{refused}");
        }
        assert!(check_url_prefix("https://fw.example.com/").is_ok());
        assert!(check_url_prefix("fw.example.com").is_err());
        assert!(check_url_prefix("https://u:p@fw.example.com/").is_err());
    }

    #[tokio::test]
    async fn a_trickling_server_meets_the_overall_deadline() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = sock.read(&mut buf).await;
                    let _ = sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n").await;
                    // A byte every 50 ms: never idle long enough for the read timeout.
                    while sock.write_all(b"x").await.is_ok() {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                });
            }
        });
        let limits = LoadLimits { total_timeout: Duration::from_millis(600), ..LoadLimits::default() };
        let err = load_url(&format!("http://{addr}/slow.bin"), &limits).await.unwrap_err().to_string();
        assert!(err.contains("took longer than"), "{err}");
    }

    #[tokio::test]
    async fn a_closed_port_and_a_silent_one_read_the_same() {
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_addr = silent.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = silent.accept().await {
                held.push(sock);
            }
        });
        let limits = LoadLimits { read_timeout: Duration::from_millis(200), ..LoadLimits::default() };
        let reason = |err: FirmwareError| match err {
            FirmwareError::Fetch { reason, .. } => reason,
            other => panic!("{other}"),
        };
        let a = reason(load_url(&format!("http://{closed}/x.bin"), &limits).await.unwrap_err());
        let b = reason(load_url(&format!("http://{silent_addr}/x.bin"), &limits).await.unwrap_err());
        assert_eq!(a, b);
        // The operator at their own console hears the whole cause.
        let own = LoadLimits { say_why: true, ..limits };
        let a = reason(load_url(&format!("http://{closed}/x.bin"), &own).await.unwrap_err());
        assert!(a.to_lowercase().contains("refused"), "{a}");
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn a_stalled_server_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                held.push(sock); // accept, then never answer
            }
        });
        let limits = LoadLimits { read_timeout: Duration::from_millis(200), ..LoadLimits::default() };
        let err = load_url(&format!("http://{addr}/x.bin"), &limits).await.unwrap_err();
        assert!(matches!(err, FirmwareError::Fetch { .. }), "{err}");
    }
}
