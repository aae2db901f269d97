//! The job table: one row per job with a live progress bar, built for the visible rows only.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row, Table};

use super::widgets::{bar, clip, paced_bar, pane_block};
use crate::tui::app::{App, JobRow, Pane};
use crate::tui::format;

/// The narrowest error column the wide layout (image, bytes, rate, attempts) leaves; below it
/// the narrow columns are used, so why a job failed stays readable.
const MIN_ERROR: u16 = 24;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let theme = &app.theme;
    let len = app.visible_jobs_len();
    let rows_shown = usize::from(area.height.saturating_sub(3)).max(1);
    let cursor = app.jobs.cursor.shown(len, rows_shown);
    let (shown, above, below) = app.visible_jobs_window(cursor.offset, rows_shown);
    let wide_enough = area.width >= 120;
    let focused = app.focus == Pane::Jobs;
    let title = if app.jobs.history {
        format!("History {len} (finished, newest first)")
    } else if len > rows_shown {
        // Not all fit: which rows are shown, and how many running jobs are out of sight.
        let last = (cursor.offset + rows_shown).min(len);
        let mut title = format!("Jobs {}–{last} of {len}", cursor.offset + 1);
        if above > 0 {
            title.push_str(&format!(" · {above} active ↑"));
        }
        if below > 0 {
            title.push_str(&format!(" · {below} active ↓"));
        }
        title
    } else {
        format!("Jobs {len}")
    };
    let block = pane_block(app, title, focused, app.filter(Pane::Jobs));
    let bar_width = if wide_enough { 14 } else { 8 };
    // Columns as wide as what they show on this screen: an image's whole name (its version is
    // at the end), a device's whole id, every digit of a count.
    let widest = |f: &dyn Fn(&JobRow) -> usize, least: usize, most: usize| {
        shown.iter().map(|j| f(j)).max().unwrap_or(0).clamp(least, most) as u16
    };
    let id_w = widest(&|j| j.id.to_string().len(), 2, 10);
    let device_w = widest(&|j| j.device_id.as_str().chars().count(), 6, if wide_enough { 32 } else { 16 });
    let image_w = widest(&|j| j.image.name.chars().count(), 5, 40);
    let progress_w = widest(&|j| progress_text(j).chars().count(), 8, 40) + bar_width as u16 + 1;
    let bytes_w = widest(&|j| sent_text(j).chars().count(), 10, 24);
    let wide_widths = [id_w, device_w, image_w, 12, progress_w, bytes_w, 11, 17, 3];
    let narrow_widths = [id_w, device_w, 12, progress_w, 7];
    // The fixed columns and the error's room (what is left, less a space between columns).
    let inner = area.width.saturating_sub(2);
    let error_room = |fixed: &[u16]| inner.saturating_sub(fixed.iter().sum::<u16>() + fixed.len() as u16);
    // The wide columns only when they leave the error a readable width.
    let wide = wide_enough && error_room(&wide_widths) >= MIN_ERROR;
    let error_w = if wide { error_room(&wide_widths) } else { error_room(&narrow_widths) };
    let (header, widths): (Vec<&str>, Vec<Constraint>) = if wide {
        (
            vec![
                "ID",
                "DEVICE",
                "IMAGE",
                "STATE",
                "PROGRESS",
                "BYTES",
                "RATE",
                "TIME / ETA",
                "ATT",
                "LAST ERROR",
            ],
            vec![
                Constraint::Length(id_w),
                Constraint::Length(device_w),
                Constraint::Length(image_w),
                Constraint::Length(12),
                Constraint::Length(progress_w),
                Constraint::Length(bytes_w),
                Constraint::Length(11),
                Constraint::Length(17),
                Constraint::Length(3),
                Constraint::Fill(1),
            ],
        )
    } else {
        (
            vec!["ID", "DEVICE", "STATE", "PROGRESS", "TIME", "ERROR"],
            vec![
                Constraint::Length(id_w),
                Constraint::Length(device_w),
                Constraint::Length(12),
                Constraint::Length(progress_w),
                Constraint::Length(7),
                Constraint::Fill(1),
            ],
        )
    };
    let disconnected = !matches!(app.connection, crate::service::ConnectionState::Connected);
    let rows: Vec<Row> = shown
        .iter()
        .enumerate()
        .map(|(i, job)| {
            let row = row(app, job, wide, bar_width, (device_w, image_w, error_w), disconnected);
            if focused && cursor.offset + i == cursor.selected { row.style(theme.selected) } else { row }
        })
        .collect();
    let table = Table::new(rows, widths)
        .header(header_row(header, error_w).style(theme.title))
        .block(block)
        .column_spacing(1);
    frame.render_widget(table, area);
}

/// The header, its last title (the error's) cut with "…" to the error's width.
fn header_row<'a>(mut titles: Vec<&'a str>, error_w: u16) -> Row<'a> {
    let last = titles.pop().map(|title| clip(title, usize::from(error_w))).unwrap_or_default();
    let mut cells: Vec<Cell> = titles.into_iter().map(Cell::from).collect();
    cells.push(Cell::from(last));
    Row::new(cells)
}

/// "64✓69/96  66%", or "✗ 96/96 100%" for a job that failed: the counts beside the bar.
fn progress_text(job: &JobRow) -> String {
    let mark = if failed(job) { "✗ " } else { "" };
    match job.chunks_confirmed {
        Some(confirmed) => {
            let pct = (job.confirmed_progress() * 100.0).floor();
            format!("{mark}{confirmed}✓{}/{} {pct:>3}%", job.chunks_done, job.chunks_total)
        }
        None => {
            let pct = (job.progress() * 100.0).floor();
            format!("{mark}{}/{} {pct:>3}%", job.chunks_done, job.chunks_total)
        }
    }
}

/// Failed, refused or timed out: drawn apart from a success without colour too.
fn failed(job: &JobRow) -> bool {
    job.state.is_failure()
}

fn row<'a>(
    app: &App,
    job: &JobRow,
    wide: bool,
    bar_width: usize,
    (device_w, image_w, error_w): (u16, u16, u16),
    disconnected: bool,
) -> Row<'a> {
    let theme = &app.theme;
    // While the broker is away an active job waits for it: said so, with no rate or ETA. An
    // attached console that lost its server cannot know what the job does: it says that.
    let waiting = disconnected && job.state.is_active();
    let state = if waiting {
        Cell::from(Span::styled(if app.session.attached { "server away" } else { "broker down" }, theme.warn))
    } else {
        Cell::from(Span::styled(job.state.label(), theme.state(job.state)))
    };
    let (solid, light) = match job.chunks_confirmed {
        // Device-paced: confirmed solid, sent-but-unconfirmed lighter.
        Some(_) => paced_bar(job.confirmed_progress(), job.progress(), bar_width),
        None => (bar(job.progress(), bar_width), String::new()),
    };
    // A failed job's bar is hatched, not solid: it reads as a failure without colour.
    let solid = if failed(job) {
        solid.replace(['█', '▉', '▊', '▋', '▌', '▍', '▎', '▏'], "░")
    } else {
        solid
    };
    let progress = Cell::from(Line::from(vec![
        Span::styled(solid, theme.state(job.state)),
        Span::styled(light, theme.muted),
        Span::raw(format!(" {}", progress_text(job))),
    ]));
    let elapsed = format::duration(job.elapsed(app.now));
    let error = Cell::from(Span::styled(
        clip(job.error.as_deref().unwrap_or_default(), usize::from(error_w)),
        theme.danger,
    ));
    if !wide {
        return Row::new(vec![
            Cell::from(job.id.to_string()),
            Cell::from(clip(job.device_id.as_str(), usize::from(device_w))),
            state,
            progress,
            Cell::from(elapsed),
            error,
        ]);
    }
    let rate = if waiting { String::new() } else { job.rate(app.now).map(format::rate).unwrap_or_default() };
    let time = match job.eta(app.now).filter(|_| !waiting) {
        Some(eta) => format!("{elapsed} / {}", format::duration(eta)),
        None if waiting => format!("{elapsed} / paused"),
        None => elapsed,
    };
    Row::new(vec![
        Cell::from(job.id.to_string()),
        Cell::from(clip(job.device_id.as_str(), usize::from(device_w))),
        Cell::from(clip(&job.image.name, usize::from(image_w))),
        state,
        progress,
        Cell::from(sent_text(job)),
        Cell::from(rate),
        Cell::from(time),
        Cell::from(job.attempts.to_string()),
        error,
    ])
}

/// Bytes sent; a patch (the delta extension) is marked and set against its image's size:
/// `Δ 23 KiB of 1.0 MiB`.
fn sent_text(job: &JobRow) -> String {
    match job.delta {
        Some(_) => format!("Δ {} of {}", format::bytes(job.bytes_sent), format::bytes(job.image.size)),
        None => format::bytes(job.bytes_sent),
    }
}
