//! One full console frame with 10,000 jobs (or `-- --jobs N`: a fleet's 100,000) and 10,000
//! traffic lines, rendered into an in-memory terminal: the median and spread of many frames;
//! then key-to-screen, a key (↓ in the jobs pane, then in the devices pane) and the frame that
//! shows it. Run with `cargo bench --bench console_frame [-- --jobs 100000]`. (A benchmark, not
//! a test: the machines are shared and noisy, so it reports, never asserts.)

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use rocky::engine::{Event, JobId, JobState, JobView};
use rocky::firmware::{ChunkSize, Image};
use rocky::protocol::DeviceId;
use rocky::runtime::{
    Clock, Envelope, JobChange, JobChanges, Received, RuntimeEvent, Traffic, TrafficDirection,
};
use rocky::snapshot::JobSnapshot;
use rocky::tui::app::{App, Pane};
use rocky::tui::theme::Theme;
use rocky::tui::ui;

const LINES: u32 = 10_000;
const FRAMES: usize = 1_500;

/// `--jobs N` from the command line (cargo bench passes its own `--bench` too).
fn jobs_wanted() -> u32 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--jobs")
        .and_then(|at| args.get(at + 1))
        .map(|n| n.parse().unwrap_or_else(|e| panic!("--jobs {n}: {e}")))
        .unwrap_or(10_000)
}

fn main() {
    let jobs = jobs_wanted();
    let mono = Instant::now();
    let wall = SystemTime::now();
    let clock = Clock::fixed(mono, wall);
    let mut app = App::new(clock, "mqtt://127.0.0.1:1883".into(), LINES as usize, Theme::color());
    let image = Image::new("fw.bin", Bytes::from(vec![1u8; 256 * 1024]));
    let mut seq = 0;
    let mut send = |app: &mut App, event: RuntimeEvent| {
        seq += 1;
        app.apply(&Received::Event(Arc::new(Envelope::new(seq, wall, event))));
    };
    for id in 1..=jobs {
        let device = DeviceId::parse(&format!("dev-{id:06}")).unwrap_or_else(|e| panic!("{e}"));
        let view = JobView {
            rollout: None,
            id: JobId::new(id),
            device: device.clone(),
            image: image.clone(),
            chunk_size: ChunkSize::default(),
            chunk_interval: Duration::ZERO,
            state: JobState::Queued,
            chunks_done: 0,
            chunks_confirmed: None,
            window: None,
            chunks_total: 64,
            bytes_sent: 0,
            attempts: 0,
            error: None,
            reason_code: None,
            created_at: mono,
            started_at: None,
            finished_at: None,
            force: false,
            confirm_boot: None,
            confirmed_at: None,
            manifest: None,
            delta: None,
            aws: None,
        };
        let to = [JobState::Transferring, JobState::Succeeded, JobState::Failed][id as usize % 3];
        // The job's fields come from the job table, as in the console.
        let mut snapshot = JobSnapshot::new(&view, &clock);
        snapshot.state = to;
        snapshot.chunks_done = 32;
        let changes = JobChanges {
            reset: false,
            changes: vec![JobChange::Job(Arc::new(snapshot))],
            cursor: 0,
            complete: true,
        };
        app.apply_jobs(&changes);
        send(&mut app, RuntimeEvent::Engine(Event::Created(Box::new(view))));
        send(
            &mut app,
            RuntimeEvent::Engine(Event::StateChanged {
                job: JobId::new(id),
                device,
                from: JobState::Queued,
                to,
                detail: None,
            }),
        );
    }
    // The frame must show what it claims to: every job is in the console.
    assert_eq!(app.jobs.rows.len(), jobs as usize, "the bench's jobs did not reach the console");
    assert_eq!(app.devices.rows.len(), jobs as usize, "every job's device is in the devices pane");
    for n in 0..LINES {
        let device = DeviceId::parse(&format!("dev-{:06}", n % jobs + 1)).unwrap_or_else(|e| panic!("{e}"));
        let traffic = Traffic {
            direction: if n % 2 == 0 { TrafficDirection::Out } else { TrafficDirection::In },
            topic: format!("/fota/cmd_resp/{device}"),
            qos: 1,
            size: 4,
            text: format!("resp ← {device} [{n}, FOTA_REQUEST_ACK]"),
            payload: Bytes::from_static(&[0x82, 0x01, 0x02]),
            device: Some(device),
            job: Some(JobId::new(n % jobs + 1)),
            decode_error: false,
            chunk: None,
        };
        send(&mut app, RuntimeEvent::Traffic(traffic));
    }
    app.size = (200, 60);
    app.jobs.cursor.selected = jobs as usize / 2;
    let mut terminal = Terminal::new(TestBackend::new(200, 60)).unwrap_or_else(|e| panic!("{e}"));
    let mut times: Vec<Duration> = (0..FRAMES)
        .map(|_| {
            let start = Instant::now();
            terminal.draw(|frame| ui::draw(frame, &app)).unwrap_or_else(|e| panic!("{e}"));
            start.elapsed()
        })
        .collect();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "console frame, {jobs} jobs + {LINES} traffic lines, 200x60, {FRAMES} frames: median {:.2} ms, p90 {:.2} ms, min {:.2} ms (target: median < 4 ms)",
        ms(times[FRAMES / 2]),
        ms(times[FRAMES * 9 / 10]),
        ms(times[0])
    );
    // Key to screen: the key's handling and the frame drawn after it (the console draws a
    // changed screen at its next frame tick, at most 33 ms later).
    for (name, pane) in [("jobs", Pane::Jobs), ("devices", Pane::Devices)] {
        app.focus = pane;
        let mut times: Vec<Duration> = (0..FRAMES)
            .map(|_| {
                let start = Instant::now();
                app.handle_key(KeyEvent::new(KeyCode::Down, KeyModifiers::NONE));
                terminal.draw(|frame| ui::draw(frame, &app)).unwrap_or_else(|e| panic!("{e}"));
                start.elapsed()
            })
            .collect();
        times.sort();
        println!(
            "key to screen (↓ in the {name} pane, then its frame), {FRAMES} keys: median {:.2} ms, p90 {:.2} ms, plus up to 33 ms to the next frame tick",
            ms(times[FRAMES / 2]),
            ms(times[FRAMES * 9 / 10]),
        );
    }
}
