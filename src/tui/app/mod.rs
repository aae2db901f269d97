//! The console's state as plain data. Events from the runtime go in through [`App::apply`]; keys
//! go in through `input.rs`; `ui` renders a frame from it and nothing else. No I/O here, so
//! every screen can be built in a test from fixture events.

mod devices;
mod jobs;
mod rollouts;
mod throughput;
mod traffic;

pub use devices::{DeviceRow, Devices};
pub use jobs::{JobRow, Jobs};
pub use rollouts::Rollouts;
pub use throughput::Throughput;
pub use traffic::{ChunkRun, KEPT_PAYLOAD, TrafficLine, TrafficLog};

use std::path::PathBuf;
use std::time::SystemTime;

use tui_input::Input;

use super::form::Form;
use super::keymap::{Keymap, Scope};
use super::source::RolloutVerb;
use super::theme::Theme;
use crate::engine::{Event, JobId};
use crate::rollout::{RolloutId, RolloutView};
use crate::service::{
    Clock, ConnectionState, Envelope, JobChange, JobChanges, Received, RuntimeEvent, TrafficDirection,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Jobs,
    Rollouts,
    Traffic,
    Devices,
}

impl Pane {
    /// In Tab order.
    pub const ALL: [Pane; 4] = [Pane::Jobs, Pane::Rollouts, Pane::Traffic, Pane::Devices];

    pub fn scope(self) -> Scope {
        match self {
            Pane::Jobs => Scope::Jobs,
            Pane::Rollouts => Scope::Rollouts,
            Pane::Traffic => Scope::Traffic,
            Pane::Devices => Scope::Global,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Pane::Jobs => "Jobs",
            Pane::Rollouts => "Rollouts",
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
    RolloutDetail { id: RolloutId, scroll: u16 },
    Form(Box<Form>),
    Confirm(Confirm),
}

/// A destructive action waiting for `y`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirm {
    Cancel(JobId),
    Retry(JobId),
    Rollout(RolloutId, RolloutVerb),
    Quit { active: usize },
}

/// A table's selection and scroll position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    pub selected: usize,
    pub offset: usize,
    /// On the last row wherever the table grows to (the jobs pane: the newest job), until the
    /// operator moves off it; moving back to the last row follows again.
    pub follow: bool,
}

impl Cursor {
    /// On the last row, following it.
    pub fn following() -> Self {
        Self { selected: 0, offset: 0, follow: true }
    }

    /// As drawn for `len` rows in a `height`-row window: on the last row while following.
    pub fn shown(mut self, len: usize, height: usize) -> Self {
        if self.follow {
            self.selected = len.saturating_sub(1);
        }
        self.clamp(len, height);
        self
    }

    /// Moves by `delta` within `len` rows and keeps the selection inside a `height`-row window.
    pub fn move_by(&mut self, delta: isize, len: usize, height: usize) {
        let last = len.saturating_sub(1);
        // From where the selection is drawn: "the newest" is asked for as a huge index, and a
        // move must start from the row shown, or the first keys after it do nothing.
        self.selected = self.selected.min(last).saturating_add_signed(delta).min(last);
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
    /// What happens to queued and running jobs when this console quits, said in the quit dialog.
    pub on_quit: String,
    pub connection: ConnectionState,
    pub jobs: Jobs,
    pub devices: Devices,
    pub rollouts: Rollouts,
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
    pub rollouts_cursor: Cursor,
    pub traffic_view: TrafficView,
    pub overlay: Option<Overlay>,
    pub filters: [String; 4],
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
    /// Attached to a server (`rocky console --server`): quitting stops nothing there.
    pub attached: bool,
    /// The mouse is left to the terminal (`m`), for selecting and copying text.
    pub mouse_released: bool,
    /// Timeline entries for jobs whose snapshot has not arrived yet.
    pub orphan_notes: std::collections::BTreeMap<JobId, Vec<(SystemTime, String)>>,
}

/// Jobs with timeline entries waiting for their snapshot (bounded: a job that never arrives,
/// e.g. one of an ignored answer's unknown job ids, must not grow this).
const MAX_ORPHAN_NOTES: usize = 1024;

impl App {
    pub fn new(clock: Clock, broker: String, traffic_lines: usize, theme: Theme) -> Self {
        Self {
            now: SystemTime::now(),
            utc_offset_s: 0,
            clock,
            broker,
            insecure_tls: false,
            http: None,
            on_quit: "They stop with this console.".into(),
            connection: ConnectionState::Connecting,
            jobs: Jobs::default(),
            devices: Devices::default(),
            rollouts: Rollouts::default(),
            traffic: TrafficLog::new(traffic_lines),
            throughput: Throughput::default(),
            missed_events: 0,
            bad_frames: 0,
            ignored: 0,
            focus: Pane::Jobs,
            jobs_cursor: Cursor::following(),
            devices_cursor: Cursor::default(),
            rollouts_cursor: Cursor::default(),
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
            attached: false,
            mouse_released: false,
            orphan_notes: Default::default(),
        }
    }

    pub fn pane_index(pane: Pane) -> usize {
        match pane {
            Pane::Jobs => 0,
            Pane::Traffic => 1,
            Pane::Devices => 2,
            Pane::Rollouts => 3,
        }
    }

    pub fn filter(&self, pane: Pane) -> &str {
        &self.filters[Self::pane_index(pane)]
    }

    /// Applies a batch from the runtime's job table: the jobs' true current state. After a
    /// reset the batch (with the ones that follow) is the whole table; timelines of jobs that
    /// remain are kept.
    pub fn apply_jobs(&mut self, changes: &JobChanges) {
        self.dirty = true;
        if changes.reset {
            self.jobs.rows.clear();
        }
        for change in &changes.changes {
            match change {
                JobChange::Job(snapshot) => {
                    let id = snapshot.id;
                    let previous = self.jobs.rows.get(&id).map(|row| row.state);
                    let newly_final = snapshot.state.is_final() && previous.is_none_or(|s| !s.is_final());
                    if previous != Some(snapshot.state) {
                        self.devices.job_changed(
                            snapshot.device_id.as_str(),
                            id,
                            snapshot.state,
                            newly_final,
                        );
                    }
                    match self.jobs.rows.get_mut(&id) {
                        Some(row) => row.job = snapshot.clone(),
                        None => {
                            self.jobs.rows.insert(id, jobs::JobRow::new(snapshot.clone()));
                        }
                    }
                }
                JobChange::Removed(id) => {
                    self.jobs.rows.remove(id);
                }
            }
        }
        let timelines = std::mem::take(&mut self.orphan_notes);
        for (id, entries) in timelines {
            match self.jobs.rows.get_mut(&id) {
                Some(row) => {
                    for (at, text) in entries {
                        row.note(at, text);
                    }
                }
                None => {
                    self.orphan_notes.insert(id, entries);
                }
            }
        }
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
            RuntimeEvent::Alert(alert) => self.flash(alert.text.clone(), true),
            RuntimeEvent::Rollout(notice) => {
                self.rollouts.due = true;
                let alarm = matches!(
                    notice.to,
                    crate::rollout::RolloutState::Aborted | crate::rollout::RolloutState::Paused
                );
                self.flash(
                    format!(
                        "rollout {} {:?}: {} — {}",
                        notice.rollout,
                        notice.name,
                        notice.to.as_str(),
                        notice.reason
                    ),
                    alarm,
                );
            }
        }
    }

    /// Engine events add to a job's timeline and the throughput figure; the job's fields come
    /// only from the job table (`apply_jobs`), so nothing here guesses them.
    fn apply_engine(&mut self, at: SystemTime, event: &Event) {
        let (job, text) = match event {
            Event::Created(view) => {
                let size = super::format::bytes(view.image.size());
                (view.id, format!("created: {} ({size})", view.image.name()))
            }
            Event::StateChanged { job, to, detail, .. } => {
                let text = match detail {
                    Some(detail) => format!("{}: {detail}", to.label()),
                    None => to.label().to_owned(),
                };
                (*job, text)
            }
            Event::RequestRetried { job, attempt, .. } => {
                (*job, format!("no answer: FOTA_REQUEST sent again (attempt {attempt})"))
            }
            Event::ChunkSent { bytes, .. } => {
                self.throughput.add(at, u64::from(*bytes));
                return;
            }
            // The job's confirmed count comes with its snapshot.
            Event::Progress { .. } => return,
            Event::Note { job, text, .. } => (*job, text.clone()),
            Event::Ignored { job, command, reason, .. } => {
                self.ignored += 1;
                (*job, format!("ignored {command}: {reason}"))
            }
        };
        match self.jobs.rows.get_mut(&job) {
            Some(row) => row.note(at, text),
            // The event came before the job's snapshot: kept until the snapshot arrives.
            None if self.orphan_notes.len() < MAX_ORPHAN_NOTES || self.orphan_notes.contains_key(&job) => {
                let notes = self.orphan_notes.entry(job).or_default();
                if notes.len() < jobs::MAX_TIMELINE {
                    notes.push((at, text));
                }
            }
            None => {}
        }
    }

    /// Jobs passing the jobs filter, oldest first; in the history view only finished jobs,
    /// the most recently finished first. `rollout:N` keeps rollout N's jobs; any other filter
    /// matches a device or a state.
    pub fn visible_jobs(&self) -> Vec<&JobRow> {
        let filter = self.filter(Pane::Jobs).to_lowercase();
        let rollout: Option<RolloutId> =
            filter.strip_prefix("rollout:").and_then(|id| id.trim().parse().ok());
        let passes = |r: &&JobRow| match rollout {
            Some(id) => r.rollout_id == Some(id),
            None => {
                filter.is_empty()
                    || r.device_id.as_str().to_lowercase().contains(&filter)
                    || r.state.as_str().contains(&filter)
                    || r.state.label().contains(&filter)
            }
        };
        if self.history_view {
            let mut rows: Vec<&JobRow> =
                self.jobs.rows.values().filter(|r| r.state.is_final()).filter(passes).collect();
            rows.sort_by(|a, b| b.finished_at.cmp(&a.finished_at).then(b.id.cmp(&a.id)));
            return rows;
        }
        self.jobs.rows.values().filter(passes).collect()
    }

    /// Rollouts passing the rollouts filter (id, name or state), newest first.
    pub fn visible_rollouts(&self) -> Vec<&RolloutView> {
        let filter = self.filter(Pane::Rollouts).to_lowercase();
        let id: Option<RolloutId> = filter.trim_start_matches('#').parse().ok();
        self.rollouts
            .list
            .iter()
            .filter(|r| {
                filter.is_empty()
                    || id == Some(r.id)
                    || r.name.to_lowercase().contains(&filter)
                    || r.state.as_str().contains(&filter)
            })
            .collect()
    }

    pub fn selected_rollout(&self) -> Option<&RolloutView> {
        self.visible_rollouts().get(self.rollouts_cursor.selected).copied()
    }

    pub fn visible_devices(&self) -> Vec<&DeviceRow> {
        let filter = self.filter(Pane::Devices).to_lowercase();
        self.devices
            .rows
            .values()
            .filter(|r| {
                filter.is_empty()
                    || r.id.to_lowercase().contains(&filter)
                    || crate::inventory::labels::render(&r.labels).to_lowercase().contains(&filter)
                    || r.firmware.as_deref().is_some_and(|f| f.to_lowercase().contains(&filter))
            })
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

    /// The job the selection is on, as drawn (the newest while following), so Enter, `c` and
    /// `r` act on the row shown.
    pub fn selected_job(&self) -> Option<&JobRow> {
        let jobs = self.visible_jobs();
        let selected = if self.jobs_cursor.follow { usize::MAX } else { self.jobs_cursor.selected };
        jobs.get(selected.min(jobs.len().saturating_sub(1))).copied()
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
