//! Rocky's Prometheus metrics, served as text at `GET /metrics`.
//!
//! One [`Metrics`] per runtime; clones share the same counters. Counting is a few atomic adds on
//! the paths that already run (a publish, a response, a reconnect), so it costs the engine
//! nothing measurable. Gauges that describe the engine's whole state (jobs by state) are filled
//! in when a scrape asks, from the same status the `/healthz` endpoint reads.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::engine::JobState;
use crate::firmware::LibraryUse;
use crate::mqtt::FailureKind;
use crate::protocol::CommandType;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// A `[[notify]]` receiver (its place in the config, from 0: its URL may hold a secret) and
/// what became of a notification.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotifyLabel {
    receiver: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    r#type: &'static str,
}

struct Inner {
    registry: Registry,
    jobs: Family<StateLabel, Gauge>,
    finished: Family<OutcomeLabel, Counter>,
    chunks_sent: Counter,
    bytes_sent: Counter,
    awaiting_ack: Gauge,
    connected: Gauge,
    reconnects: Family<ReasonLabel, Counter>,
    responses: Family<TypeLabel, Counter>,
    ignored: Counter,
    undecodable: Counter,
    unsolicited: Counter,
    statuses: Family<OutcomeLabel, Counter>,
    foreign_commands: Counter,
    foreign_devices: Counter,
    delivery_stalls: Counter,
    event_clients: Gauge,
    image_bytes_held: Gauge,
    image_bytes_cached: Gauge,
    delta_bytes_saved: Counter,
    delta_builds: Family<OutcomeLabel, Counter>,
    notifications: Family<NotifyLabel, Counter>,
    delta_build_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    /// The patch builds already counted (the library keeps the running totals).
    delta_counted: std::sync::Mutex<crate::firmware::BuildStats>,
    log_lines_dropped: Counter,
    /// The dropped log lines already counted (the log writer keeps the running total).
    log_lines_counted: std::sync::atomic::AtomicU64,
}

/// The stdout log writer's count of the lines it dropped, once `rocky serve` set one up.
static DROPPED_LOG_LINES: std::sync::OnceLock<tracing_appender::non_blocking::ErrorCounter> =
    std::sync::OnceLock::new();

/// Has `/metrics` report the lines the process's log writer dropped (one writer a process:
/// the first call wins).
pub fn count_dropped_log_lines(counter: tracing_appender::non_blocking::ErrorCounter) {
    let _ = DROPPED_LOG_LINES.set(counter);
}

/// The runtime's metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(None)
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Registers every metric; `store_writes` is the job store's write latency, when there is one.
    pub fn new(store_writes: Option<Histogram>) -> Self {
        let mut registry = Registry::with_prefix("rocky");
        let jobs = Family::<StateLabel, Gauge>::default();
        registry.register("jobs", "Jobs held by the engine, by state", jobs.clone());
        let finished = Family::<OutcomeLabel, Counter>::default();
        registry.register("jobs_finished", "Jobs that reached a final state, by outcome", finished.clone());
        let chunks_sent = Counter::default();
        registry.register("chunks_sent", "Firmware chunks handed to the broker", chunks_sent.clone());
        let bytes_sent = Counter::default();
        registry.register("chunk_bytes_sent", "Firmware bytes handed to the broker", bytes_sent.clone());
        let awaiting_ack = Gauge::default();
        registry.register(
            "publishes_awaiting_ack",
            "QoS 1 publishes the broker has not acknowledged yet",
            awaiting_ack.clone(),
        );
        let connected = Gauge::default();
        registry.register(
            "broker_connected",
            "1 while connected and subscribed to the broker",
            connected.clone(),
        );
        let reconnects = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "broker_reconnects",
            "Broker connections that failed or were lost, by kind of reason",
            reconnects.clone(),
        );
        let responses = Family::<TypeLabel, Counter>::default();
        registry.register("responses", "Device responses decoded, by type", responses.clone());
        let ignored = Counter::default();
        registry.register(
            "responses_ignored",
            "Responses that changed nothing (unknown job, wrong phase)",
            ignored.clone(),
        );
        let undecodable = Counter::default();
        registry.register(
            "responses_undecodable",
            "Frames on a response topic that did not decode",
            undecodable.clone(),
        );
        let unsolicited = Counter::default();
        registry.register(
            "responses_unsolicited",
            "Responses from devices with no job from this Rocky (counted, never added to the inventory)",
            unsolicited.clone(),
        );
        let statuses = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "statuses",
            "Device statuses by what became of them: kept (in the inventory), unlisted (kept aside for a device \
             the inventory does not hold), refused (no room aside), cleared, invalid (did not decode)",
            statuses.clone(),
        );
        let delta_bytes_saved = Counter::default();
        registry.register(
            "delta_bytes_saved",
            "Bytes not sent because a device took a patch instead of the whole image (succeeded jobs)",
            delta_bytes_saved.clone(),
        );
        let delta_builds = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "delta_builds",
            "Patches built, by outcome: built, failed (or over their time budget)",
            delta_builds.clone(),
        );
        let notifications = Family::<NotifyLabel, Counter>::default();
        registry.register(
            "notifications",
            "Notifications for [[notify]] receivers, by receiver (its place in the config, from 0) and \
             outcome: sent, retried (an attempt failed and is tried again), failed (given up after its \
             retries), dropped (the receiver's queue was full)",
            notifications.clone(),
        );
        let delta_build_seconds = Counter::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "delta_build_seconds",
            "Time spent building patches, in seconds",
            delta_build_seconds.clone(),
        );
        let foreign_commands = Counter::default();
        registry.register(
            "foreign_commands",
            "Commands on a device's command topic that this Rocky did not send (another publisher)",
            foreign_commands.clone(),
        );
        let foreign_devices = Counter::default();
        registry.register(
            "foreign_command_devices",
            "Devices on whose command topic another publisher was first seen",
            foreign_devices.clone(),
        );
        let delivery_stalls = Counter::default();
        registry.register(
            "delivery_stalls",
            "Times the broker stopped delivering to Rocky (its own probe did not come back) and Rocky reconnected",
            delivery_stalls.clone(),
        );
        let event_clients = Gauge::default();
        registry.register("event_clients", "Clients connected to /events", event_clients.clone());
        let image_bytes_held = Gauge::default();
        registry.register(
            "image_bytes_held",
            "Bytes of distinct firmware images in memory (queued and active jobs' and the cache's)",
            image_bytes_held.clone(),
        );
        let image_bytes_cached = Gauge::default();
        registry.register(
            "image_bytes_cached",
            "Bytes of images the cache keeps (bounded by firmware.cache_bytes)",
            image_bytes_cached.clone(),
        );
        // Read once: the runtime's worker count is fixed when it starts (main.rs).
        let async_workers = Gauge::<i64>::default();
        registry.register(
            "async_workers",
            "Worker threads of the async runtime Rocky runs on (1 unless TOKIO_WORKER_THREADS says otherwise)",
            async_workers.clone(),
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            async_workers.set(i64::try_from(runtime.metrics().num_workers()).unwrap_or(i64::MAX));
        }
        let log_lines_dropped = Counter::default();
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because stdout was not read as fast as they came",
            log_lines_dropped.clone(),
        );
        if let Some(histogram) = store_writes {
            registry.register("store_write_seconds", "Time one job-store transaction took", histogram);
        }
        Self {
            inner: Arc::new(Inner {
                registry,
                jobs,
                finished,
                chunks_sent,
                bytes_sent,
                awaiting_ack,
                connected,
                reconnects,
                responses,
                ignored,
                undecodable,
                unsolicited,
                statuses,
                foreign_commands,
                foreign_devices,
                delivery_stalls,
                event_clients,
                image_bytes_held,
                image_bytes_cached,
                delta_bytes_saved,
                delta_builds,
                notifications,
                delta_build_seconds,
                delta_counted: std::sync::Mutex::default(),
                log_lines_dropped,
                log_lines_counted: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    /// The histogram buckets for store writes: 0.1 ms to about 3 s.
    pub fn store_write_histogram() -> Histogram {
        Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 16))
    }

    pub fn chunk_sent(&self, bytes: usize) {
        self.inner.chunks_sent.inc();
        self.inner.bytes_sent.inc_by(bytes as u64);
    }

    pub fn set_awaiting_ack(&self, outstanding: u16) {
        self.inner.awaiting_ack.set(i64::from(outstanding));
    }

    pub fn set_connected(&self, connected: bool) {
        self.inner.connected.set(i64::from(connected));
    }

    pub fn reconnect(&self, kind: FailureKind) {
        let reason = match kind {
            FailureKind::Network => "network",
            FailureKind::NoAnswer => "no_answer",
            FailureKind::Tls => "tls",
            FailureKind::Refused => "refused",
            FailureKind::TakenOver => "session_taken_over",
            FailureKind::Closed => "closed_by_broker",
            FailureKind::TooLarge => "message_too_large",
            FailureKind::Other => "other",
        };
        self.inner.reconnects.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub fn response(&self, command: CommandType) {
        self.inner.responses.get_or_create(&TypeLabel { r#type: command.name() }).inc();
    }

    pub fn ignored(&self) {
        self.inner.ignored.inc();
    }

    /// Responses ignored so far (for no job this instance drives, or out of turn).
    pub fn ignored_total(&self) -> u64 {
        self.inner.ignored.get()
    }

    pub fn undecodable(&self) {
        self.inner.undecodable.inc();
    }

    /// A device status arrived; `outcome` is what became of it (see the family's help).
    pub fn status(&self, outcome: &'static str) {
        self.inner.statuses.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// A response from a device that has no job from this Rocky.
    pub fn unsolicited(&self) {
        self.inner.unsolicited.inc();
    }

    /// A command this Rocky did not send; `first_for_device` when it is the first on that device.
    pub fn foreign_command(&self, first_for_device: bool) {
        self.inner.foreign_commands.inc();
        if first_for_device {
            self.inner.foreign_devices.inc();
        }
    }

    pub fn delivery_stall(&self) {
        self.inner.delivery_stalls.inc();
    }

    /// A job that took a patch succeeded: what whole-image sending would have cost more.
    /// What became of a notification for receiver `receiver` (`sent`, `retried`, `failed`,
    /// `dropped`).
    pub fn notification(&self, receiver: usize, outcome: &'static str) {
        self.inner
            .notifications
            .get_or_create(&NotifyLabel { receiver: receiver.to_string(), outcome })
            .inc();
    }

    /// How many notifications for `receiver` came to `outcome` so far.
    pub fn notifications(&self, receiver: usize, outcome: &'static str) -> u64 {
        self.inner.notifications.get_or_create(&NotifyLabel { receiver: receiver.to_string(), outcome }).get()
    }

    pub fn delta_saved(&self, bytes: u64) {
        self.inner.delta_bytes_saved.inc_by(bytes);
    }

    pub fn finished(&self, state: JobState) {
        self.inner.finished.get_or_create(&OutcomeLabel { outcome: state.as_str() }).inc();
    }

    /// Counts an `/events` client for as long as the returned guard lives.
    pub fn event_client(&self) -> EventClientGuard {
        self.inner.event_clients.inc();
        EventClientGuard(self.inner.event_clients.clone())
    }

    /// The text exposition, with the job gauges set from `counts` and the image gauges from
    /// `images` first.
    pub fn render(&self, counts: &std::collections::BTreeMap<JobState, usize>, images: LibraryUse) -> String {
        self.inner.image_bytes_held.set(i64::try_from(images.held_bytes).unwrap_or(i64::MAX));
        self.inner.image_bytes_cached.set(i64::try_from(images.cached_bytes).unwrap_or(i64::MAX));
        // The library counts its builds; the counters take what is new since the last render.
        if let Ok(mut counted) = self.inner.delta_counted.lock() {
            let now = images.delta_builds;
            let built =
                |label| self.inner.delta_builds.get_or_create(&OutcomeLabel { outcome: label }).clone();
            built("built").inc_by(now.built.saturating_sub(counted.built));
            built("failed").inc_by(now.failed.saturating_sub(counted.failed));
            self.inner.delta_build_seconds.inc_by((now.seconds - counted.seconds).max(0.0));
            *counted = now;
        }
        if let Some(dropped) = DROPPED_LOG_LINES.get() {
            let now = dropped.dropped_lines() as u64;
            let counted = self.inner.log_lines_counted.swap(now, std::sync::atomic::Ordering::Relaxed);
            self.inner.log_lines_dropped.inc_by(now.saturating_sub(counted));
        }
        for state in JobState::ALL {
            let count = counts.get(&state).copied().unwrap_or(0);
            self.inner.jobs.get_or_create(&StateLabel { state: state.as_str() }).set(count as i64);
        }
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.inner.registry);
        text
    }
}

/// Decrements the `/events` client gauge when the stream ends.
pub struct EventClientGuard(Gauge);

impl Drop for EventClientGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text_with_every_family() {
        let metrics = Metrics::new(Some(Metrics::store_write_histogram()));
        metrics.chunk_sent(4096);
        metrics.reconnect(FailureKind::TakenOver);
        metrics.response(CommandType::RequestAck);
        metrics.finished(JobState::Succeeded);
        let guard = metrics.event_client();
        let counts = std::collections::BTreeMap::from([(JobState::Queued, 3)]);
        let text = metrics.render(
            &counts,
            LibraryUse { held_bytes: 5, cached_bytes: 0, images: 1, ..LibraryUse::default() },
        );
        assert!(text.contains("rocky_chunks_sent_total 1"), "{text}");
        assert!(text.contains("rocky_chunk_bytes_sent_total 4096"), "{text}");
        assert!(text.contains("rocky_jobs{state=\"queued\"} 3"), "{text}");
        assert!(text.contains("rocky_broker_reconnects_total{reason=\"session_taken_over\"} 1"), "{text}");
        assert!(text.contains("rocky_event_clients 1"), "{text}");
        assert!(text.contains("rocky_image_bytes_held 5"), "{text}");
        drop(guard);
        assert!(
            metrics
                .render(
                    &counts,
                    LibraryUse { held_bytes: 5, cached_bytes: 0, images: 1, ..LibraryUse::default() }
                )
                .contains("rocky_event_clients 0")
        );
    }
}
