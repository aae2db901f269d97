//! The traffic pane: decoded MQTT messages, newest at the bottom, following unless frozen.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::widgets::{clip, pane_block};
use crate::service::TrafficDirection;
use crate::tui::app::{App, Pane, TrafficLine};
use crate::tui::format;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let theme = &app.theme;
    let lines = app.visible_traffic();
    let height = usize::from(area.height.saturating_sub(2)).max(1);
    let focused = app.focus == Pane::Traffic;
    let (start, selected) = if app.traffic.view.follow {
        (lines.len().saturating_sub(height), lines.last().map(|l| l.seq))
    } else {
        let top = lines.iter().position(|l| l.seq >= app.traffic.view.top).unwrap_or(0);
        (top.min(lines.len().saturating_sub(height)), Some(app.traffic.view.selected))
    };
    let mode = if app.traffic.view.follow { "following" } else { "frozen" };
    let chunks = if app.traffic.show_chunks { ", every chunk" } else { "" };
    let mut title = format!("Traffic {} ({mode}{chunks})", lines.len());
    // The status bar has no room for these below its full width: said here when not zero.
    for (count, what) in [
        (app.traffic.dropped, "dropped"),
        (app.counters.missed_events, "missed"),
        (app.counters.bad_frames, "bad frames"),
        (app.counters.ignored, "ignored"),
    ] {
        if count > 0 && app.size.0 < super::status::TRAFFIC_COUNTS_WHOLE_FROM {
            title.push_str(&format!(" · {count} {what}"));
        }
    }
    let text: Vec<Line> = lines
        .iter()
        .skip(start)
        .take(height)
        .map(|line| {
            let rendered = render(app, line, usize::from(area.width.saturating_sub(2)));
            if focused && Some(line.seq) == selected { rendered.style(theme.selected) } else { rendered }
        })
        .collect();
    let block = pane_block(app, title, focused, app.filter(Pane::Traffic));
    frame.render_widget(Paragraph::new(text).block(block), area);
}

/// One line in `width` columns: a text too long ends with "…" (Enter shows it whole).
fn render<'a>(app: &App, line: &TrafficLine, width: usize) -> Line<'a> {
    let theme = &app.theme;
    let style = if line.decode_error {
        theme.danger
    } else if line.text.contains("NACK") || line.text.contains("FAILED") {
        theme.warn
    } else if line.chunks.is_some() {
        theme.muted
    } else if line.direction == TrafficDirection::In {
        theme.ok
    } else {
        theme.accent
    };
    let time = format::clock_ms(line.time, app.utc_offset_s);
    let room = width.saturating_sub(time.chars().count() + 1);
    Line::from(vec![
        Span::styled(time, theme.muted),
        Span::raw(" "),
        Span::styled(clip(&line.text, room), style),
    ])
}
