//! The one client of a running Rocky's HTTP API, used by the CLI (`rocky devices`, `rocky job`,
//! `rocky jobs`, `rocky rollout`) and by the console attached to a server: the address checked,
//! the token on every request (never in a message), no redirects, answers read up to a bound, and
//! every way a request can go wrong told apart, so each face says it in its own words.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::Value;

use crate::secret::Secret;

/// The largest answer read from a server (a listing of 10,000 jobs fits): a server cannot make a
/// client hold an endless body.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// How long connecting to the server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

/// What goes with a request.
pub enum Body {
    Empty,
    Json(Value),
    /// Bytes with their content type (an image upload, a CSV import).
    Bytes(&'static str, bytes::Bytes),
}

/// A request that did not get a successful JSON answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Nothing accepted the connection (no server there, or none listening): the cause.
    Unreachable(String),
    /// The server did not answer within the request's time.
    TimedOut,
    /// The request failed on the way (TLS, a reset): the innermost cause in words.
    Transport(String),
    /// The server refused: its status and its own words (`no reason given` without them).
    Refused { status: u16, said: String },
    /// A successful answer that is not JSON, or larger than [`MAX_ANSWER_BYTES`].
    BadAnswer(String),
}

impl Failure {
    /// What went wrong, in a few words (for "… the server did not answer (WORDS)").
    pub fn reason(&self) -> String {
        match self {
            Failure::Unreachable(cause) | Failure::Transport(cause) | Failure::BadAnswer(cause) => {
                cause.clone()
            }
            Failure::TimedOut => "timed out".to_owned(),
            Failure::Refused { status, said } => format!("HTTP {status}: {said}"),
        }
    }
}

impl Client {
    /// A client of `base` (`http://host:port` or `https://…`); `read_timeout` is the silence
    /// after which a connection counts as broken (a stream that keeps talking needs one).
    pub fn new(base: &str, token: Option<&Secret>, read_timeout: Option<Duration>) -> Result<Self, String> {
        let base = base.trim_end_matches('/').to_owned();
        let url = reqwest::Url::parse(&base).map_err(|e| format!("server {base:?} is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(format!("server {base:?} must be http://HOST:PORT or https://HOST:PORT"));
        }
        // The API's paths start at the root: a path here would make every request miss ("no such
        // endpoint") without saying why.
        if url.path() != "/" || url.query().is_some() {
            return Err(format!("server {base:?} has a path; give only http(s)://HOST:PORT"));
        }
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                .map_err(|_| "the API token has characters a header cannot carry".to_owned())?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(silence) = read_timeout {
            builder = builder.read_timeout(silence);
        }
        let http = builder.build().map_err(|e| format!("cannot start the HTTP client: {e}"))?;
        Ok(Self { base, http })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// A GET of `path` whose successful answer is read as it arrives (the `/events` stream);
    /// a refusal is read whole (up to the bound) for the server's words.
    pub async fn stream(&self, path: &str) -> Result<reqwest::Response, Failure> {
        let response = self.http.get(format!("{}{path}", self.base)).send().await.map_err(|e| failure(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        Err(refusal(status.as_u16(), bounded_json(response).await))
    }

    /// Sends a request and reads its JSON answer (`Value::Null` for an empty one), within
    /// `timeout`; answers the status (201 tells a creation from an update) and the JSON.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Body,
        timeout: Duration,
    ) -> Result<(u16, Value), Failure> {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).timeout(timeout);
        request = match body {
            Body::Empty => request,
            Body::Json(value) => request.json(&value),
            Body::Bytes(content_type, bytes) => {
                request.header(reqwest::header::CONTENT_TYPE, content_type).body(bytes)
            }
        };
        let response = request.send().await.map_err(|e| failure(&e))?;
        let status = response.status();
        let answer = bounded_json(response).await;
        if status.is_success() {
            return answer.map(|value| (status.as_u16(), value));
        }
        Err(refusal(status.as_u16(), answer))
    }
}

/// A 4xx/5xx answer with the server's own words (its JSON `error`).
fn refusal(status: u16, answer: Result<Value, Failure>) -> Failure {
    let said = match &answer {
        Ok(value) => value.get("error").and_then(Value::as_str).unwrap_or("no reason given"),
        Err(_) => "no reason given",
    };
    Failure::Refused { status, said: said.to_owned() }
}

/// How a request that got no answer failed.
/// Percent-encodes everything but unreserved characters, for a path segment or a query value
/// (a device id may hold spaces, `&` or `#`).
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn failure(error: &reqwest::Error) -> Failure {
    // A connection that timed out is a server that is not there, before it is a slow one.
    if error.is_connect() {
        Failure::Unreachable(root_cause(error))
    } else if error.is_timeout() {
        Failure::TimedOut
    } else {
        Failure::Transport(root_cause(error))
    }
}

/// The innermost cause of an error, which is the part that says what went wrong.
pub fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// An answer's JSON, read up to [`MAX_ANSWER_BYTES`].
async fn bounded_json(response: reqwest::Response) -> Result<Value, Failure> {
    let mut body = response.bytes_stream();
    let mut bytes = Vec::new();
    while let Some(piece) = body.next().await {
        let piece = piece.map_err(|e| failure(&e))?;
        if bytes.len() + piece.len() > MAX_ANSWER_BYTES {
            return Err(Failure::BadAnswer(format!("the answer is larger than {MAX_ANSWER_BYTES} bytes")));
        }
        bytes.extend_from_slice(&piece);
    }
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|_| Failure::BadAnswer("the answer is not JSON".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server of the test's own that answers every request with `status` and `body`.
    async fn server(status: &'static str, body: Vec<u8>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let body = body.clone();
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = stream.read(&mut request).await;
                    let head = format!(
                        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(&body).await;
                });
            }
        });
        base
    }

    async fn get(base: &str) -> Result<(u16, Value), Failure> {
        let client = Client::new(base, None, None).unwrap();
        client.request(Method::GET, "/x", Body::Empty, Duration::from_secs(10)).await
    }

    #[tokio::test]
    async fn an_answer_past_the_bound_is_refused_and_not_held() {
        let base = server("200 OK", vec![b' '; MAX_ANSWER_BYTES + 1]).await;
        let err = get(&base).await.unwrap_err();
        assert_eq!(err, Failure::BadAnswer(format!("the answer is larger than {MAX_ANSWER_BYTES} bytes")));
    }

    #[tokio::test]
    async fn refusals_carry_the_servers_words_or_say_there_were_none() {
        let base = server("404 Not Found", br#"{"error":"no job 7"}"#.to_vec()).await;
        assert_eq!(get(&base).await.unwrap_err(), Failure::Refused { status: 404, said: "no job 7".into() });
        let base = server("500 Internal Server Error", b"<html>oops</html>".to_vec()).await;
        let said = "no reason given".to_owned();
        assert_eq!(get(&base).await.unwrap_err(), Failure::Refused { status: 500, said });
        let base = server("200 OK", b"not json".to_vec()).await;
        assert_eq!(get(&base).await.unwrap_err(), Failure::BadAnswer("the answer is not JSON".into()));
        let base = server("201 Created", Vec::new()).await;
        assert_eq!(get(&base).await.unwrap(), (201, Value::Null));
    }

    #[tokio::test]
    async fn nothing_listening_is_unreachable_and_a_bad_address_is_refused_in_words() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let err = get(&format!("http://127.0.0.1:{port}")).await.unwrap_err();
        assert!(matches!(err, Failure::Unreachable(_)), "{err:?}");
        assert!(Client::new("ftp://127.0.0.1:1", None, None).err().unwrap().contains("http://HOST:PORT"));
    }
}
