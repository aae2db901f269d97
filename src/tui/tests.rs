//! Whole screens from fixture states (insta snapshots of `TestBackend`), styles where colour
//! carries meaning, and every key binding's effect.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use ratatui::style::Color;

use super::app::{App, Confirm, Overlay, Pane};
use super::input::{Command, Outcome};
use super::theme::Theme;
use super::ui;
use crate::engine::{Event, JobId, JobState, JobView, RolloutId};
use crate::firmware::{ChunkSize, Image};
use crate::protocol::{DeviceId, Topics, describe};
use crate::service::{
    Clock, ConnectionState, Envelope, JobChange, JobChanges, Received, RuntimeEvent, Traffic,
    TrafficDirection,
};
use crate::snapshot::JobSnapshot;

const T0: Duration = Duration::from_secs(1_795_000_000); // a fixed wall-clock origin

struct Fixture {
    app: App,
    mono: Instant,
    seq: u64,
    image: Image,
    /// Each job as the engine would hold it; pushed to the app as the job table would.
    snapshots: std::collections::BTreeMap<JobId, JobSnapshot>,
}

impl Fixture {
    fn new(theme: Theme) -> Self {
        let mono = Instant::now();
        let clock = Clock::fixed(mono, SystemTime::UNIX_EPOCH + T0);
        let mut app = App::new(clock, "mqtt://127.0.0.1:1883".into(), 10_000, theme);
        app.session.http = Some("127.0.0.1:7878".into());
        app.now = SystemTime::UNIX_EPOCH + T0 + Duration::from_secs(12);
        app.log_path = Some("/home/op/.local/share/rocky/rocky.log".into());
        let image = Image::new("sensor-fw-2.1.0.bin", Bytes::from(vec![7u8; 192 * 1024]));
        Self { app, mono, seq: 0, image, snapshots: Default::default() }
    }

    fn at(&self, ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + T0 + Duration::from_millis(ms)
    }

    fn send(&mut self, ms: u64, event: RuntimeEvent) {
        self.seq += 1;
        let envelope = Envelope::new(self.seq, self.at(ms), event);
        self.app.apply(&Received::Event(Arc::new(envelope)));
    }

    /// Changes a job's snapshot and hands it to the app, as the runtime's job table does.
    fn update(&mut self, id: JobId, change: impl FnOnce(&mut JobSnapshot)) {
        let Some(snapshot) = self.snapshots.get_mut(&id) else { return };
        change(snapshot);
        let changes = JobChanges {
            reset: false,
            changes: vec![JobChange::Job(Arc::new(snapshot.clone()))],
            cursor: 0,
            complete: true,
        };
        self.app.apply_jobs(&changes);
    }

    fn job(&mut self, id: JobId, device: &str, ms: u64) {
        let image = self.image.clone();
        let view = JobView {
            rollout: None,
            id,
            device: DeviceId::parse(device).unwrap(),
            image,
            chunk_size: ChunkSize::new(2048).unwrap(),
            chunk_interval: Duration::ZERO,
            state: JobState::Queued,
            chunks_done: 0,
            chunks_confirmed: None,
            window: None,
            chunks_total: 96,
            bytes_sent: 0,
            attempts: 0,
            error: None,
            reason_code: None,
            created_at: self.mono + Duration::from_millis(ms),
            started_at: None,
            finished_at: None,
            force: false,
            confirm_boot: None,
            confirmed_at: None,
            manifest: None,
            delta: None,
            aws: None,
        };
        let snapshot = JobSnapshot::new(&view, &self.app.clock);
        self.snapshots.insert(id, snapshot);
        self.update(id, |_| {});
        self.send(ms, RuntimeEvent::Engine(Event::Created(Box::new(view))));
    }

    fn state(
        &mut self,
        id: JobId,
        device: &str,
        ms: u64,
        from: JobState,
        to: JobState,
        detail: Option<&str>,
    ) {
        let at = self.at(ms).duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as u64;
        self.update(id, |job| {
            job.state = to;
            match to {
                JobState::Requesting => job.attempts = job.attempts.max(1),
                JobState::Transferring => job.started_at = Some(at),
                JobState::Succeeded => job.chunks_done = job.chunks_total,
                _ => {}
            }
            if to.is_final() {
                job.finished_at = Some(at);
                job.error = detail.filter(|_| to != JobState::Succeeded).map(str::to_owned);
            }
        });
        let event = Event::StateChanged {
            job: id,
            device: DeviceId::parse(device).unwrap(),
            from,
            to,
            detail: detail.map(str::to_owned),
        };
        self.send(ms, RuntimeEvent::Engine(event));
    }

    fn chunks(&mut self, id: JobId, device: &str, ms: u64, upto: u32) {
        for chunk in 1..=upto {
            let event = Event::ChunkSent {
                job: id,
                device: DeviceId::parse(device).unwrap(),
                chunk,
                total: 96,
                bytes: 2048,
            };
            self.send(ms + u64::from(chunk) * 10, RuntimeEvent::Engine(event));
            self.update(id, |job| {
                job.chunks_done = chunk;
                job.bytes_sent += 2048;
            });
            let topic = format!("/fota/data/{device}/{chunk}");
            let payload = Bytes::from(vec![0xabu8; 2048]);
            self.traffic(
                ms + u64::from(chunk) * 10,
                TrafficDirection::Out,
                &topic,
                payload,
                Some(id),
                Some(chunk),
            );
        }
    }

    fn traffic(
        &mut self,
        ms: u64,
        direction: TrafficDirection,
        topic: &str,
        payload: Bytes,
        job: Option<JobId>,
        chunk: Option<u32>,
    ) {
        let topics = Topics::default();
        let text = describe(&topics, topic, &payload);
        let device =
            topic.rsplit('/').nth(usize::from(chunk.is_some())).and_then(|d| DeviceId::parse(d).ok());
        let traffic = Traffic {
            direction,
            topic: topic.to_owned(),
            qos: 1,
            size: payload.len(),
            decode_error: text.contains("decode error"),
            text,
            payload,
            device,
            job,
            chunk,
        };
        self.send(ms, RuntimeEvent::Traffic(traffic));
    }

    /// A rollout in progress: every state on screen, decoded traffic including a decode error.
    fn mid_rollout(theme: Theme) -> Self {
        use JobState::*;
        let mut f = Self::new(theme);
        f.send(0, RuntimeEvent::Connection(ConnectionState::Connected));
        let request = |id: u32| {
            let mut v = vec![0x83u8, 0x18, id as u8, 0x01, 0x98, 0x20];
            v.extend(std::iter::repeat_n(0x07u8, 32));
            Bytes::from(v)
        };
        let devices = ["dev-01", "dev-02", "dev-03", "dev-04", "dev-05", "dev-06"];
        for (i, device) in devices.iter().enumerate() {
            f.job(JobId::new(i as u32 + 41), device, 100);
        }
        for (i, device) in devices.iter().take(5).enumerate() {
            let id = i as u32 + 41;
            f.state(JobId::new(id), device, 110, Queued, Requesting, None);
            f.traffic(
                110,
                TrafficDirection::Out,
                &format!("/fota/cmd/{device}"),
                request(id as u8 as u32),
                Some(JobId::new(id)),
                None,
            );
        }
        // dev-01 succeeded
        f.traffic(
            300,
            TrafficDirection::In,
            "/fota/cmd_resp/dev-01",
            Bytes::from_static(&[0x82, 0x18, 41, 0x02]),
            Some(JobId::new(41)),
            None,
        );
        f.state(JobId::new(41), "dev-01", 300, Requesting, Transferring, None);
        f.chunks(JobId::new(41), "dev-01", 300, 96);
        f.state(JobId::new(41), "dev-01", 1400, Transferring, Finishing, None);
        f.traffic(
            1400,
            TrafficDirection::Out,
            "/fota/cmd/dev-01",
            Bytes::from_static(&[0x83, 0x18, 41, 0x04, 0x80]),
            Some(JobId::new(41)),
            None,
        );
        f.traffic(
            1500,
            TrafficDirection::In,
            "/fota/cmd_resp/dev-01",
            Bytes::from_static(&[0x82, 0x18, 41, 0x05]),
            Some(JobId::new(41)),
            None,
        );
        f.state(JobId::new(41), "dev-01", 1500, Finishing, Succeeded, None);
        // dev-02 transferring, half way
        f.traffic(
            400,
            TrafficDirection::In,
            "/fota/cmd_resp/dev-02",
            Bytes::from_static(&[0x82, 0x18, 42, 0x02]),
            Some(JobId::new(42)),
            None,
        );
        f.state(JobId::new(42), "dev-02", 400, Requesting, Transferring, None);
        f.chunks(JobId::new(42), "dev-02", 400, 48);
        // dev-03 refused
        f.traffic(
            500,
            TrafficDirection::In,
            "/fota/cmd_resp/dev-03",
            Bytes::from_static(&[0x82, 0x18, 43, 0x03]),
            Some(JobId::new(43)),
            None,
        );
        f.state(JobId::new(43), "dev-03", 500, Requesting, Rejected, Some("battery below 20%"));
        // dev-04 silent: retried, then timed out
        f.update(JobId::new(44), |job| job.attempts = 2);
        f.send(
            2110,
            RuntimeEvent::Engine(Event::RequestRetried {
                job: JobId::new(44),
                device: DeviceId::parse("dev-04").unwrap(),
                attempt: 2,
            }),
        );
        f.state(
            JobId::new(44),
            "dev-04",
            4110,
            Requesting,
            TimedOut,
            Some("no answer to the last 2 FOTA_REQUESTs (2 s each)"),
        );
        // dev-05 sends garbage
        f.traffic(
            600,
            TrafficDirection::In,
            "/fota/cmd_resp/dev-05",
            Bytes::from_static(&[0xff, 0x00, 0x13]),
            None,
            None,
        );
        f.app.jobs.cursor = super::app::Cursor { selected: 1, ..Default::default() };
        f
    }

    fn render(&self, width: u16, height: u16) -> Terminal<TestBackend> {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|frame| ui::draw(frame, &self.app)).unwrap();
        terminal
    }

    fn key(&mut self, code: KeyCode) -> Outcome {
        self.app.handle_key(KeyEvent::new(code, KeyModifiers::NONE))
    }
}

#[test]
fn main_view_mid_rollout() {
    let mut f = Fixture::mid_rollout(Theme::color());
    f.app.size = (160, 45);
    insta::assert_snapshot!(f.render(160, 45).backend());
}

#[test]
fn main_view_at_80_by_24() {
    let mut f = Fixture::mid_rollout(Theme::color());
    f.app.size = (80, 24);
    insta::assert_snapshot!(f.render(80, 24).backend());
}

/// A job that sends a patch says so in its row: the patch's bytes against its image's.
#[test]
fn a_job_sending_a_patch_shows_delta_bytes_of_the_image_in_its_row() {
    let mut f = Fixture::mid_rollout(Theme::color());
    let id = *f.app.jobs.rows.keys().next().unwrap();
    f.update(id, |job| {
        job.delta = Some(Box::new(crate::firmware::DeltaInfo {
            base: [1; 32],
            patch_size: 23 * 1024,
            patch_sha256: [2; 32],
        }));
        job.bytes_sent = 23 * 1024;
    });
    f.app.size = (160, 45);
    let text = format!("{}", f.render(160, 45).backend());
    let row = text.lines().find(|line| line.contains("Δ")).unwrap_or_else(|| panic!("{text}"));
    assert!(row.contains("Δ 23 KiB of 192 KiB"), "{row}");
}

#[test]
fn main_view_at_100_by_30_with_rollouts() {
    let mut f = Fixture::mid_rollout(Theme::color());
    with_rollouts(&mut f);
    f.app.size = (100, 30);
    let screen = f.render(100, 30);
    let text = format!("{}", screen.backend());
    // Every count whole, the way out in the footer, every pane reachable.
    assert!(text.contains("1 timed out") || text.contains("1 t/o"), "{text}");
    assert!(
        text.lines().last().unwrap().trim_end().trim_end_matches('"').trim_end().ends_with("? help  q quit"),
        "{text}"
    );
    insta::assert_snapshot!(screen.backend());
}

#[test]
fn devices_pane_takes_the_traffic_place_at_80_columns() {
    let mut f = Fixture::mid_rollout(Theme::color());
    f.app.size = (80, 24);
    f.app.focus = Pane::Devices;
    insta::assert_snapshot!(f.render(80, 24).backend());
}

#[test]
fn job_detail_shows_the_timeline_and_traffic() {
    let mut f = Fixture::mid_rollout(Theme::color());
    f.app.overlay = Some(Overlay::JobDetail { job: JobId::new(44), scroll: 0 });
    insta::assert_snapshot!(f.render(120, 40).backend());
}

#[test]
fn traffic_detail_shows_cbor_and_hex() {
    let mut f = Fixture::mid_rollout(Theme::color());
    let seq = f.app.traffic.iter().find(|l| l.text.contains("FOTA_REQUEST_NACK")).unwrap().seq;
    f.app.overlay = Some(Overlay::TrafficDetail { seq, scroll: 0 });
    insta::assert_snapshot!(f.render(100, 30).backend());
}

#[test]
fn form_shows_an_inline_error() {
    let mut f = Fixture::mid_rollout(Theme::color());
    f.key(KeyCode::Char('n'));
    for c in "dev-01, dev/07".chars() {
        f.key(KeyCode::Char(c));
    }
    insta::assert_snapshot!(f.render(100, 30).backend());
}

#[test]
fn the_form_says_whether_the_previewed_image_is_signed_and_by_which_key() {
    let mut f = Fixture::mid_rollout(Theme::color());
    f.key(KeyCode::Char('n'));
    let image = crate::firmware::Image::new("fw.bin", bytes::Bytes::from_static(b"firmware"));
    let key = crate::signing::SigningKey::generate(crate::signing::Alg::Ed25519).unwrap();
    let payload = crate::protocol::ManifestPayload {
        image_sha256: *image.sha256(),
        size: image.size(),
        version: None,
        seq: 4,
    };
    let Some(Overlay::Form(form)) = f.app.overlay.as_mut() else { panic!("the form is open") };
    form.preview = crate::tui::form::Preview::Ready(image);
    let text = format!("{}", f.render(200, 50).backend());
    assert!(text.contains("· unsigned"), "{text}");
    let Some(Overlay::Form(form)) = f.app.overlay.as_mut() else { panic!("the form is open") };
    form.manifest = Some(crate::protocol::Manifest::sign(payload, &key));
    let text = format!("{}", f.render(200, 50).backend());
    assert!(text.contains(&format!("signed by key {} (seq 4)", key.kid())), "{text}");
}

#[test]
fn help_is_generated_from_the_keymap() {
    let mut f = Fixture::mid_rollout(Theme::color());
    f.key(KeyCode::Char('?'));
    let screen = f.render(100, 60);
    for binding in &f.app.keymap.bindings {
        let text = format!("{}", screen.backend());
        assert!(text.contains(binding.help), "{} missing from help", binding.help);
    }
    assert!(format!("{}", screen.backend()).contains("/home/op/.local/share/rocky/rocky.log"));
    insta::assert_snapshot!(screen.backend());
}

#[test]
fn confirm_popup_before_cancel() {
    let mut f = Fixture::mid_rollout(Theme::color());
    f.app.size = (100, 30);
    f.key(KeyCode::Char('c')); // job 42 (transferring) is selected
    assert!(matches!(f.app.overlay, Some(Overlay::Confirm(Confirm::Cancel(id))) if id == JobId::new(42)));
    insta::assert_snapshot!(f.render(100, 30).backend());
}

/// The style of the first cell whose text starts a word `word` on screen.
fn style_of(terminal: &Terminal<TestBackend>, word: &str) -> ratatui::style::Style {
    let buffer = terminal.backend().buffer();
    let width = buffer.area.width;
    for y in 0..buffer.area.height {
        let row: String = (0..width).map(|x| buffer[(x, y)].symbol().to_owned()).collect();
        if let Some(i) = row.find(word) {
            let x = row[..i].chars().count() as u16;
            return buffer[(x, y)].style();
        }
    }
    panic!("{word:?} not on screen");
}

#[test]
fn states_carry_meaning_in_colour_and_no_color_removes_it() {
    let mut f = Fixture::mid_rollout(Theme::color());
    f.app.size = (160, 45);
    let screen = f.render(160, 45);
    assert_eq!(style_of(&screen, "succeeded").fg, Some(Color::Green));
    assert_eq!(style_of(&screen, "rejected").fg, Some(Color::Red));
    assert_eq!(style_of(&screen, "timed out").fg, Some(Color::Red));
    assert_eq!(style_of(&screen, "decode error").fg, Some(Color::Red));

    let mut mono = Fixture::mid_rollout(Theme::monochrome());
    mono.app.size = (160, 45);
    let screen = mono.render(160, 45);
    let buffer = screen.backend().buffer();
    assert!(
        buffer.content().iter().all(|c| c.fg == Color::Reset && c.bg == Color::Reset),
        "no colour at all"
    );
    assert!(style_of(&screen, "rejected").add_modifier.contains(ratatui::style::Modifier::BOLD));
}

/// Every colour a screen uses, foreground and background.
fn colours(terminal: &Terminal<TestBackend>) -> std::collections::BTreeSet<String> {
    terminal
        .backend()
        .buffer()
        .content()
        .iter()
        .flat_map(|c| [format!("{:?}", c.fg), format!("{:?}", c.bg)])
        .collect()
}

#[test]
fn the_light_palette_has_no_faint_yellow_or_cyan_and_both_palettes_read_the_same() {
    let mut dark = Fixture::mid_rollout(Theme::color());
    dark.app.size = (160, 45);
    let dark_screen = dark.render(160, 45);
    let mut light = Fixture::mid_rollout(Theme::light());
    light.app.size = (160, 45);
    let light_screen = light.render(160, 45);
    // The same text either way; only the colours differ.
    assert_eq!(format!("{}", dark_screen.backend()), format!("{}", light_screen.backend()));
    let used = colours(&light_screen);
    for faint in ["Yellow", "Cyan", "LightYellow", "LightCyan", "White"] {
        assert!(!used.contains(faint), "{faint} on a light background: {used:?}");
    }
    assert!(used.iter().all(|c| !c.starts_with("Rgb")), "no fixed colours, no fixed background");
    assert_eq!(style_of(&light_screen, "succeeded").fg, Some(Color::Indexed(28)));
    assert_eq!(style_of(&light_screen, "rejected").fg, Some(Color::Indexed(160)));
    insta::assert_snapshot!("light_palette_mid_rollout", format!("{:?}", used));
    insta::assert_snapshot!("dark_palette_mid_rollout", format!("{:?}", colours(&dark_screen)));
}

#[test]
fn an_unverified_broker_certificate_is_shown_in_red_with_the_reason_for_a_failure() {
    let mut f = Fixture::mid_rollout(Theme::color());
    f.app.size = (160, 45);
    f.app.session.insecure_tls = true;
    f.app.connection = crate::service::ConnectionState::Reconnecting {
        attempt: 3,
        delay_ms: 400,
        reason: "the broker refused the subscription (check its ACL)".into(),
    };
    let screen = f.render(160, 45);
    assert_eq!(style_of(&screen, "INSECURE TLS").fg, Some(Color::Red));
    let top: String = (0..160).map(|x| screen.backend().buffer()[(x, 0)].symbol().to_owned()).collect();
    assert!(top.contains("refused the subscription"), "{top}");
}

#[test]
fn navigation_keys_move_focus_and_selection() {
    let mut f = Fixture::mid_rollout(Theme::color());
    f.app.size = (160, 45);
    f.app.jobs.cursor = super::app::Cursor { selected: 0, ..Default::default() };
    f.key(KeyCode::Char('j'));
    f.key(KeyCode::Down);
    assert_eq!(f.app.selected_job().unwrap().id, JobId::new(43));
    f.key(KeyCode::Char('k'));
    assert_eq!(f.app.selected_job().unwrap().id, JobId::new(42));
    f.key(KeyCode::Char('G'));
    assert_eq!(f.app.selected_job().unwrap().id, JobId::new(46));
    f.key(KeyCode::Char('g'));
    assert_eq!(f.app.selected_job().unwrap().id, JobId::new(41));
    f.key(KeyCode::PageDown);
    assert_eq!(f.app.selected_job().unwrap().id, JobId::new(46));
    f.key(KeyCode::PageUp);
    assert_eq!(f.app.selected_job().unwrap().id, JobId::new(41));
    f.key(KeyCode::Tab);
    assert_eq!(f.app.focus, Pane::Traffic, "no rollouts: Tab passes their pane over");
    f.key(KeyCode::Tab);
    assert_eq!(f.app.focus, Pane::Devices);
    f.key(KeyCode::BackTab);
    assert_eq!(f.app.focus, Pane::Traffic);
    // Enter on a traffic line opens its detail; Esc closes it.
    f.key(KeyCode::Enter);
    assert!(matches!(f.app.overlay, Some(Overlay::TrafficDetail { .. })));
    f.key(KeyCode::Esc);
    assert!(f.app.overlay.is_none());
}

#[test]
fn traffic_freezes_on_scroll_and_follows_again_on_g() {
    let mut f = Fixture::mid_rollout(Theme::color());
    f.app.size = (160, 45);
    f.key(KeyCode::Tab);
    assert!(f.app.traffic.view.follow);
    let last = f.app.selected_traffic_seq().unwrap();
    f.key(KeyCode::Up);
    assert!(!f.app.traffic.view.follow, "scrolling up freezes");
    assert!(f.app.selected_traffic_seq().unwrap() < last);
    f.key(KeyCode::Char('G'));
    assert!(f.app.traffic.view.follow);
    f.key(KeyCode::Char('f'));
    assert!(!f.app.traffic.view.follow);
    f.key(KeyCode::Char('p'));
    assert!(f.app.traffic.view.follow);
    f.key(KeyCode::Char('t'));
    assert!(f.app.traffic.show_chunks);
}

#[test]
fn filters_narrow_the_focused_pane() {
    let mut f = Fixture::mid_rollout(Theme::color());
    f.key(KeyCode::Char('/'));
    for c in "timed".chars() {
        f.key(KeyCode::Char(c));
    }
    assert_eq!(f.app.visible_jobs().len(), 1, "filters while typing");
    f.key(KeyCode::Enter);
    assert_eq!(f.app.filter(Pane::Jobs), "timed");
    assert_eq!(f.app.visible_jobs()[0].id, JobId::new(44));
    f.key(KeyCode::Esc);
    assert_eq!(f.app.visible_jobs().len(), 6, "Esc clears the filter");
    f.key(KeyCode::Tab);
    f.key(KeyCode::Char('/'));
    for c in "nack".chars() {
        f.key(KeyCode::Char(c));
    }
    f.key(KeyCode::Enter);
    assert_eq!(f.app.visible_traffic().len(), 1);
    *f.app.filter_mut(Pane::Traffic) = "#42".into();
    assert!(f.app.visible_traffic().iter().all(|l| l.job == Some(JobId::new(42))));
}

#[test]
fn cancel_and_retry_ask_first_and_only_fit_their_states() {
    let mut f = Fixture::mid_rollout(Theme::color());
    f.app.jobs.cursor = super::app::Cursor { selected: 1, ..Default::default() }; // 42 transferring
    f.key(KeyCode::Char('c'));
    assert!(
        matches!(f.key(KeyCode::Char('y')), Outcome::Command(Command::Cancel(id)) if id == JobId::new(42))
    );
    f.key(KeyCode::Char('c'));
    assert!(matches!(f.key(KeyCode::Char('n')), Outcome::Redraw));
    assert!(f.app.overlay.is_none(), "n declines");
    f.key(KeyCode::Char('r'));
    assert!(f.app.flash.as_ref().unwrap().error, "an active job cannot be retried");
    f.app.jobs.cursor = super::app::Cursor { selected: 2, ..Default::default() }; // 43 rejected
    f.key(KeyCode::Char('c'));
    assert!(f.app.flash.as_ref().unwrap().text.contains("already ended"));
    f.key(KeyCode::Char('r'));
    assert!(matches!(f.app.overlay, Some(Overlay::Confirm(Confirm::Retry(id))) if id == JobId::new(43)));
    assert!(matches!(f.key(KeyCode::Enter), Outcome::Command(Command::Retry(id)) if id == JobId::new(43)));
}

#[test]
fn quit_asks_while_jobs_are_active() {
    let mut f = Fixture::mid_rollout(Theme::color());
    assert!(matches!(f.key(KeyCode::Char('q')), Outcome::Redraw));
    assert!(matches!(f.app.overlay, Some(Overlay::Confirm(Confirm::Quit { active: 3 }))));
    assert!(matches!(f.key(KeyCode::Char('y')), Outcome::Quit));
    let mut idle = Fixture::new(Theme::color());
    assert!(matches!(
        idle.app.handle_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        Outcome::Quit
    ));
}

#[test]
fn form_and_help_open_and_close() {
    let mut f = Fixture::mid_rollout(Theme::color());
    f.key(KeyCode::Char('n'));
    assert!(matches!(f.app.overlay, Some(Overlay::Form(_))));
    f.key(KeyCode::Char('q')); // typed into the form, not quit
    assert!(matches!(f.app.overlay, Some(Overlay::Form(_))));
    f.key(KeyCode::Esc);
    assert!(f.app.overlay.is_none());
    f.key(KeyCode::Char('?'));
    assert!(matches!(f.app.overlay, Some(Overlay::Help { .. })));
    f.key(KeyCode::Char('?'));
    assert!(f.app.overlay.is_none());
}

#[test]
fn mouse_click_selects_and_wheel_scrolls() {
    let mut f = Fixture::mid_rollout(Theme::color());
    f.app.size = (160, 45);
    f.app.focus = Pane::Traffic;
    // The jobs table starts at row 2 (below the status bar); its first data row is row 4.
    let click = MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column: 10,
        row: 6,
        modifiers: KeyModifiers::NONE,
    };
    f.app.handle_mouse(click);
    assert_eq!(f.app.focus, Pane::Jobs);
    assert_eq!(f.app.selected_job().unwrap().id, JobId::new(43));
    let wheel =
        MouseEvent { kind: MouseEventKind::ScrollDown, column: 10, row: 6, modifiers: KeyModifiers::NONE };
    f.app.handle_mouse(wheel);
    assert_eq!(f.app.selected_job().unwrap().id, JobId::new(46));
}

#[test]
fn ten_thousand_jobs_render_only_the_viewport() {
    let mut f = Fixture::new(Theme::color());
    for id in 1..=10_000u32 {
        f.job(JobId::new(id), &format!("dev-{id:05}"), 0);
    }
    f.app.size = (80, 24);
    f.app.jobs.cursor = super::app::Cursor { selected: 9_999, ..Default::default() };
    f.app.handle_key(KeyEvent::new(KeyCode::Char('k'), KeyModifiers::NONE));
    let screen = format!("{}", f.render(80, 24).backend());
    assert!(
        screen.contains("dev-09999") && !screen.contains("dev-00001"),
        "the viewport follows the selection"
    );
}

#[test]
fn history_view_lists_finished_jobs_newest_first_and_detail_asks_for_the_stored_timeline() {
    let mut f = Fixture::mid_rollout(Theme::color());
    f.app.size = (160, 45);
    f.key(KeyCode::Char('h'));
    let ids: Vec<u32> = f.app.visible_jobs().iter().map(|j| j.id.get()).collect();
    assert_eq!(ids, vec![44, 41, 43], "finished jobs only, the last to finish first");
    assert!(format!("{}", f.render(160, 45).backend()).contains("History 3"));
    assert!(
        matches!(f.key(KeyCode::Enter), Outcome::Command(Command::LoadHistory(id)) if id == JobId::new(44))
    );
    let stored = vec![
        (f.at(0), "queued: created".to_owned()),
        (f.at(10), "requesting".to_owned()),
        (f.at(20), "queued: recovered after a restart".to_owned()),
        (f.at(30), "requesting".to_owned()),
        (f.at(40), "timed_out".to_owned()),
    ];
    f.app.load_timeline(JobId::new(44), stored);
    assert_eq!(f.app.jobs.rows[&JobId::new(44)].timeline.len(), 5);
    f.app.load_timeline(JobId::new(44), Vec::new());
    assert_eq!(
        f.app.jobs.rows[&JobId::new(44)].timeline.len(),
        5,
        "a shorter stored timeline does not replace a longer one"
    );
    f.key(KeyCode::Esc);
    f.key(KeyCode::Char('h'));
    assert_eq!(f.app.visible_jobs().len(), 6);
}

#[test]
fn a_device_paced_job_shows_confirmed_and_sent_apart_without_colour() {
    let mut f = Fixture::new(Theme::color());
    f.job(JobId::new(7), "dev-07", 0);
    f.state(JobId::new(7), "dev-07", 10, JobState::Queued, JobState::Requesting, None);
    f.state(JobId::new(7), "dev-07", 20, JobState::Requesting, JobState::Transferring, None);
    f.update(JobId::new(7), |job| {
        job.chunks_done = 48;
        job.chunks_confirmed = Some(24);
        job.window = Some(8);
    });
    let screen = format!("{}", f.render(160, 20).backend());
    assert!(screen.contains("24✓48/96"), "confirmed, sent and total:\n{screen}");
    assert!(screen.contains('▒'), "sent but unconfirmed in its own glyph:\n{screen}");
    f.key(KeyCode::Enter);
    let detail = format!("{}", f.render(120, 30).backend());
    assert!(detail.contains("device-paced, window 8: 24 of 96 chunks confirmed"), "{detail}");
}

/// A rollout in `state` over `devices` devices in waves ending at `ends`, the first `outcomes`
/// devices having those outcomes and the rest pending, as the source would list it.
fn rollout_view(
    id: RolloutId,
    name: &str,
    state: crate::rollout::RolloutState,
    ends: &[usize],
    outcomes: &[crate::rollout::Outcome],
    abort: Option<f64>,
) -> crate::rollout::RolloutView {
    use crate::rollout::{AbortRule, Rollout, RolloutPlan};
    let devices = *ends.last().unwrap();
    let mut plan = RolloutPlan::example_of(devices, |n| format!("dev-{n:02}"));
    plan.image =
        crate::snapshot::ImageInfo::from(&Image::new("sensor-fw-2.1.0.bin", Bytes::from_static(b"x")));
    plan.name = name.into();
    plan.wave_ends = ends.to_vec();
    plan.success_threshold = 0.8;
    plan.abort = abort.map(|failure_share| AbortRule {
        failure_share,
        min_finished: 2,
        count_rejected: true,
        cancel_active: false,
    });
    plan.retry_backoff_ms = 1000;
    let t0 = T0.as_millis() as u64;
    let mut rollout = Rollout::new(id, plan, t0);
    rollout.state = state;
    rollout.reason = Some(format!("{} for the test", state.as_str()));
    for (index, outcome) in outcomes.iter().enumerate() {
        rollout.devices.set_outcome(index, *outcome);
    }
    rollout.wave = ends.iter().position(|end| *end > outcomes.len()).unwrap_or(ends.len() - 1);
    crate::rollout::RolloutView::full(&rollout, t0 + 12_000)
}

/// Two rollouts: #2 aborted on its threshold, #1 running in its second of three waves. Jobs
/// 41–43 belong to rollout 1.
fn with_rollouts(f: &mut Fixture) {
    use crate::rollout::{Outcome::*, RolloutState};
    let running = rollout_view(
        RolloutId::new(1),
        "release 2.1.0, staged",
        RolloutState::Running,
        &[1, 6, 24],
        &[Succeeded, Succeeded, Failed, Active, Active],
        None,
    );
    let aborted = rollout_view(
        RolloutId::new(2),
        "beta 2.2.0 to lot 2024-07",
        RolloutState::Aborted,
        &[9],
        &[Rejected, Failed, TimedOut, Cancelled, Cancelled, Cancelled, Cancelled, Cancelled, Cancelled],
        Some(0.5),
    );
    f.app.rollouts.list = vec![aborted, running];
    for id in 41..=43 {
        f.update(JobId::new(id), |job| job.rollout_id = Some(RolloutId::new(1)));
    }
}

#[test]
fn the_rollouts_strip_shows_waves_counts_thresholds_and_reasons_at_200_by_50() {
    let mut f = Fixture::mid_rollout(Theme::color());
    with_rollouts(&mut f);
    f.app.size = (200, 50);
    let screen = f.render(200, 50);
    let text = format!("{}", screen.backend());
    // Waves as glyphs (ran, under way, waiting), then the wave under way.
    assert!(text.contains("■ ▶ □ 2/3"), "{text}");
    assert!(text.contains("2✓ 1✗ 0⊘ of 24"), "{text}");
    assert!(text.contains("100% / abort ≥50%"), "the failure share against the abort threshold:\n{text}");
    assert!(text.contains("aborted for the test"), "the reason:\n{text}");
    // 3 finished in 12 s, 21 left: 84 s at that pace.
    assert!(text.contains("1m24s"), "the ETA:\n{text}");
    insta::assert_snapshot!(screen.backend());
}

#[test]
fn at_80_by_24_the_rollouts_take_the_jobs_place_and_no_count_is_cut() {
    let mut f = Fixture::mid_rollout(Theme::color());
    with_rollouts(&mut f);
    f.app.size = (80, 24);
    let text = format!("{}", f.render(80, 24).backend());
    assert!(!text.contains("Rollouts 2"), "unfocused at 80×24 the strip is left out:\n{text}");
    f.key(KeyCode::Tab);
    assert_eq!(f.app.focus, Pane::Rollouts);
    let screen = f.render(80, 24);
    let text = format!("{}", screen.backend());
    assert!(text.contains("0✓3✗6⊘/9") && text.contains("2✓1✗0⊘/24"), "{text}");
    assert!(text.contains("100%/≥50%"), "{text}");
    assert!(!text.contains("Jobs 6"), "the jobs pane gave its place:\n{text}");
    insta::assert_snapshot!(screen.backend());
}

#[test]
fn rollout_keys_ask_first_fit_the_state_and_filter_the_jobs() {
    use super::source::RolloutVerb;
    let mut f = Fixture::mid_rollout(Theme::color());
    with_rollouts(&mut f);
    f.app.size = (200, 50);
    f.key(KeyCode::Tab);
    assert_eq!(f.app.selected_rollout().unwrap().id, RolloutId::new(2), "newest first");
    f.key(KeyCode::Char('c'));
    assert!(f.app.flash.as_ref().unwrap().text.contains("rollout 2 already ended as aborted"));
    assert!(f.app.overlay.is_none());
    f.key(KeyCode::Char('j'));
    f.key(KeyCode::Char('r'));
    assert!(f.app.flash.as_ref().unwrap().text.contains("running; nothing to resume"));
    f.key(KeyCode::Char('p'));
    assert!(
        matches!(f.app.overlay, Some(Overlay::Confirm(Confirm::Rollout(id, RolloutVerb::Pause))) if id == RolloutId::new(1))
    );
    let text = format!("{}", f.render(200, 50).backend());
    assert!(text.contains("Pause rollout 1 \"release 2.1.0, staged\"?"), "{text}");
    assert!(matches!(
        f.key(KeyCode::Char('y')),
        Outcome::Command(Command::ControlRollout(id, RolloutVerb::Pause)) if id == RolloutId::new(1)
    ));
    f.key(KeyCode::Char('c'));
    assert!(matches!(f.key(KeyCode::Esc), Outcome::Redraw));
    assert!(f.app.overlay.is_none(), "Esc declines");
    // Enter opens the detail and asks for the whole rollout.
    assert!(
        matches!(f.key(KeyCode::Enter), Outcome::Command(Command::LoadRollout(id)) if id == RolloutId::new(1))
    );
    assert!(matches!(f.app.overlay, Some(Overlay::RolloutDetail { id, .. }) if id == RolloutId::new(1)));
    f.key(KeyCode::Esc);
    // f shows only its jobs; Esc in the jobs pane shows all again.
    f.key(KeyCode::Char('f'));
    assert_eq!(f.app.focus, Pane::Jobs);
    let ids: Vec<u32> = f.app.visible_jobs().iter().map(|j| j.id.get()).collect();
    assert_eq!(ids, [41, 42, 43]);
    f.key(KeyCode::Esc);
    assert_eq!(f.app.visible_jobs().len(), 6);
}

#[test]
fn a_rollouts_detail_lists_its_waves_devices_and_changes() {
    let mut f = Fixture::mid_rollout(Theme::color());
    with_rollouts(&mut f);
    let mut detail = f.app.rollouts.list[1].clone();
    if let Some(devices) = detail.devices.as_mut() {
        devices[2].detail = Some("writing to flash failed".into());
        devices[2].job_id = Some(JobId::new(43));
    }
    f.app.rollouts.detail = Some(detail);
    f.app.overlay = Some(Overlay::RolloutDetail { id: RolloutId::new(1), scroll: 0, from: 0 });
    let text = format!("{}", f.render(120, 50).backend());
    assert!(text.contains("a wave goes on at ≥80% succeeded"), "{text}");
    assert!(text.contains("dev-03  failed"), "{text}");
    assert!(text.contains("#43") && text.contains("writing to flash failed"), "{text}");
    assert!(text.contains("dev-24  pending"), "{text}");
    // Before the whole rollout arrives, the overlay says so rather than showing another's.
    f.app.overlay = Some(Overlay::RolloutDetail { id: RolloutId::new(2), scroll: 0, from: 0 });
    assert!(format!("{}", f.render(120, 50).backend()).contains("loading…"));
}

#[test]
fn the_form_makes_a_rollout_by_label_shown_whole_before_a_second_enter_starts_it() {
    let mut f = Fixture::mid_rollout(Theme::color());
    let labelled = |id: &str, site: &str| crate::inventory::Device {
        device_id: DeviceId::parse(id).unwrap(),
        labels: [("site".to_owned(), site.to_owned())].into_iter().collect(),
        registered: true,
        first_seen: None,
        last_seen: None,
        last_image: None,
        last_job: None,
        running: None,
        profile: crate::inventory::Profile::Rocky,
    };
    f.app.devices.merge_inventory(crate::tui::source::InventoryPage {
        devices: vec![labelled("dev-01", "lab"), labelled("dev-03", "lab"), labelled("shelf-9", "lab")],
        next_after: None,
    });
    f.key(KeyCode::Char('n'));
    for c in "site=lab".chars() {
        f.key(KeyCode::Char(c));
    }
    let Some(Overlay::Form(form)) = f.app.overlay.as_mut() else { panic!("the form is open") };
    form.preview = super::form::Preview::Ready(f.image.clone());
    for _ in 0..5 {
        f.key(KeyCode::Down);
    }
    for c in "1, 100%".chars() {
        f.key(KeyCode::Char(c));
    }
    let text = format!("{}", f.render(120, 40).backend());
    assert!(text.contains("New rollout") && text.contains("→ 3 devices"), "{text}");
    assert!(text.contains("3 devices in waves 1 → 3 · a wave goes on at ≥95%"), "{text}");
    // The first Enter only shows it, with a dry run of it asked for; the second starts it.
    let Outcome::Command(Command::DryRunRollout(planned, review)) = f.key(KeyCode::Enter) else {
        panic!("the first Enter asks for a dry run")
    };
    assert_eq!(planned.0.targets.labels.as_ref().unwrap().get("site").map(String::as_str), Some("lab"));
    let text = format!("{}", f.render(120, 40).backend());
    assert!(
        text.contains("Enter again to start this rollout") && text.contains("planning (a dry run"),
        "{text}"
    );
    // The dry run's answer is shown under the review; one for an earlier review is not.
    let Some(Overlay::Form(form)) = f.app.overlay.as_mut() else { panic!("the form is open") };
    form.dry_run =
        Some(Ok(vec!["wave 1  1 device: dev-01".into(), "never heard from: 1 device: shelf-9".into()]));
    assert_eq!(form.review, review);
    let text = format!("{}", f.render(120, 40).backend());
    assert!(text.contains("Plan") && text.contains("never heard from: 1 device: shelf-9"), "{text}");
    let Some(Overlay::Form(form)) = f.app.overlay.as_mut() else { panic!("the form is open") };
    form.dry_run = Some(Err("the server said no".into()));
    let text = format!("{}", f.render(120, 40).backend());
    assert!(text.contains("no dry run: the server said no"), "{text}");
    let Outcome::Command(Command::CreateRollout(rollout)) = f.key(KeyCode::Enter) else {
        panic!("the second Enter starts the rollout")
    };
    let (request, image) = *rollout;
    assert_eq!(image.name(), "sensor-fw-2.1.0.bin");
    assert_eq!(request.targets.labels.unwrap().get("site").map(String::as_str), Some("lab"));
    assert_eq!(request.name, "sensor-fw-2.1.0.bin to site=lab");
    assert_eq!(request.chunk_size, Some(u64::from(crate::firmware::DEFAULT_CHUNK_SIZE)));
    assert_eq!(request.waves.map(|w| w.len()), Some(2));
    // A rollout field that does not parse says so and starts nothing.
    let mut f = Fixture::mid_rollout(Theme::color());
    f.key(KeyCode::Char('n'));
    for c in "dev-01".chars() {
        f.key(KeyCode::Char(c));
    }
    for _ in 0..9 {
        f.key(KeyCode::Down);
    }
    for c in "lots".chars() {
        f.key(KeyCode::Char(c));
    }
    let text = format!("{}", f.render(120, 40).backend());
    assert!(text.contains("\"lots\" is not a share like 95% or 0.95"), "{text}");
}

#[test]
fn the_first_keys_after_new_jobs_select_the_newest_then_move_from_it() {
    let mut f = Fixture::mid_rollout(Theme::color());
    f.app.size = (160, 45);
    // What the console does when jobs were created: the newest is selected.
    f.app.jobs.cursor = super::app::Cursor::following();
    f.key(KeyCode::Char('g'));
    assert_eq!(f.app.selected_job().unwrap().id, JobId::new(41), "g goes to the top at once");
    for _ in 0..3 {
        f.key(KeyCode::Char('j'));
    }
    assert_eq!(f.app.selected_job().unwrap().id, JobId::new(44));
    f.app.jobs.cursor = super::app::Cursor::following();
    f.key(KeyCode::Char('k'));
    assert_eq!(f.app.selected_job().unwrap().id, JobId::new(45), "k moves up from the newest");
}

#[test]
fn after_the_form_created_jobs_the_newest_is_selected_for_every_key_before_a_draw() {
    let mut f = Fixture::mid_rollout(Theme::color());
    f.app.size = (160, 45);
    f.app.jobs.cursor = super::app::Cursor::following(); // as the console sets it after a submission
    let newest = f.app.visible_jobs().last().map(|j| j.id);
    assert_eq!(f.app.selected_job().map(|j| j.id), newest, "no draw, no `j` needed");
    f.key(KeyCode::Enter);
    assert!(f.app.overlay.is_some(), "Enter opens the newest job's detail at once");
}

#[test]
fn a_failed_bar_reads_as_failed_without_colour_and_a_broker_outage_pauses_the_eta() {
    let mut f = Fixture::mid_rollout(Theme::monochrome());
    f.app.size = (160, 45);
    let text = format!("{}", f.render(160, 45).backend());
    let line = |text: &str, device: &str| text.lines().find(|l| l.contains(device)).unwrap_or("").to_owned();
    assert!(line(&text, "dev-02").contains("/ 11.6s"), "an ETA while connected:\n{text}");
    f.update(JobId::new(42), |job| {
        job.state = JobState::Failed;
        job.error = Some("writing to flash failed".into());
    });
    f.update(JobId::new(41), |_| {});
    let text = format!("{}", f.render(160, 45).backend());
    let failed = line(&text, "dev-02");
    assert!(failed.contains("░░░░░░░") && failed.contains("✗ 48/96"), "hatched and marked:\n{failed}");
    assert!(line(&text, "dev-01").contains("██████████████ 96/96"), "a success stays solid");
    f.send(
        5000,
        RuntimeEvent::Connection(ConnectionState::Reconnecting {
            attempt: 1,
            delay_ms: 500,
            reason: "refused".into(),
        }),
    );
    let text = format!("{}", f.render(160, 45).backend());
    let waiting = line(&text, "dev-05");
    assert!(waiting.contains("broker down") && waiting.contains("/ paused"), "{waiting}");
}

#[test]
fn an_attached_console_that_lost_its_server_says_so_rather_than_blaming_the_broker() {
    let mut f = Fixture::mid_rollout(Theme::monochrome());
    f.app.size = (160, 45);
    f.app.session.attached = true;
    f.send(
        5000,
        RuntimeEvent::Connection(ConnectionState::Reconnecting {
            attempt: 1,
            delay_ms: 500,
            reason: "cannot reach the server (connection refused)".into(),
        }),
    );
    let text = format!("{}", f.render(160, 45).backend());
    let waiting = text.lines().find(|l| l.contains("dev-05")).unwrap_or("").to_owned();
    assert!(waiting.contains("server away") && waiting.contains("/ paused"), "{waiting}");
    assert!(!text.contains("broker down"), "{text}");
}

#[test]
fn w_writes_the_filtered_traffic_or_the_selected_job_and_m_lets_the_mouse_go() {
    let mut f = Fixture::mid_rollout(Theme::color());
    f.app.size = (160, 45);
    f.app.log_path = Some(std::env::temp_dir().join("rocky-export-test/rocky.log"));
    assert!(matches!(f.key(KeyCode::Char('m')), Outcome::Command(Command::ToggleMouse)));
    // The selected job (42), with its timeline.
    f.app.jobs.cursor = super::app::Cursor { selected: 1, ..Default::default() };
    let Outcome::Command(Command::Export(export)) = f.key(KeyCode::Char('w')) else { panic!("w writes") };
    assert_eq!(export.what, "job 42");
    assert!(export.path.starts_with(std::env::temp_dir().join("rocky-export-test")), "beside the log");
    let job: serde_json::Value = serde_json::from_str(&export.contents).unwrap();
    assert_eq!((job["job"]["id"].as_u64(), job["job"]["device_id"].as_str()), (Some(42), Some("dev-02")));
    assert!(!job["timeline"].as_array().unwrap().is_empty());
    // The traffic, as filtered: only job 43's lines.
    f.key(KeyCode::Tab);
    *f.app.filter_mut(Pane::Traffic) = "#43".into();
    let Outcome::Command(Command::Export(export)) = f.key(KeyCode::Char('w')) else { panic!("w writes") };
    let lines: Vec<serde_json::Value> =
        export.contents.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(export.what, format!("{} traffic lines", lines.len()));
    assert!(lines.iter().all(|l| l["job"] == 43), "{lines:?}");
    let nack = lines.iter().find(|l| l["text"].as_str().unwrap_or("").contains("FOTA_REQUEST_NACK")).unwrap();
    assert_eq!((nack["direction"].as_str(), nack["payload_hex"].as_str()), (Some("in"), Some("82182b03")));
    assert!(export.path.to_string_lossy().ends_with(".jsonl"));
    // The selected rollout, as the API shows it, whole: fetched first when its detail is not
    // at hand (issue 20, C16), written at once when it is.
    with_rollouts(&mut f);
    f.key(KeyCode::BackTab);
    assert_eq!(f.app.focus, Pane::Rollouts);
    let Outcome::Command(Command::ExportRollout { id, .. }) = f.key(KeyCode::Char('w')) else {
        panic!("w fetches the rollout whole to write it")
    };
    assert_eq!(id, RolloutId::new(2), "w fetches the rollout whole to write it");
    let mut whole = f.app.rollouts.list[0].clone();
    whole.devices = Some(Vec::new());
    whole.changes = Some(Vec::new());
    f.app.rollouts.detail = Some(whole);
    let Outcome::Command(Command::Export(export)) = f.key(KeyCode::Char('w')) else { panic!("w writes") };
    let rollout: crate::rollout::RolloutView = serde_json::from_str(&export.contents).unwrap();
    assert_eq!((rollout.id, export.what.as_str()), (RolloutId::new(2), "rollout 2"));
    assert!(rollout.devices.is_some() && rollout.changes.is_some(), "whole: {}", export.contents);
    // In the devices pane, the device (with its latest job), not a job.
    f.app.focus = Pane::Devices;
    f.app.devices.cursor.selected = 1;
    let Outcome::Command(Command::Export(export)) = f.key(KeyCode::Char('w')) else { panic!("w writes") };
    let device: serde_json::Value = serde_json::from_str(&export.contents).unwrap();
    assert_eq!(export.what, format!("device {}", device["device_id"].as_str().unwrap()));
    assert!(device["latest_job"]["job"]["id"].is_u64(), "{device}");
}

#[test]
fn a_folded_chunk_run_shows_a_chunks_size_apart_from_the_runs_and_every_kept_byte() {
    let mut f = Fixture::mid_rollout(Theme::color());
    let seq = f.app.traffic.iter().find(|l| l.chunks.is_some_and(|r| r.last == 96)).unwrap().seq;
    f.app.overlay = Some(Overlay::TrafficDetail { seq, scroll: 0 });
    let text = format!("{}", f.render(120, 200).backend());
    assert!(text.contains("2 KiB a chunk · chunks 1–96 of 96, 192 KiB in all"), "{text}");
    assert!(text.contains("Hex (2048 B)"), "{text}");
    // All 2048 bytes, not the first 512: the last row of the dump is at offset 0x7f0.
    assert!(text.contains("000007f0"), "{text}");
}

#[test]
fn small_terminals_cut_no_number_and_no_hash() {
    let mut f = Fixture::mid_rollout(Theme::color());
    f.app.size = (60, 15);
    let text = format!("{}", f.render(60, 15).backend());
    assert!(text.contains("48/96"), "the progress count whole at 60×15:\n{text}");
    // The job detail at 80 columns wraps the SHA-256 rather than cutting it.
    f.app.size = (80, 24);
    f.app.overlay = Some(Overlay::JobDetail { job: JobId::new(42), scroll: 0 });
    let screen = f.render(80, 24);
    let text = format!("{}", screen.backend());
    let sha = f.image.sha256().iter().map(|b| format!("{b:02x}")).collect::<String>();
    // Inside the overlay's borders only (the pane behind shows at its edges).
    let inside = |line: &str| -> String {
        let (Some(start), Some(end)) = (line.find('║'), line.rfind('║')) else { return String::new() };
        line.get(start..end).unwrap_or("").chars().filter(|c| c.is_ascii_hexdigit()).collect()
    };
    let shown: String = text.lines().map(inside).collect();
    assert!(shown.contains(&sha), "all 64 hex digits on screen (wrapped):\n{text}");
    let continued = text.lines().skip_while(|l| !l.contains("sha256")).nth(1).unwrap_or("");
    assert!(continued.contains(&format!("║{}", " ".repeat(14))), "it goes on under the value: {continued}");
}

/// The attached console (`rocky console --server`) as it draws: the server in the status bar,
/// the same panes, at the sizes a newcomer meets.
#[test]
fn the_attached_console_at_80_by_24_and_200_by_50() {
    for (width, height) in [(80, 24), (200, 50)] {
        let mut f = Fixture::mid_rollout(Theme::color());
        with_rollouts(&mut f);
        f.app.session.attached = true;
        f.app.session.broker = "server http://127.0.0.1:7878".into();
        f.app.session.http = None;
        f.app.size = (width, height);
        let screen = f.render(width, height);
        let text = format!("{}", screen.backend());
        assert!(text.contains("server http://127.0.0.1:7878"), "{text}");
        assert!(text.contains("? help  q quit"), "{text}");
        insta::assert_snapshot!(format!("attached_console_{width}x{height}"), screen.backend());
    }
}

#[test]
fn the_form_shows_the_whole_sha256_at_80_columns() {
    let mut f = Fixture::mid_rollout(Theme::color());
    f.key(KeyCode::Char('n'));
    for c in "dev-01".chars() {
        f.key(KeyCode::Char(c));
    }
    let Some(Overlay::Form(form)) = f.app.overlay.as_mut() else { panic!("the form is open") };
    form.preview = super::form::Preview::Ready(f.image.clone());
    let text = format!("{}", f.render(80, 24).backend());
    let sha = crate::protocol::sha256_hex(f.image.sha256());
    // In two halves, one under the other: every digit is there to compare.
    let first = text.lines().position(|l| l.contains(&sha[..32])).expect("the first half");
    let second = text.lines().position(|l| l.contains(&sha[32..])).expect("the second half");
    assert_eq!(second, first + 1, "{text}");
}

#[test]
fn the_rollout_review_names_devices_name_and_pacing_and_ids_do_not_mix_with_labels() {
    let mut f = Fixture::mid_rollout(Theme::color());
    f.key(KeyCode::Char('n'));
    for c in "dev-01, model=esp32-c3".chars() {
        f.key(KeyCode::Char(c));
    }
    let text = format!("{}", f.render(200, 50).backend());
    assert!(text.contains("\"dev-01\" is a device id and \"model=esp32-c3\" a label"), "{text}");
    let mut f = Fixture::mid_rollout(Theme::color());
    f.key(KeyCode::Char('n'));
    for c in "dev-01, dev-02".chars() {
        f.key(KeyCode::Char(c));
    }
    let Some(Overlay::Form(form)) = f.app.overlay.as_mut() else { panic!("the form is open") };
    form.preview = super::form::Preview::Ready(f.image.clone());
    for _ in 0..5 {
        f.key(KeyCode::Down);
    }
    for c in "1".chars() {
        f.key(KeyCode::Char(c));
    }
    let text = format!("{}", f.render(200, 50).backend());
    for said in ["devices dev-01, dev-02", "named \"sensor-fw-2.1.0.bin", "4096-byte chunks"] {
        assert!(text.contains(said), "{said:?} in\n{text}");
    }
}

#[test]
fn a_jobs_pane_too_short_for_its_jobs_says_which_rows_it_shows_and_what_runs_out_of_sight() {
    let mut f = Fixture::mid_rollout(Theme::color());
    for id in 100..130 {
        f.job(JobId::new(id), &format!("dev-{id}"), 100);
    }
    for id in 120..130 {
        f.state(JobId::new(id), &format!("dev-{id}"), 200, JobState::Queued, JobState::Requesting, None);
    }
    let text = format!("{}", f.render(80, 24).backend());
    let title = text.lines().find(|l| l.contains("Jobs ")).unwrap_or("");
    assert!(title.contains("Jobs 1–") && title.contains(" of 36"), "{title}");
    assert!(title.contains("active ↓"), "active jobs below the window are counted: {title}");
}

#[test]
fn a_narrow_status_bar_still_says_the_api_is_off() {
    let mut f = Fixture::mid_rollout(Theme::color());
    f.app.session.http = Some("off (127.0.0.1:7878: Address already in use (os error 98))".into());
    for width in [80, 100] {
        let text = format!("{}", f.render(width, 24).backend());
        let status = text.lines().next().unwrap_or("");
        assert!(status.contains("API OFF") && status.contains("ROCKY"), "{width} columns: {status}");
    }
    let text = format!("{}", f.render(200, 50).backend());
    assert!(text.lines().next().unwrap_or("").contains("api off (127.0.0.1:7878"), "wide: the reason");
    f.app.session.http = Some("127.0.0.1:7878".into());
    let text = format!("{}", f.render(80, 24).backend());
    assert!(!text.contains("API OFF"), "{text}");
}

#[test]
fn the_status_counts_are_shortened_rather_than_cut_at_120_columns() {
    let mut f = Fixture::mid_rollout(Theme::color());
    f.app.session.http = Some("127.0.0.1:7878".into());
    let text = format!("{}", f.render(120, 40).backend());
    let status = text.lines().next().unwrap_or("");
    assert!(status.contains("t/o"), "short words when the full ones do not fit: {status}");
    let text = format!("{}", f.render(200, 50).backend());
    let status = text.lines().next().unwrap_or("");
    assert!(status.contains("1 timed out"), "full words when they fit: {status}");
}

#[test]
fn the_form_says_which_named_devices_rocky_has_never_seen_before_anything_starts() {
    let mut f = Fixture::mid_rollout(Theme::color());
    f.key(KeyCode::Char('n'));
    for c in "dev-01, dev-0l".chars() {
        f.key(KeyCode::Char(c));
    }
    let text = format!("{}", f.render(120, 40).backend());
    assert!(text.contains("1 device Rocky has never seen (dev-0l)"), "{text}");
    assert!(!text.contains("(dev-01)"), "dev-01 answered its job: {text}");
}

#[test]
fn the_jobs_pane_keeps_the_newest_job_in_view_until_the_operator_moves_and_g_follows_again() {
    let mut f = Fixture::mid_rollout(Theme::color());
    // As the console starts: following the newest job.
    f.app.jobs.cursor = super::app::Cursor::following();
    for id in 100..130 {
        f.job(JobId::new(id), &format!("dev-{id}"), 100);
    }
    let title = |f: &Fixture| {
        let text = format!("{}", f.render(80, 24).backend());
        text.lines().find(|l| l.contains("Jobs ")).unwrap_or("").to_owned()
    };
    assert!(title(&f).contains("Jobs 19–36 of 36"), "the newest in view: {}", title(&f));
    assert_eq!(f.app.selected_job().map(|j| j.id), Some(JobId::new(129)));
    f.key(KeyCode::Char('k'));
    for id in 130..135 {
        f.job(JobId::new(id), &format!("dev-{id}"), 100);
    }
    let moved = title(&f);
    assert!(moved.contains("Jobs 19–36 of 41"), "the view stays: {moved}");
    assert_eq!(f.app.selected_job().map(|j| j.id), Some(JobId::new(128)));
    f.key(KeyCode::Char('G'));
    f.job(JobId::new(135), "dev-135", 100);
    assert!(title(&f).contains("Jobs 25–42 of 42"), "following again: {}", title(&f));
    assert_eq!(f.app.selected_job().map(|j| j.id), Some(JobId::new(135)));
}

#[test]
fn a_message_of_several_lines_takes_rows_from_the_panes_not_the_newest_job() {
    let mut f = Fixture::mid_rollout(Theme::color());
    f.app.jobs.cursor = super::app::Cursor::following();
    for id in 100..130 {
        f.job(JobId::new(id), &format!("dev-{id}"), 100);
    }
    f.app.flash(
        "rollout 3 (beta 2.2.0 to lot 2024-07) started: 1 wave of 12 devices, at most 4 at once, aborted \
         after 2 failures; the next wave waits for the first to end and a soak of 10 minutes",
        false,
    );
    assert!(super::ui::footer_height(&f.app, 80) >= 3, "the message takes three lines or more at 80 columns");
    let text = format!("{}", f.render(80, 24).backend());
    let title = text.lines().find(|l| l.contains("Jobs ")).unwrap_or("");
    assert!(title.contains("–36 of 36"), "the newest job is counted in view: {title}");
    assert!(text.contains("dev-129"), "and shown: {text}");
    let lines: Vec<&str> = text.lines().collect();
    let message = lines.iter().position(|l| l.contains("rollout 3 (beta")).unwrap_or(0);
    assert!(
        lines[message - 1].contains('─') || lines[message - 1].contains('━'),
        "the pane's bottom edge is drawn above the message: {text}"
    );
    assert!(lines.last().unwrap_or(&"").contains("quit"), "the way out stays on the last line: {text}");
}

#[test]
fn a_device_id_with_a_line_break_or_an_escape_cannot_draw_outside_its_cell() {
    let mut f = Fixture::mid_rollout(Theme::color());
    f.app.jobs.cursor = super::app::Cursor::following();
    f.job(JobId::new(200), "dev-1\nFORGED\u{1b}[2J", 100);
    for (width, height) in [(80, 24), (200, 50)] {
        let text = format!("{}", f.render(width, height).backend());
        assert_eq!(text.lines().count(), usize::from(height), "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
        let row = text.lines().find(|l| l.contains("dev-1")).unwrap_or_else(|| panic!("{text}"));
        assert!(!text.lines().any(|l| l.trim_start().starts_with("FORGED")), "{row}");
    }
}

#[test]
fn a_long_message_on_a_tiny_terminal_is_cut_with_an_ellipsis_and_nothing_panics() {
    let mut f = Fixture::mid_rollout(Theme::color());
    f.app.flash("word ".repeat(60), true);
    for (width, height) in [(20, 5), (10, 3), (30, 2), (30, 1), (1, 1)] {
        let text = format!("{}", f.render(width, height).backend());
        assert_eq!(text.lines().count(), usize::from(height), "{width}×{height}: {text}");
    }
    let text = format!("{}", f.render(20, 5).backend());
    assert!(text.contains('…'), "what does not fit says so: {text}");
}

#[test]
fn at_80_columns_hex_rows_saved_paths_and_pane_titles_are_whole() {
    let mut f = Fixture::mid_rollout(Theme::color());
    let seq = f.app.traffic.iter().find(|l| l.text.contains("FOTA_REQUEST_NACK")).unwrap().seq;
    f.app.overlay = Some(Overlay::TrafficDetail { seq, scroll: 0 });
    let text = format!("{}", f.render(80, 24).backend());
    let first = text.lines().find(|l| l.contains("00000000")).unwrap_or_else(|| panic!("{text}"));
    // The row's ASCII column sits on the row, not on a line of its own.
    assert!(
        first.contains("00000000  ") && first.trim_end_matches(['"', '║', ' ', '┃', '│']).ends_with('.'),
        "{first}"
    );
    assert!(!text.lines().any(|l| l.contains("║..")), "no wrapped ASCII column: {text}");

    f.app.overlay = None;
    let path = "/home/operator-with-a-long-name/.local/share/rocky/traffic-20261203-113625.jsonl";
    f.app.flash(format!("wrote 516 traffic lines to {path}"), false);
    let text = format!("{}", f.render(80, 24).backend());
    let flat: String = text.lines().map(|l| l.trim_matches('"').trim()).collect::<Vec<_>>().join(" ");
    assert!(flat.contains("traffic-20261203-113625.jsonl"), "the file name is shown: {text}");
    assert!(text.lines().last().unwrap_or("").contains("? help"), "the way out stays: {text}");

    f.app.flash.take();
    f.key(KeyCode::Tab);
    let text = format!("{}", f.render(60, 20).backend());
    let title = text.lines().find(|l| l.contains("Tab:")).unwrap_or_else(|| panic!("{text}"));
    for cut in ["Dev┓", "J┓", "Tab: J"] {
        assert!(!title.contains(cut) || title.contains("Tab: Jobs"), "a name cut mid-word: {title}");
    }
}

#[test]
fn on_a_short_terminal_the_form_keeps_the_focused_fields_error_in_view() {
    let mut f = Fixture::mid_rollout(Theme::color());
    f.app.size = (60, 20);
    f.key(KeyCode::Char('n'));
    // Down to the last field, the gates.
    for _ in 0..11 {
        f.key(KeyCode::Down);
    }
    for c in "later".chars() {
        f.key(KeyCode::Char(c));
    }
    let text = format!("{}", f.render(60, 20).backend());
    assert!(text.contains("Gates later"), "{text}");
    assert!(text.contains("gates are auto or"), "the error under it is in view: {text}");
}

#[test]
fn at_60_columns_names_and_traffic_lines_too_long_end_with_an_ellipsis() {
    let mut f = Fixture::mid_rollout(Theme::color());
    with_rollouts(&mut f);
    f.app.size = (60, 20);
    f.key(KeyCode::Tab);
    let text = format!("{}", f.render(60, 20).backend());
    let release = text.lines().find(|l| l.contains("#1 ")).unwrap_or_else(|| panic!("{text}"));
    assert!(release.contains("release 2.1.0, staged") || release.contains('…'), "{release}");
    f.key(KeyCode::Tab);
    let text = format!("{}", f.render(60, 20).backend());
    let bad = text.lines().find(|l| l.contains("decode error")).unwrap_or_else(|| panic!("{text}"));
    assert!(bad.contains('…'), "a cut line says so: {bad}");
}

#[test]
fn at_80_by_24_an_enter_that_starts_nothing_says_what_to_fix_in_view() {
    let mut f = Fixture::mid_rollout(Theme::color());
    f.app.size = (80, 24);
    f.key(KeyCode::Char('n'));
    for c in "dev/1".chars() {
        f.key(KeyCode::Char(c));
    }
    for _ in 0..11 {
        f.key(KeyCode::Down);
    }
    for c in "later".chars() {
        f.key(KeyCode::Char(c));
    }
    let Some(Overlay::Form(form)) = f.app.overlay.as_mut() else { panic!("the form is open") };
    form.preview = super::form::Preview::Ready(f.image.clone());
    f.key(KeyCode::Enter);
    let text = format!("{}", f.render(80, 24).backend());
    assert!(text.contains("nothing started: fix Devices, Gates"), "{text}");
}

#[test]
fn a_footer_message_on_several_lines_stands_alone_on_them() {
    let mut f = Fixture::mid_rollout(Theme::color());
    f.app.size = (60, 20);
    f.app.flash("wrote job 44 to /home/operator/.local/share/rocky/job-44-20261203-120000.json", false);
    let text = format!("{}", f.render(60, 20).backend());
    let lines: Vec<&str> = text.lines().collect();
    let first = lines.iter().position(|l| l.contains("wrote job 44")).unwrap_or_else(|| panic!("{text}"));
    for line in &lines[first..lines.len() - 1] {
        assert!(!line.contains("│") && !line.contains("┃"), "nothing of the panes beside it: {line}");
    }
}

/// A large rollout's detail shows one page of its devices and asks for the next or previous
/// page on `]` and `[` (issue 21: never the whole rollout each second).
#[test]
fn a_large_rollouts_detail_pages_its_devices() {
    let mut f = Fixture::mid_rollout(Theme::color());
    with_rollouts(&mut f);
    let mut detail = f.app.rollouts.list[1].clone();
    let first = detail.devices.as_ref().unwrap()[0].clone();
    detail.device_count = 250;
    detail.devices = Some(vec![first; crate::tui::source::DETAIL_DEVICES]);
    detail.devices_from = Some(0);
    f.app.rollouts.detail = Some(detail);
    f.app.overlay = Some(Overlay::RolloutDetail { id: RolloutId::new(1), scroll: 0, from: 0 });
    let text = format!("{}", f.render(120, 50).backend());
    assert!(text.contains("DEVICES 1–100 of 250  ] next 100"), "{text}");
    assert!(matches!(f.key(KeyCode::Char('[')), Outcome::Ignored), "no page before the first");
    assert!(
        matches!(f.key(KeyCode::Char(']')), Outcome::Command(Command::LoadRollout(id)) if id == RolloutId::new(1))
    );
    assert!(
        matches!(f.app.overlay, Some(Overlay::RolloutDetail { id, from: 100, .. }) if id == RolloutId::new(1))
    );
    assert!(
        matches!(f.key(KeyCode::Char(']')), Outcome::Command(Command::LoadRollout(id)) if id == RolloutId::new(1))
    );
    assert!(matches!(f.key(KeyCode::Char(']')), Outcome::Ignored), "no page after the last");
    assert!(
        matches!(f.app.overlay, Some(Overlay::RolloutDetail { id, from: 200, .. }) if id == RolloutId::new(1))
    );
    let detail = f.app.rollouts.detail.as_mut().unwrap();
    detail.devices_from = Some(200);
    detail.devices.as_mut().unwrap().truncate(50);
    let text = format!("{}", f.render(120, 50).backend());
    assert!(text.contains("DEVICES 201–250 of 250  [ previous 100"), "{text}");
    assert!(
        matches!(f.key(KeyCode::Char('[')), Outcome::Command(Command::LoadRollout(id)) if id == RolloutId::new(1))
    );
    assert!(
        matches!(f.app.overlay, Some(Overlay::RolloutDetail { id, from: 100, .. }) if id == RolloutId::new(1))
    );
}

/// The confirm extension in the console: a confirming job says what it waits for, a confirmed
/// one when, the states read in words, and a rollout's detail says how many were up to date or
/// rolled back.
#[test]
fn confirming_and_confirmed_jobs_and_rollouts_say_so() {
    let mut f = Fixture::mid_rollout(Theme::color());
    f.update(JobId::new(42), |job| {
        job.state = JobState::Confirming;
        job.confirm_boot = Some(17);
    });
    f.app.overlay = Some(Overlay::JobDetail { job: JobId::new(42), scroll: 0 });
    let text = format!("{}", f.render(120, 50).backend());
    assert!(text.contains("confirming") && text.contains("waiting for a status after boot 17"), "{text}");
    f.update(JobId::new(42), |job| {
        job.state = JobState::Succeeded;
        job.confirmed_at = Some(job.created_at + 5_000);
    });
    let text = format!("{}", f.render(120, 50).backend());
    assert!(text.contains("confirmed"), "{text}");
    f.update(JobId::new(43), |job| job.state = JobState::RolledBack);
    f.app.overlay = None;
    let text = format!("{}", f.render(200, 50).backend());
    assert!(text.contains("rolled back"), "{text}");
    with_rollouts(&mut f);
    let mut detail = f.app.rollouts.list[1].clone();
    detail.waves[0].counts.up_to_date = 1;
    detail.waves[1].counts.rolled_back = 2;
    f.app.rollouts.detail = Some(detail);
    f.app.overlay = Some(Overlay::RolloutDetail { id: RolloutId::new(1), scroll: 0, from: 0 });
    let text = format!("{}", f.render(120, 50).backend());
    assert!(text.contains("of which 1 up to date · 2 rolled back"), "{text}");
}

#[test]
fn the_audit_view_lists_who_did_what_newest_first_and_fits_80_columns() {
    use crate::audit::{Action, NewEntry};
    let mut f = Fixture::mid_rollout(Theme::color());
    assert!(matches!(f.key(KeyCode::Char('a')), Outcome::Command(Command::LoadAudit)));
    assert!(matches!(f.app.overlay, Some(Overlay::Audit { .. })));
    assert!(format!("{}", f.render(80, 24).backend()).contains("loading…"));
    let at = (T0.as_millis() + 5_000) as i64;
    let entries = vec![
        NewEntry::new(at, "ci", Action::RolloutCreate, "rollout:3", "ok").numbered(1),
        NewEntry::new(at + 1_000, "console:ana@ops-1", Action::RolloutPause, "rollout:3", "ok").numbered(2),
        NewEntry::new(
            at + 2_000,
            "watch",
            Action::Forbidden,
            "POST /rollouts/3/cancel",
            "refused: POST /rollouts/3/cancel needs the operator role; token \"watch\" is a viewer",
        )
        .numbered(3),
    ];
    f.app.audit.extend(entries);
    let screen = format!("{}", f.render(80, 24).backend());
    let at_row = |needle: &str| screen.lines().position(|l| l.contains(needle));
    let (create, pause, refused) = (at_row("rollout.create"), at_row("rollout.pause"), at_row("forbidden"));
    assert!(refused < pause && pause < create && create.is_some(), "newest first:\n{screen}");
    assert!(screen.contains("console:ana@ops-1") && screen.contains("refused: POST"), "{screen}");
    assert!(screen.contains("a viewer"), "a refusal's reason is wrapped, not cut:\n{screen}");
    let buffer = f.render(80, 24);
    let row = (0..24u16)
        .find(|&y| {
            (0..80u16)
                .map(|x| buffer.backend().buffer()[(x, y)].symbol())
                .collect::<String>()
                .contains("refused")
        })
        .unwrap();
    let red = (0..80u16)
        .map(|x| &buffer.backend().buffer()[(x, row)])
        .any(|c| c.fg == Theme::color().danger.fg.unwrap());
    assert!(red, "a refusal stands out");
    let wide = format!("{}", f.render(200, 50).backend());
    assert!(
        wide.lines().any(|l| l.contains("forbidden") && l.contains("is a viewer")),
        "one line when it fits:\n{wide}"
    );
    f.key(KeyCode::Esc);
    assert!(f.app.overlay.is_none());
    assert!(
        f.app
            .keymap
            .bindings
            .iter()
            .any(|b| b.action == super::keymap::Action::Audit && b.help.contains("audit"))
    );
}

#[test]
fn counts_active_jobs_and_pane_windows_kept_as_rows_change_agree_with_a_scan() {
    let mut f = Fixture::new(Theme::color());
    let states = [JobState::Requesting, JobState::Transferring, JobState::Succeeded, JobState::Failed];
    for n in 1..=40u32 {
        let id = JobId::new(n);
        f.job(id, &format!("dev-{n:02}"), u64::from(n));
        let to = states[n as usize % states.len()];
        f.state(id, &format!("dev-{n:02}"), 100, JobState::Queued, to, None);
    }
    // Some move on, one is removed by retention, one comes again unchanged.
    f.state(JobId::new(1), "dev-01", 200, JobState::Transferring, JobState::Succeeded, None);
    f.app.apply_jobs(&JobChanges {
        reset: false,
        changes: vec![JobChange::Removed(JobId::new(2))],
        cursor: 0,
        complete: true,
    });
    f.update(JobId::new(3), |_| {});
    let check = |app: &App| {
        let mut scanned = std::collections::BTreeMap::new();
        for row in app.jobs.rows.values() {
            *scanned.entry(row.state).or_insert(0usize) += 1;
        }
        assert_eq!(app.jobs.counts(), scanned, "kept counts agree with the rows");
        assert_eq!(app.jobs.active(), app.jobs.rows.values().filter(|r| !r.state.is_final()).count());
        let all = app.visible_jobs();
        assert_eq!(app.visible_jobs_len(), all.len());
        for (offset, n) in [(0, 5), (10, 7), (35, 10), (50, 3)] {
            let (rows, above, below) = app.visible_jobs_window(offset, n);
            let expected: Vec<JobId> = all.iter().skip(offset).take(n).map(|r| r.id).collect();
            assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), expected, "{offset}+{n}");
            if !rows.is_empty() {
                let last = (offset + n).min(all.len());
                let active =
                    |rows: &[&crate::tui::app::JobRow]| rows.iter().filter(|r| r.state.is_active()).count();
                assert_eq!((above, below), (active(&all[..offset]), active(&all[last..])), "{offset}+{n}");
            }
        }
        let devices = app.visible_devices();
        assert_eq!(app.visible_devices_len(), devices.len());
        let window: Vec<&str> = app.visible_devices_window(3, 4).iter().map(|d| d.id.as_str()).collect();
        let expected: Vec<&str> = devices.iter().skip(3).take(4).map(|d| d.id.as_str()).collect();
        assert_eq!(window, expected);
    };
    check(&f.app);
    // The same with filters set (the gathered path).
    f.app.filter_mut(Pane::Jobs).push_str("dev-1");
    f.app.filter_mut(Pane::Devices).push_str("dev-2");
    check(&f.app);
    // A reset empties the rows and their counts.
    f.app.apply_jobs(&JobChanges { reset: true, changes: vec![], cursor: 0, complete: true });
    assert!(f.app.jobs.counts().is_empty() && f.app.jobs.active() == 0);
}
