//! Keys and mouse in, state changes and commands out. Handlers return an [`Outcome`] rather
//! than doing anything slow themselves: submitting and cancelling are the event loop's job.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::{Position, Rect};
use tui_input::Input;
use tui_input::backend::crossterm::EventHandler;

use super::app::{App, Confirm, Cursor, Overlay, Pane, PaneState};
use super::form::{Form, FormOutcome};
use super::keymap::Action;
use super::layout::layout;
use super::source::RolloutVerb;
use crate::engine::{JobId, JobSpec};
use crate::firmware::FirmwareSource;
use crate::rollout::RolloutId;

/// What the event loop should do after an input.
#[derive(Debug)]
pub enum Outcome {
    /// Nothing changed.
    Ignored,
    /// State changed; draw again.
    Redraw,
    Quit,
    Command(Command),
}

#[derive(Debug)]
pub enum Command {
    Submit(Vec<JobSpec>),
    /// Start a rollout of this image (from the form).
    CreateRollout(Box<(crate::rollout::RolloutRequest, crate::firmware::Image)>),
    Cancel(JobId),
    Retry(JobId),
    Preview {
        generation: u64,
        source: FirmwareSource,
    },
    /// Release or capture the mouse.
    ToggleMouse,
    /// Write a file (`w`).
    Export(super::export::Export),
    /// Complete the form's firmware path (reads a directory).
    CompletePath {
        generation: u64,
        text: String,
    },
    /// Fetch a job's stored timeline for its detail view.
    LoadHistory(JobId),
    /// Fetch a rollout whole for its detail view.
    LoadRollout(RolloutId),
    /// Fetch the audit entries newer than the view holds (the last day's on first opening).
    LoadAudit,
    /// Fetch a rollout whole (every device's outcome, its history) and write it into `dir`.
    ExportRollout {
        id: RolloutId,
        dir: std::path::PathBuf,
    },
    ControlRollout(RolloutId, RolloutVerb),
    /// Plan the form's rollout without creating anything, for the form's review `u64`.
    DryRunRollout(Box<(crate::rollout::RolloutRequest, crate::firmware::Image)>, u64),
}

impl App {
    fn areas(&self) -> super::layout::Areas {
        let footer = super::ui::footer_height(self, self.size.0);
        layout(Rect::new(0, 0, self.size.0, self.size.1), self.focus, self.rollouts.list.len(), footer)
    }

    pub fn handle_key(&mut self, key: KeyEvent) -> Outcome {
        if key.kind == KeyEventKind::Release {
            return Outcome::Ignored;
        }
        self.dirty = true;
        if self.filter_input.is_some() {
            return self.filter_key(key);
        }
        match self.overlay.take() {
            Some(Overlay::Form(form)) => return self.form_key(form, key),
            Some(Overlay::Confirm(confirm)) => return self.confirm_key(confirm, key),
            Some(overlay) => return self.overlay_key(overlay, key),
            None => {}
        }
        let Some(action) = self.keymap.lookup(&key, self.focus.scope()) else { return Outcome::Ignored };
        self.flash = None;
        self.action(action)
    }

    fn action(&mut self, action: Action) -> Outcome {
        let page = self.areas().rows(self.focus) as isize;
        match action {
            Action::Up => self.move_selection(-1),
            Action::Down => self.move_selection(1),
            Action::PageUp => self.move_selection(-page),
            Action::PageDown => self.move_selection(page),
            Action::Top => self.move_selection(isize::MIN / 2),
            Action::Bottom => {
                self.move_selection(isize::MAX / 2);
                if self.focus == Pane::Traffic {
                    self.traffic.view.follow = true;
                }
            }
            Action::NextPane | Action::PrevPane => {
                // The rollouts pane is passed over until there is a rollout to show.
                let panes: Vec<Pane> = Pane::ALL
                    .into_iter()
                    .filter(|p| *p != Pane::Rollouts || !self.rollouts.list.is_empty())
                    .collect();
                let i = panes.iter().position(|p| *p == self.focus).unwrap_or(0) as isize;
                let step = if action == Action::NextPane { 1 } else { -1 };
                self.focus = panes[(i + step).rem_euclid(panes.len() as isize) as usize];
            }
            Action::Open => return self.open_detail(),
            Action::Back => {
                let filter = self.filter_mut(self.focus);
                if filter.is_empty() {
                    return Outcome::Ignored;
                }
                filter.clear();
            }
            Action::NewJob => {
                let default_chunk = self.session.default_chunk;
                self.overlay = Some(Overlay::Form(Box::new(Form::new(default_chunk))));
            }
            Action::Cancel => match self.selected_job() {
                Some(job) if !job.state.is_final() => {
                    self.overlay = Some(Overlay::Confirm(Confirm::Cancel(job.id)))
                }
                Some(job) => {
                    self.flash(format!("job {} already ended as {}", job.id, job.state.label()), true)
                }
                None => return Outcome::Ignored,
            },
            Action::Retry => match self.selected_job() {
                Some(job) if job.state.is_final() => {
                    self.overlay = Some(Overlay::Confirm(Confirm::Retry(job.id)))
                }
                Some(job) => self.flash(
                    format!(
                        "job {} is still {}; only a finished job can be retried",
                        job.id,
                        job.state.label()
                    ),
                    true,
                ),
                None => return Outcome::Ignored,
            },
            Action::Filter => {
                self.filter_input = Some(Input::new(self.filter(self.focus).to_owned()));
            }
            Action::Freeze => {
                self.traffic.view.follow = !self.traffic.view.follow;
                if !self.traffic.view.follow {
                    self.pin_traffic_to_tail();
                }
            }
            Action::ToggleChunks => {
                self.traffic.show_chunks = !self.traffic.show_chunks;
                let how = if self.traffic.show_chunks {
                    "every chunk from now on"
                } else {
                    "chunks folded per job"
                };
                self.flash(format!("traffic: {how}"), false);
            }
            Action::History => {
                self.jobs.history = !self.jobs.history;
                self.jobs.reset_cursor();
            }
            Action::PauseRollout => return self.confirm_rollout(RolloutVerb::Pause),
            Action::ResumeRollout => return self.confirm_rollout(RolloutVerb::Resume),
            Action::CancelRollout => return self.confirm_rollout(RolloutVerb::Cancel),
            Action::RolloutJobs => {
                let Some(id) = self.selected_rollout().map(|r| r.id) else { return Outcome::Ignored };
                self.jobs.filter = format!("rollout:{id}");
                self.jobs.history = false;
                self.jobs.cursor = Cursor::following();
                self.focus = Pane::Jobs;
            }
            Action::ToggleMouse => return Outcome::Command(Command::ToggleMouse),
            Action::Save => return self.export(),
            Action::Help => self.overlay = Some(Overlay::Help { scroll: 0 }),
            Action::Audit => {
                self.overlay = Some(Overlay::Audit { scroll: 0 });
                return Outcome::Command(Command::LoadAudit);
            }
            Action::Quit => {
                let active = self.jobs.active();
                // An attached console's jobs run on in the server whatever it does.
                if active == 0 || self.session.attached {
                    return Outcome::Quit;
                }
                self.overlay = Some(Overlay::Confirm(Confirm::Quit { active }));
            }
        }
        Outcome::Redraw
    }

    /// Asks before pausing, resuming or cancelling the selected rollout; says at once when the
    /// rollout is already past that.
    fn confirm_rollout(&mut self, verb: RolloutVerb) -> Outcome {
        let Some(rollout) = self.selected_rollout() else { return Outcome::Ignored };
        let (id, state) = (rollout.id, rollout.state);
        use crate::rollout::RolloutState as S;
        let refusal = match (verb, state) {
            (_, s) if s.is_final() => Some(format!("rollout {id} already ended as {}", s.as_str())),
            (RolloutVerb::Pause, S::Paused) => Some(format!("rollout {id} is already paused")),
            (RolloutVerb::Resume, S::Running) => Some(format!("rollout {id} is running; nothing to resume")),
            _ => None,
        };
        match refusal {
            Some(text) => self.flash(text, true),
            None => self.overlay = Some(Overlay::Confirm(Confirm::Rollout(id, verb))),
        }
        Outcome::Redraw
    }

    /// `w`: what the pane shows, whole: the traffic as filtered, the selected job with its
    /// timeline, the selected device with its latest job, or the selected rollout with every
    /// device's outcome and its history (fetched first when its detail is not at hand).
    fn export(&mut self) -> Outcome {
        let dir = self
            .log_path
            .as_deref()
            .and_then(std::path::Path::parent)
            .map_or_else(|| std::path::PathBuf::from("."), std::path::Path::to_path_buf);
        let export = match self.focus {
            Pane::Traffic => Some(super::export::traffic(&self.visible_traffic(), &dir, self.now)),
            Pane::Jobs => self.selected_job().map(|job| super::export::job(job, &dir, self.now)),
            Pane::Devices => self.selected_device().map(|device| {
                let job = device.job.and_then(|(id, _)| self.jobs.rows.get(&id));
                super::export::device(device, job, &dir, self.now)
            }),
            Pane::Rollouts => match self.selected_rollout() {
                Some(listed) => match self.rollouts.detail.as_ref().filter(|d| d.id == listed.id) {
                    Some(whole) => Some(super::export::rollout(whole, &dir, self.now)),
                    None => return Outcome::Command(Command::ExportRollout { id: listed.id, dir }),
                },
                None => None,
            },
        };
        match export {
            Some(export) => Outcome::Command(Command::Export(export)),
            None => {
                self.flash(
                    "nothing to write here: w writes the traffic, or the selected job, device or rollout",
                    true,
                );
                Outcome::Redraw
            }
        }
    }

    fn open_detail(&mut self) -> Outcome {
        match self.focus {
            Pane::Rollouts => {
                if let Some(id) = self.selected_rollout().map(|r| r.id) {
                    self.rollouts.detail = None;
                    self.overlay = Some(Overlay::RolloutDetail { id, scroll: 0, from: 0 });
                    return Outcome::Command(Command::LoadRollout(id));
                }
            }
            Pane::Jobs => {
                if let Some(job) = self.selected_job() {
                    let id = job.id;
                    self.overlay = Some(Overlay::JobDetail { job: id, scroll: 0 });
                    return Outcome::Command(Command::LoadHistory(id));
                }
            }
            Pane::Traffic => {
                if let Some(seq) = self.selected_traffic_seq() {
                    self.overlay = Some(Overlay::TrafficDetail { seq, scroll: 0 });
                }
            }
            Pane::Devices => {
                // A device's detail is its current or last job's detail.
                let job = self.selected_device().and_then(|d| d.job).map(|(j, _)| j);
                if let Some(job) = job {
                    self.overlay = Some(Overlay::JobDetail { job, scroll: 0 });
                    return Outcome::Command(Command::LoadHistory(job));
                }
            }
        }
        Outcome::Redraw
    }

    /// The traffic line under the cursor: the newest when following.
    pub fn selected_traffic_seq(&self) -> Option<u64> {
        let lines = self.visible_traffic();
        if self.traffic.view.follow {
            return lines.last().map(|l| l.seq);
        }
        lines.iter().find(|l| l.seq >= self.traffic.view.selected).or(lines.last()).map(|l| l.seq)
    }

    fn pin_traffic_to_tail(&mut self) {
        let rows = self.areas().rows(Pane::Traffic);
        let lines = self.visible_traffic();
        let selected = lines.last().map_or(0, |l| l.seq);
        let top = lines.len().saturating_sub(rows);
        let top = lines.get(top).map_or(0, |l| l.seq);
        self.traffic.view.selected = selected;
        self.traffic.view.top = top;
    }

    fn move_selection(&mut self, delta: isize) {
        let rows = self.areas().rows(self.focus);
        match self.focus {
            Pane::Jobs => {
                let len = self.visible_jobs_len();
                let mut cursor = self.jobs.cursor.shown(len, rows);
                cursor.move_by(delta, len, rows);
                // Back on the newest job: follow it again (the history lists newest first).
                cursor.follow = !self.jobs.history && cursor.selected + 1 >= len;
                self.jobs.cursor = cursor;
            }
            Pane::Devices => {
                let len = self.visible_devices_len();
                self.devices.cursor.move_by(delta, len, rows);
            }
            Pane::Rollouts => {
                let len = self.visible_rollouts().len();
                self.rollouts.cursor.move_by(delta, len, rows);
            }
            Pane::Traffic => {
                if self.traffic.view.follow {
                    if delta >= 0 {
                        return;
                    }
                    self.traffic.view.follow = false; // scrolling up freezes the view
                    self.pin_traffic_to_tail();
                }
                let lines = self.visible_traffic();
                if lines.is_empty() {
                    return;
                }
                let seqs: Vec<u64> = lines.iter().map(|l| l.seq).collect();
                let index =
                    seqs.iter().position(|s| *s >= self.traffic.view.selected).unwrap_or(seqs.len() - 1);
                let top = seqs.iter().position(|s| *s >= self.traffic.view.top).unwrap_or(0);
                let mut cursor = Cursor { selected: index, offset: top, follow: false };
                cursor.move_by(delta, seqs.len(), rows);
                self.traffic.view.selected = seqs[cursor.selected];
                self.traffic.view.top = seqs[cursor.offset];
            }
        }
    }

    fn filter_key(&mut self, key: KeyEvent) -> Outcome {
        let Some(input) = self.filter_input.as_mut() else { return Outcome::Ignored };
        match key.code {
            KeyCode::Enter => {
                let text = input.value().trim().to_owned();
                *self.filter_mut(self.focus) = text;
                self.filter_input = None;
                for pane in Pane::ALL {
                    self.pane_mut(pane).reset_cursor();
                }
            }
            KeyCode::Esc => {
                self.filter_mut(self.focus).clear();
                self.filter_input = None;
            }
            _ => {
                input.handle_event(&ratatui::crossterm::event::Event::Key(key));
                // Filter live as the operator types.
                let text = input.value().trim().to_owned();
                *self.filter_mut(self.focus) = text;
            }
        }
        Outcome::Redraw
    }

    fn form_key(&mut self, mut form: Box<Form>, key: KeyEvent) -> Outcome {
        let known = self.devices.known();
        let outcome = form.handle_key(key, &known);
        match outcome {
            FormOutcome::Close => {
                self.overlay = None;
                return Outcome::Redraw;
            }
            FormOutcome::Nothing => {}
            FormOutcome::Preview { generation, source } => {
                self.overlay = Some(Overlay::Form(form));
                return Outcome::Command(Command::Preview { generation, source });
            }
            FormOutcome::Submit(specs) => {
                self.overlay = Some(Overlay::Form(form));
                return Outcome::Command(Command::Submit(specs));
            }
            FormOutcome::Complete { generation, text } => {
                self.overlay = Some(Overlay::Form(form));
                return Outcome::Command(Command::CompletePath { generation, text });
            }
            FormOutcome::Rollout(rollout) => {
                self.overlay = Some(Overlay::Form(form));
                return Outcome::Command(Command::CreateRollout(rollout));
            }
            FormOutcome::DryRun(rollout, review) => {
                self.overlay = Some(Overlay::Form(form));
                return Outcome::Command(Command::DryRunRollout(rollout, review));
            }
        }
        self.overlay = Some(Overlay::Form(form));
        Outcome::Redraw
    }

    fn confirm_key(&mut self, confirm: Confirm, key: KeyEvent) -> Outcome {
        match key.code {
            KeyCode::Char('y') | KeyCode::Char('Y') | KeyCode::Enter => match confirm {
                Confirm::Cancel(id) => Outcome::Command(Command::Cancel(id)),
                Confirm::Retry(id) => Outcome::Command(Command::Retry(id)),
                Confirm::Rollout(id, verb) => Outcome::Command(Command::ControlRollout(id, verb)),
                Confirm::Quit { .. } => Outcome::Quit,
            },
            KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc | KeyCode::Char('q') => Outcome::Redraw,
            _ => {
                self.overlay = Some(Overlay::Confirm(confirm));
                Outcome::Ignored
            }
        }
    }

    fn overlay_key(&mut self, overlay: Overlay, key: KeyEvent) -> Outcome {
        let close = matches!(key.code, KeyCode::Esc | KeyCode::Char('q'))
            || (matches!(overlay, Overlay::Help { .. }) && key.code == KeyCode::Char('?'));
        if close {
            return Outcome::Redraw;
        }
        if let Overlay::RolloutDetail { id, scroll, from } = overlay
            && let KeyCode::Char(key @ ('[' | ']')) = key.code
        {
            return self.page_rollout_devices(id, scroll, from, key == ']');
        }
        let step: i32 = match key.code {
            KeyCode::Down | KeyCode::Char('j') => 1,
            KeyCode::Up | KeyCode::Char('k') => -1,
            KeyCode::PageDown => 10,
            KeyCode::PageUp => -10,
            KeyCode::Char('g') | KeyCode::Home => -10_000,
            _ => 0,
        };
        let scroll = |s: u16| (i32::from(s) + step).clamp(0, 10_000) as u16;
        self.overlay = Some(match overlay {
            Overlay::Help { scroll: s } => Overlay::Help { scroll: scroll(s) },
            Overlay::JobDetail { job, scroll: s } => Overlay::JobDetail { job, scroll: scroll(s) },
            Overlay::TrafficDetail { seq, scroll: s } => Overlay::TrafficDetail { seq, scroll: scroll(s) },
            Overlay::Audit { scroll: s } => Overlay::Audit { scroll: scroll(s) },
            Overlay::RolloutDetail { id, scroll: s, from } => {
                Overlay::RolloutDetail { id, scroll: scroll(s), from }
            }
            other => other,
        });
        if step == 0 { Outcome::Ignored } else { Outcome::Redraw }
    }

    /// The next (`forward`) or previous page of an open rollout's devices, fetched at once.
    fn page_rollout_devices(&mut self, id: RolloutId, scroll: u16, from: usize, forward: bool) -> Outcome {
        let count = self.rollouts.detail.as_ref().filter(|r| r.id == id).map_or(0, |r| r.device_count);
        let page = super::source::DETAIL_DEVICES;
        let to = if forward { from + page } else { from.saturating_sub(page) };
        if to == from || to >= count {
            self.overlay = Some(Overlay::RolloutDetail { id, scroll, from });
            return Outcome::Ignored;
        }
        self.overlay = Some(Overlay::RolloutDetail { id, scroll, from: to });
        Outcome::Command(Command::LoadRollout(id))
    }

    pub fn handle_mouse(&mut self, mouse: MouseEvent) -> Outcome {
        if self.overlay.is_some() || self.filter_input.is_some() {
            return Outcome::Ignored;
        }
        let areas = self.areas();
        let at = Position::new(mouse.column, mouse.row);
        let Some(pane) = Pane::ALL.into_iter().find(|p| areas.pane(*p).is_some_and(|r| r.contains(at)))
        else {
            return Outcome::Ignored;
        };
        self.dirty = true;
        match mouse.kind {
            MouseEventKind::ScrollDown | MouseEventKind::ScrollUp => {
                let previous = self.focus;
                self.focus = pane;
                self.move_selection(if mouse.kind == MouseEventKind::ScrollDown { 3 } else { -3 });
                self.focus = previous;
                Outcome::Redraw
            }
            MouseEventKind::Down(MouseButton::Left) => {
                self.focus = pane;
                let Some(rect) = areas.pane(pane) else { return Outcome::Redraw };
                let header = if pane == Pane::Traffic { 1 } else { 2 };
                let Some(row) = mouse.row.checked_sub(rect.y + header).map(usize::from) else {
                    return Outcome::Redraw;
                };
                match pane {
                    Pane::Jobs => {
                        let len = self.visible_jobs_len();
                        let mut cursor = self.jobs.cursor.shown(len, areas.rows(Pane::Jobs));
                        let target = cursor.offset + row;
                        if target < len {
                            cursor.selected = target;
                            cursor.follow = !self.jobs.history && target + 1 == len;
                            self.jobs.cursor = cursor;
                        }
                    }
                    Pane::Devices => {
                        let len = self.visible_devices_len();
                        let target = self.devices.cursor.offset + row;
                        if target < len {
                            self.devices.cursor.selected = target;
                        }
                    }
                    Pane::Rollouts => {
                        let len = self.visible_rollouts().len();
                        let target = self.rollouts.cursor.offset + row;
                        if target < len {
                            self.rollouts.cursor.selected = target;
                        }
                    }
                    Pane::Traffic => {
                        let rows = areas.rows(Pane::Traffic);
                        if self.traffic.view.follow {
                            self.traffic.view.follow = false;
                            self.pin_traffic_to_tail();
                        }
                        let lines = self.visible_traffic();
                        let top = lines.iter().position(|l| l.seq >= self.traffic.view.top).unwrap_or(0);
                        let top = top.min(lines.len().saturating_sub(rows));
                        if let Some(line) = lines.get(top + row) {
                            let seq = line.seq;
                            self.traffic.view.selected = seq;
                        }
                    }
                }
                Outcome::Redraw
            }
            _ => Outcome::Ignored,
        }
    }
}
