//! The console's event loop: terminal input, runtime events and command results in; at most
//! ~30 frames a second out, and only when something changed. Anything slow (loading an image,
//! submitting, cancelling) runs in a task of its own and reports back, so the loop never waits.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use ratatui::crossterm::event::{Event as TermEvent, EventStream as TermEvents};
use tokio::sync::mpsc;

use super::app::{AUDIT_SHOWN, App, Cursor, Overlay, Pane};
use super::form::FormOutcome;
use super::input::{Command, Outcome};
use super::source::{RolloutVerb, Source};
use super::terminal::TerminalGuard;
use super::theme::Theme;
use super::ui;
use crate::engine::{JobId, JobSpec};
use crate::firmware::{FirmwareSource, Image, LoadLimits, resolve};
use crate::rollout::{DeviceWindow, RolloutId, RolloutRequest, RolloutView};

/// Frames are drawn at most this often.
const FRAME: Duration = Duration::from_millis(33);
/// Events applied before the loop looks at the keyboard again.
const EVENT_BATCH: usize = 20_000;
/// Job changes applied at once.
const JOB_BATCH: usize = 5_000;

pub struct ConsoleOptions {
    pub broker_label: String,
    /// `--insecure-tls` is on.
    pub insecure_tls: bool,
    pub http: Option<String>,
    pub traffic_lines: usize,
    /// The colours (`console.palette`).
    pub palette: crate::config::Palette,
    pub default_chunk: u32,
    pub log_path: Option<PathBuf>,
    pub limits: LoadLimits,
    /// Work to start as soon as the console is up (the demo's rollouts); a failure is flashed.
    pub startup: Vec<Startup>,
    /// What happens to queued and running jobs on quit, for the quit dialog.
    pub on_quit: String,
}

/// Work the console starts once it is up, answering the words of a failure.
pub type Startup = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>;

/// Results of work the loop handed off.
enum Done {
    Preview {
        generation: u64,
        result: Result<Image, String>,
        /// The image's manifest where Rocky holds one (`None`: unsigned, or not known).
        manifest: Option<crate::protocol::Manifest>,
    },
    Submitted(Result<usize, String>),
    Cancelled(Result<JobId, String>),
    History(JobId, Vec<crate::snapshot::HistoryRecord>),
    /// The form's rollout planned for its review `u64`: what it would do, or why not.
    DryRun(u64, Result<Box<crate::service::RolloutDryRun>, String>),
    /// Audit entries newer than the view held, oldest first.
    Audit(Result<Vec<crate::audit::Entry>, String>),
    /// Something handed off failed; said in the footer.
    Failed(String),
    /// The rollouts listing, and the open rollout whole if one is open and it changed.
    Rollouts {
        list: Result<Vec<RolloutView>, String>,
        detail: Detail,
    },
    RolloutControlled(RolloutId, RolloutVerb, Result<(), String>),
    Inventory(Result<super::source::InventoryPage, String>),
    RolloutCreated(Result<RolloutId, String>),
    /// A file `w` wrote, or why not.
    Exported(Result<String, String>),
    /// A firmware path's completion, for the form.
    Completed {
        generation: u64,
        asked: String,
        completed: Option<String>,
    },
}

/// How often the inventory is read for the devices pane and the form's `prefix*`: a walk of
/// its pages starts this long after the last one ended, times the pages that one took (a fleet
/// of 100,000 devices is read every 20 s, not every 2).
const INVENTORY_POLL: Duration = Duration::from_secs(2);

/// The pause between the pages of one walk of the inventory.
const INVENTORY_PAGE_GAP: Duration = Duration::from_millis(200);

/// How often the rollouts are fetched (they live in the runtime, not in the event stream).
const ROLLOUT_POLL: Duration = Duration::from_secs(1);
/// Ids of each list the form's dry run names (the rest are counted).
const DRY_RUN_IDS: usize = 4;
/// How often the open audit view asks for newer entries.
const AUDIT_POLL: Duration = Duration::from_secs(2);

pub async fn run(source: Arc<dyn Source>, options: ConsoleOptions) -> std::io::Result<()> {
    let Some(mut events) = source.subscribe() else {
        return Err(std::io::Error::other("the console's event stream was already taken"));
    };
    let mut guard = TerminalGuard::enter()?;
    let mut app = App::new(
        source.clock(),
        options.broker_label.clone(),
        options.traffic_lines,
        Theme::for_palette(options.palette),
    );
    app.session.attached = source.attached();
    app.session.insecure_tls = options.insecure_tls;
    app.session.http = options.http.clone();
    app.session.on_quit = options.on_quit.clone();
    app.log_path = options.log_path.clone();
    app.session.default_chunk = options.default_chunk;
    app.utc_offset_s = i64::from(chrono::Local::now().offset().local_minus_utc());
    let size = guard.terminal().size()?;
    app.size = (size.width, size.height);

    // Job state comes from the job table (lossless, latest wins); events add the timeline and
    // traffic (bounded, lossy, drops counted).
    let mut jobs = source.follow_jobs();
    if let Some(first) = jobs.try_next(JOB_BATCH) {
        app.apply_jobs(&first);
    }
    if let Ok(Some(connection)) = source.connection().await {
        app.connection = connection;
    }
    let (done_tx, mut done_rx) = mpsc::channel::<Done>(64);
    for work in options.startup {
        let done = done_tx.clone();
        tokio::spawn(async move {
            if let Err(e) = work.await {
                let _ = done.send(Done::Failed(e)).await;
            }
        });
    }
    let mut terminal_events = TermEvents::new();
    let mut frames = tokio::time::interval(FRAME);
    frames.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_draw = Instant::now() - Duration::from_secs(10);
    let mut last_inventory = last_draw;
    let mut last_rollouts = last_draw;
    let mut rollouts_in_flight = false;
    let (mut last_audit, mut audit_in_flight) = (last_draw, false);
    let mut inventory_in_flight = false;
    let mut sigterm = terminate_signal();

    loop {
        let outcome = tokio::select! {
            biased;
            input = terminal_events.next() => match input {
                Some(Ok(TermEvent::Key(key))) => app.handle_key(key),
                Some(Ok(TermEvent::Mouse(mouse))) => app.handle_mouse(mouse),
                Some(Ok(TermEvent::Resize(w, h))) => {
                    app.size = (w, h);
                    app.dirty = true;
                    Outcome::Redraw
                }
                Some(Ok(_)) => Outcome::Ignored,
                Some(Err(_)) | None => Outcome::Quit,
            },
            _ = sigterm.recv() => Outcome::Quit,
            done = done_rx.recv() => {
                if let Some(done) = done {
                    match done {
                        Done::Rollouts { .. } => rollouts_in_flight = false,
                        Done::Inventory(_) => {
                            inventory_in_flight = false;
                            last_inventory = Instant::now();
                        }
                        Done::Audit(_) => audit_in_flight = false,
                        _ => {}
                    }
                    finish(&mut app, &source, &options.limits, &done_tx, done);
                }
                Outcome::Redraw
            }
            // Before the job and event streams, which are nearly always ready during a
            // transfer: a due frame is drawn whatever else is waiting.
            _ = frames.tick() => {
                let after = app.devices.inventory_after.clone();
                let pause = match after {
                    Some(_) => INVENTORY_PAGE_GAP,
                    None => INVENTORY_POLL.saturating_mul(app.devices.inventory_pages.1.clamp(1, 100) as u32),
                };
                if !inventory_in_flight && last_inventory.elapsed() >= pause {
                    inventory_in_flight = true;
                    let (source, done) = (source.clone(), done_tx.clone());
                    tokio::spawn(async move {
                        let _ = done.send(Done::Inventory(source.inventory(after).await)).await;
                    });
                }
                if !rollouts_in_flight && (app.rollouts.due || last_rollouts.elapsed() >= ROLLOUT_POLL) {
                    rollouts_in_flight = true;
                    let asked = std::mem::take(&mut app.rollouts.due);
                    last_rollouts = Instant::now();
                    let open = match app.overlay {
                        Some(Overlay::RolloutDetail { id, from, .. }) => {
                            Some((id, DeviceWindow { from, limit: super::source::DETAIL_DEVICES }))
                        }
                        _ => None,
                    };
                    // The open rollout's page as held, unless something asked for it again.
                    let held = app
                        .rollouts
                        .detail
                        .as_ref()
                        .filter(|d| {
                            !asked && open.is_some_and(|(id, w)| d.id == id && d.devices_from == Some(w.from))
                        })
                        .map(|d| d.updated_at);
                    spawn_rollouts(&source, open, held, &done_tx);
                }
                if matches!(app.overlay, Some(Overlay::Audit { .. }))
                    && !audit_in_flight
                    && last_audit.elapsed() >= AUDIT_POLL
                {
                    audit_in_flight = true;
                    last_audit = Instant::now();
                    run_command(&mut app, &source, &options.limits, &done_tx, Command::LoadAudit);
                }
                if app.dirty || last_draw.elapsed() >= Duration::from_secs(1) {
                    app.now = SystemTime::now();
                    guard.terminal().draw(|frame| ui::draw(frame, &app))?;
                    app.dirty = false;
                    last_draw = Instant::now();
                }
                Outcome::Ignored
            }
            received = events.recv() => {
                match received {
                    Some(received) => {
                        app.apply(&received);
                        for _ in 0..EVENT_BATCH {
                            let Some(more) = events.try_recv() else { break };
                            app.apply(&more);
                        }
                        // Events are nearly always ready during a transfer: job changes are
                        // taken here too, so neither stream starves the other.
                        if let Some(changes) = jobs.try_next(JOB_BATCH) {
                            app.apply_jobs(&changes);
                        }
                    }
                    None => app.flash("the engine has stopped", true),
                }
                Outcome::Redraw
            }
            changes = jobs.next(JOB_BATCH) => {
                if let Some(changes) = changes {
                    app.apply_jobs(&changes);
                }
                Outcome::Redraw
            }
        };
        match outcome {
            Outcome::Quit => break,
            Outcome::Command(Command::ToggleMouse) => {
                app.mouse_released = !app.mouse_released;
                match guard.capture_mouse(!app.mouse_released) {
                    Ok(()) if app.mouse_released => {
                        app.flash("mouse released: select and copy with the terminal; m takes it back", false)
                    }
                    Ok(()) => app.flash("mouse captured: clicks select, the wheel scrolls", false),
                    Err(e) => app.flash(format!("the terminal refused the mouse change: {e}"), true),
                }
            }
            Outcome::Command(command) => run_command(&mut app, &source, &options.limits, &done_tx, command),
            Outcome::Ignored | Outcome::Redraw => {}
        }
    }
    drop(guard);
    Ok(())
}

fn run_command(
    app: &mut App,
    source: &Arc<dyn Source>,
    limits: &LoadLimits,
    done: &mpsc::Sender<Done>,
    command: Command,
) {
    match command {
        Command::Submit(specs) => spawn_submit(source, specs, done),
        Command::CreateRollout(rollout) => spawn_rollout(source, *rollout, done),
        // Handled by the loop, which holds the terminal.
        Command::ToggleMouse => {}
        Command::Export(export) => {
            let done = done.clone();
            tokio::spawn(async move {
                let _ = done.send(Done::Exported(write_export(export).await)).await;
            });
        }
        Command::CompletePath { generation, text } => {
            let done = done.clone();
            tokio::spawn(async move {
                let asked = text.clone();
                let completed = tokio::task::spawn_blocking(move || crate::tui::form::complete(&text))
                    .await
                    .ok()
                    .flatten();
                let _ = done.send(Done::Completed { generation, asked, completed }).await;
            });
        }
        Command::Retry(id) => {
            let Some(row) = app.jobs.rows.get(&id) else { return };
            let (job, source, done, limits) = (row.job.clone(), source.clone(), done.clone(), limits.clone());
            tokio::spawn(async move {
                let result = source.retry(&job, &limits).await;
                let _ = done.send(Done::Submitted(result)).await;
            });
        }
        Command::Cancel(id) => {
            let (source, done) = (source.clone(), done.clone());
            tokio::spawn(async move {
                let result = source.cancel(id).await.map(|()| id);
                let _ = done.send(Done::Cancelled(result)).await;
            });
        }
        Command::Preview { generation, source: firmware } => {
            spawn_preview(source, limits.clone(), done, generation, firmware)
        }
        // Fetched with the next listing, right away.
        Command::LoadRollout(_) => app.rollouts.due = true,
        Command::ExportRollout { id, dir } => {
            let (source, done) = (source.clone(), done.clone());
            let now = app.now;
            tokio::spawn(async move {
                let result = match source.rollout(id, None).await {
                    Ok(view) => write_export(super::export::rollout(&view, &dir, now)).await,
                    Err(e) => Err(format!("cannot fetch rollout {id} to write it: {e}")),
                };
                let _ = done.send(Done::Exported(result)).await;
            });
        }
        Command::DryRunRollout(rollout, review) => spawn_dry_run(source, *rollout, review, done),
        Command::ControlRollout(id, verb) => {
            let (source, done) = (source.clone(), done.clone());
            tokio::spawn(async move {
                let result = source.control_rollout(id, verb).await;
                let _ = done.send(Done::RolloutControlled(id, verb, result)).await;
            });
        }
        Command::LoadAudit => {
            let (source, done) = (source.clone(), done.clone());
            let last_id = app.audit.last_id;
            tokio::spawn(async move {
                let _ = done.send(Done::Audit(fetch_audit(source.as_ref(), last_id).await)).await;
            });
        }
        Command::LoadHistory(id) => {
            let (source, done) = (source.clone(), done.clone());
            tokio::spawn(async move {
                // Without a store (the demo) there is no stored timeline: the console's own is all.
                if let Ok(records) = source.history(id).await {
                    let _ = done.send(Done::History(id, records)).await;
                }
            });
        }
    }
}

/// The audit entries after `last_id`, oldest first: the newest [`AUDIT_SHOWN`] when the view
/// holds none yet, else what followed (a few pages at most: the view keeps the newest only).
async fn fetch_audit(source: &dyn Source, last_id: Option<i64>) -> Result<Vec<crate::audit::Entry>, String> {
    use crate::audit::{MAX_PAGE, Query};
    let Some(mut after) = last_id else {
        let query = Query { newest_first: true, limit: AUDIT_SHOWN, ..Query::default() };
        let mut entries = source.audit(query).await?.entries;
        entries.reverse();
        return Ok(entries);
    };
    let mut entries = Vec::new();
    for _ in 0..3 {
        let page = source.audit(Query { after: Some(after), limit: MAX_PAGE, ..Query::default() }).await?;
        entries.extend(page.entries);
        match page.next_after {
            Some(next) => after = next,
            None => break,
        }
    }
    Ok(entries)
}

/// The open rollout, as a fetch of the listing found it.
#[derive(Debug)]
pub enum Detail {
    /// No rollout is open.
    Closed,
    /// The listing says it has not changed since the one held (its `updated_at`): not fetched
    /// again, since a whole rollout may hold 100,000 devices.
    Unchanged,
    Fetched(Result<Box<RolloutView>, String>),
}

/// Whether the open rollout must be fetched: none is held, or the listing's `updated_at` is not
/// the held one's (or the listing does not show it).
fn changed(held: Option<u64>, listed: Option<u64>) -> bool {
    held.is_none() || listed != held
}

/// Fetches the listing and, when one is open, the open rollout whole: only if it changed since
/// `held` (the `updated_at` of the one held), or none is held.
fn spawn_rollouts(
    source: &Arc<dyn Source>,
    open: Option<(RolloutId, DeviceWindow)>,
    held: Option<u64>,
    done: &mpsc::Sender<Done>,
) {
    let (source, done) = (source.clone(), done.clone());
    tokio::spawn(async move {
        let list = source.rollouts().await;
        let listed = |id: RolloutId| {
            list.as_ref().ok().and_then(|list| list.iter().find(|r| r.id == id)).map(|r| r.updated_at)
        };
        let detail = match open {
            None => Detail::Closed,
            Some((id, _)) if !changed(held, listed(id)) => Detail::Unchanged,
            Some((id, window)) => Detail::Fetched(source.rollout(id, Some(window)).await.map(Box::new)),
        };
        let _ = done.send(Done::Rollouts { list, detail }).await;
    });
}

fn spawn_rollout(
    source: &Arc<dyn Source>,
    (request, image): (RolloutRequest, Image),
    done: &mpsc::Sender<Done>,
) {
    let (source, done) = (source.clone(), done.clone());
    tokio::spawn(async move {
        let result = source.create_rollout(request, image).await;
        let _ = done.send(Done::RolloutCreated(result)).await;
    });
}

/// What the form's rollout would do, for its review `review`.
fn spawn_dry_run(
    source: &Arc<dyn Source>,
    (request, image): (RolloutRequest, Image),
    review: u64,
    done: &mpsc::Sender<Done>,
) {
    let (source, done) = (source.clone(), done.clone());
    tokio::spawn(async move {
        let result = source.dry_run_rollout(request, image).await.map(Box::new);
        let _ = done.send(Done::DryRun(review, result)).await;
    });
}

/// Writes an export off the event loop's task; the words to flash either way.
async fn write_export(export: super::export::Export) -> Result<String, String> {
    let super::export::Export { path, contents, what } = export;
    let shown = path.display().to_string();
    match tokio::task::spawn_blocking(move || std::fs::write(&path, contents)).await {
        Ok(Ok(())) => Ok(format!("wrote {what} to {shown}")),
        Ok(Err(e)) => Err(format!("cannot write {shown}: {e}")),
        Err(_) => Err(format!("writing {shown} stopped")),
    }
}

fn spawn_submit(source: &Arc<dyn Source>, specs: Vec<JobSpec>, done: &mpsc::Sender<Done>) {
    let (source, done) = (source.clone(), done.clone());
    tokio::spawn(async move {
        let result = source.submit(specs).await;
        let _ = done.send(Done::Submitted(result)).await;
    });
}

fn spawn_preview(
    source: &Arc<dyn Source>,
    limits: LoadLimits,
    done: &mpsc::Sender<Done>,
    generation: u64,
    firmware: FirmwareSource,
) {
    let (library, done, source) = (source.library(), done.clone(), source.clone());
    tokio::spawn(async move {
        // The operator at the console may name any file they can read: no confinement here.
        let mut result = resolve(&firmware, &library, None, &limits).await.map_err(|e| e.to_string());
        // A manifest `rocky sign` wrote beside the operator's file goes with the image.
        let cose = match &firmware {
            FirmwareSource::Path(path) => {
                let mut cose = path.as_os_str().to_owned();
                cose.push(".cose");
                std::fs::read(std::path::PathBuf::from(cose)).ok()
            }
            _ => None,
        };
        let manifest = match (&result, cose) {
            (Ok(image), Some(cose)) => match source.attach_manifest(image.clone(), cose).await {
                Ok(manifest) => Some(manifest),
                Err(e) => {
                    result = Err(format!("{}.cose: {e}", image.name()));
                    None
                }
            },
            (Ok(image), None) => source.manifest(image.clone()).await.ok().flatten(),
            (Err(_), _) => None,
        };
        // And the signature `rocky sign --format aws` wrote, for devices of AWS's OTA agent.
        if let (Ok(image), FirmwareSource::Path(path)) = (&result, &firmware) {
            let mut beside = path.as_os_str().to_owned();
            beside.push(".sig-sha256-ecdsa");
            if let Ok(signature) = crate::small_file::read_small_file(std::path::Path::new(&beside), 1024)
                && let Err(e) = source
                    .attach_aws_signature(image.clone(), String::from_utf8_lossy(&signature).into_owned())
                    .await
            {
                result = Err(format!("{}.sig-sha256-ecdsa: {e}", image.name()));
            }
        }
        let _ = done.send(Done::Preview { generation, result, manifest }).await;
    });
}

fn finish(
    app: &mut App,
    source: &Arc<dyn Source>,
    limits: &LoadLimits,
    done_tx: &mpsc::Sender<Done>,
    done: Done,
) {
    app.dirty = true;
    match done {
        Done::Preview { generation, result, manifest } => {
            let known = app.devices.known();
            if let Some(Overlay::Form(form)) = app.overlay.as_mut() {
                if generation == form.generation {
                    form.manifest = manifest;
                }
                match form.set_preview(generation, result, &known) {
                    FormOutcome::Submit(specs) => spawn_submit(source, specs, done_tx),
                    FormOutcome::Rollout(rollout) => spawn_rollout(source, *rollout, done_tx),
                    FormOutcome::DryRun(rollout, review) => spawn_dry_run(source, *rollout, review, done_tx),
                    _ => {}
                }
            }
        }
        Done::Submitted(Ok(n)) => {
            if matches!(app.overlay, Some(Overlay::Form(_))) {
                app.overlay = None;
            }
            app.focus = Pane::Jobs;
            app.jobs.cursor = Cursor::following();
            app.flash(format!("created {n} job{}", if n == 1 { "" } else { "s" }), false);
        }
        Done::Exported(Ok(text)) => app.flash(text, false),
        Done::Exported(Err(text)) => app.flash(text, true),
        Done::Completed { generation, asked, completed } => {
            if let Some(Overlay::Form(form)) = app.overlay.as_mut()
                && let FormOutcome::Preview { generation, source: firmware } =
                    form.completed(generation, &asked, completed)
            {
                spawn_preview(source, limits.clone(), done_tx, generation, firmware);
            }
        }
        Done::RolloutCreated(Ok(id)) => {
            if matches!(app.overlay, Some(Overlay::Form(_))) {
                app.overlay = None;
            }
            app.rollouts.due = true;
            app.focus = Pane::Rollouts;
            app.rollouts.cursor = Default::default();
            app.flash(format!("rollout {id} started"), false);
        }
        Done::RolloutCreated(Err(error)) | Done::Submitted(Err(error)) => match app.overlay.as_mut() {
            Some(Overlay::Form(form)) => form.submit_failed(error),
            _ => app.flash(error, true),
        },
        Done::DryRun(review, result) => {
            if let Some(Overlay::Form(form)) = app.overlay.as_mut()
                && form.armed
                && form.review == review
            {
                form.dry_run = Some(result.map(|run| run.in_words(DRY_RUN_IDS)));
            }
        }
        Done::Audit(Ok(entries)) => app.audit.extend(entries),
        Done::Audit(Err(error)) => app.audit.error = Some(error),
        Done::History(id, records) => {
            let entries = records
                .into_iter()
                .map(|r| {
                    let at = std::time::UNIX_EPOCH + Duration::from_millis(r.at);
                    let text = match (r.detail, r.attempt) {
                        (Some(detail), Some(attempt)) => {
                            format!("{}: {detail} (attempt {attempt})", r.state.label())
                        }
                        (Some(detail), None) => format!("{}: {detail}", r.state.label()),
                        (None, _) => r.state.label().to_owned(),
                    };
                    (at, text)
                })
                .collect();
            app.load_timeline(id, entries);
        }
        Done::Cancelled(Ok(id)) => app.flash(format!("job {id} cancelled"), false),
        Done::Cancelled(Err(error)) | Done::Failed(error) => app.flash(error, true),
        Done::Rollouts { list, detail } => {
            match list {
                Ok(list) => {
                    app.rollouts.list = list;
                    app.rollouts.error = None;
                }
                Err(error) => app.rollouts.error = Some(error),
            }
            match detail {
                Detail::Fetched(Ok(view)) => app.rollouts.detail = Some(*view),
                Detail::Fetched(Err(error)) => app.rollouts.error = Some(error),
                Detail::Closed => app.rollouts.detail = None,
                // Its ETA moves with time: the listing's is the newer.
                Detail::Unchanged => {
                    if let Some(detail) = app.rollouts.detail.as_mut()
                        && let Some(listed) = app.rollouts.list.iter().find(|r| r.id == detail.id)
                    {
                        detail.eta_ms = listed.eta_ms;
                    }
                }
            }
        }
        Done::RolloutControlled(id, verb, Ok(())) => {
            app.rollouts.due = true;
            app.flash(format!("rollout {id} {}", verb.done()), false);
        }
        // A failure shows in the rollouts' title (the same server is behind both).
        Done::Inventory(Ok(page)) => app.devices.merge_inventory(page),
        // The walk starts over at the next poll.
        Done::Inventory(Err(_)) => {
            app.devices.inventory_after = None;
            app.devices.inventory_pages.0 = 0;
        }
        Done::RolloutControlled(_, _, Err(error)) => {
            app.rollouts.due = true;
            app.flash(error, true);
        }
    }
}

/// SIGTERM as a stream of `()`; never fires where there is no such signal.
struct Terminate(Option<tokio::signal::unix::Signal>);

impl Terminate {
    async fn recv(&mut self) {
        match self.0.as_mut() {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending().await,
        }
    }
}

fn terminate_signal() -> Terminate {
    Terminate(tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok())
}

#[cfg(test)]
mod tests {
    use super::changed;

    #[test]
    fn an_open_rollout_is_fetched_again_only_when_the_listing_says_it_changed() {
        assert!(changed(None, Some(5)), "nothing held yet");
        assert!(!changed(Some(5), Some(5)), "unchanged: 100,000 devices are not fetched again");
        assert!(changed(Some(5), Some(6)));
        assert!(changed(Some(5), None), "not in the listing: fetched");
    }
}
