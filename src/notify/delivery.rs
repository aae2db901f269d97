//! One receiver's deliveries: a bounded queue the watcher fills without waiting, and a task that
//! POSTs each notification in order, signed, retrying with backoff; given up after its tries and
//! counted. A receiver that is down or slow holds only its own queue.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::mpsc;

use crate::metrics::Metrics;

/// Notifications waiting for one receiver; more are dropped and counted.
pub const QUEUE: usize = 1000;

/// How a receiver is tried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Tries per notification, the first included.
    pub attempts: u32,
    /// The pause after the first failed try; doubled after each, up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// One try's limit, connecting included.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
        }
    }
}

/// A notification ready to send: its kind (the `X-Rocky-Event` header) and its JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub event: &'static str,
    pub body: bytes::Bytes,
}

/// `sha256=<hex HMAC-SHA256 of body with secret>`, the `X-Rocky-Signature` header's value.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes a key of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The side the watcher holds: never waits.
#[derive(Clone)]
pub struct Sender {
    index: usize,
    queue: mpsc::Sender<Arc<Outgoing>>,
    metrics: Metrics,
}

impl Sender {
    /// Queues `outgoing`, or drops it (counted) when the receiver's queue is full.
    pub fn offer(&self, outgoing: Arc<Outgoing>) {
        if self.queue.try_send(outgoing).is_err() {
            self.metrics.notification(self.index, "dropped");
        }
    }
}

/// One receiver: its place in the config, URL (shown without its path), secret and policy.
pub struct Receiver {
    pub index: usize,
    pub url: reqwest::Url,
    pub shown: String,
    pub secret: Vec<u8>,
    pub policy: RetryPolicy,
}

/// Starts receiver's task; the returned side queues notifications for it.
pub fn start(receiver: Receiver, metrics: Metrics) -> Result<Sender, String> {
    let client = reqwest::Client::builder()
        .timeout(receiver.policy.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("rocky/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("notify[{}]: no HTTP client ({e})", receiver.index))?;
    let (queue, mut rx) = mpsc::channel::<Arc<Outgoing>>(QUEUE);
    let sender = Sender { index: receiver.index, queue, metrics: metrics.clone() };
    tokio::spawn(async move {
        while let Some(outgoing) = rx.recv().await {
            deliver(&client, &receiver, &outgoing, &metrics).await;
        }
    });
    Ok(sender)
}

/// Tries `outgoing` until a 2xx answer or the policy's last try.
async fn deliver(client: &reqwest::Client, receiver: &Receiver, outgoing: &Outgoing, metrics: &Metrics) {
    let signature = signature(&receiver.secret, &outgoing.body);
    let mut backoff = receiver.policy.first_backoff;
    for attempt in 1..=receiver.policy.attempts.max(1) {
        let sent = client
            .post(receiver.url.clone())
            .header("content-type", "application/json")
            .header("x-rocky-event", outgoing.event)
            .header("x-rocky-signature", &signature)
            .body(outgoing.body.clone())
            .send()
            .await;
        let why = match sent {
            Ok(answer) if answer.status().is_success() => {
                metrics.notification(receiver.index, "sent");
                return;
            }
            Ok(answer) => format!("it answered {}", answer.status()),
            // Without the URL, which may hold a token.
            Err(e) => crate::api::root_cause(&e.without_url()),
        };
        if attempt >= receiver.policy.attempts {
            metrics.notification(receiver.index, "failed");
            tracing::warn!(receiver = receiver.index, url = %receiver.shown, event = outgoing.event, attempts = attempt,
                reason = %why, "a notification was given up");
            return;
        }
        metrics.notification(receiver.index, "retried");
        tracing::debug!(receiver = receiver.index, url = %receiver.shown, attempt, reason = %why,
            "a notification is tried again");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(receiver.policy.max_backoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A receiver on a loopback port answering the statuses in `script` in turn (then 200),
    /// and what it was sent: headers and body.
    async fn receiver(script: Vec<u16>) -> (String, Arc<Mutex<Vec<(axum::http::HeaderMap, bytes::Bytes)>>>) {
        let got = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(std::collections::VecDeque::from(script)));
        let (seen, answers) = (got.clone(), script.clone());
        let app = axum::Router::new().route(
            "/hook/secret-path",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: bytes::Bytes| {
                let (seen, answers) = (seen.clone(), answers.clone());
                async move {
                    seen.lock().unwrap().push((headers, body));
                    let status = answers.lock().unwrap().pop_front().unwrap_or(200);
                    axum::http::StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook/secret-path", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, got)
    }

    fn quick() -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            first_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            timeout: Duration::from_secs(5),
        }
    }

    fn at(url: &str, policy: RetryPolicy) -> Receiver {
        let url = reqwest::Url::parse(url).unwrap();
        Receiver { index: 0, shown: "shown".into(), url, secret: b"hook secret".to_vec(), policy }
    }

    async fn until(what: &str, check: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !check() {
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_failed_try_is_retried_and_every_try_is_signed_alike() {
        let (url, got) = receiver(vec![500, 503]).await;
        let metrics = Metrics::default();
        let sender = start(at(&url, quick()), metrics.clone()).unwrap();
        let body = bytes::Bytes::from_static(br#"{"id":"rollout:1:change:1"}"#);
        sender.offer(Arc::new(Outgoing { event: "rollout", body: body.clone() }));
        until("the third try", || metrics.notifications(0, "sent") == 1).await;
        assert_eq!(metrics.notifications(0, "retried"), 2);
        let got = got.lock().unwrap();
        assert_eq!(got.len(), 3);
        for (headers, received) in got.iter() {
            assert_eq!(received, &body);
            assert_eq!(headers["x-rocky-signature"], signature(b"hook secret", &body));
            assert_eq!(headers["x-rocky-event"], "rollout");
            assert_eq!(headers["content-type"], "application/json");
        }
    }

    #[tokio::test]
    async fn a_dead_receiver_is_given_up_and_a_full_queue_drops_without_waiting() {
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let metrics = Metrics::default();
        let sender = start(at(&format!("http://127.0.0.1:{port}/x"), quick()), metrics.clone()).unwrap();
        let outgoing = Arc::new(Outgoing { event: "job_failed", body: bytes::Bytes::from_static(b"{}") });
        for _ in 0..QUEUE + 50 {
            sender.offer(outgoing.clone());
        }
        // Offering never waits on the receiver: the overflow is dropped at once.
        assert!(metrics.notifications(0, "dropped") >= 49, "{}", metrics.notifications(0, "dropped"));
        until("the first to be given up", || metrics.notifications(0, "failed") >= 1).await;
        assert!(metrics.notifications(0, "retried") >= 2);
    }

    #[test]
    fn the_signature_is_rfc_4231s_hmac_sha256() {
        // RFC 4231, test case 2.
        let expected = "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert_eq!(signature(b"Jefe", b"what do ya want for nothing?"), expected);
    }
}
