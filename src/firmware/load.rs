//! Loading images from a file or an http(s) URL, with a size cap and timeouts, so that a huge
//! file or a stalled server is an error and never a hang or an out-of-memory.

use std::path::Path;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use super::Image;

pub const DEFAULT_MAX_IMAGE_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct LoadLimits {
    pub max_bytes: u64,
    pub connect_timeout: Duration,
    /// The longest wait for the next piece of a download.
    pub read_timeout: Duration,
}

impl Default for LoadLimits {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_IMAGE_BYTES,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
        }
    }
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
    let fetch_err = |reason: String| FirmwareError::Fetch { url: url.to_owned(), reason };
    let client = reqwest::Client::builder()
        .connect_timeout(limits.connect_timeout)
        .read_timeout(limits.read_timeout)
        .build()
        .map_err(|e| fetch_err(e.to_string()))?;
    let response = client.get(parsed.clone()).send().await.map_err(|e| fetch_err(e.to_string()))?;
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
        let piece = piece.map_err(|e| fetch_err(e.to_string()))?;
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
