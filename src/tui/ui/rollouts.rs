//! The rollouts strip (each rollout on a line: its waves, counts against its thresholds, state,
//! reason, ETA) and a rollout's detail (every wave and device, and its changes).

use std::time::{Duration, UNIX_EPOCH};

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Clear, Paragraph, Row, Table};

use super::detail::overlay_block;
use super::widgets::{centered, clip, pane_block};
use crate::rollout::{RolloutId, RolloutState, RolloutView, WaveView};
use crate::tui::app::{App, Pane};
use crate::tui::format;
use crate::tui::source::DETAIL_DEVICES;
use crate::tui::theme::Theme;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let theme = &app.theme;
    let rollouts = app.visible_rollouts();
    let rows_shown = usize::from(area.height.saturating_sub(3)).max(1);
    let mut cursor = app.rollouts.cursor;
    cursor.clamp(rollouts.len(), rows_shown);
    let focused = app.focus == Pane::Rollouts;
    // Narrow terminals drop the reason (the detail has it) and write the counts tighter, so
    // no number is ever cut.
    let wide = area.width >= 120;
    let longest = |f: &dyn Fn(&RolloutView) -> usize, least: usize| {
        rollouts.iter().map(|r| f(r)).max().unwrap_or(0).max(least) as u16
    };
    let devices_width = longest(
        &|r| {
            let t = r.totals();
            let digits = |n: usize| n.to_string().len();
            digits(t.succeeded)
                + digits(t.failed)
                + digits(t.cancelled)
                + digits(t.devices)
                + if wide { 10 } else { 4 }
        },
        7,
    );
    let mut widths = vec![
        Constraint::Length(longest(&|r| r.id.to_string().len() + 1, 2)),
        if wide {
            Constraint::Length(longest(&|r| r.name.chars().count(), 4).min(32))
        } else {
            Constraint::Fill(1)
        },
        Constraint::Length(9),
        Constraint::Length(longest(&|r| r.waves.len() * 2 + 2 + 2 * r.waves.len().to_string().len(), 5)),
        Constraint::Length(devices_width),
        Constraint::Length(longest(&|r| failure(r, wide).chars().count(), 6)),
        Constraint::Length(7),
    ];
    let mut titles = vec!["ID", "NAME", "STATE", "WAVES", "DEVICES", "FAILED", "ETA"];
    if wide {
        widths.push(Constraint::Fill(1));
        titles.push("REASON");
    }
    // The columns as the table will lay them out, so a name or reason too long for its column
    // ends with "…" rather than a cut word.
    let inner = area.inner(ratatui::layout::Margin::new(1, 1));
    let columns = ratatui::layout::Layout::horizontal(widths.clone()).spacing(1).split(inner);
    let column = |index: usize| columns.get(index).map_or(0, |rect| usize::from(rect.width));
    let rows: Vec<Row> = rollouts
        .iter()
        .enumerate()
        .skip(cursor.offset)
        .take(rows_shown)
        .map(|(i, r)| {
            let t = r.totals();
            let devices = if wide {
                format!("{}✓ {}✗ {}⊘ of {}", t.succeeded, t.failed, t.cancelled, t.devices)
            } else {
                format!("{}✓{}✗{}⊘/{}", t.succeeded, t.failed, t.cancelled, t.devices)
            };
            let mut cells = vec![
                Cell::from(format!("#{}", r.id)),
                Cell::from(clip(&r.name, column(1))),
                Cell::from(Span::styled(r.state.as_str(), theme.rollout_state(r.state))),
                Cell::from(Line::from(strip(theme, r))),
                Cell::from(devices),
                Cell::from(Span::styled(failure(r, wide), failure_style(theme, r))),
                Cell::from(eta(app, r)),
            ];
            if wide {
                cells.push(Cell::from(clip(r.reason.as_deref().unwrap_or_default(), column(7))));
            }
            let row = Row::new(cells);
            if focused && i == cursor.selected { row.style(theme.selected) } else { row }
        })
        .collect();
    let header = Row::new(titles).style(theme.title);
    let title = match &app.rollouts.error {
        Some(error) => format!("Rollouts {} · {error}", rollouts.len()),
        None => format!("Rollouts {}", rollouts.len()),
    };
    let block = pane_block(app, title, focused, app.filter(Pane::Rollouts));
    if rollouts.is_empty() {
        let hint = "No rollouts yet: `rocky rollout create` or POST /rollouts starts one.";
        frame.render_widget(Paragraph::new(Span::styled(hint, theme.muted)).block(block), area);
        return;
    }
    frame.render_widget(Table::new(rows, widths).header(header).block(block), area);
}

/// One glyph per wave, readable without colour: `■` ran, `▶` under way, `‖` paused in it,
/// `□` waiting, `×` never ran (aborted or cancelled first); then "wave 2/3".
fn strip<'a>(theme: &Theme, r: &RolloutView) -> Vec<Span<'a>> {
    let mut spans: Vec<Span> = r
        .waves
        .iter()
        .map(|wave| {
            let (glyph, style) = wave_mark(theme, r, wave);
            Span::styled(format!("{glyph} "), style)
        })
        .collect();
    spans.push(Span::raw(format!("{}/{}", r.wave, r.waves.len())));
    spans
}

fn wave_mark(theme: &Theme, r: &RolloutView, wave: &WaveView) -> (char, ratatui::style::Style) {
    let c = &wave.counts;
    let finished = c.pending == 0 && c.active == 0;
    let ran = c.succeeded + c.failed > 0;
    if finished && ran {
        let met = c.succeeded as f64 >= r.settings.success_threshold * c.devices as f64;
        return ('■', if met { theme.ok } else { theme.danger });
    }
    if finished || (r.state.is_final() && wave.wave > r.wave) {
        return ('×', theme.muted);
    }
    match (wave.wave == r.wave, r.state) {
        (true, RolloutState::Running) => ('▶', theme.active),
        (true, RolloutState::Paused) => ('‖', theme.warn),
        _ => ('□', theme.muted),
    }
}

/// "13% / abort ≥50%": the failed share of finished devices against the abort threshold
/// ("13%/≥50%" when narrow).
fn failure(r: &RolloutView, wide: bool) -> String {
    let share = r.failure_share().map_or_else(|| "–".to_owned(), |s| format!("{:.0}%", s * 100.0));
    match (&r.settings.abort, wide) {
        (Some(rule), true) => format!("{share} / abort ≥{:.0}%", rule.failure_share * 100.0),
        (Some(rule), false) => format!("{share}/≥{:.0}%", rule.failure_share * 100.0),
        (None, true) => format!("{share} / no abort"),
        (None, false) => share,
    }
}

fn failure_style(theme: &Theme, r: &RolloutView) -> ratatui::style::Style {
    match (r.failure_share(), &r.settings.abort) {
        (Some(share), Some(rule)) if share >= rule.failure_share => theme.danger,
        (Some(share), _) if share > 0.0 => theme.warn,
        _ => ratatui::style::Style::new(),
    }
}

/// The server's ETA; none while an attached console cannot reach its server (what it last
/// heard no longer holds).
fn eta(app: &App, r: &RolloutView) -> String {
    let away = app.session.attached && !app.connection.is_connected();
    match r.eta_ms {
        Some(_) if away => "?".to_owned(),
        Some(ms) => format::duration(Duration::from_millis(ms)),
        None => "–".to_owned(),
    }
}

/// What went on the wire: against whole images once patches saved some.
fn bytes(r: &RolloutView) -> String {
    r.bytes_note().unwrap_or_else(|| format!("sent {}", format::bytes(r.bytes.sent)))
}

fn field<'a>(theme: &Theme, name: &str, value: impl Into<Span<'a>>) -> Line<'a> {
    Line::from(vec![Span::styled(format!("{name:>12}  "), theme.muted), value.into()])
}

pub fn draw_detail(frame: &mut Frame, area: Rect, app: &App, id: RolloutId, scroll: u16) {
    let rect = centered(area, area.width.saturating_sub(4).max(40), area.height.saturating_sub(2).max(10));
    frame.render_widget(Clear, rect);
    let theme = &app.theme;
    let block = overlay_block(app, format!("Rollout {id}"));
    let Some(r) = app.rollouts.detail.as_ref().filter(|r| r.id == id) else {
        let text = match &app.rollouts.error {
            Some(error) => error.clone(),
            None => "loading…".to_owned(),
        };
        frame.render_widget(Paragraph::new(text).block(block), rect);
        return;
    };
    let stamp = |ms: u64| format::clock_ms(UNIX_EPOCH + Duration::from_millis(ms), app.utc_offset_s);
    let mut lines = vec![
        field(theme, "name", r.name.clone()),
        field(theme, "state", Span::styled(r.state.as_str(), theme.rollout_state(r.state))),
        field(theme, "reason", r.reason.clone().unwrap_or_else(|| "–".into())),
        field(theme, "image", format!("{} · {}", r.image.name, format::bytes(r.image.size))),
        field(theme, "sha256", r.image.sha256.to_string()),
        field(theme, "rules", r.settings.in_words()),
        field(theme, "failed", failure(r, true)),
        field(theme, "ETA", eta(app, r)),
        field(theme, "bytes", bytes(r)),
        field(theme, "created", stamp(r.created_at)),
        Line::default(),
        Line::from(Span::styled("WAVE  DEVICES  SUCCEEDED  FAILED  ACTIVE  PENDING  CANCELLED", theme.title)),
    ];
    for wave in &r.waves {
        let c = &wave.counts;
        let (glyph, style) = wave_mark(theme, r, wave);
        lines.push(Line::from(vec![
            Span::styled(format!("{glyph} "), style),
            Span::raw(format!(
                "{:<4}{:>7}  {:>9}  {:>6}  {:>6}  {:>7}  {:>9}",
                wave.wave, c.devices, c.succeeded, c.failed, c.active, c.pending, c.cancelled
            )),
        ]));
    }
    if let Some(note) = r.confirm_note() {
        lines.push(Line::from(Span::styled(format!("  of which {note}"), theme.muted)));
    }
    lines.push(Line::default());
    let devices = r.devices.as_deref().unwrap_or_default();
    if devices.len() < r.device_count {
        // A page of a large rollout: which one, and how to turn it.
        let from = r.devices_from.unwrap_or(0);
        let last = from + devices.len();
        let mut turn = Vec::new();
        if last < r.device_count {
            turn.push(format!("] next {}", DETAIL_DEVICES.min(r.device_count - last)));
        }
        if from > 0 {
            turn.push(format!("[ previous {DETAIL_DEVICES}"));
        }
        lines.push(Line::from(vec![
            Span::styled(
                format!("DEVICES {}–{last} of {}", (from + 1).min(last), r.device_count),
                theme.title,
            ),
            Span::styled(format!("  {}", turn.join(" · ")), theme.muted),
        ]));
    }
    let widest = devices.iter().map(|d| d.device_id.as_str().chars().count()).max().unwrap_or(6).max(6);
    lines.push(Line::from(Span::styled(
        format!("{:<widest$}  {:<10}  {:>7}  {:>5}  DETAIL", "DEVICE", "OUTCOME", "JOB", "TRIES"),
        theme.title,
    )));
    for slot in devices {
        let job = slot.job_id.map_or_else(|| "–".to_owned(), |j| format!("#{j}"));
        lines.push(Line::from(vec![
            Span::raw(format!("{:<widest$}  ", slot.device_id.as_str())),
            Span::styled(format!("{:<10}", slot.outcome.label()), theme.outcome(slot.outcome)),
            Span::raw(format!("  {job:>7}  {:>5}  {}", slot.attempts, slot.detail.as_deref().unwrap_or(""))),
        ]));
    }
    if let Some(changes) = &r.changes {
        lines.push(Line::default());
        lines.push(Line::from(Span::styled("CHANGES", theme.title)));
        for change in changes {
            lines.push(Line::from(format!(
                "{}  {} → {}: {}",
                stamp(change.at),
                change.from.as_str(),
                change.to.as_str(),
                change.reason
            )));
        }
    }
    let lines = super::widgets::hang(lines, usize::from(rect.width.saturating_sub(2)));
    let paragraph = Paragraph::new(lines).block(block).wrap(ratatui::widgets::Wrap { trim: false });
    frame.render_widget(paragraph.scroll((scroll, 0)), rect);
}
