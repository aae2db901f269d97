//! The new-job form: devices, firmware, chunk size and rate, validated as the operator types,
//! with the image's size and SHA-256 shown before anything is submitted. Filling in any rollout
//! field (waves, a start cap, thresholds) or naming devices by label makes it start a rollout
//! instead, shown whole before a second Enter starts it.

use std::path::{Path, PathBuf};

use ratatui::crossterm::event::{Event as TermEvent, KeyCode, KeyEvent};
use tui_input::Input;
use tui_input::backend::crossterm::EventHandler;

use super::rollout_fields::{self as fields, Known, Picked};
use crate::engine::JobSpec;
use crate::firmware::{ChunkSize, FirmwareSource, Image};
use crate::protocol::DeviceId;
use crate::rollout::RolloutRequest;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Devices,
    Firmware,
    ChunkSize,
    MaxRate,
    Name,
    Waves,
    PerMinute,
    AtOnce,
    Success,
    Abort,
    Retries,
    Gates,
}

/// How many fields the form has.
const FIELDS: usize = 12;

impl Field {
    pub const ALL: [Field; FIELDS] = [
        Field::Devices,
        Field::Firmware,
        Field::ChunkSize,
        Field::MaxRate,
        Field::Name,
        Field::Waves,
        Field::PerMinute,
        Field::AtOnce,
        Field::Success,
        Field::Abort,
        Field::Retries,
        Field::Gates,
    ];

    /// The fields that make a rollout: those from the name on.
    pub const ROLLOUT: &'static [Field] = Field::ALL.split_at(4).1;

    pub fn label(self) -> &'static str {
        match self {
            Field::Devices => "Devices",
            Field::Firmware => "Firmware",
            Field::ChunkSize => "Chunk size",
            Field::MaxRate => "Max rate",
            Field::Name => "Name",
            Field::Waves => "Waves",
            Field::PerMinute => "Starts/min",
            Field::AtOnce => "At once",
            Field::Success => "Success ≥",
            Field::Abort => "Abort at",
            Field::Retries => "Retries",
            Field::Gates => "Gates",
        }
    }

    fn index(self) -> usize {
        Field::ALL.iter().position(|f| *f == self).unwrap_or(0)
    }
}

/// The image named in the firmware field, as far as it is known.
#[derive(Debug, Clone, Default)]
pub enum Preview {
    #[default]
    Empty,
    Loading,
    Ready(Image),
    Failed(String),
}

#[derive(Debug)]
pub struct Form {
    pub field: Field,
    pub inputs: [Input; FIELDS],
    pub default_chunk: u32,
    pub errors: [Option<String>; FIELDS],
    pub preview: Preview,
    /// The previewed image's manifest from a trusted key, where Rocky holds one.
    pub manifest: Option<crate::protocol::Manifest>,
    /// Bumped whenever the firmware text changes, so a late preview for old text is dropped.
    pub generation: u64,
    /// Submit as soon as the preview for the current text arrives.
    submit_when_ready: bool,
    pub submitting: bool,
    pub message: Option<String>,
    /// A rollout was shown whole after an Enter: the next Enter starts it (any edit disarms).
    pub armed: bool,
    /// Which review this is (a new number each time a form arms; 0 before), so a late dry run of
    /// an earlier one, or of another form, is dropped.
    pub review: u64,
    /// The review's dry run, as lines (`None` while it is asked for).
    pub dry_run: Option<Result<Vec<String>, String>>,
}

/// The next review's number (see [`Form::review`]).
static NEXT_REVIEW: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// What the form wants done after a key.
#[derive(Debug)]
pub enum FormOutcome {
    Nothing,
    Close,
    Preview {
        generation: u64,
        source: FirmwareSource,
    },
    /// Complete this firmware path (read its directory); the answer goes to `completed`.
    Complete {
        generation: u64,
        text: String,
    },
    Submit(Vec<JobSpec>),
    /// Start this rollout of this image.
    Rollout(Box<(RolloutRequest, Image)>),
    /// Ask what this rollout would do (the review's dry run), for review `u64`.
    DryRun(Box<(RolloutRequest, Image)>, u64),
}

impl Form {
    pub fn new(default_chunk: u32) -> Self {
        Self {
            field: Field::Devices,
            inputs: Default::default(),
            default_chunk,
            errors: Default::default(),
            preview: Preview::Empty,
            manifest: None,
            generation: 0,
            submit_when_ready: false,
            submitting: false,
            message: None,
            armed: false,
            review: 0,
            dry_run: None,
        }
    }

    pub fn input(&self, field: Field) -> &Input {
        &self.inputs[field.index()]
    }

    pub fn error(&self, field: Field) -> Option<&str> {
        self.errors[field.index()].as_deref()
    }

    pub fn handle_key(&mut self, key: KeyEvent, known_devices: &Known<'_>) -> FormOutcome {
        match key.code {
            KeyCode::Esc => return FormOutcome::Close,
            KeyCode::Enter => {
                let outcome = self.submit(known_devices);
                if matches!(outcome, FormOutcome::Nothing) {
                    self.point_at_errors();
                }
                return outcome;
            }
            KeyCode::Down => return self.move_field(1),
            KeyCode::Up | KeyCode::BackTab => return self.move_field(-1),
            // Completion reads a directory, which can be slow (a network mount): it is done off
            // the console's task and comes back through `completed`.
            KeyCode::Tab if self.field == Field::Firmware => {
                let text = self.input(Field::Firmware).value().to_owned();
                if text.is_empty() || is_url(&text) {
                    return self.move_field(1);
                }
                return FormOutcome::Complete { generation: self.generation, text };
            }
            KeyCode::Tab => return self.move_field(1),
            _ => {}
        }
        let index = self.field.index();
        let before = self.inputs[index].value().to_owned();
        self.inputs[index].handle_event(&TermEvent::Key(key));
        if self.inputs[index].value() == before {
            return FormOutcome::Nothing;
        }
        self.errors[index] = None;
        self.message = None;
        self.armed = false;
        match self.field {
            Field::Firmware => self.firmware_changed(false),
            Field::Devices => {
                self.errors[index] = if self.is_rollout() {
                    self.targets(known_devices).err()
                } else {
                    self.devices(known_devices).err()
                };
                FormOutcome::Nothing
            }
            Field::Name
            | Field::Waves
            | Field::PerMinute
            | Field::AtOnce
            | Field::Success
            | Field::Abort
            | Field::Retries
            | Field::Gates => {
                self.errors[index] = self.rollout_field_error(self.field, known_devices);
                FormOutcome::Nothing
            }
            Field::ChunkSize => {
                self.errors[index] = self.chunk_size().err();
                FormOutcome::Nothing
            }
            Field::MaxRate => {
                self.errors[index] = self.max_rate().err();
                FormOutcome::Nothing
            }
        }
    }

    fn move_field(&mut self, delta: isize) -> FormOutcome {
        let leaving = self.field;
        let index = Field::ALL.iter().position(|f| *f == self.field).unwrap_or(0);
        self.field = Field::ALL[(index as isize + delta).rem_euclid(Field::ALL.len() as isize) as usize];
        // URLs are fetched when the operator leaves the field, not on every keystroke.
        if leaving == Field::Firmware && is_url(self.input(Field::Firmware).value()) {
            return self.firmware_changed(true);
        }
        FormOutcome::Nothing
    }

    /// Starts loading the named image; a URL only when `fetch_urls`. What was said about the
    /// text before (its error, "loading the image…") no longer holds.
    fn firmware_changed(&mut self, fetch_urls: bool) -> FormOutcome {
        self.generation += 1;
        self.submit_when_ready = false;
        self.errors[Field::Firmware.index()] = None;
        self.message = None;
        self.armed = false;
        match self.source() {
            None => {
                self.preview = Preview::Empty;
                FormOutcome::Nothing
            }
            Some(FirmwareSource::Url(_)) if !fetch_urls => {
                self.preview = Preview::Empty;
                FormOutcome::Nothing
            }
            Some(source) => {
                self.preview = Preview::Loading;
                FormOutcome::Preview { generation: self.generation, source }
            }
        }
    }

    /// The loader's answer. Returns what to submit if Enter was pressed while it loaded.
    pub fn set_preview(
        &mut self,
        generation: u64,
        result: Result<Image, String>,
        known: &Known<'_>,
    ) -> FormOutcome {
        if generation != self.generation {
            return FormOutcome::Nothing; // for text that has changed since
        }
        // Whatever was waiting for the image ("loading the image…") has its answer now.
        self.message = None;
        self.preview = match result {
            Ok(image) => Preview::Ready(image),
            Err(e) => {
                self.errors[Field::Firmware.index()] = Some(e.clone());
                Preview::Failed(e)
            }
        };
        if std::mem::take(&mut self.submit_when_ready) {
            return match self.submit(known) {
                outcome @ (FormOutcome::Submit(_) | FormOutcome::Rollout(_) | FormOutcome::DryRun(..)) => {
                    outcome
                }
                _ => FormOutcome::Nothing,
            };
        }
        FormOutcome::Nothing
    }

    fn source(&self) -> Option<FirmwareSource> {
        let text = self.input(Field::Firmware).value().trim();
        if text.is_empty() {
            None
        } else if is_url(text) {
            Some(FirmwareSource::Url(text.to_owned()))
        } else {
            Some(FirmwareSource::Path(expand_home(text)))
        }
    }

    /// The devices named: a comma list where `prefix*` stands for every known device it matches.
    pub fn devices(&self, known: &Known<'_>) -> Result<Vec<DeviceId>, String> {
        let mut out: Vec<DeviceId> = Vec::new();
        let text = self.input(Field::Devices).value();
        let items: Vec<&str> = text.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        fields::mixed(&items)?;
        for item in items {
            if let Some(prefix) = item.strip_suffix('*') {
                let matched: Vec<&str> =
                    known.iter().map(|(id, _)| *id).filter(|d| d.starts_with(prefix)).collect();
                if matched.is_empty() {
                    return Err(format!("no known device matches {item:?}"));
                }
                for id in matched {
                    let id = DeviceId::parse(id).map_err(|e| e.to_string())?;
                    if !out.contains(&id) {
                        out.push(id);
                    }
                }
            } else {
                let id = DeviceId::parse(item).map_err(|e| e.to_string())?;
                if !out.contains(&id) {
                    out.push(id);
                }
            }
        }
        if out.is_empty() {
            return Err("name at least one device (a comma list; prefix* for known devices)".into());
        }
        Ok(out)
    }

    pub fn chunk_size(&self) -> Result<ChunkSize, String> {
        let text = self.input(Field::ChunkSize).value().trim();
        if text.is_empty() {
            return ChunkSize::new(u64::from(self.default_chunk));
        }
        let n: u64 = text.parse().map_err(|_| format!("{text:?} is not a whole number of bytes"))?;
        ChunkSize::new(n)
    }

    /// The byte-rate cap as a pause between chunks (chunk size / rate); empty or 0 is none.
    pub fn max_rate(&self) -> Result<Option<std::time::Duration>, String> {
        let text = self.input(Field::MaxRate).value().trim();
        if text.is_empty() {
            return Ok(None);
        }
        let rate = crate::units::Rate(crate::units::parse_rate(text)?);
        let chunk = self
            .chunk_size()
            .unwrap_or_else(|_| ChunkSize::new(u64::from(self.default_chunk)).unwrap_or_default());
        Ok(crate::firmware::Pacing::new(None, None, Some(rate), chunk)?.pause)
    }

    /// After an Enter that started nothing for a mistake: the first field in error gets the
    /// focus (in view on a short terminal) and the message names every such field.
    fn point_at_errors(&mut self) {
        let wrong: Vec<Field> = Field::ALL.into_iter().filter(|f| self.error(*f).is_some()).collect();
        let Some(first) = wrong.first() else { return };
        self.field = *first;
        let names: Vec<&str> = wrong.iter().map(|f| f.label()).collect();
        self.message = Some(format!("nothing started: fix {} (the reason is under each)", names.join(", ")));
    }

    fn submit(&mut self, known: &Known<'_>) -> FormOutcome {
        if self.submitting {
            return FormOutcome::Nothing;
        }
        if self.is_rollout() {
            return self.submit_rollout(known);
        }
        let devices = self.devices(known);
        let chunk = self.chunk_size();
        let pause = self.max_rate();
        self.errors[Field::Devices.index()] = devices.as_ref().err().cloned();
        self.errors[Field::ChunkSize.index()] = chunk.as_ref().err().cloned();
        self.errors[Field::MaxRate.index()] = pause.as_ref().err().cloned();
        let image = match &self.preview {
            Preview::Ready(image) => Some(image.clone()),
            Preview::Failed(_) => return FormOutcome::Nothing,
            Preview::Loading => {
                self.submit_when_ready = true;
                self.message = Some("loading the image…".into());
                return FormOutcome::Nothing;
            }
            Preview::Empty => None,
        };
        let (Ok(devices), Ok(chunk), Ok(pause)) = (devices, chunk, pause) else {
            return FormOutcome::Nothing;
        };
        let Some(image) = image else {
            return match self.firmware_changed(true) {
                FormOutcome::Preview { generation, source } => {
                    self.submit_when_ready = true;
                    FormOutcome::Preview { generation, source }
                }
                _ => {
                    self.errors[Field::Firmware.index()] = Some("give a file path or an http(s) URL".into());
                    FormOutcome::Nothing
                }
            };
        };
        self.submitting = true;
        let specs = devices
            .into_iter()
            .map(|device| JobSpec {
                chunk_size: Some(chunk),
                chunk_interval: pause,
                ..JobSpec::new(device, image.clone())
            })
            .collect();
        FormOutcome::Submit(specs)
    }

    /// Whether Enter starts a rollout: a rollout field is filled in, or the devices are named
    /// by label.
    pub fn is_rollout(&self) -> bool {
        let by_label = {
            let text = self.input(Field::Devices).value();
            let items: Vec<&str> = text.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
            !items.is_empty() && items.iter().all(|item| item.contains('='))
        };
        by_label || Field::ROLLOUT.iter().any(|f| !self.input(*f).value().trim().is_empty())
    }

    /// What to say of the devices named by id that Rocky has never seen (a typo spends a
    /// whole request timeout), before anything starts.
    pub fn never_seen_note(&self, known: &Known<'_>, devices: &crate::tui::app::Devices) -> Option<String> {
        let ids: Vec<String> = if self.is_rollout() {
            self.targets(known).ok()?.targets.devices?
        } else {
            self.devices(known).ok()?.into_iter().map(|id| id.as_str().to_owned()).collect()
        };
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let unseen: Vec<DeviceId> =
            devices.never_seen(&ids).into_iter().filter_map(|id| DeviceId::parse(id).ok()).collect();
        crate::inventory::never_seen_note(&unseen)
    }

    /// The devices field read as a rollout's targets.
    pub fn targets(&self, known: &Known<'_>) -> Result<Picked, String> {
        fields::targets(self.input(Field::Devices).value(), known)
    }

    fn rollout_field_error(&self, field: Field, known: &Known<'_>) -> Option<String> {
        let text = self.input(field).value();
        match field {
            Field::Waves => {
                let devices = self.targets(known).map_or(1, |picked| picked.count);
                fields::waves(text, devices).err()
            }
            Field::Name => fields::name(text).err(),
            Field::PerMinute => fields::per_minute(text).err(),
            Field::AtOnce => fields::at_once(text).err(),
            Field::Success => fields::success(text).err(),
            Field::Abort => fields::abort(text).err(),
            Field::Retries => fields::retries(text).err(),
            Field::Gates => fields::gates(text).err(),
            _ => None,
        }
    }

    /// The rollout the fields describe, in words, for the line under them: "24 devices in
    /// waves 1 → 6 → 24 · ≤60 starts a minute · a wave goes on at ≥95% · abort at ≥20% once 10
    /// finished"; the first problem instead when there is one.
    pub fn rollout_summary(&self, known: &Known<'_>) -> Result<String, String> {
        let picked = self.targets(known)?;
        let devices =
            if picked.count == 1 { "1 device".to_owned() } else { format!("{} devices", picked.count) };
        let mut parts = vec![match fields::waves(self.input(Field::Waves).value(), picked.count)? {
            Some((_, ends)) if ends.len() > 1 => {
                let ends: Vec<String> = ends.iter().map(ToString::to_string).collect();
                format!("{devices} in waves {}", ends.join(" → "))
            }
            _ => format!("{devices} in one wave"),
        }];
        if let Some(cap) = fields::per_minute(self.input(Field::PerMinute).value())? {
            parts.push(format!("≤{cap} starts a minute"));
        }
        if let Some(cap) = fields::at_once(self.input(Field::AtOnce).value())? {
            parts.push(format!("≤{cap} at once"));
        }
        let threshold = fields::success(self.input(Field::Success).value())?.unwrap_or(0.95);
        parts.push(format!("a wave goes on at ≥{:.0}%", threshold * 100.0));
        if let Some(rule) = fields::abort(self.input(Field::Abort).value())? {
            parts.push(format!(
                "abort at ≥{:.0}% once {} finished",
                rule.failure_share * 100.0,
                rule.min_finished
            ));
        }
        if let Some(retry) = fields::retries(self.input(Field::Retries).value())? {
            let tries =
                if retry.count == 1 { "1 retry".to_owned() } else { format!("{} retries", retry.count) };
            parts.push(format!("{tries} (from {} s apart)", retry.backoff_s));
        }
        if fields::gates(self.input(Field::Gates).value())? == Some(crate::rollout::Gates::Manual) {
            parts.push("manual gates".into());
        }
        // What the review before the second Enter must show too: which devices, the name, and
        // how each job is paced.
        let shown: Vec<&str> = match (&picked.targets.devices, &picked.targets.labels, &picked.targets.glob) {
            (Some(ids), _, _) => ids.iter().map(String::as_str).collect(),
            (_, Some(selector), _) => known
                .iter()
                .filter(|(_, l)| crate::inventory::labels::matches(l, selector))
                .map(|(id, _)| *id)
                .collect(),
            (_, _, Some(pattern)) => known
                .iter()
                .filter(|(id, _)| crate::inventory::glob::matches(pattern, id))
                .map(|(id, _)| *id)
                .collect(),
            _ => Vec::new(),
        };
        let more = shown.len().saturating_sub(4);
        let mut devices = shown.iter().take(4).copied().collect::<Vec<_>>().join(", ");
        if more > 0 {
            devices.push_str(&format!(" and {more} more"));
        }
        if !devices.is_empty() {
            parts.push(format!("devices {devices}"));
        }
        if let Some(image) = self.preview_image() {
            parts.push(format!("named {:?}", self.rollout_name(image)));
        }
        if let Ok(chunk) = self.chunk_size() {
            parts.push(format!("{}-byte chunks", chunk.get()));
        }
        let rate = self.input(Field::MaxRate).value().trim();
        if !rate.is_empty() {
            parts.push(format!("≤{rate} a job"));
        }
        Ok(parts.join(" · "))
    }

    fn preview_image(&self) -> Option<&Image> {
        match &self.preview {
            Preview::Ready(image) => Some(image),
            _ => None,
        }
    }

    /// The rollout's name: as typed, or its image to its devices as typed.
    fn rollout_name(&self, image: &crate::firmware::Image) -> String {
        if let Ok(Some(name)) = fields::name(self.input(Field::Name).value()) {
            return name;
        }
        let mut name = format!("{} to {}", image.name(), self.input(Field::Devices).value().trim());
        while name.len() > crate::rollout::MAX_NAME {
            name.pop();
        }
        name
    }

    /// Enter on a rollout: the first shows it whole and asks for another; the second starts it.
    fn submit_rollout(&mut self, known: &Known<'_>) -> FormOutcome {
        let targets = self.targets(known);
        self.errors[Field::Devices.index()] = targets.as_ref().err().cloned();
        for &field in Field::ROLLOUT {
            self.errors[field.index()] = self.rollout_field_error(field, known);
        }
        let chunk = self.chunk_size();
        self.errors[Field::ChunkSize.index()] = chunk.as_ref().err().cloned();
        let rate = self.max_rate();
        self.errors[Field::MaxRate.index()] = rate.as_ref().err().cloned();
        let image = match &self.preview {
            Preview::Ready(image) => image.clone(),
            Preview::Failed(_) => return FormOutcome::Nothing,
            Preview::Loading => {
                self.submit_when_ready = true;
                self.message = Some("loading the image…".into());
                return FormOutcome::Nothing;
            }
            Preview::Empty => {
                return match self.firmware_changed(true) {
                    FormOutcome::Preview { generation, source } => {
                        self.submit_when_ready = true;
                        FormOutcome::Preview { generation, source }
                    }
                    _ => {
                        self.errors[Field::Firmware.index()] =
                            Some("give a file path or an http(s) URL".into());
                        FormOutcome::Nothing
                    }
                };
            }
        };
        if self.errors.iter().any(Option::is_some) {
            return FormOutcome::Nothing;
        }
        let (Ok(picked), Ok(chunk)) = (targets, chunk) else { return FormOutcome::Nothing };
        let text = |field: Field| self.input(field).value().to_owned();
        let rate = crate::units::parse_rate(text(Field::MaxRate).trim()).ok().map(crate::units::Rate);
        let name = self.rollout_name(&image);
        let retry = fields::retries(&text(Field::Retries)).ok().flatten();
        let request = RolloutRequest {
            name,
            targets: picked.targets,
            chunk_size: Some(u64::from(chunk.get())),
            max_rate: rate,
            waves: fields::waves(&text(Field::Waves), picked.count).ok().flatten().map(|(waves, _)| waves),
            max_per_minute: fields::per_minute(&text(Field::PerMinute)).ok().flatten(),
            max_concurrent: fields::at_once(&text(Field::AtOnce)).ok().flatten(),
            success_threshold: fields::success(&text(Field::Success)).ok().flatten(),
            abort: fields::abort(&text(Field::Abort)).ok().flatten(),
            retries: retry.map(|r| r.count),
            retry_backoff_s: retry.map(|r| r.backoff_s),
            gates: fields::gates(&text(Field::Gates)).ok().flatten(),
            ..RolloutRequest::default()
        };
        if !self.armed {
            self.armed = true;
            // Numbered across every form this process opens: a late dry run of a form closed
            // meanwhile can never pass for the review of a new one.
            self.review = NEXT_REVIEW.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.dry_run = None;
            self.message = Some("Enter again to start this rollout (any change asks again)".into());
            return FormOutcome::DryRun(Box::new((request, image)), self.review);
        }
        self.submitting = true;
        self.message = Some("starting the rollout…".into());
        FormOutcome::Rollout(Box::new((request, image)))
    }

    /// The submission failed; let the operator fix it and try again.
    pub fn submit_failed(&mut self, error: String) {
        self.submitting = false;
        self.message = Some(error);
    }

    /// A completion of the firmware path asked for at `generation` came back: taken (and the
    /// image loaded) if the text has not changed since; with nothing to add, Tab moves on.
    pub fn completed(&mut self, generation: u64, asked: &str, completed: Option<String>) -> FormOutcome {
        if generation != self.generation || self.input(Field::Firmware).value() != asked {
            return FormOutcome::Nothing;
        }
        match completed {
            Some(completed) if completed != asked => {
                self.inputs[Field::Firmware.index()] = Input::new(completed);
                self.firmware_changed(false)
            }
            _ if self.field == Field::Firmware => self.move_field(1),
            _ => FormOutcome::Nothing,
        }
    }
}

fn is_url(text: &str) -> bool {
    text.starts_with("http://") || text.starts_with("https://")
}

fn expand_home(text: &str) -> PathBuf {
    match (text.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(text),
    }
}

/// The longest common completion of `text` among the entries of its directory; a lone
/// directory gets a trailing `/`.
pub fn complete(text: &str) -> Option<String> {
    let (dir_part, prefix) = match text.rfind('/') {
        Some(i) => (&text[..=i], &text[i + 1..]),
        None => ("", text),
    };
    let dir = if dir_part.is_empty() { PathBuf::from(".") } else { expand_home(dir_part) };
    let mut matches: Vec<(String, bool)> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let is_dir = e.file_type().ok()?.is_dir();
            (name.starts_with(prefix) && (!name.starts_with('.') || prefix.starts_with('.')))
                .then_some((name, is_dir))
        })
        .collect();
    matches.sort();
    let first = matches.first()?.0.clone();
    let common = matches.iter().fold(first, |acc, (name, _)| {
        acc.chars().zip(name.chars()).take_while(|(a, b)| a == b).map(|(a, _)| a).collect()
    });
    let slash = if matches.len() == 1 && matches[0].1 { "/" } else { "" };
    Some(format!("{dir_part}{common}{slash}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::crossterm::event::KeyModifiers;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn type_text(form: &mut Form, text: &str, known: &Known<'_>) -> FormOutcome {
        let mut last = FormOutcome::Nothing;
        for c in text.chars() {
            last = form.handle_key(key(KeyCode::Char(c)), known);
        }
        last
    }

    static NO_LABELS: std::sync::LazyLock<crate::inventory::Labels> =
        std::sync::LazyLock::new(Default::default);

    fn known() -> Vec<(&'static str, &'static crate::inventory::Labels)> {
        ["dev-01", "dev-02", "dev-10", "other"].iter().map(|s| (*s, &*NO_LABELS)).collect()
    }

    #[test]
    fn device_lists_expand_prefixes_and_name_bad_characters() {
        let mut form = Form::new(4096);
        type_text(&mut form, "dev-0*, other, other", &known());
        let ids: Vec<String> = form.devices(&known()).unwrap().iter().map(ToString::to_string).collect();
        assert_eq!(ids, ["dev-01", "dev-02", "other"]);
        assert!(form.error(Field::Devices).is_none());

        let mut form = Form::new(4096);
        type_text(&mut form, "dev/1", &known());
        assert!(form.error(Field::Devices).unwrap().contains("'/'"));
        let mut form = Form::new(4096);
        type_text(&mut form, "zz*", &known());
        assert!(form.error(Field::Devices).unwrap().contains("no known device"));
    }

    #[test]
    fn the_form_sets_a_rollouts_name_concurrency_retries_and_gates_and_refuses_bad_ones() {
        let mut form = Form::new(4096);
        type_text(&mut form, "dev-01, dev-02", &known());
        form.preview = Preview::Ready(Image::new("fw.bin", bytes::Bytes::from_static(b"firmware")));
        for (field, text) in [
            (Field::Name, "spring fix"),
            (Field::AtOnce, "5"),
            (Field::Retries, "2 after 60s"),
            (Field::Gates, "manual"),
        ] {
            form.field = field;
            type_text(&mut form, text, &known());
            assert_eq!(form.error(field), None, "{field:?}");
        }
        let review = form.rollout_summary(&known()).unwrap();
        for said in ["named \"spring fix\"", "≤5 at once", "2 retries (from 60 s apart)", "manual gates"] {
            assert!(review.contains(said), "{said:?} in {review}");
        }
        let FormOutcome::DryRun(planned, review) = form.handle_key(key(KeyCode::Enter), &known()) else {
            panic!("a review first, with its dry run asked for")
        };
        assert_eq!((planned.0.name.as_str(), review), ("spring fix", form.review));
        let FormOutcome::Rollout(request) = form.handle_key(key(KeyCode::Enter), &known()) else {
            panic!("the second Enter starts the rollout")
        };
        let request = &request.0;
        assert_eq!(request.name, "spring fix");
        assert_eq!(
            (request.max_concurrent, request.retries, request.retry_backoff_s, request.gates),
            (Some(5), Some(2), Some(60), Some(crate::rollout::Gates::Manual))
        );

        for (field, text, said) in [
            (Field::AtOnce, "0", "1 or more"),
            (Field::Retries, "twice", "number of retries"),
            (Field::Gates, "later", "auto or manual"),
            (Field::Name, "\u{202e}", "control or format"),
        ] {
            let mut form = Form::new(4096);
            form.field = field;
            type_text(&mut form, text, &known());
            assert!(
                form.error(field).is_some_and(|e| e.contains(said)),
                "{field:?}: {:?}",
                form.error(field)
            );
            assert!(form.is_rollout(), "{field:?} makes a rollout");
        }
    }

    #[test]
    fn an_enter_that_starts_nothing_names_the_fields_to_fix_and_goes_to_the_first() {
        let mut form = Form::new(4096);
        type_text(&mut form, "dev/1", &known());
        form.field = Field::MaxRate;
        type_text(&mut form, "fast", &known());
        form.preview = Preview::Ready(Image::new("fw.bin", bytes::Bytes::from_static(b"firmware")));
        assert!(matches!(form.handle_key(key(KeyCode::Enter), &known()), FormOutcome::Nothing));
        assert_eq!(form.field, Field::Devices);
        let message = form.message.clone().unwrap_or_default();
        assert!(message.contains("fix Devices, Max rate"), "{message}");
    }

    #[test]
    fn max_rate_becomes_a_pause_between_chunks_and_bad_rates_say_why() {
        let mut form = Form::new(1024);
        assert_eq!(form.max_rate(), Ok(None));
        form.inputs[Field::MaxRate.index()] = Input::new("50KiB/s".into());
        assert_eq!(form.max_rate(), Ok(Some(std::time::Duration::from_millis(20))));
        form.inputs[Field::MaxRate.index()] = Input::new("fast".into());
        assert!(form.max_rate().unwrap_err().contains("not a rate"));
        form.inputs[Field::MaxRate.index()] = Input::new("10".into());
        assert!(form.max_rate().unwrap_err().contains("over 60 s"));
    }

    #[test]
    fn chunk_size_defaults_and_is_checked() {
        let mut form = Form::new(4096);
        assert_eq!(form.chunk_size().unwrap().get(), 4096);
        form.field = Field::ChunkSize;
        type_text(&mut form, "12x", &known());
        assert!(form.error(Field::ChunkSize).unwrap().contains("whole number"));
        form.inputs[2] = Input::new("32".into());
        assert!(form.chunk_size().unwrap_err().contains("outside"));
    }

    #[test]
    fn a_path_asks_for_a_preview_and_enter_submits_once_it_is_ready() {
        let mut form = Form::new(4096);
        type_text(&mut form, "dev-01", &known());
        form.handle_key(key(KeyCode::Down), &known());
        assert_eq!(form.field, Field::Firmware);
        let outcome = type_text(&mut form, "/x", &known());
        let FormOutcome::Preview { generation, source } = outcome else { panic!("{outcome:?}") };
        assert_eq!(source, FirmwareSource::Path("/x".into()));
        assert!(matches!(form.handle_key(key(KeyCode::Enter), &known()), FormOutcome::Nothing));
        assert_eq!(form.message.as_deref(), Some("loading the image…"));
        let image = Image::new("x", bytes::Bytes::from_static(b"abc"));
        let FormOutcome::Submit(specs) = form.set_preview(generation, Ok(image), &known()) else {
            panic!("submitted when ready")
        };
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].chunk_size.map(ChunkSize::get), Some(4096));
        assert!(form.submitting);
    }

    #[test]
    fn a_stale_or_failed_preview_blocks_submit_with_an_inline_error() {
        let mut form = Form::new(4096);
        type_text(&mut form, "dev-01", &known());
        form.field = Field::Firmware;
        type_text(&mut form, "a", &known());
        let stale = form.generation;
        type_text(&mut form, "b", &known());
        assert!(matches!(form.set_preview(stale, Err("old".into()), &known()), FormOutcome::Nothing));
        assert!(form.error(Field::Firmware).is_none(), "stale answers are dropped");
        form.set_preview(form.generation, Err("cannot read ab: not found".into()), &known());
        assert!(matches!(form.handle_key(key(KeyCode::Enter), &known()), FormOutcome::Nothing));
        assert!(form.error(Field::Firmware).unwrap().contains("not found"));
        assert!(matches!(form.handle_key(key(KeyCode::Esc), &known()), FormOutcome::Close));
    }

    #[test]
    fn a_completion_or_an_answer_clears_what_was_said_about_the_old_text() {
        let mut form = Form::new(4096);
        type_text(&mut form, "dev-01", &known());
        form.field = Field::Firmware;
        type_text(&mut form, "fw/f", &known());
        form.set_preview(form.generation, Err("cannot read fw/f: not found".into()), &known());
        assert!(form.error(Field::Firmware).is_some());
        // Tab asks for a completion; its answer replaces the text and the stale error goes.
        let FormOutcome::Complete { generation, text } = form.handle_key(key(KeyCode::Tab), &known()) else {
            panic!("Tab asks for a completion")
        };
        let outcome = form.completed(generation, &text, Some("fw/fw.bin".into()));
        assert!(matches!(outcome, FormOutcome::Preview { .. }));
        assert_eq!(form.input(Field::Firmware).value(), "fw/fw.bin");
        assert!(form.error(Field::Firmware).is_none(), "the old text's error is gone");
        // Enter while loading says so; the answer, even a failure, replaces that.
        form.handle_key(key(KeyCode::Enter), &known());
        assert_eq!(form.message.as_deref(), Some("loading the image…"));
        form.set_preview(form.generation, Err("cannot read fw/fw.bin: denied".into()), &known());
        assert_eq!(form.message, None);
        assert!(form.error(Field::Firmware).unwrap().contains("denied"));
        // A completion for text that changed since is dropped.
        let stale = form.generation;
        type_text(&mut form, "x", &known());
        assert!(matches!(
            form.completed(stale, "fw/fw.bin", Some("fw/fw.bin.old".into())),
            FormOutcome::Nothing
        ));
        assert_eq!(form.input(Field::Firmware).value(), "fw/fw.binx");
    }

    #[test]
    fn urls_are_fetched_on_leaving_the_field_not_per_keystroke() {
        let mut form = Form::new(4096);
        form.field = Field::Firmware;
        assert!(matches!(type_text(&mut form, "http://127.0.0.1:9/fw.bin", &known()), FormOutcome::Nothing));
        assert!(matches!(form.handle_key(key(KeyCode::Down), &known()), FormOutcome::Preview { .. }));
    }

    #[test]
    fn tab_completes_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("firmware-1.2.bin"), b"x").unwrap();
        std::fs::write(dir.path().join("firmware-1.3.bin"), b"x").unwrap();
        std::fs::create_dir(dir.path().join("images")).unwrap();
        let base = format!("{}/", dir.path().display());
        assert_eq!(complete(&format!("{base}fir")).unwrap(), format!("{base}firmware-1."));
        assert_eq!(complete(&format!("{base}im")).unwrap(), format!("{base}images/"));
        assert!(complete(&format!("{base}zzz")).is_none());
    }
}
