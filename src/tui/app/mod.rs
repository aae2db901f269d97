//! The console's state as plain data. Events from the runtime go in through [`App::apply`]; keys
//! go in through `input.rs`; `ui` renders a frame from it and nothing else. No I/O here, so
//! every screen can be built in a test from fixture events.

mod devices;
mod jobs;
mod throughput;
mod traffic;

pub use devices::{DeviceRow, Devices};
pub use jobs::{JobRow, Jobs};
pub use throughput::Throughput;
pub use traffic::{ChunkRun, KEPT_PAYLOAD, TrafficLine, TrafficLog};

use std::path::PathBuf;
use std::time::SystemTime;

use tui_input::Input;

use super::form::Form;
use super::keymap::{Keymap, Scope};
use super::theme::Theme;
use crate::engine::{Event, JobId, JobView};
use crate::runtime::{Clock, ConnectionState, Envelope, Received, RuntimeEvent, TrafficDirection};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Jobs,
    Traffic,
    Devices,
}

impl Pane {
    pub const ALL: [Pane; 3] = [Pane::Jobs, Pane::Traffic, Pane::Devices];

    pub fn scope(self) -> Scope {
        match self {
            Pane::Jobs => Scope::Jobs,
            Pane::Traffic => Scope::Traffic,
            Pane::Devices => Scope::Global,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Pane::Jobs => "Jobs",
            Pane::Traffic => "Traffic",
            Pane::Devices => "Devices",
        }
    }
}

/// What is drawn over the main view, if anything.
#[derive(Debug)]
pub enum Overlay {
    Help { scroll: u16 },
    JobDetail { job: JobId, scroll: u16 },
    TrafficDetail { seq: u64, scroll: u16 },
    Form(Box<Form>),
    Confirm(Confirm),
}

/// A destructive action waiting for `y`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirm {
    Cancel(JobId),
    Retry(JobId),
    Quit { active: usize },
}

/// A table's selection and scroll position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    pub selected: usize,
    pub offset: usize,
}

impl Cursor {
    /// Moves by `delta` within `len` rows and keeps the selection inside a `height`-row window.
    pub fn move_by(&mut self, delta: isize, len: usize, height: usize) {
        let last = len.saturating_sub(1);
        self.selected = self.selected.saturating_add_signed(delta).min(last);
        self.clamp(len, height);
    }

    pub fn clamp(&mut self, len: usize, height: usize) {
        let height = height.max(1);
        self.selected = self.selected.min(len.saturating_sub(1));
        if self.selected < self.offset {
            self.offset = self.selected;
        } else if self.selected >= self.offset + height {
            self.offset = self.selected + 1 - height;
        }
        self.offset = self.offset.min(len.saturating_sub(height));
    }
}

/// The traffic pane follows the newest line unless frozen; selection is by line `seq` so it
/// survives old lines leaving the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrafficView {
    pub follow: bool,
    pub selected: u64,
    pub top: u64,
}

/// A message for the operator in the footer (the result of an action).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    pub text: String,
    pub error: bool,
}

pub struct App {
    pub now: SystemTime,
    /// Seconds east of UTC for local times (fixed in tests).
    pub utc_offset_s: i64,
    pub clock: Clock,
    pub broker: String,
    /// The broker's certificate is not verified (`--insecure-tls`): shown in red.
    pub insecure_tls: bool,
    pub http: Option<String>,
    pub connection: ConnectionState,
    pub jobs: Jobs,
    pub devices: Devices,
    pub traffic: TrafficLog,
    pub throughput: Throughput,
    /// Events the console missed because it fell behind (the stream is bounded).
    pub missed_events: u64,
    /// Frames on a response topic that did not decode, and responses that changed nothing.
    pub bad_frames: u64,
    pub ignored: u64,
    pub focus: Pane,
    pub jobs_cursor: Cursor,
    pub devices_cursor: Cursor,
    pub traffic_view: TrafficView,
    pub overlay: Option<Overlay>,
    pub filters: [String; 3],
    /// The filter being typed, for the focused pane.
    pub filter_input: Option<Input>,
    pub flash: Option<Flash>,
    pub log_path: Option<PathBuf>,
    pub keymap: Keymap,
    pub theme: Theme,
    /// The terminal's size at the last draw, for page sizes and mouse hit-testing.
    pub size: (u16, u16),
    /// Set when something visible changed since the last frame.
    pub dirty: bool,
    /// The chunk size the new-job form offers.
    pub default_chunk: u32,
    /// The jobs pane shows only finished jobs, newest first.
    pub history_view: bool,
}

impl App {
    pub fn new(clock: Clock, broker: String, traffic_lines: usize, theme: Theme) -> Self {
        Self {
            now: SystemTime::now(),
            utc_offset_s: 0,
            clock,
            broker,
            insecure_tls: false,
            http: None,
            connection: ConnectionState::Connecting,
            jobs: Jobs::default(),
            devices: Devices::default(),
            traffic: TrafficLog::new(traffic_lines),
            throughput: Throughput::default(),
            missed_events: 0,
            bad_frames: 0,
            ignored: 0,
            focus: Pane::Jobs,
            jobs_cursor: Cursor::default(),
            devices_cursor: Cursor::default(),
            traffic_view: TrafficView { follow: true, selected: 0, top: 0 },
            overlay: None,
            filters: Default::default(),
            filter_input: None,
            flash: None,
            log_path: None,
            keymap: Keymap::default(),
            theme,
            size: (80, 24),
            dirty: true,
            default_chunk: crate::firmware::DEFAULT_CHUNK_SIZE,
            history_view: false,
        }
    }

    pub fn pane_index(pane: Pane) -> usize {
        match pane {
            Pane::Jobs => 0,
            Pane::Traffic => 1,
            Pane::Devices => 2,
        }
    }

    pub fn filter(&self, pane: Pane) -> &str {
        &self.filters[Self::pane_index(pane)]
    }

    /// Seeds the console with jobs that existed before it subscribed (or after it fell behind).
    pub fn load_jobs(&mut self, views: &[JobView]) {
        for view in views {
            let mut row = jobs::JobRow::from_view(view, &self.clock);
            if let Some(old) = self.jobs.rows.remove(&view.id) {
                row.timeline = old.timeline;
            }
            self.devices.entry(&row.device).job = Some((row.id, row.state));
            self.jobs.rows.insert(view.id, row);
        }
        self.dirty = true;
    }

    pub fn apply(&mut self, received: &Received) {
        self.dirty = true;
        let envelope: &Envelope = match received {
            Received::Missed(n) => {
                self.missed_events += n;
                return;
            }
            Received::Event(envelope) => envelope,
        };
        let at = envelope.time;
        match &envelope.event {
            RuntimeEvent::Connection(state) => self.connection = state.clone(),
            RuntimeEvent::Traffic(traffic) => {
                self.bad_frames += u64::from(traffic.decode_error);
                let total = traffic.job.and_then(|j| self.jobs.rows.get(&j)).map(|r| r.chunks_total);
                self.traffic.push(at, traffic, total);
                if traffic.direction == TrafficDirection::In
                    && let Some(device) = &traffic.device
                {
                    let row = self.devices.entry(device.as_str());
                    row.last_seen = Some(at);
                    row.last_response = Some(traffic.text.clone());
                }
            }
            RuntimeEvent::Engine(event) => self.apply_engine(at, event),
        }
    }

    fn apply_engine(&mut self, at: SystemTime, event: &Event) {
        match event {
            Event::Created(view) => {
                let mut row = jobs::JobRow::from_view(view, &self.clock);
                row.note(
                    at,
                    format!("created: {} ({})", row.image.name(), super::format::bytes(row.image.size())),
                );
                self.devices.job_changed(&row.device, row.id, row.state);
                self.jobs.rows.insert(view.id, row);
            }
            Event::StateChanged { job, device, to, detail, .. } => {
                if let Some(row) = self.jobs.rows.get_mut(job) {
                    row.state = *to;
                    match to {
                        crate::engine::JobState::Requesting => row.attempts = row.attempts.max(1),
                        crate::engine::JobState::Transferring => {
                            row.started.get_or_insert(at);
                        }
                        crate::engine::JobState::Succeeded => row.chunks_done = row.chunks_total,
                        _ => {}
                    }
                    if to.is_final() {
                        row.finished = Some(at);
                        row.error = detail.clone().filter(|_| *to != crate::engine::JobState::Succeeded);
                    }
                    let text = match detail {
                        Some(detail) => format!("{to}: {detail}"),
                        None => to.to_string(),
                    };
                    row.note(at, text);
                }
                self.devices.job_changed(device.as_str(), *job, *to);
            }
            Event::RequestRetried { job, attempt, .. } => {
                if let Some(row) = self.jobs.rows.get_mut(job) {
                    row.attempts = *attempt;
                    row.note(at, format!("no answer: FOTA_REQUEST sent again (attempt {attempt})"));
                }
            }
            Event::ChunkSent { job, chunk, bytes, .. } => {
                self.throughput.add(at, u64::from(*bytes));
                if let Some(row) = self.jobs.rows.get_mut(job) {
                    row.chunks_done = *chunk;
                    row.bytes_sent += u64::from(*bytes);
                }
            }
            Event::Ignored { job, command, reason, .. } => {
                self.ignored += 1;
                if let Some(row) = self.jobs.rows.get_mut(job) {
                    row.note(at, format!("ignored {command}: {reason}"));
                }
            }
        }
    }

    /// Jobs passing the jobs filter, oldest first; in the history view only finished jobs,
    /// the most recently finished first.
    pub fn visible_jobs(&self) -> Vec<&JobRow> {
        let filter = self.filter(Pane::Jobs).to_lowercase();
        if self.history_view {
            let mut rows: Vec<&JobRow> = self
                .jobs
                .rows
                .values()
                .filter(|r| r.state.is_final())
                .filter(|r| {
                    filter.is_empty()
                        || r.device.to_lowercase().contains(&filter)
                        || r.state.as_str().contains(&filter)
                })
                .collect();
            rows.sort_by(|a, b| b.finished.cmp(&a.finished).then(b.id.cmp(&a.id)));
            return rows;
        }
        self.jobs
            .rows
            .values()
            .filter(|r| {
                filter.is_empty()
                    || r.device.to_lowercase().contains(&filter)
                    || r.state.as_str().contains(&filter)
            })
            .collect()
    }

    pub fn visible_devices(&self) -> Vec<&DeviceRow> {
        let filter = self.filter(Pane::Devices).to_lowercase();
        self.devices
            .rows
            .values()
            .filter(|r| filter.is_empty() || r.id.to_lowercase().contains(&filter))
            .collect()
    }

    /// Traffic lines passing the filter (device, job number or any text such as a command name).
    pub fn visible_traffic(&self) -> Vec<&TrafficLine> {
        let filter = self.filter(Pane::Traffic).to_lowercase();
        if filter.is_empty() {
            return self.traffic.iter().collect();
        }
        let job: Option<JobId> = filter.trim_start_matches('#').parse().ok();
        self.traffic
            .iter()
            .filter(|l| {
                job.is_some_and(|j| l.job == Some(j))
                    || l.text.to_lowercase().contains(&filter)
                    || l.device.as_deref().is_some_and(|d| d.to_lowercase().contains(&filter))
            })
            .collect()
    }

    pub fn selected_job(&self) -> Option<&JobRow> {
        self.visible_jobs().get(self.jobs_cursor.selected).copied()
    }

    /// Replaces a job's timeline with the stored one when that one knows more (a job restored
    /// after a restart has no events in this console's memory).
    pub fn load_timeline(&mut self, id: JobId, entries: Vec<(SystemTime, String)>) {
        if let Some(row) = self.jobs.rows.get_mut(&id)
            && entries.len() > row.timeline.len()
        {
            row.timeline = entries;
            self.dirty = true;
        }
    }

    pub fn flash(&mut self, text: impl Into<String>, error: bool) {
        self.flash = Some(Flash { text: text.into(), error });
        self.dirty = true;
    }
}
