//! The baseline: N QoS 1 publishes of the chunk size from a bare rumqttc publisher through the
//! same broker, with nothing of Rocky in between, to subscribers on the same number of
//! connections as the simulated fleet has devices.
//!
//! The fan-out matters: a broker that delivers to 100 connections does far more work per
//! message than one that delivers to one (a write and a PUBACK read per connection instead of
//! batched ones). Profiling `rocky bench --mosquitto` showed mosquitto's single thread, mostly in
//! the kernel's TCP path, as the busiest part of a Rocky round; a one-subscriber baseline measured
//! a cheaper job than the one Rocky is given. `--raw-subscribers 1` still measures that.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use rumqttc::{AsyncClient, Event, MqttOptions, NetworkOptions, Packet, QoS};
use tokio::sync::{oneshot, watch};

use rocky::runtime::{BrokerUrl, MAX_PACKET_BYTES};

pub struct RawRound {
    pub wall: Duration,
    pub messages: usize,
    /// CPU seconds of the publisher's own thread (its rumqttc connection included): what the
    /// bare minimum of sending these bytes costs, against Rocky's whole process.
    pub publisher_cpu_s: f64,
    /// CPU seconds of the rest of this process: the subscribers, as the simulated devices
    /// are in Rocky's rounds.
    pub subscribers_cpu_s: f64,
    /// CPU seconds of the broker, when the bench started it.
    pub broker_cpu_s: Option<f64>,
}

impl RawRound {
    pub fn msgs_per_s(&self) -> f64 {
        self.messages as f64 / self.wall.as_secs_f64()
    }

    pub fn line(&self) -> String {
        let broker = self.broker_cpu_s.map_or(String::new(), |s| format!(", broker {s:.2} s"));
        format!(
            "{} publishes in {:.2} s = {:.0} msgs/s; CPU: publisher {:.2} s, subscribers {:.2} s{broker}",
            self.messages,
            self.wall.as_secs_f64(),
            self.msgs_per_s(),
            self.publisher_cpu_s,
            self.subscribers_cpu_s
        )
    }
}

/// The raw round's topics: `rocky-bench-raw/{subscriber}`.
const TOPIC: &str = "rocky-bench-raw";

fn client(broker: &BrokerUrl, id: &str) -> (AsyncClient, rumqttc::EventLoop) {
    let mut options = MqttOptions::new(id, &broker.host, broker.port);
    options
        .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES)
        .set_inflight(128)
        .set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 256);
    let mut network = NetworkOptions::new();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    (client, eventloop)
}

/// One subscriber on its own connection to `filter`, subscribed before this returns; the task
/// it leaves behind counts what arrives until `expected`, reporting the count on `progress`.
async fn subscriber(
    broker: &BrokerUrl,
    id: String,
    filter: String,
    expected: usize,
    progress: watch::Sender<usize>,
) -> anyhow::Result<tokio::task::JoinHandle<usize>> {
    let (sub, mut sub_loop) = client(broker, &id);
    sub.subscribe(filter, QoS::AtLeastOnce).await.context("subscribe")?;
    // Wait for the subscription to be in place before the clock starts.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let event = tokio::time::timeout_at(deadline.into(), sub_loop.poll())
            .await
            .context("subscriber connect")??;
        if matches!(event, Event::Incoming(Packet::SubAck(_))) {
            break;
        }
    }
    Ok(tokio::spawn(async move {
        let _client = sub;
        let mut count = 0usize;
        while count < expected {
            match sub_loop.poll().await {
                Ok(Event::Incoming(Packet::Publish(_))) => {
                    count += 1;
                    progress.send_replace(count);
                }
                Ok(_) => {}
                Err(_) => return count,
            }
        }
        count
    }))
}

/// `messages` publishes spread evenly over `subscribers` topics, each read by its own
/// connection; `paced` for the embedded broker (below).
pub async fn run_round(
    broker: &BrokerUrl,
    messages: usize,
    size: usize,
    subscribers: usize,
    paced: bool,
    broker_pid: Option<u32>,
) -> anyhow::Result<RawRound> {
    let subscribers = subscribers.clamp(1, messages.max(1));
    let pid = std::process::id();
    // The embedded broker acknowledges a publish once queued for its subscribers, not once
    // delivered, so an unpaced publisher runs arbitrarily far ahead of a subscriber, and it
    // queues only so much per subscriber: keep at most `window` messages in transit to each. The
    // bench's own mosquitto queues up to 100,000 messages per subscriber, so it is not paced.
    let window =
        if paced { (rocky::broker::RAW_BENCH_RETAINED / 2 / (size + 64)).max(1) } else { usize::MAX };
    let mut progress = Vec::with_capacity(subscribers);
    let mut receivers = Vec::with_capacity(subscribers);
    for s in 0..subscribers {
        // Publish n goes to topic n % subscribers: subscriber s expects every one with that rest.
        let expected = messages / subscribers + usize::from(s < messages % subscribers);
        let id = format!("rocky-bench-sub-{pid}-{s}");
        let (tx, rx) = watch::channel(0usize);
        progress.push(rx);
        receivers.push(subscriber(broker, id, format!("{TOPIC}/{s}"), expected, tx).await?);
    }
    let broker_before = broker_pid.and_then(super::proc_stats::cpu_seconds_of);
    let process_before = super::proc_stats::own_cpu_seconds();
    let started = Instant::now();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let (result_tx, mut result_rx) = oneshot::channel::<anyhow::Result<f64>>();
    publish_on_own_thread(broker, messages, size, progress, window, done_rx, result_tx)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    let stoppers: Vec<_> = receivers.iter().map(tokio::task::JoinHandle::abort_handle).collect();
    let receiving = async move {
        let mut got = 0;
        for receiver in receivers {
            got += receiver.await?;
        }
        anyhow::Ok(got)
    };
    // The publisher answers before `done` only when it failed: say why at once.
    let got = tokio::select! {
        got = tokio::time::timeout_at(deadline, receiving) => got.context("raw round timed out").and_then(|got| got),
        early = &mut result_rx => Err(match early {
            Ok(Err(error)) => error.context("the raw publisher failed"),
            _ => anyhow::anyhow!("the raw publisher stopped before its subscribers had every message"),
        }),
    };
    let got = match got {
        Ok(got) => got,
        Err(error) => {
            // Their progress senders go with them: a publisher waiting on one stops, and
            // without `done` it leaves.
            stoppers.iter().for_each(tokio::task::AbortHandle::abort);
            return Err(error);
        }
    };
    let wall = started.elapsed();
    let broker_cpu_s = broker_pid
        .and_then(super::proc_stats::cpu_seconds_of)
        .zip(broker_before)
        .map(|(after, before)| (after - before).max(0.0));
    let _ = done_tx.send(());
    let publisher_cpu_s =
        result_rx.await.map_err(|_| anyhow::anyhow!("the raw publisher's thread panicked"))??;
    let process = super::proc_stats::own_cpu_seconds() - process_before;
    let subscribers_cpu_s = (process - publisher_cpu_s).max(0.0);
    if got < messages {
        bail!("the raw subscribers received {got} of {messages} messages");
    }
    Ok(RawRound { wall, messages, publisher_cpu_s, subscribers_cpu_s, broker_cpu_s })
}

/// Publishes `messages` from a thread of its own (a one-thread runtime holding the publisher
/// and its connection), so its CPU time is the publisher's alone, apart from the subscribers in
/// this process. The thread keeps the connection until `done` (its PUBACKs still arrive after
/// the last publish is queued) and answers its CPU seconds on `result`, or at once the error
/// that stopped it.
fn publish_on_own_thread(
    broker: &BrokerUrl,
    messages: usize,
    size: usize,
    mut progress: Vec<watch::Receiver<usize>>,
    window: usize,
    done: oneshot::Receiver<()>,
    result: oneshot::Sender<anyhow::Result<f64>>,
) -> anyhow::Result<()> {
    let broker = broker.clone();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let subscribers = progress.len().max(1);
    std::thread::Builder::new().name("raw-publisher".into()).spawn(move || {
        let cpu_before = super::proc_stats::thread_cpu_seconds();
        let outcome = runtime.block_on(async move {
            let (publisher, mut pub_loop) =
                client(&broker, &format!("rocky-bench-pub-{}", std::process::id()));
            let driver = tokio::spawn(async move { while pub_loop.poll().await.is_ok() {} });
            let payload = Bytes::from(vec![0xa5u8; size]);
            for n in 0..messages {
                let (s, sent) = (n % subscribers, n / subscribers);
                if sent >= window
                    && progress[s].wait_for(|got| sent.saturating_sub(*got) < window).await.is_err()
                {
                    break; // that subscriber stopped; the counts decide
                }
                publisher
                    .publish_bytes(format!("{TOPIC}/{s}"), QoS::AtLeastOnce, false, payload.clone())
                    .await?;
            }
            let _ = done.await;
            driver.abort();
            anyhow::Ok(())
        });
        let _ = result.send(outcome.map(|()| super::proc_stats::thread_cpu_seconds() - cpu_before));
    })?;
    Ok(())
}
