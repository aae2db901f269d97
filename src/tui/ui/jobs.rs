//! The job table: one row per job with a live progress bar, built for the visible rows only.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row, Table};

use super::widgets::{bar, clip, paced_bar, pane_block};
use crate::tui::app::{App, JobRow, Pane};
use crate::tui::format;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let theme = &app.theme;
    let jobs = app.visible_jobs();
    let rows_shown = usize::from(area.height.saturating_sub(3)).max(1);
    let mut cursor = app.jobs_cursor;
    cursor.clamp(jobs.len(), rows_shown);
    let wide = area.width >= 120;
    let focused = app.focus == Pane::Jobs;
    let title = if app.history_view {
        format!("History {} (finished, newest first)", jobs.len())
    } else {
        format!("Jobs {}", jobs.len())
    };
    let block = pane_block(app, title, focused, app.filter(Pane::Jobs));
    let bar_width = if wide { 14 } else { 8 };
    let rows: Vec<Row> = jobs
        .iter()
        .enumerate()
        .skip(cursor.offset)
        .take(rows_shown)
        .map(|(i, job)| {
            let row = row(app, job, wide, bar_width);
            if focused && i == cursor.selected { row.style(theme.selected) } else { row }
        })
        .collect();
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
                Constraint::Length(6),
                Constraint::Length(14),
                Constraint::Length(16),
                Constraint::Length(12),
                Constraint::Length(bar_width as u16 + 16),
                Constraint::Length(10),
                Constraint::Length(11),
                Constraint::Length(15),
                Constraint::Length(3),
                Constraint::Min(10),
            ],
        )
    } else {
        (
            vec!["ID", "DEVICE", "STATE", "PROGRESS", "TIME", "ERROR"],
            vec![
                Constraint::Length(5),
                Constraint::Length(10),
                Constraint::Length(12),
                Constraint::Length(bar_width as u16 + 16),
                Constraint::Length(7),
                Constraint::Min(6),
            ],
        )
    };
    let table =
        Table::new(rows, widths).header(Row::new(header).style(theme.title)).block(block).column_spacing(1);
    frame.render_widget(table, area);
}

fn row<'a>(app: &App, job: &JobRow, wide: bool, bar_width: usize) -> Row<'a> {
    let theme = &app.theme;
    let state = Cell::from(Span::styled(job.state.label(), theme.state(job.state)));
    let progress = match job.chunks_confirmed {
        // Device-paced: confirmed solid, sent-but-unconfirmed lighter, and the count the device
        // confirmed (✓) before what was sent.
        Some(confirmed) => {
            let pct = (job.confirmed_progress() * 100.0).floor();
            let (solid, light) = paced_bar(job.confirmed_progress(), job.progress(), bar_width);
            Cell::from(Line::from(vec![
                Span::styled(solid, theme.state(job.state)),
                Span::styled(light, theme.muted),
                Span::raw(format!(" {confirmed}✓{}/{} {pct:>3}%", job.chunks_done, job.chunks_total)),
            ]))
        }
        None => {
            let pct = (job.progress() * 100.0).floor();
            Cell::from(Line::from(vec![
                Span::styled(bar(job.progress(), bar_width), theme.state(job.state)),
                Span::raw(format!(" {}/{} {pct:>3}%", job.chunks_done, job.chunks_total)),
            ]))
        }
    };
    let elapsed = format::duration(job.elapsed(app.now));
    let error = Cell::from(Span::styled(job.error.clone().unwrap_or_default(), theme.danger));
    if !wide {
        return Row::new(vec![
            Cell::from(job.id.to_string()),
            Cell::from(clip(job.device_id.as_str(), 10)),
            state,
            progress,
            Cell::from(elapsed),
            error,
        ]);
    }
    let rate = job.rate(app.now).map(format::rate).unwrap_or_default();
    let time = match job.eta(app.now) {
        Some(eta) => format!("{elapsed} / {}", format::duration(eta)),
        None => elapsed,
    };
    Row::new(vec![
        Cell::from(job.id.to_string()),
        Cell::from(clip(job.device_id.as_str(), 14)),
        Cell::from(clip(&job.image.name, 16)),
        state,
        progress,
        Cell::from(format::bytes(job.bytes_sent)),
        Cell::from(rate),
        Cell::from(time),
        Cell::from(job.attempts.to_string()),
        error,
    ])
}
