//! The task that owns the engine: it feeds the engine requests, broker messages and timer ticks,
//! and carries out what the engine asks for, never sending more than `window` unacknowledged
//! publishes. Because it never waits on anything but its own inputs, no subscriber, client or
//! device can stall it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::sync::{broadcast, mpsc, watch};

use super::handle::Request;
use super::messenger::FromBroker;
use super::persist::Persistence;
use super::{
    Clock, ConnectionState, Envelope, JobTable, RuntimeError, RuntimeEvent, Traffic, TrafficDirection,
    sleep_until,
};
use crate::engine::{Engine, Event, JobId, JobSpec, JobState, Publish, PublishKind, RolloutId, SubmitError};
use crate::metrics::Metrics;
use crate::mqtt::Publisher;
use crate::protocol::{TopicKind, decode_response, describe_with};
use crate::snapshot::JobSnapshot;
use crate::store::NewJob;

/// The most of an incoming frame kept in a traffic event (its `size` says how big it was).
pub const MAX_TRAFFIC_PAYLOAD: usize = 4096;
/// The most of an outgoing frame kept: all of a command, the first bytes of a chunk.
pub const CHUNK_PREVIEW: usize = 64;

pub struct Driver {
    pub engine: Engine,
    /// Where publishes go; replaced when the messenger rebuilds its session.
    pub publisher: Publisher,
    pub metrics: Metrics,
    pub requests: mpsc::Receiver<Request>,
    pub from_broker: mpsc::Receiver<FromBroker>,
    pub events: broadcast::Sender<Arc<Envelope>>,
    /// Subscribers that take no chatter (traffic, per-chunk progress).
    pub quiet: super::QuietCount,
    pub clock: Clock,
    /// At most this many publishes are unacknowledged (at least 1).
    pub window: u16,
    /// Publishes handed to rumqttc and not yet acknowledged by the broker.
    pub outstanding: u16,
    pub connection: ConnectionState,
    pub seq: u64,
    /// Undecodable frames are logged once per device per minute.
    pub bad_frames: super::LogLimiter,
    /// Tells the messenger to stop when the driver ends.
    pub stop: watch::Sender<bool>,
    /// The job store, when there is one.
    pub persistence: Option<Persistence>,
    /// Every job's latest snapshot, for listings and followers.
    pub table: Arc<JobTable>,
    /// Jobs changed since the table was last brought up to date.
    pub dirty: BTreeSet<JobId>,
    /// When the table last took the changed jobs: progress alone waits for
    /// [`PROGRESS_REFRESH`] after it.
    pub refreshed_at: Instant,
    /// The devices Rocky knows: the driver tells it what happens on the wire.
    pub inventory: crate::inventory::Inventory,
    /// Whether a manifest on the wire verifies under the keys Rocky trusts, for the traffic view.
    pub manifest_check: crate::protocol::ManifestCheck,
    /// Connected to the broker.
    pub broker_up: bool,
    /// Whether this instance may send and create jobs with a store shared with others: closed
    /// by the claims task when its lease could not be renewed, and checked against the lease
    /// before anything is sent (a process stopped past its lease must not send one more chunk
    /// before the claims task notices: another instance may drive those jobs by now).
    pub fence: super::cluster::Fence,
    /// Rocky's own message through the broker and back: proof that answers still arrive.
    pub probe: super::probe::DeliveryProbe,
    /// Asks the messenger for a clean session (why, in words) when the probe does not return.
    pub restart: mpsc::Sender<String>,
    /// Commands seen on devices' topics that this Rocky may not have sent.
    pub commands: super::command_watch::CommandWatch,
    /// Which publishes the broker has acknowledged (or refused).
    pub tracker: super::publish_tracker::PublishTracker,
    /// The last publish the broker refused: when, and what it said (health shows it a minute).
    pub refused: Option<(Instant, String)>,
    /// "No job" answers to AWS devices, at most one per device per interval.
    pub no_job_answers: super::LogLimiter,
    /// Those answers, waiting for the next pass (bounded).
    pub no_job_due: std::collections::VecDeque<(String, bytes::Bytes)>,
}

/// Progress alone (chunks sent and confirmed) reaches the job table at most this often; a
/// state change, a new job or a note goes at once, and so does every change before a request
/// is answered. One table update per chunk woke every follower (the rollout planner, each
/// console and event stream) once per chunk and was a sixth of Rocky's CPU in a push round.
pub const PROGRESS_REFRESH: std::time::Duration = std::time::Duration::from_millis(20);

/// Messages from the broker handled between two pumps at most, so requests and timers still
/// get their turn under a flood of answers.
const BROKER_BATCH: usize = 256;

/// How long `/healthz` and the console say the broker refused a publish.
const REFUSAL_SHOWN: std::time::Duration = std::time::Duration::from_secs(60);

impl Driver {
    pub async fn run(mut self) {
        let mut shutdown_reply = None;
        let mut flush = tokio::time::interval(crate::store::FLUSH_INTERVAL);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.pump().await;
            let progress_due = (!self.dirty.is_empty()).then(|| self.refreshed_at + PROGRESS_REFRESH);
            let wake = [
                self.engine.next_wakeup(),
                self.probe.next_wakeup(),
                self.commands.next_wakeup(),
                progress_due,
            ]
            .into_iter()
            .flatten()
            .min()
            .map(tokio::time::Instant::from_std);
            tokio::select! {
                _ = flush.tick(), if self.persistence.is_some() => {
                    if let Some(persistence) = self.persistence.as_mut() {
                        persistence.flush(&self.engine, &self.clock, &self.inventory);
                    }
                }
                request = self.requests.recv() => match request {
                    Some(Request::Shutdown(reply)) => {
                        shutdown_reply = Some(reply);
                        break;
                    }
                    Some(request) => self.handle_request(request),
                    None => break,
                },
                message = self.from_broker.recv() => match message {
                    Some(FromBroker::Stopped) | None => break,
                    Some(message) => {
                        self.handle_broker(message);
                        if !self.handle_waiting_broker_messages() {
                            break;
                        }
                    }
                },
                _ = sleep_until(wake), if wake.is_some() => {}
            }
        }
        // What the last messages did (a batch may end with the messenger's stop) and progress
        // that waited for its refresh: recorded and in the table before the last write.
        self.drain_events();
        if let Some(persistence) = self.persistence.as_mut() {
            persistence.flush_all(&self.engine, &self.clock, &self.inventory).await;
        }
        let _ = self.stop.send(true);
        // Let the messenger say goodbye to the broker, then report the end.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
            while let Some(message) = self.from_broker.recv().await {
                if matches!(message, FromBroker::Stopped) {
                    break;
                }
            }
        })
        .await;
        self.emit(SystemTime::now(), RuntimeEvent::Connection(ConnectionState::Stopped));
        if let Some(reply) = shutdown_reply {
            let _ = reply.send(());
        }
    }

    /// Lets the engine send only while the broker is up, the claims task has not fenced this
    /// instance, and its lease on a shared store holds by this process's clock (checked before
    /// every send: a process that was stopped past its lease must not send one more chunk).
    fn gate(&mut self, now: Instant) {
        let allowed = self.broker_up && self.fence.open();
        if allowed != self.engine.is_connected() {
            self.engine.set_connected(allowed, now);
        }
    }

    /// Fires due timers, sends what the window allows and publishes the engine's events.
    async fn pump(&mut self) {
        let now = self.clock.now();
        self.gate(now);
        self.engine.tick(now);
        self.check_delivery(now).await;
        self.send_no_job_answers().await;
        self.judge_commands(now);
        while self.outstanding < self.window {
            let Some(publish) = self.engine.poll_publish(now) else { break };
            self.send(publish).await;
        }
        self.metrics.set_awaiting_ack(self.outstanding);
        self.drain(false);
    }

    /// Publishes the engine's pending events and brings the job table up to date. Requests
    /// call it before they answer, so a job a caller was just told about is already listed.
    fn drain_events(&mut self) {
        self.drain(true);
    }

    /// Publishes the engine's pending events; brings the table up to date when asked to, when
    /// something other than progress happened, or when progress has waited
    /// [`PROGRESS_REFRESH`].
    fn drain(&mut self, refresh: bool) {
        let mut refresh = refresh;
        while let Some((at, event)) = self.engine.poll_event() {
            // An ignored response changes no job: a broker client sending made-up answers must
            // not bring back a table update per message.
            refresh |=
                !matches!(event, Event::ChunkSent { .. } | Event::Progress { .. } | Event::Ignored { .. });
            match &event {
                Event::StateChanged { job, device, to, .. } if to.is_final() => {
                    self.metrics.finished(*to);
                    if self.engine.is_aws_job(*job) {
                        self.aws_job_ended(device, self.clock.now());
                    }
                    if *to == crate::engine::JobState::Succeeded
                        && let Some(view) = self.engine.job(*job)
                        && view.delta.is_some()
                    {
                        self.metrics.delta_saved(view.image.size().saturating_sub(view.bytes_sent));
                    }
                }
                Event::Ignored { .. } => self.metrics.ignored(),
                _ => {}
            }
            self.tell_inventory(&event);
            if let Some(persistence) = self.persistence.as_mut() {
                persistence.record(self.clock.unix_ms(at), &event, &self.engine);
            }
            if let Some(job) = event.job() {
                self.dirty.insert(job);
            }
            self.emit(self.clock.wall(at), RuntimeEvent::Engine(event));
        }
        let now = self.clock.now();
        if refresh || now >= self.refreshed_at + PROGRESS_REFRESH {
            self.refresh_table();
            self.refreshed_at = now;
        }
        // The table has the finished jobs' last snapshots now (and the store's writer reads
        // them there): the engine keeps only a line of each.
        self.engine.forget_finished();
    }

    /// What a job's life tells of its device: its last job, and the image that succeeded.
    fn tell_inventory(&self, event: &Event) {
        match event {
            Event::Created(view) => self.inventory.job_created(&view.device, view.id),
            Event::StateChanged {
                job,
                device,
                to: crate::engine::JobState::Succeeded | crate::engine::JobState::UpToDate,
                ..
            } => {
                if let Some(view) = self.engine.job(*job) {
                    self.inventory.succeeded(device, crate::snapshot::ImageInfo::from(&view.image));
                }
            }
            _ => {}
        }
    }

    /// Brings the changed jobs' snapshots in the table up to date: every change of every field
    /// reaches followers this way, whether or not an event announced it.
    fn refresh_table(&mut self) {
        if self.dirty.is_empty() {
            return;
        }
        let clock = self.clock;
        let snapshots: Vec<JobSnapshot> = std::mem::take(&mut self.dirty)
            .into_iter()
            .filter_map(|id| self.engine.job(id))
            .map(|view| JobSnapshot::new(&view, &clock))
            .collect();
        self.table.upsert(snapshots);
    }

    async fn send(&mut self, publish: Publish) {
        // A publish may change a job without an event (a request re-sent after a reconnect
        // counts an attempt): the table and the store both hear of it.
        self.dirty.insert(publish.job);
        if let Some(persistence) = self.persistence.as_mut() {
            persistence.touch(publish.job);
        }
        if self.wants_chatter() {
            let text = describe_with(
                self.engine.topics(),
                &publish.topic,
                &publish.payload,
                Some(&self.manifest_check),
            );
            let chunk = match publish.kind {
                PublishKind::Chunk { id, .. } => Some(id),
                PublishKind::AwsBlock { index, .. } => Some(index + 1),
                PublishKind::Command(_) | PublishKind::AwsExecution => None,
            };
            let traffic = Traffic {
                direction: TrafficDirection::Out,
                topic: publish.topic.clone(),
                qos: 1,
                size: publish.payload.len(),
                text,
                // A chunk's start is copied, never sliced: a slice would keep the whole image
                // alive for as long as a reader keeps the event. Commands are their own bytes.
                payload: match chunk {
                    Some(_) => bytes::Bytes::copy_from_slice(
                        &publish.payload[..publish.payload.len().min(CHUNK_PREVIEW)],
                    ),
                    None => publish.payload.clone(),
                },
                device: Some(publish.device.clone()),
                job: Some(publish.job),
                decode_error: false,
                chunk,
            };
            self.emit(SystemTime::now(), RuntimeEvent::Traffic(traffic));
        }
        if let PublishKind::Chunk { .. } | PublishKind::AwsBlock { .. } = publish.kind {
            self.metrics.chunk_sent(publish.payload.len());
        }
        let tag = super::publish_tracker::Tag {
            job: Some(publish.job),
            chunk: matches!(publish.kind, PublishKind::Chunk { .. }),
            topic: publish.topic.clone(),
            answer: false,
        };
        match self.publisher.publish(publish.topic, publish.payload).await {
            Ok(()) => {
                self.outstanding += 1;
                self.tracker.queued(tag);
            }
            Err(e) => tracing::error!(error = %e, "publish could not be queued"),
        }
    }

    /// Sends the delivery probe when it is due, and when it has not come back in time says
    /// the broker stopped delivering (health, log, console) and has the messenger start a
    /// clean session.
    async fn check_delivery(&mut self, now: Instant) {
        let waited = match self.probe.overdue(now) {
            Some(super::probe::Overdue::Stalled(waited)) => Some(waited),
            Some(super::probe::Overdue::NeverBack) => {
                tracing::warn!(
                    "Rocky's delivery probe never came back in {} tries: the broker does not let Rocky publish \
                     to or read its probe topic (an ACL); the probe is off, so a broker that stops delivering \
                     to Rocky goes unnoticed",
                    super::probe::NEVER_BACK
                );
                None
            }
            None => None,
        };
        if let Some(waited) = waited {
            let reason = format!(
                "the broker stopped delivering messages to Rocky: its own delivery probe did not come back \
                 within {} s, so device answers are not arriving either (a broker that drops oversized \
                 messages for Rocky can use up its in-flight quota); reconnecting with a clean session",
                waited.as_secs()
            );
            self.broker_up = false;
            self.outstanding = 0;
            self.gate(now);
            self.connection = ConnectionState::Disconnected { reason: reason.clone() };
            self.emit(SystemTime::now(), RuntimeEvent::Connection(self.connection.clone()));
            self.emit(
                SystemTime::now(),
                RuntimeEvent::Alert(super::Alert { device: None, text: reason.clone() }),
            );
            let _ = self.restart.try_send(reason);
            return;
        }
        if self.outstanding < self.window
            && let Some((topic, payload)) = self.probe.due(now)
        {
            let tag =
                super::publish_tracker::Tag { job: None, chunk: false, topic: topic.clone(), answer: false };
            match self.publisher.publish(topic, payload).await {
                Ok(()) => {
                    self.outstanding += 1;
                    self.tracker.queued(tag);
                }
                Err(e) => tracing::error!(error = %e, "the delivery probe could not be queued"),
            }
        }
    }

    /// Commands on devices' topics that are still nobody's here after the grace: said once
    /// per device (log, console, `/metrics`), counted always.
    fn judge_commands(&mut self, now: Instant) {
        let table = self.table.clone();
        let found = self.commands.due(now, |job, device| table_knows(&table, job, device));
        self.report_foreign(found);
    }

    fn report_foreign(&mut self, found: Vec<super::command_watch::Foreign>) {
        for foreign in found {
            self.metrics.foreign_command(foreign.first);
            if !foreign.first {
                continue;
            }
            let job = foreign.job.map_or("an undecodable command".to_owned(), |job| format!("job {job}"));
            let topic = self.engine.topics().cmd(&foreign.device);
            let text = format!(
                "another publisher commands device {} ({job} on {topic}, which this Rocky did not send): \
                 another Rocky with its own store on this broker, or a stranger; its answers may complete \
                 the wrong job",
                foreign.device
            );
            tracing::warn!(device = %foreign.device, job = ?foreign.job, %topic, "{text}");
            self.emit(
                SystemTime::now(),
                RuntimeEvent::Alert(super::Alert { device: Some(foreign.device), text }),
            );
        }
    }

    /// The broker refused a publish (MQTT 5): its job ends `failed` naming the topic, and
    /// `/healthz`, the log and the console say the broker refuses Rocky's publishes (said
    /// again only when the broker's reason changes, or a minute later: one line, not one per
    /// device).
    fn publish_refused(&mut self, topic: String, why: String, job: Option<JobId>, now: Instant) {
        if let Some(job) = job {
            self.engine.publish_refused(job, &topic, &why, now);
        }
        let text = format!("the broker refuses Rocky's publishes: {topic}: {why} (check its ACL for Rocky)");
        let repeat = self.refused.as_ref().is_some_and(|(at, said)| {
            said.ends_with(&format!(": {why} (check its ACL for Rocky)"))
                && now.saturating_duration_since(*at) < REFUSAL_SHOWN
        });
        if repeat {
            if let Some((at, _)) = self.refused.as_mut() {
                *at = now;
            }
            return;
        }
        self.refused = Some((now, text.clone()));
        tracing::warn!(job = ?job, %topic, reason = %why, "the broker refused a publish");
        self.emit(SystemTime::now(), RuntimeEvent::Alert(super::Alert { device: None, text }));
    }

    fn handle_request(&mut self, request: Request) {
        let now = self.clock.now();
        match request {
            Request::Submit { specs, rollout, reply } if self.persistence.is_some() => {
                self.submit_durably(specs, rollout, reply)
            }
            Request::SubmitAs { specs, ids, created_at_ms, rollout, reply } => {
                let mut views = Vec::with_capacity(specs.len());
                let created = self.clock.instant(created_at_ms);
                for (spec, id) in specs.into_iter().zip(ids) {
                    let spec = self.with_reported(spec);
                    // The specs passed the same checks before their ids were reserved and their
                    // rows written, so this cannot fail short of a bug; if it did, it is said.
                    match self.engine.submit_as(id, spec, rollout, now) {
                        Ok(id) => {
                            self.engine.set_created_at(id, created);
                            views.extend(self.engine.job(id));
                        }
                        Err(e) => {
                            tracing::error!(id = id.get(), error = %e, "a recorded job could not start")
                        }
                    }
                }
                self.drain_events();
                let _ = reply.send(Ok(views));
            }
            Request::Prune { keep, max_age } => {
                let cutoff = max_age.and_then(|age| now.checked_sub(age));
                let ids = self.engine.prune(keep, cutoff);
                self.table.remove(&ids);
                if let (false, Some(persistence)) = (ids.is_empty(), self.persistence.as_ref()) {
                    let store = persistence.store.clone();
                    tokio::spawn(async move { store.delete(ids).await });
                }
            }
            Request::History { job, reply } => {
                let store = self.persistence.as_ref().map(|p| p.store.clone());
                tokio::spawn(async move {
                    let result = match store {
                        Some(store) => store.history(job).await.map_err(|e| e.to_string()),
                        None => Err("this Rocky keeps no job history (it runs without a store)".to_owned()),
                    };
                    let _ = reply.send(result);
                });
            }
            Request::Submit { specs, rollout, reply } => {
                // Every spec is checked and every id reserved before any job exists: all or none.
                let result = specs
                    .iter()
                    .try_for_each(|spec| self.engine.check(spec))
                    .and_then(|()| self.engine.reserve(specs.len()))
                    .and_then(|first| {
                        let mut views = Vec::with_capacity(specs.len());
                        for (id, spec) in first.and_following().zip(specs) {
                            let spec = self.with_reported(spec);
                            let id = self.engine.submit_as(id, spec, rollout, now)?;
                            views.extend(self.engine.job(id));
                        }
                        Ok(views)
                    });
                self.drain_events();
                let _ = reply.send(result.map_err(RuntimeError::from));
            }
            Request::Cancel { job: id, reply } => {
                let result = self.engine.cancel(id, now).map(|()| self.engine.job(id));
                self.drain_events();
                let answer = result.and_then(|view| view.ok_or(crate::engine::CancelError::NotFound(id)));
                // A cancel is answered once it is on disk: it survives a crash right after.
                match (self.persistence.as_mut(), answer.is_ok()) {
                    (Some(persistence), true) => {
                        persistence.flush_then(&self.engine, &self.clock, reply, answer)
                    }
                    _ => {
                        let _ = reply.send(answer);
                    }
                }
            }
            Request::CancelMany { jobs, reply } => {
                let mut not_here = Vec::new();
                let mut cancelled = false;
                for (id, only_if_queued) in jobs {
                    if only_if_queued && self.engine.job(id).is_some_and(|job| job.state != JobState::Queued)
                    {
                        continue;
                    }
                    match self.engine.cancel(id, now) {
                        Ok(()) => cancelled = true,
                        Err(crate::engine::CancelError::NotFound(id)) => not_here.push((id, only_if_queued)),
                        // It ended meanwhile: its end stands.
                        Err(_) => {}
                    }
                }
                self.drain_events();
                match (self.persistence.as_mut(), cancelled) {
                    (Some(persistence), true) => {
                        persistence.flush_then(&self.engine, &self.clock, reply, not_here)
                    }
                    _ => {
                        let _ = reply.send(not_here);
                    }
                }
            }
            Request::Status(reply) => {
                let store_problem = self.persistence.as_ref().and_then(|p| p.store.problem());
                let publish_refused = self
                    .refused
                    .as_ref()
                    .filter(|(at, _)| now.saturating_duration_since(*at) < REFUSAL_SHOWN)
                    .map(|(_, why)| why.clone());
                let _ = reply.send(super::handle::StatusReply {
                    connection: self.connection.clone(),
                    counts: self.engine.counts(),
                    store_problem,
                    publish_refused,
                });
            }
            Request::Announce(event) => self.emit(SystemTime::now(), event),
            Request::Adopt(views) => {
                let mut adopted = Vec::with_capacity(views.len());
                for super::recover::RestoredJob { view, patch } in views {
                    let id = view.id;
                    if self.engine.job_state(id).is_none() {
                        adopted.push(id);
                        // What the device said it runs goes in first: the job may start at once.
                        let reported = self.reported(&view.device);
                        self.engine.restore_reported(view, patch, reported, now);
                    }
                    // Ended here while its row was not written (this instance's lease ran
                    // out first), or restored as failed (its image is gone): the row says so
                    // now that the job is this instance's again.
                    if self.engine.job_state(id).is_some_and(JobState::is_final)
                        && let Some(persistence) = self.persistence.as_mut()
                    {
                        persistence.touch(id);
                    }
                }
                let snapshots: Vec<JobSnapshot> = adopted
                    .iter()
                    .filter_map(|id| self.engine.job(*id))
                    .map(|v| JobSnapshot::new(&v, &self.clock))
                    .collect();
                self.table.upsert(snapshots);
                self.drain_events();
            }
            Request::ReleaseUnfinished(reply) => {
                // What changed before is written first (while the rows are still this
                // instance's, the writes land); the answer comes once it is committed.
                let unfinished: Vec<JobId> =
                    self.engine.jobs().filter(|job| !job.state.is_final()).map(|job| job.id).collect();
                match self.persistence.as_mut() {
                    Some(persistence) => {
                        let (flushed, committed) = tokio::sync::oneshot::channel();
                        persistence.flush_then(&self.engine, &self.clock, flushed, ());
                        let released = self.engine.release(&unfinished, now);
                        self.table.remove(&released);
                        tokio::spawn(async move {
                            let _ = committed.await;
                            let _ = reply.send(released);
                        });
                    }
                    None => {
                        let released = self.engine.release(&unfinished, now);
                        self.table.remove(&released);
                        let _ = reply.send(released);
                    }
                }
                self.drain_events();
            }
            Request::Fence { hold: fenced } => {
                // Held back like a broker outage: nothing sent, no deadline runs; let go, every
                // active job repeats its last command.
                self.fence.set_fenced(fenced);
                self.engine.set_connected(self.broker_up && self.fence.open(), now);
            }
            Request::Shutdown(reply) => {
                let _ = reply.send(());
            }
        }
    }

    /// Has the store record the jobs before the engine sees them, without waiting here: the
    /// store's answer comes back as `SubmitAs` with the ids they were recorded under. For a
    /// store of one's own the ids are reserved here; a shared store draws them. A submission
    /// the store refuses leaves no job and no row (reserved ids are simply never used).
    fn submit_durably(
        &mut self,
        specs: Vec<JobSpec>,
        rollout: Option<RolloutId>,
        reply: tokio::sync::oneshot::Sender<Result<Vec<crate::engine::JobView>, RuntimeError>>,
    ) {
        if !self.fence.open() {
            let why = super::cluster::fence::LEASE_RAN_OUT.to_owned();
            let _ = reply.send(Err(RuntimeError::Store(crate::store::WriteError::Elsewhere(why))));
            return;
        }
        let created_at = self.clock.unix_ms(self.clock.now());
        let plans: Result<Vec<_>, SubmitError> = specs.iter().map(|spec| self.engine.plan(spec)).collect();
        // One allocator per store: a shared one numbers every instance's jobs itself.
        let draws_ids = self.persistence.as_ref().is_some_and(|p| p.store.draws_ids());
        let planned = plans.and_then(|plans| {
            let first = if draws_ids { None } else { Some(self.engine.reserve(plans.len())?) };
            Ok((first, plans))
        });
        let planned: Result<Vec<NewJob>, SubmitError> = planned.map(|(first, plans)| {
            // The reserved ids in order, or none for each (the store draws them).
            let mut reserved = first.map(JobId::and_following);
            let ids = std::iter::repeat_with(move || reserved.as_mut().and_then(Iterator::next));
            ids.zip(specs.iter().zip(plans))
                .map(|(id, (spec, (chunk_size, chunks_total, interval)))| NewJob {
                    id,
                    device: spec.device.to_string(),
                    image: spec.image.clone(),
                    chunk_size: chunk_size.get(),
                    chunk_interval_ms: interval.as_millis() as u64,
                    chunks_total,
                    created_at,
                    rollout,
                    force: spec.force,
                    manifest: spec.manifest.clone(),
                    delta: spec.delta.as_ref().map(crate::firmware::Patch::info),
                    aws: spec.aws.clone(),
                })
                .collect()
        });
        let jobs = match planned {
            Ok(jobs) => jobs,
            Err(e) => {
                let _ = reply.send(Err(e.into()));
                return;
            }
        };
        if let Some(persistence) = self.persistence.as_ref() {
            persistence.create(super::persist::Creation { jobs, specs, reply });
        }
    }

    /// Handles what else the messenger has queued (at most [`BROKER_BATCH`]) before the next
    /// pump: one pump per PUBACK made Rocky's round trip per chunk a pass over timers, the probe
    /// and the job table each, and kept its window of publishes half empty on a busy broker.
    /// False when the messenger has stopped.
    fn handle_waiting_broker_messages(&mut self) -> bool {
        for _ in 0..BROKER_BATCH {
            match self.from_broker.try_recv() {
                Ok(FromBroker::Stopped) | Err(mpsc::error::TryRecvError::Disconnected) => return false,
                Ok(message) => self.handle_broker(message),
                Err(mpsc::error::TryRecvError::Empty) => break,
            }
        }
        true
    }

    fn handle_broker(&mut self, message: FromBroker) {
        let now = self.clock.now();
        match message {
            FromBroker::Connection(state) => {
                match &state {
                    ConnectionState::Connected => {
                        self.outstanding = 0;
                        self.tracker.clear();
                        self.broker_up = true;
                        self.gate(now);
                    }
                    ConnectionState::Disconnected { .. } => {
                        // A clean session drops whatever was in flight; the engine re-sends.
                        self.outstanding = 0;
                        self.tracker.clear();
                        self.broker_up = false;
                        self.probe.stop();
                        self.gate(now);
                    }
                    _ => {}
                }
                self.connection = state.clone();
                self.emit(SystemTime::now(), RuntimeEvent::Connection(state));
            }
            FromBroker::PubAck { pkid, refused } => {
                self.outstanding = self.outstanding.saturating_sub(1);
                self.metrics.set_awaiting_ack(self.outstanding);
                let Some(tag) = self.tracker.acked(pkid) else { return };
                match (refused, tag.job) {
                    (None, Some(job)) if tag.chunk => self.engine.chunk_acked(job, now),
                    (None, Some(_)) => {}
                    (None, None) if tag.answer => {}
                    (None, None) => self.probe.acked(now),
                    (Some(why), None) if tag.answer => {
                        tracing::debug!(topic = %tag.topic, reason = %why, "the broker refused an answer to a device");
                    }
                    (Some(why), None) => {
                        tracing::warn!(topic = %tag.topic, reason = %why, "the broker refused Rocky's delivery probe; the probe is off");
                        self.probe.refused();
                    }
                    (Some(why), job) => self.publish_refused(tag.topic, why, job, now),
                }
            }
            FromBroker::Sent(pkid) => self.tracker.sent(pkid),
            FromBroker::MaximumPacket(limit) => self.engine.set_broker_max_packet(limit),
            FromBroker::Publisher(publisher) => {
                self.publisher = publisher;
                self.outstanding = 0;
                self.tracker.clear();
            }
            FromBroker::Watching(true) => self.probe.start(now),
            FromBroker::Watching(false) => self.probe.stop(),
            FromBroker::Message { topic, payload, qos } => self.handle_message(topic, payload, qos, now),
            FromBroker::Stopped => {}
        }
    }

    fn handle_message(&mut self, topic: String, payload: bytes::Bytes, qos: u8, now: Instant) {
        if topic.starts_with("$aws/things/") {
            return self.aws_seen(topic, payload, qos, now);
        }
        let device = match self.engine.topics().parse(&topic) {
            Some(TopicKind::CmdResp(device)) => Some(device),
            Some(TopicKind::Probe(name)) => {
                if !self.probe.echoed(&name, &payload, now) {
                    tracing::debug!(%topic, "another Rocky's delivery probe");
                }
                return;
            }
            Some(TopicKind::Cmd(device)) => return self.command_seen(topic, device, payload, qos, now),
            Some(TopicKind::Status(device)) => return self.status_seen(&topic, device, payload, qos, now),
            _ => None,
        };
        let decoded = decode_response(&payload);
        let job = decoded.as_ref().ok().map(|r| JobId::new(r.job_id));
        self.show_incoming(&topic, &payload, qos, device.clone(), job, device.is_some() && decoded.is_err());
        match (device, decoded) {
            (Some(device), Ok(response)) => {
                self.metrics.response(response.command_type());
                // Only an answer to a job Rocky sent that device marks it seen: made-up ids
                // from any broker client are counted, never stored, so they cannot take the
                // inventory's room from the operator.
                if self.engine.has_job_for(JobId::new(response.job_id), &device) {
                    self.inventory.seen(&device, self.clock.unix_ms(now));
                } else {
                    self.metrics.unsolicited();
                }
                self.engine.handle_response(&device, response, now)
            }
            (Some(device), Err(error)) => {
                self.metrics.undecodable();
                if let Some(left_out) = self.bad_frames.allow(device.as_str(), now) {
                    tracing::warn!(%device, %error, left_out, "undecodable response ignored");
                }
            }
            (None, _) => tracing::debug!(%topic, "message on an unexpected topic ignored"),
        }
    }

    /// What the inventory knows the device of `spec` runs, for the engine: whether it is up to
    /// date and whether it confirms updates.
    fn with_reported(&self, mut spec: JobSpec) -> JobSpec {
        spec.reported = self.reported(&spec.device);
        spec
    }

    fn reported(&self, device: &crate::protocol::DeviceId) -> Option<crate::engine::Reported> {
        self.inventory.running_of(device)?.reported()
    }

    /// A device's status (the status extension): kept on the device in the inventory, or aside
    /// (bounded) for a device it does not hold, and shown as traffic. One that does not decode
    /// is counted and said (a line per device a minute at most); the last good one stays.
    fn status_seen(
        &mut self,
        topic: &str,
        device: crate::protocol::DeviceId,
        payload: bytes::Bytes,
        qos: u8,
        now: Instant,
    ) {
        let decoded = crate::protocol::decode_status(&payload);
        self.show_incoming(topic, &payload, qos, Some(device.clone()), None, decoded.is_err());
        let running = match decoded {
            Ok(crate::protocol::StatusUpdate::Cleared) => None,
            Ok(crate::protocol::StatusUpdate::Reported { status, confirm_dropped }) => {
                if confirm_dropped && let Some(left_out) = self.bad_frames.allow(device.as_str(), now) {
                    tracing::warn!(%device, left_out, "a status lists confirm without a boot counter: taken without confirm");
                }
                Some(crate::inventory::Running::new(&status, self.clock.unix_ms(now)))
            }
            Err(error) => {
                self.metrics.status("invalid");
                if let Some(left_out) = self.bad_frames.allow(device.as_str(), now) {
                    tracing::warn!(%device, %error, left_out, "undecodable status ignored; the last good one stays");
                }
                return;
            }
        };
        let cleared = running.is_none();
        let reported = running.as_ref().and_then(crate::inventory::Running::reported);
        self.engine.device_reported(&device, reported, now);
        let outcome = match self.inventory.report_status(&device, running) {
            _ if cleared => "cleared",
            crate::inventory::StatusKept::Inventory => "kept",
            crate::inventory::StatusKept::Unlisted => "unlisted",
            crate::inventory::StatusKept::Refused => "refused",
        };
        self.metrics.status(outcome);
    }

    /// A command on a device's topic: this Rocky's own coming back (nothing to do), or one it
    /// may not have sent, which is shown as traffic and looked at again after the grace.
    fn command_seen(
        &mut self,
        topic: String,
        device: crate::protocol::DeviceId,
        payload: bytes::Bytes,
        qos: u8,
        now: Instant,
    ) {
        let job = crate::protocol::decode_command(&payload).ok().map(|command| JobId::new(command.job_id));
        if job.is_some_and(|job| {
            self.engine.has_job_for(job, &device) || table_knows(&self.table, job, &device)
        }) {
            return;
        }
        self.show_incoming(&topic, &payload, qos, Some(device.clone()), job, job.is_none());
        let table = self.table.clone();
        let judged =
            self.commands.unrecognised(device, job, now, |job, device| table_knows(&table, job, device));
        self.report_foreign(judged);
    }

    /// An incoming message as a traffic event, for whoever follows. Subscribers see at most a
    /// preview of a large frame, always a copy: the received bytes may share an allocation with
    /// the connection's read buffer, which a kept slice would pin, and the event buffer must
    /// not hold megabytes per message a stranger sends.
    pub(super) fn show_incoming(
        &mut self,
        topic: &str,
        payload: &bytes::Bytes,
        qos: u8,
        device: Option<crate::protocol::DeviceId>,
        job: Option<JobId>,
        decode_error: bool,
    ) {
        if !self.wants_chatter() {
            return;
        }
        let traffic = Traffic {
            direction: TrafficDirection::In,
            text: describe_with(self.engine.topics(), topic, payload, Some(&self.manifest_check)),
            size: payload.len(),
            job,
            decode_error,
            device,
            topic: topic.to_owned(),
            qos,
            payload: bytes::Bytes::copy_from_slice(&payload[..payload.len().min(MAX_TRAFFIC_PAYLOAD)]),
            chunk: None,
        };
        self.emit(SystemTime::now(), RuntimeEvent::Traffic(traffic));
    }

    fn has_subscribers(&self) -> bool {
        self.events.receiver_count() > 0
    }

    /// Whether a subscriber takes traffic and per-chunk progress.
    fn wants_chatter(&self) -> bool {
        self.events.receiver_count() > self.quiet.get()
    }

    fn emit(&mut self, time: SystemTime, event: RuntimeEvent) {
        self.seq += 1;
        let wanted = if event.is_chatter() { self.wants_chatter() } else { self.has_subscribers() };
        if wanted {
            let _ = self.events.send(Arc::new(Envelope::new(self.seq, time, event)));
        }
    }
}

/// Whether the job table (this instance's jobs and, on a shared store, every other instance's)
/// holds job `job` for `device`.
fn table_knows(table: &JobTable, job: JobId, device: &crate::protocol::DeviceId) -> bool {
    table.get(job).is_some_and(|snapshot| &snapshot.device_id == device)
}
