//! The new-job form: devices, firmware and chunk size, validated as the operator types, with the
//! image's size and SHA-256 shown before anything is submitted.

use std::path::{Path, PathBuf};

use ratatui::crossterm::event::{Event as TermEvent, KeyCode, KeyEvent};
use tui_input::Input;
use tui_input::backend::crossterm::EventHandler;

use crate::engine::JobSpec;
use crate::firmware::{ChunkSize, FirmwareSource, Image};
use crate::protocol::DeviceId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Devices,
    Firmware,
    ChunkSize,
    MaxRate,
}

impl Field {
    pub const ALL: [Field; 4] = [Field::Devices, Field::Firmware, Field::ChunkSize, Field::MaxRate];

    pub fn label(self) -> &'static str {
        match self {
            Field::Devices => "Devices",
            Field::Firmware => "Firmware",
            Field::ChunkSize => "Chunk size",
            Field::MaxRate => "Max rate",
        }
    }

    fn index(self) -> usize {
        match self {
            Field::Devices => 0,
            Field::Firmware => 1,
            Field::ChunkSize => 2,
            Field::MaxRate => 3,
        }
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
    pub inputs: [Input; 4],
    pub default_chunk: u32,
    pub errors: [Option<String>; 4],
    pub preview: Preview,
    /// Bumped whenever the firmware text changes, so a late preview for old text is dropped.
    pub generation: u64,
    /// Submit as soon as the preview for the current text arrives.
    submit_when_ready: bool,
    pub submitting: bool,
    pub message: Option<String>,
}

/// What the form wants done after a key.
#[derive(Debug)]
pub enum FormOutcome {
    Nothing,
    Close,
    Preview { generation: u64, source: FirmwareSource },
    Submit(Vec<JobSpec>),
}

impl Form {
    pub fn new(default_chunk: u32) -> Self {
        Self {
            field: Field::Devices,
            inputs: Default::default(),
            default_chunk,
            errors: Default::default(),
            preview: Preview::Empty,
            generation: 0,
            submit_when_ready: false,
            submitting: false,
            message: None,
        }
    }

    pub fn input(&self, field: Field) -> &Input {
        &self.inputs[field.index()]
    }

    pub fn error(&self, field: Field) -> Option<&str> {
        self.errors[field.index()].as_deref()
    }

    pub fn handle_key(&mut self, key: KeyEvent, known_devices: &[String]) -> FormOutcome {
        match key.code {
            KeyCode::Esc => return FormOutcome::Close,
            KeyCode::Enter => return self.submit(known_devices),
            KeyCode::Down => return self.move_field(1),
            KeyCode::Up | KeyCode::BackTab => return self.move_field(-1),
            KeyCode::Tab if self.field == Field::Firmware => {
                if !self.complete_path() {
                    return self.move_field(1);
                }
                return self.firmware_changed(false);
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
        match self.field {
            Field::Firmware => self.firmware_changed(false),
            Field::Devices => {
                self.errors[index] = self.devices(known_devices).err();
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

    /// Starts loading the named image; a URL only when `fetch_urls`.
    fn firmware_changed(&mut self, fetch_urls: bool) -> FormOutcome {
        self.generation += 1;
        self.submit_when_ready = false;
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

    /// The loader's answer. Returns the jobs to submit if Enter was pressed while it loaded.
    pub fn set_preview(
        &mut self,
        generation: u64,
        result: Result<Image, String>,
        known: &[String],
    ) -> Option<Vec<JobSpec>> {
        if generation != self.generation {
            return None; // for text that has changed since
        }
        self.preview = match result {
            Ok(image) => Preview::Ready(image),
            Err(e) => {
                self.errors[Field::Firmware.index()] = Some(e.clone());
                Preview::Failed(e)
            }
        };
        if std::mem::take(&mut self.submit_when_ready)
            && let FormOutcome::Submit(specs) = self.submit(known)
        {
            return Some(specs);
        }
        None
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
    pub fn devices(&self, known: &[String]) -> Result<Vec<DeviceId>, String> {
        let mut out: Vec<DeviceId> = Vec::new();
        let text = self.input(Field::Devices).value();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if let Some(prefix) = item.strip_suffix('*') {
                let matched: Vec<&String> = known.iter().filter(|d| d.starts_with(prefix)).collect();
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
        let rate = crate::units::parse_rate(text)?;
        let chunk = self.chunk_size().map_or(self.default_chunk, ChunkSize::get);
        let pause = crate::units::Rate(rate).interval(chunk);
        if pause.is_some_and(|p| p > std::time::Duration::from_secs(60)) {
            return Err(format!("{text} is so low that one chunk would take over a minute"));
        }
        Ok(pause)
    }

    fn submit(&mut self, known: &[String]) -> FormOutcome {
        if self.submitting {
            return FormOutcome::Nothing;
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
                device,
                image: image.clone(),
                chunk_size: Some(chunk),
                chunk_interval: pause,
            })
            .collect();
        FormOutcome::Submit(specs)
    }

    /// The submission failed; let the operator fix it and try again.
    pub fn submit_failed(&mut self, error: String) {
        self.submitting = false;
        self.message = Some(error);
    }

    /// Completes the firmware path to the longest unambiguous prefix. True if it changed.
    fn complete_path(&mut self) -> bool {
        let text = self.input(Field::Firmware).value().to_owned();
        if is_url(&text) {
            return false;
        }
        let Some(completed) = complete(&text) else { return false };
        if completed == text {
            return false;
        }
        self.inputs[Field::Firmware.index()] = Input::new(completed);
        true
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

    fn type_text(form: &mut Form, text: &str, known: &[String]) -> FormOutcome {
        let mut last = FormOutcome::Nothing;
        for c in text.chars() {
            last = form.handle_key(key(KeyCode::Char(c)), known);
        }
        last
    }

    fn known() -> Vec<String> {
        ["dev-01", "dev-02", "dev-10", "other"].iter().map(|s| s.to_string()).collect()
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
    fn max_rate_becomes_a_pause_between_chunks_and_bad_rates_say_why() {
        let mut form = Form::new(1024);
        assert_eq!(form.max_rate(), Ok(None));
        form.inputs[Field::MaxRate.index()] = Input::new("50KiB/s".into());
        assert_eq!(form.max_rate(), Ok(Some(std::time::Duration::from_millis(20))));
        form.inputs[Field::MaxRate.index()] = Input::new("fast".into());
        assert!(form.max_rate().unwrap_err().contains("not a rate"));
        form.inputs[Field::MaxRate.index()] = Input::new("10".into());
        assert!(form.max_rate().unwrap_err().contains("over a minute"));
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
        let specs = form.set_preview(generation, Ok(image), &known()).expect("submitted when ready");
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
        assert!(form.set_preview(stale, Err("old".into()), &known()).is_none());
        assert!(form.error(Field::Firmware).is_none(), "stale answers are dropped");
        form.set_preview(form.generation, Err("cannot read ab: not found".into()), &known());
        assert!(matches!(form.handle_key(key(KeyCode::Enter), &known()), FormOutcome::Nothing));
        assert!(form.error(Field::Firmware).unwrap().contains("not found"));
        assert!(matches!(form.handle_key(key(KeyCode::Esc), &known()), FormOutcome::Close));
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
