//! The console's state as plain data. Events from the runtime go in through [`App::apply`]; keys
//! go in through `input.rs`; `ui` renders a frame from it and nothing else. No I/O here, so
//! every screen can be built in a test from fixture events.

mod audit;
mod devices;
mod jobs;
mod pane;
mod rollouts;
mod throughput;
mod traffic;

pub use audit::{AUDIT_SHOWN, AuditView};
pub use devices::{DeviceRow, Devices};
pub use jobs::{JobRow, Jobs};
pub use pane::{Cursor, Pane, PaneState, TrafficView};
pub use rollouts::Rollouts;
pub use throughput::Throughput;
pub use traffic::{ChunkRun, KEPT_PAYLOAD, TrafficLine, TrafficLog};

use std::path::PathBuf;
use std::time::SystemTime;

use tui_input::Input;

use super::form::Form;
use super::keymap::Keymap;
use super::source::RolloutVerb;
use super::theme::Theme;
use crate::engine::{Event, JobId};
use crate::rollout::{RolloutId, RolloutView};
use crate::service::{
    Clock, ConnectionState, Envelope, JobChange, JobChanges, Received, RuntimeEvent, TrafficDirection,
};

/// What is drawn over the main view, if anything.
#[derive(Debug)]
pub enum Overlay {
    Help {
        scroll: u16,
    },
    JobDetail {
        job: JobId,
        scroll: u16,
    },
    TrafficDetail {
        seq: u64,
        scroll: u16,
    },
    /// `from`: the first of the devices shown (a page of `source::DETAIL_DEVICES`).
    RolloutDetail {
        id: RolloutId,
        scroll: u16,
        from: usize,
    },
    /// The audit trail (`a`), newest first.
    Audit {
        scroll: u16,
    },
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
    /// Where this console's jobs live and what it may say of them.
    pub session: Session,
    pub connection: ConnectionState,
    pub jobs: Jobs,
    pub devices: Devices,
    pub rollouts: Rollouts,
    /// Who changed what, while the audit view is open.
    pub audit: AuditView,
    pub traffic: TrafficLog,
    pub throughput: Throughput,
    /// What the console could not show: events missed, frames that did not decode, answers
    /// that changed nothing.
    pub counters: Counters,
    pub focus: Pane,
    pub overlay: Option<Overlay>,
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
    /// The mouse is left to the terminal (`m`), for selecting and copying text.
    pub mouse_released: bool,
}

/// Where this console's jobs live (a broker, or a server it is attached to) and what it says
/// of them: set once when the console starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The broker's address, or the server's an attached console shows.
    pub broker: String,
    /// The broker's certificate is not verified (`--insecure-tls`): shown in red.
    pub insecure_tls: bool,
    /// The HTTP API this console serves, or why it does not.
    pub http: Option<String>,
    /// What happens to queued and running jobs when this console quits, said in the quit dialog.
    pub on_quit: String,
    /// Attached to a server (`rocky console --server`): quitting stops nothing there.
    pub attached: bool,
    /// The chunk size the new-job form offers.
    pub default_chunk: u32,
}

/// What the console could not show, counted for the status line and the traffic pane's title.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Events the console missed because it fell behind (the stream is bounded).
    pub missed_events: u64,
    /// Frames on a response topic that did not decode.
    pub bad_frames: u64,
    /// Responses that changed nothing (an unknown job, a stale answer).
    pub ignored: u64,
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
            session: Session {
                broker,
                insecure_tls: false,
                http: None,
                on_quit: "They stop with this console.".into(),
                attached: false,
                default_chunk: crate::firmware::DEFAULT_CHUNK_SIZE,
            },
            connection: ConnectionState::Connecting,
            jobs: Jobs::default(),
            devices: Devices::default(),
            rollouts: Rollouts::default(),
            audit: AuditView::default(),
            traffic: TrafficLog::new(traffic_lines),
            throughput: Throughput::default(),
            counters: Counters::default(),
            focus: Pane::Jobs,
            overlay: None,
            filter_input: None,
            flash: None,
            log_path: None,
            keymap: Keymap::default(),
            theme,
            size: (80, 24),
            dirty: true,
            mouse_released: false,
        }
    }

    /// The state of `pane`, as every pane answers it.
    pub fn pane(&self, pane: Pane) -> &dyn PaneState {
        match pane {
            Pane::Jobs => &self.jobs,
            Pane::Traffic => &self.traffic,
            Pane::Devices => &self.devices,
            Pane::Rollouts => &self.rollouts,
        }
    }

    pub fn pane_mut(&mut self, pane: Pane) -> &mut dyn PaneState {
        match pane {
            Pane::Jobs => &mut self.jobs,
            Pane::Traffic => &mut self.traffic,
            Pane::Devices => &mut self.devices,
            Pane::Rollouts => &mut self.rollouts,
        }
    }

    pub fn filter(&self, pane: Pane) -> &str {
        self.pane(pane).filter()
    }

    pub fn filter_mut(&mut self, pane: Pane) -> &mut String {
        self.pane_mut(pane).filter_mut()
    }

    /// Applies a batch from the runtime's job table: the jobs' true current state. After a
    /// reset the batch (with the ones that follow) is the whole table; timelines of jobs that
    /// remain are kept.
    pub fn apply_jobs(&mut self, changes: &JobChanges) {
        self.dirty = true;
        if changes.reset {
            self.jobs.clear();
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
                    self.jobs.put(snapshot);
                }
                JobChange::Removed(id) => self.jobs.remove(*id),
            }
        }
        self.jobs.settle();
        let timelines = std::mem::take(&mut self.jobs.orphan_notes);
        for (id, entries) in timelines {
            match self.jobs.rows.get_mut(&id) {
                Some(row) => {
                    for (at, text) in entries {
                        row.note(at, text);
                    }
                }
                None => {
                    self.jobs.orphan_notes.insert(id, entries);
                }
            }
        }
    }

    pub fn apply(&mut self, received: &Received) {
        self.dirty = true;
        let envelope: &Envelope = match received {
            Received::Missed(n) => {
                self.counters.missed_events += n;
                return;
            }
            Received::Event(envelope) => envelope,
        };
        let at = envelope.time;
        match &envelope.event {
            RuntimeEvent::Connection(state) => self.connection = state.clone(),
            RuntimeEvent::Traffic(traffic) => {
                self.counters.bad_frames += u64::from(traffic.decode_error);
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
                let aws = self.jobs.rows.get(job).is_some_and(|row| row.aws.is_some());
                (*job, crate::engine::retry_words(*attempt, aws))
            }
            Event::ChunkSent { bytes, .. } => {
                self.throughput.add(at, u64::from(*bytes));
                return;
            }
            // The job's confirmed count comes with its snapshot.
            Event::Progress { .. } => return,
            Event::Note { job, text, .. } => (*job, text.clone()),
            Event::Ignored { job, command, reason, .. } => {
                self.counters.ignored += 1;
                (*job, format!("ignored {command}: {reason}"))
            }
        };
        match self.jobs.rows.get_mut(&job) {
            Some(row) => row.note(at, text),
            // The event came before the job's snapshot: kept until the snapshot arrives.
            None if self.jobs.orphan_notes.len() < MAX_ORPHAN_NOTES
                || self.jobs.orphan_notes.contains_key(&job) =>
            {
                let notes = self.jobs.orphan_notes.entry(job).or_default();
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
        if self.jobs.history {
            let mut rows: Vec<&JobRow> =
                self.jobs.rows.values().filter(|r| r.state.is_final()).filter(passes).collect();
            rows.sort_by(|a, b| b.finished_at.cmp(&a.finished_at).then(b.id.cmp(&a.id)));
            return rows;
        }
        self.jobs.rows.values().filter(passes).collect()
    }

    /// How many jobs the jobs pane lists, without gathering them when nothing filters (a
    /// fleet's 100,000 rows are not walked for every frame and key).
    pub fn visible_jobs_len(&self) -> usize {
        if self.jobs_unfiltered() { self.jobs.rows.len() } else { self.visible_jobs().len() }
    }

    /// The jobs pane's rows from `offset`, at most `n`, and how many active jobs the list holds
    /// above and below them.
    pub fn visible_jobs_window(&self, offset: usize, n: usize) -> (Vec<&JobRow>, usize, usize) {
        if self.jobs_unfiltered() {
            let rows = self.jobs.window(offset, n);
            let (above, below) = match (rows.first(), rows.last()) {
                (Some(first), Some(last)) => self.jobs.active_around(first.id, last.id),
                _ => (0, 0),
            };
            return (rows, above, below);
        }
        let jobs = self.visible_jobs();
        let last = offset.saturating_add(n).min(jobs.len());
        let above = jobs.iter().take(offset).filter(|j| j.state.is_active()).count();
        let below = jobs.iter().skip(last).filter(|j| j.state.is_active()).count();
        (jobs.iter().skip(offset).take(n).copied().collect(), above, below)
    }

    /// Every job, oldest first: nothing filters and the history view is off.
    fn jobs_unfiltered(&self) -> bool {
        !self.jobs.history && self.filter(Pane::Jobs).is_empty()
    }

    /// How many devices the devices pane lists (gathered only when a filter is set).
    pub fn visible_devices_len(&self) -> usize {
        if self.filter(Pane::Devices).is_empty() {
            self.devices.rows.len()
        } else {
            self.visible_devices().len()
        }
    }

    /// The devices pane's rows from `offset`, at most `n`.
    pub fn visible_devices_window(&self, offset: usize, n: usize) -> Vec<&DeviceRow> {
        if self.filter(Pane::Devices).is_empty() {
            return window_of(self.devices.rows.values(), offset, n);
        }
        self.visible_devices().into_iter().skip(offset).take(n).collect()
    }

    /// The device the devices pane's selection is on.
    pub fn selected_device(&self) -> Option<&DeviceRow> {
        self.visible_devices_window(self.devices.cursor.selected, 1).into_iter().next()
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
        self.visible_rollouts().get(self.rollouts.cursor.selected).copied()
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
        let len = self.visible_jobs_len();
        let selected = if self.jobs.cursor.follow { usize::MAX } else { self.jobs.cursor.selected };
        self.visible_jobs_window(selected.min(len.saturating_sub(1)), 1).0.into_iter().next()
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

/// Items `offset..offset + n` of a map's values, walked from whichever end is nearer: the jobs
/// pane follows the newest job, the end of a 100,000-row map.
fn window_of<'a, T>(
    values: impl DoubleEndedIterator<Item = &'a T> + ExactSizeIterator,
    offset: usize,
    n: usize,
) -> Vec<&'a T> {
    let len = values.len();
    let end = offset.saturating_add(n).min(len);
    if offset >= len {
        return Vec::new();
    }
    if offset <= len - end {
        return values.skip(offset).take(end - offset).collect();
    }
    let mut rows: Vec<&T> = values.rev().skip(len - end).take(end - offset).collect();
    rows.reverse();
    rows
}
