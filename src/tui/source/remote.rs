//! A running `rocky serve` as the console's source: its `/events` mirrored into a job table and an
//! event stream here, and the console's actions sent as API requests. When the server goes away
//! the console is told in plain words and the reader reconnects; the server's stream then starts
//! with every job again, so nothing is missed.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::RolloutVerb;
use super::sse::{Item, decode};
use crate::api::Framer;
use crate::clock::Clock;
use crate::engine::{JobId, JobSpec};
use crate::firmware::Image;
use crate::firmware::Library;
use crate::mqtt::Secret;
use crate::rollout::{RolloutId, RolloutRequest, RolloutView};
use crate::runtime::{
    ConnectionState, Envelope, EventStream, JobFilter, JobFollower, JobTable, Received, RuntimeEvent,
};
use crate::snapshot::JobSnapshot;
use crate::store::HistoryRecord;

/// Events waiting for the console; beyond this they are dropped and counted as missed.
const EVENT_BUFFER: usize = 4096;
/// Reconnect backoff: from the first to the longest pause.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const LONGEST_RETRY: Duration = Duration::from_secs(5);
/// Silence on a connection after which it counts as broken.
const SILENCE: Duration = Duration::from_secs(45);
/// How long one API request may take; an upload, which may be large on a slow link, longer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(600);

pub struct Remote {
    base: String,
    client: reqwest::Client,
    table: Arc<JobTable>,
    events: Mutex<Option<EventStream>>,
    library: Arc<Library>,
    clock: Clock,
}

impl Remote {
    /// Starts following `base` (`http://host:port`); the token, if any, goes with every request.
    pub fn connect(base: &str, token: Option<&Secret>) -> Result<Self, String> {
        let base = base.trim_end_matches('/').to_owned();
        let url = reqwest::Url::parse(&base).map_err(|e| format!("server {base:?} is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(format!("server {base:?} must be http://HOST:PORT or https://HOST:PORT"));
        }
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                .map_err(|_| "the API token has characters a header cannot carry".to_owned())?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(10))
            // The server says something on /events at least every 15 s (a keep-alive): this much
            // silence is a dead connection (a sleeping laptop, a NAT that forgot it).
            .read_timeout(SILENCE)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot start the HTTP client: {e}"))?;
        let table = JobTable::new();
        let clock = Clock::new();
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        let token_origin = token.map(|token| token.origin().to_string());
        tokio::spawn(read_events(base.clone(), client.clone(), table.clone(), tx, clock, token_origin));
        Ok(Self {
            base,
            client,
            table,
            events: Mutex::new(Some(EventStream::from_channel(rx))),
            library: Arc::new(Library::new()),
            clock,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn clock(&self) -> Clock {
        self.clock
    }

    pub fn follow_jobs(&self) -> JobFollower {
        self.table.follow()
    }

    pub fn take_events(&self) -> Option<EventStream> {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    pub fn library(&self) -> Arc<Library> {
        self.library.clone()
    }

    /// Uploads each distinct image (the operator's file is here, the server may not have it),
    /// then creates the jobs by hash.
    pub async fn submit(&self, specs: Vec<JobSpec>) -> Result<usize, String> {
        let mut groups: BTreeMap<Batch, Vec<&JobSpec>> = BTreeMap::new();
        for spec in &specs {
            let key = (
                crate::protocol::sha256_hex(spec.image.sha256()),
                spec.chunk_size.map(|c| c.get()),
                spec.chunk_interval.map(|i| u64::try_from(i.as_millis()).unwrap_or(u64::MAX)),
            );
            groups.entry(key).or_default().push(spec);
        }
        let mut created = 0;
        for ((sha256, chunk_size, interval), specs) in groups {
            let devices: Vec<&str> = specs.iter().map(|s| s.device.as_str()).collect();
            let mut body = json!({"device_ids": devices, "firmware": {"sha256": sha256}});
            if let Some(size) = chunk_size {
                body["chunk_size"] = json!(size);
            }
            if let Some(ms) = interval {
                body["chunk_interval_ms"] = json!(ms);
            }
            let answered = self.post_by_hash("/jobs", &body, &specs[0].image, "creating the jobs").await?;
            created += answered["jobs"].as_array().map_or(0, Vec::len);
        }
        Ok(created)
    }

    /// Posts `body` (which names the image by its hash) to `path`; when the server does not
    /// hold the image (404), uploads it and posts again.
    async fn post_by_hash(
        &self,
        path: &str,
        body: &Value,
        image: &Image,
        doing: &str,
    ) -> Result<Value, String> {
        let create = || self.client.post(format!("{}{path}", self.base)).timeout(REQUEST_TIMEOUT).json(body);
        // By hash first: a server that already holds the image needs no upload.
        match answer(create().send().await, doing).await {
            Err(Refusal { status: Some(StatusCode::NOT_FOUND), .. }) => {
                let url =
                    format!("{}/firmware?name={}", self.base, crate::firmware::upload_name(image.name()));
                let upload = self.client.post(url).timeout(UPLOAD_TIMEOUT).body(image.bytes().clone());
                answer(upload.send().await, "uploading the image").await?;
                Ok(answer(create().send().await, doing).await?)
            }
            other => Ok(other?),
        }
    }

    /// Starts a rollout of `image` on the server; answers its id.
    pub async fn create_rollout(&self, request: &RolloutRequest, image: &Image) -> Result<RolloutId, String> {
        let mut body = serde_json::to_value(request).map_err(|e| format!("the rollout request: {e}"))?;
        body["firmware"] = json!({"sha256": crate::protocol::sha256_hex(image.sha256())});
        let answered = self.post_by_hash("/rollouts", &body, image, "starting the rollout").await?;
        answered["id"]
            .as_u64()
            .ok_or_else(|| "starting the rollout: the server's answer has no id".to_owned())
    }

    pub async fn cancel(&self, id: JobId) -> Result<(), String> {
        let request = self.client.delete(format!("{}/jobs/{id}", self.base)).timeout(REQUEST_TIMEOUT);
        answer(request.send().await, &format!("cancelling job {id}")).await.map(|_| ()).map_err(String::from)
    }

    /// The same device and image again; the server still has the image by its hash.
    pub async fn retry(&self, job: &JobSnapshot) -> Result<usize, String> {
        let body = json!({
            "device_id": job.device_id, "firmware": {"sha256": job.image.sha256}, "chunk_size": job.chunk_size,
        });
        let request = self.client.post(format!("{}/jobs", self.base)).timeout(REQUEST_TIMEOUT).json(&body);
        let answered = answer(request.send().await, &format!("retrying job {}", job.id)).await?;
        Ok(answered["jobs"].as_array().map_or(0, Vec::len))
    }

    pub async fn inventory(&self, limit: usize) -> Result<Vec<crate::inventory::Device>, String> {
        let url = format!("{}/devices?limit={limit}", self.base);
        let request = self.client.get(url).timeout(REQUEST_TIMEOUT);
        let answered = answer(request.send().await, "listing the devices").await?;
        serde_json::from_value(answered["devices"].clone())
            .map_err(|e| format!("listing the devices: the server's answer is not a device list ({e})"))
    }

    pub async fn rollouts(&self, limit: usize) -> Result<Vec<RolloutView>, String> {
        let request = self.client.get(format!("{}/rollouts", self.base)).timeout(REQUEST_TIMEOUT);
        let answered = answer(request.send().await, "listing the rollouts").await?;
        let mut rollouts: Vec<RolloutView> = serde_json::from_value(answered["rollouts"].clone())
            .map_err(|e| format!("listing the rollouts: the server's answer is not a rollout list ({e})"))?;
        rollouts.truncate(limit);
        Ok(rollouts)
    }

    pub async fn rollout(&self, id: RolloutId) -> Result<RolloutView, String> {
        let request = self.client.get(format!("{}/rollouts/{id}", self.base)).timeout(REQUEST_TIMEOUT);
        let answered = answer(request.send().await, &format!("reading rollout {id}")).await?;
        serde_json::from_value(answered)
            .map_err(|e| format!("reading rollout {id}: the server's answer is not a rollout ({e})"))
    }

    pub async fn control_rollout(&self, id: RolloutId, verb: RolloutVerb) -> Result<(), String> {
        let url = format!("{}/rollouts/{id}/{}", self.base, verb.as_str());
        let request = self.client.post(url).timeout(REQUEST_TIMEOUT);
        let doing = format!("{} rollout {id}", verb.as_str());
        answer(request.send().await, &doing).await.map(|_| ()).map_err(String::from)
    }

    pub async fn history(&self, id: JobId) -> Option<Vec<HistoryRecord>> {
        let request = self.client.get(format!("{}/jobs/{id}/events", self.base)).timeout(REQUEST_TIMEOUT);
        let answered = answer(request.send().await, "reading the timeline").await.ok()?;
        serde_json::from_value(answered["events"].clone()).ok()
    }
}

/// Jobs created by one request: the image's hash, chunk size and pacing.
type Batch = (String, Option<u32>, Option<u64>);

/// An upload name the API accepts, from the operator's file name.
/// A request that did not succeed: the status when the server answered, and the words.
struct Refusal {
    status: Option<StatusCode>,
    text: String,
}

impl From<Refusal> for String {
    fn from(refusal: Refusal) -> String {
        refusal.text
    }
}

/// The JSON of a successful answer, or the server's own words for a refusal.
async fn answer(sent: reqwest::Result<reqwest::Response>, doing: &str) -> Result<Value, Refusal> {
    let response = sent.map_err(|e| Refusal {
        status: None,
        text: format!("{doing}: the server did not answer ({})", reason(&e)),
    })?;
    let status = response.status();
    let body = bounded_json(response).await;
    if status.is_success() {
        return Ok(body);
    }
    let said = body["error"].as_str().unwrap_or("no reason given");
    Err(Refusal {
        status: Some(status),
        text: format!("{doing}: the server answered {} ({said})", status.as_u16()),
    })
}

/// The largest answer read from the server (a listing of 10,000 jobs fits).
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// An answer's JSON, read up to [`MAX_ANSWER_BYTES`] (null past it or when it is not JSON): a
/// server cannot make the console hold an endless body.
async fn bounded_json(response: reqwest::Response) -> Value {
    let mut body = response.bytes_stream();
    let mut bytes = Vec::new();
    while let Some(Ok(piece)) = body.next().await {
        if bytes.len() + piece.len() > MAX_ANSWER_BYTES {
            return Value::Null;
        }
        bytes.extend_from_slice(&piece);
    }
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

/// The innermost cause of a request failure in words (refused, timed out, …).
fn reason(error: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = Some(error);
    let mut last = error.to_string();
    while let Some(cause) = source {
        last = cause.to_string();
        source = cause.source();
    }
    if error.is_timeout() { "timed out".to_owned() } else { last }
}

/// Follows the server's `/events` for as long as the console listens, reconnecting after
/// failures; mirrors job state into `table` and hands everything else to the console.
async fn read_events(
    base: String,
    client: reqwest::Client,
    table: Arc<JobTable>,
    tx: mpsc::Sender<Received>,
    clock: Clock,
    // Where this console's token came from (`from /path` or `from ROCKY_HTTP_TOKEN`), if it
    // has one.
    token_origin: Option<String>,
) {
    let mut feed = Feed { tx, dropped: 0 };
    let mut attempt: u32 = 0;
    let mut last_logged: Option<String> = None;
    loop {
        let mut refused = false;
        let why = match client.get(format!("{base}/events")).send().await {
            Ok(response) if response.status() == StatusCode::OK => {
                attempt = 0;
                if last_logged.take().is_some() {
                    tracing::info!(server = %base, "attached console reconnected");
                }
                follow(response, &table, &mut feed, &clock).await
            }
            Ok(response) => {
                let status = response.status();
                let body = bounded_json(response).await;
                let said = body["error"].as_str().unwrap_or("no reason given").to_owned();
                refused = status == StatusCode::UNAUTHORIZED;
                match status {
                    // What to do about it, in this program's terms rather than the API's. A
                    // refusal does not mend itself: the console stops asking (below).
                    StatusCode::UNAUTHORIZED => match &token_origin {
                        Some(origin) => format!(
                            "the server refused this console's API token ({origin}): check --token-file or \
                             ROCKY_HTTP_TOKEN, then restart the console (401: {said})"
                        ),
                        None => format!(
                            "the server wants an API token: pass --token-file FILE or set ROCKY_HTTP_TOKEN, then \
                             restart the console (401: {said})"
                        ),
                    },
                    _ => format!("the server answered {} ({said})", status.as_u16()),
                }
            }
            Err(e) => format!("cannot reach the server ({})", reason(&e)),
        };
        if feed.tx.is_closed() {
            return;
        }
        if refused {
            // Asking again with the same token gets the same answer: say it once and stop.
            tracing::warn!(server = %base, reason = %why, "attached console stopped: the server refuses it");
            let state = ConnectionState::Disconnected { reason: why };
            feed.send(Received::Event(Arc::new(Envelope::new(
                0,
                SystemTime::now(),
                RuntimeEvent::Connection(state),
            ))));
            return;
        }
        // The status line may be too narrow for the whole reason: the log keeps it (once per
        // new reason, not once per retry).
        if last_logged.as_deref() != Some(why.as_str()) {
            tracing::warn!(server = %base, reason = %why, "attached console lost the server; reconnecting");
            last_logged = Some(why.clone());
        }
        let delay = FIRST_RETRY.saturating_mul(1 << attempt.min(5)).min(LONGEST_RETRY);
        attempt = attempt.saturating_add(1);
        let state = ConnectionState::Reconnecting {
            attempt,
            delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            // The status line already names the server.
            reason: why,
        };
        feed.send(Received::Event(Arc::new(Envelope::new(
            0,
            SystemTime::now(),
            RuntimeEvent::Connection(state),
        ))));
        tokio::time::sleep(delay).await;
    }
}

/// The console's end of the events, counting what it could not take.
struct Feed {
    tx: mpsc::Sender<Received>,
    dropped: u64,
}

impl Feed {
    fn send(&mut self, item: Received) {
        if self.dropped > 0 {
            if self.tx.try_send(Received::Missed(self.dropped)).is_err() {
                self.dropped += 1;
                return;
            }
            self.dropped = 0;
        }
        if self.tx.try_send(item).is_err() {
            self.dropped += 1;
        }
    }
}

/// Reads one `/events` response to its end; returns why it ended.
async fn follow(response: reqwest::Response, table: &JobTable, feed: &mut Feed, clock: &Clock) -> String {
    let mut body = response.bytes_stream();
    let mut framer = Framer::default();
    // Between `jobs_reset` and `jobs_synced`: the jobs the server has sent again.
    let mut resent: Option<HashSet<JobId>> = None;
    while let Some(piece) = body.next().await {
        let piece = match piece {
            Ok(piece) => piece,
            Err(e) => return format!("the event stream broke off ({})", reason(&e)),
        };
        let events = match framer.push(&piece) {
            Ok(events) => events,
            Err(e) => return e,
        };
        for (name, data) in events {
            match decode(&name, &data, clock) {
                Ok(Some(Item::Job(job))) => {
                    if let Some(resent) = resent.as_mut() {
                        resent.insert(job.id);
                    }
                    table.upsert([*job]);
                }
                Ok(Some(Item::JobRemoved(id))) => table.remove(&[id]),
                Ok(Some(Item::JobsReset)) => resent = Some(HashSet::new()),
                Ok(Some(Item::JobsSynced)) => {
                    if let Some(resent) = resent.take() {
                        let gone: Vec<JobId> = table
                            .list(&JobFilter::default())
                            .iter()
                            .map(|job| job.id)
                            .filter(|id| !resent.contains(id))
                            .collect();
                        table.remove(&gone);
                    }
                }
                Ok(Some(Item::Event(envelope))) => feed.send(Received::Event(envelope)),
                Ok(Some(Item::Missed(n))) => feed.send(Received::Missed(n)),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "an event from the server was skipped"),
            }
        }
        if feed.tx.is_closed() {
            return "the console closed".to_owned();
        }
    }
    "the server closed the event stream".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that answers 401 to everything, counting what it was asked.
    async fn refusing_server() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = asked.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let body = r#"{"error":"the API token is wrong"}"#;
                let answer = format!(
                    "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        (base, asked)
    }

    #[tokio::test]
    async fn a_refused_token_is_said_once_and_the_console_stops_asking() {
        let (base, asked) = refusing_server().await;
        let (tx, mut rx) = mpsc::channel(16);
        let reader = tokio::spawn(read_events(
            base,
            reqwest::Client::new(),
            JobTable::new(),
            tx,
            Clock::new(),
            Some("from /etc/rocky/token".into()),
        ));
        let said = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
        let Received::Event(envelope) = said else { panic!("a connection event") };
        let RuntimeEvent::Connection(ConnectionState::Disconnected { reason }) = &envelope.event else {
            panic!("{:?}", envelope.event)
        };
        assert!(reason.contains("refused this console's API token (from /etc/rocky/token)"), "{reason}");
        assert!(!reason.contains("wants an API token"), "a wrong token is not a missing one: {reason}");
        tokio::time::timeout(Duration::from_secs(10), reader).await.expect("the reader stops").unwrap();
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1, "asked once, not again and again");
        assert!(rx.recv().await.is_none(), "nothing more is said");
    }

    #[tokio::test]
    async fn a_server_url_that_is_not_http_is_refused_in_words() {
        let err = Remote::connect("ftp://127.0.0.1:1", None).err().unwrap();
        assert!(err.contains("http://HOST:PORT"), "{err}");
        let err = Remote::connect("not a url", None).err().unwrap();
        assert!(err.contains("not a URL"), "{err}");
    }
}
