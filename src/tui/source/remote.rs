//! A running `rocky serve` as the console's source: its `/events` mirrored into a job table and an
//! event stream here, and the console's actions sent as API requests. When the server goes away
//! the console is told in plain words and the reader reconnects; the server's stream then starts
//! with every job again, so nothing is missed.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::sse::{Item, decode};
use super::{Answer, INVENTORY_PAGE, InventoryPage, ROLLOUTS_SHOWN, RolloutVerb, Source};
use crate::api::{
    Body, Client, CreateJobs, CreatedJobs, DevicePage, Failure, Firmware, Framer, RolloutList, Timeline,
    failure,
};
use crate::clock::Clock;
use crate::engine::{JobId, JobSpec};
use crate::firmware::{Image, Library, LoadLimits};
use crate::rollout::{DeviceWindow, RolloutId, RolloutRequest, RolloutView};
use crate::secret::Secret;
use crate::service::{
    ConnectionState, Envelope, EventStream, JobFilter, JobFollower, JobTable, Received, RuntimeEvent,
};
use crate::snapshot::HistoryRecord;
use crate::snapshot::JobSnapshot;

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
    client: Client,
    table: Arc<JobTable>,
    events: Mutex<Option<EventStream>>,
    library: Arc<Library>,
    clock: Clock,
}

impl Remote {
    /// Starts following `base` (`http://host:port`); the token, if any, goes with every request.
    pub fn connect(base: &str, token: Option<&Secret>) -> Result<Self, String> {
        // The server says something on /events at least every 15 s (a keep-alive): this much
        // silence is a dead connection (a sleeping laptop, a NAT that forgot it).
        let client = Client::new(base, token, Some(SILENCE))?;
        let table = JobTable::new();
        let clock = Clock::new();
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        let token_origin = token.map(|token| token.origin().to_string());
        tokio::spawn(read_events(client.clone(), table.clone(), tx, clock, token_origin));
        Ok(Self {
            client,
            table,
            events: Mutex::new(Some(EventStream::from_channel(rx))),
            library: Arc::new(Library::new()),
            clock,
        })
    }

    pub fn base(&self) -> &str {
        self.client.base()
    }

    /// A request on the server and its JSON answer.
    async fn send(&self, method: Method, path: &str, body: Body) -> Result<Value, Failure> {
        self.client.request(method, path, body, REQUEST_TIMEOUT).await.map(|(_, value)| value)
    }

    /// A request, its failure in the console's words (`doing`: what was asked).
    async fn ask(&self, method: Method, path: &str, body: Body, doing: &str) -> Result<Value, String> {
        self.send(method, path, body).await.map_err(|failure| words(doing, failure))
    }

    /// Uploads `image` into the server's firmware directory.
    async fn upload(&self, image: &Image) -> Result<(), String> {
        let upload = format!("/firmware?name={}", crate::firmware::upload_name(image.name()));
        let bytes = Body::Bytes("application/octet-stream", image.bytes().clone());
        self.client
            .request(Method::POST, &upload, bytes, UPLOAD_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|f| words("uploading the image", f))
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
        let create = || self.send(Method::POST, path, Body::Json(body.clone()));
        // By hash first: a server that already holds the image needs no upload.
        match create().await {
            Err(Failure::Refused { status: 404, .. }) => {
                self.upload(image).await?;
                create().await.map_err(|f| words(doing, f))
            }
            other => other.map_err(|f| words(doing, f)),
        }
    }
}

impl Source for Remote {
    fn attached(&self) -> bool {
        true
    }

    fn clock(&self) -> Clock {
        self.clock
    }

    fn follow_jobs(&self) -> JobFollower {
        self.table.follow()
    }

    fn subscribe(&self) -> Option<EventStream> {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    fn library(&self) -> Arc<Library> {
        self.library.clone()
    }

    /// Said by the server's events (its first one is the connection's state).
    fn connection(&self) -> Answer<'_, Option<ConnectionState>> {
        Box::pin(async { Ok(None) })
    }

    /// Uploads each distinct image (the operator's file is here, the server may not have it),
    /// then creates the jobs by hash.
    fn submit(&self, specs: Vec<JobSpec>) -> Answer<'_, usize> {
        Box::pin(async move {
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
                let request = CreateJobs {
                    device_ids: Some(specs.iter().map(|s| s.device.to_string()).collect()),
                    firmware: Firmware::sha256(sha256),
                    chunk_size: chunk_size.map(u64::from),
                    chunk_interval_ms: interval,
                    ..CreateJobs::default()
                };
                let body = serde_json::to_value(&request).map_err(|e| format!("creating the jobs: {e}"))?;
                let answered =
                    self.post_by_hash("/jobs", &body, &specs[0].image, "creating the jobs").await?;
                created += read::<CreatedJobs>(answered, "creating the jobs")?.jobs.len();
            }
            Ok(created)
        })
    }

    /// Starts a rollout of `image` on the server; answers its id.
    fn create_rollout(&self, request: RolloutRequest, image: Image) -> Answer<'_, RolloutId> {
        Box::pin(async move {
            let mut body = serde_json::to_value(&request).map_err(|e| format!("the rollout request: {e}"))?;
            body["firmware"] = json!(Firmware::sha256(crate::protocol::sha256_hex(image.sha256())));
            let answered = self.post_by_hash("/rollouts", &body, &image, "starting the rollout").await?;
            answered["id"]
                .as_u64()
                .map(RolloutId::new)
                .ok_or_else(|| "starting the rollout: the server's answer has no id".to_owned())
        })
    }

    fn dry_run_rollout(
        &self,
        request: RolloutRequest,
        image: Image,
    ) -> Answer<'_, crate::service::RolloutDryRun> {
        Box::pin(async move {
            let doing = "planning the rollout";
            let mut body = serde_json::to_value(&request).map_err(|e| format!("the rollout request: {e}"))?;
            body["firmware"] = json!(Firmware::sha256(crate::protocol::sha256_hex(image.sha256())));
            let answered = self.post_by_hash("/rollouts?dry_run=true", &body, &image, doing).await?;
            if answered["dry_run"] != true {
                // A server that does not know dry runs made the rollout: say so, loudly.
                return Err(format!(
                    "the server does not know dry runs and STARTED rollout {} (cancel it in the rollouts pane)",
                    answered["id"]
                ));
            }
            read::<crate::service::RolloutDryRun>(answered, doing)
        })
    }

    fn cancel(&self, id: JobId) -> Answer<'_, ()> {
        Box::pin(async move {
            let doing = format!("cancelling job {id}");
            self.ask(Method::DELETE, &format!("/jobs/{id}"), Body::Empty, &doing).await.map(|_| ())
        })
    }

    /// The same device and image again; the server still has the image by its hash.
    fn retry<'a>(&'a self, job: &'a JobSnapshot, _limits: &'a LoadLimits) -> Answer<'a, usize> {
        Box::pin(async move {
            let request = CreateJobs {
                device_id: Some(job.device_id.to_string()),
                firmware: Firmware::sha256(job.image.sha256.to_string()),
                chunk_size: Some(u64::from(job.chunk_size)),
                ..CreateJobs::default()
            };
            let doing = format!("retrying job {}", job.id);
            let body = serde_json::to_value(&request).map_err(|e| format!("{doing}: {e}"))?;
            let answered = self.ask(Method::POST, "/jobs", Body::Json(body), &doing).await?;
            Ok(read::<CreatedJobs>(answered, &doing)?.jobs.len())
        })
    }

    fn inventory(&self, after: Option<crate::protocol::DeviceId>) -> Answer<'_, InventoryPage> {
        Box::pin(async move {
            let doing = "listing the devices";
            let path = match &after {
                Some(after) => format!(
                    "/devices?limit={INVENTORY_PAGE}&after={}",
                    crate::api::percent_encode(after.as_str())
                ),
                None => format!("/devices?limit={INVENTORY_PAGE}"),
            };
            let answered = self.ask(Method::GET, &path, Body::Empty, doing).await?;
            let page = read::<DevicePage>(answered, doing)?;
            // The server's cursor is a device id; one that is not ends the walk here.
            let next_after = match page.next_after {
                Some(next) => Some(
                    crate::protocol::DeviceId::parse(&next)
                        .map_err(|e| format!("{doing}: the server's next_after {next:?}: {e}"))?,
                ),
                None => None,
            };
            Ok(InventoryPage { devices: page.devices, next_after })
        })
    }

    fn rollouts(&self) -> Answer<'_, Vec<RolloutView>> {
        Box::pin(async move {
            let doing = "listing the rollouts";
            let answered = self.ask(Method::GET, "/rollouts", Body::Empty, doing).await?;
            let mut rollouts = read::<RolloutList>(answered, doing)?.rollouts;
            rollouts.truncate(ROLLOUTS_SHOWN);
            Ok(rollouts)
        })
    }

    fn rollout(&self, id: RolloutId, window: Option<DeviceWindow>) -> Answer<'_, RolloutView> {
        Box::pin(async move {
            let doing = format!("reading rollout {id}");
            let path = match window {
                None => format!("/rollouts/{id}"),
                Some(w) => format!("/rollouts/{id}?from={}&limit={}", w.from, w.limit),
            };
            let answered = self.ask(Method::GET, &path, Body::Empty, &doing).await?;
            read::<RolloutView>(answered, &doing)
        })
    }

    fn control_rollout(&self, id: RolloutId, verb: RolloutVerb) -> Answer<'_, ()> {
        Box::pin(async move {
            let path = format!("/rollouts/{id}/{}", verb.as_str());
            let doing = format!("{} rollout {id}", verb.as_str());
            self.ask(Method::POST, &path, Body::Empty, &doing).await.map(|_| ())
        })
    }

    fn audit(&self, query: crate::audit::Query) -> Answer<'_, crate::audit::Page> {
        Box::pin(async move {
            let doing = "reading the audit trail";
            let mut pairs = vec![format!("limit={}", query.limit)];
            pairs.extend(query.since.map(|since| format!("since={since}")));
            pairs.extend(query.after.map(|after| format!("after={after}")));
            pairs.extend(query.before.map(|before| format!("before={before}")));
            if query.newest_first {
                pairs.push("order=newest".to_owned());
            }
            let path = format!("/audit?{}", pairs.join("&"));
            read::<crate::audit::Page>(self.ask(Method::GET, &path, Body::Empty, doing).await?, doing)
        })
    }

    fn history(&self, id: JobId) -> Answer<'_, Vec<HistoryRecord>> {
        Box::pin(async move {
            let doing = "reading the timeline";
            let answered = self.ask(Method::GET, &format!("/jobs/{id}/events"), Body::Empty, doing).await?;
            Ok(read::<Timeline>(answered, doing)?.events)
        })
    }

    /// The server's word: an image it does not hold yet (404) has no manifest there.
    fn manifest(&self, image: Image) -> Answer<'_, Option<crate::protocol::Manifest>> {
        Box::pin(async move {
            let doing = "reading the image's manifest";
            let path = format!("/firmware/{}", crate::protocol::sha256_hex(image.sha256()));
            match self.send(Method::GET, &path, Body::Empty).await {
                Ok(answered) => Ok(read::<crate::api::FirmwareImage>(answered, doing)?.manifest),
                Err(Failure::Refused { status: 404, .. }) => Ok(None),
                Err(failure) => Err(words(doing, failure)),
            }
        })
    }

    fn attach_manifest(&self, image: Image, cose: Vec<u8>) -> Answer<'_, crate::protocol::Manifest> {
        Box::pin(async move {
            self.upload(&image).await?;
            let path = format!("/firmware/{}/manifest", crate::protocol::sha256_hex(image.sha256()));
            let doing = "attaching the manifest";
            let answered =
                self.ask(Method::PUT, &path, Body::Bytes("application/cose", cose.into()), doing).await?;
            read::<crate::api::FirmwareImage>(answered, doing)?
                .manifest
                .ok_or_else(|| format!("{doing}: the server kept no manifest"))
        })
    }

    fn attach_aws_signature(&self, image: Image, signature: String) -> Answer<'_, ()> {
        Box::pin(async move {
            self.upload(&image).await?;
            let path = format!("/firmware/{}/aws-signature", crate::protocol::sha256_hex(image.sha256()));
            let doing = "attaching the sig-sha256-ecdsa";
            let body = Body::Bytes("text/plain", signature.into_bytes().into());
            self.ask(Method::PUT, &path, body, doing).await?;
            Ok(())
        })
    }
}

/// Jobs created by one request: the image's hash, chunk size and pacing.
type Batch = (String, Option<u32>, Option<u64>);

/// An answer as the type the API promises, or what was wrong with it in words.
fn read<T: serde::de::DeserializeOwned>(answer: Value, doing: &str) -> Result<T, String> {
    serde_json::from_value(answer)
        .map_err(|e| format!("{doing}: the server's answer is not what the API says ({e})"))
}

/// A failed request in the console's words: what it was doing, and what the server said or
/// why it did not answer.
fn words(doing: &str, failure: Failure) -> String {
    match failure {
        Failure::Refused { status, said } => format!("{doing}: the server answered {status} ({said})"),
        Failure::BadAnswer(what) => format!("{doing}: {what}"),
        other => format!("{doing}: the server did not answer ({})", other.reason()),
    }
}

/// Follows the server's `/events` for as long as the console listens, reconnecting after
/// failures; mirrors job state into `table` and hands everything else to the console.
async fn read_events(
    client: Client,
    table: Arc<JobTable>,
    tx: mpsc::Sender<Received>,
    clock: Clock,
    // Where this console's token came from (`from /path` or `from ROCKY_HTTP_TOKEN`), if it
    // has one.
    token_origin: Option<String>,
) {
    let base = client.base().to_owned();
    let mut feed = Feed { tx, dropped: 0 };
    let mut attempt: u32 = 0;
    let mut last_logged: Option<String> = None;
    loop {
        let mut refused = false;
        let why = match client.stream("/events").await {
            Ok(response) => {
                attempt = 0;
                if last_logged.take().is_some() {
                    tracing::info!(server = %base, "attached console reconnected");
                }
                follow(response, &table, &mut feed, &clock).await
            }
            // What to do about it, in this program's terms rather than the API's. A refusal
            // does not mend itself: the console stops asking (below).
            Err(Failure::Refused { status: 401, said }) => {
                refused = true;
                match &token_origin {
                    Some(origin) => format!(
                        "the server refused this console's API token ({origin}): check --token-file or \
                         ROCKY_HTTP_TOKEN, then restart the console (401: {said})"
                    ),
                    None => format!(
                        "the server wants an API token: pass --token-file FILE or set ROCKY_HTTP_TOKEN, then \
                         restart the console (401: {said})"
                    ),
                }
            }
            Err(Failure::Refused { status, said }) => format!("the server answered {status} ({said})"),
            Err(other) => format!("cannot reach the server ({})", other.reason()),
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
            Err(e) => return format!("the event stream broke off ({})", failure(&e).reason()),
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
            Client::new(&base, None, None).unwrap(),
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
