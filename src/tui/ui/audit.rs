//! The audit overlay (`a`): who changed what, newest first, one entry a line (time, actor,
//! action, target, outcome) where it fits, else the outcome wrapped under it; a refusal's
//! outcome stands out.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};

use super::detail::overlay_block;
use super::widgets::{centered, clip, wrap};
use crate::tui::app::{AUDIT_SHOWN, App};

/// Where a wrapped outcome starts: under the actor.
const INDENT: usize = 16;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, scroll: u16) {
    let rect = centered(area, area.width.saturating_sub(2).max(40), area.height.saturating_sub(2).max(8));
    frame.render_widget(Clear, rect);
    let theme = &app.theme;
    let view = &app.audit;
    let title = format!("Audit · newest first · last {AUDIT_SHOWN} kept here (rocky audit reads all)");
    let block = overlay_block(app, clip(&title, usize::from(rect.width.saturating_sub(4))));
    let width = usize::from(rect.width.saturating_sub(2));
    let mut lines = Vec::new();
    if let Some(error) = &view.error {
        lines.push(Line::from(Span::styled(format!("cannot read the audit: {error}"), theme.danger)));
    }
    if !view.loaded && view.error.is_none() {
        lines.push(Line::from("loading…"));
    } else if view.loaded && view.entries.is_empty() {
        lines.push(Line::from("No one has changed anything yet."));
    }
    // The actor's column as wide as the widest shown (a console's `console:user@host`), within
    // reason; the target takes what is left before the outcome.
    let actor_width = view.entries.iter().map(|e| e.actor.chars().count()).max().unwrap_or(5).clamp(5, 28);
    for entry in view.entries.iter().rev() {
        let at = when(entry.at, app.utc_offset_s);
        let head = format!("{at}  {:<actor_width$} {:<17} ", clip(&entry.actor, actor_width), entry.action);
        let room = width.saturating_sub(head.chars().count());
        let style = if entry.outcome == "ok" { theme.muted } else { theme.danger };
        let whole = format!("{}  {}", entry.target, entry.outcome);
        if whole.chars().count() <= room {
            lines.push(Line::from(vec![
                Span::raw(head),
                Span::raw(format!("{}  ", entry.target)),
                Span::styled(entry.outcome.clone(), style),
            ]));
            continue;
        }
        // Too long for one line: the target after the action, the outcome wrapped under it.
        lines.push(Line::from(vec![Span::raw(head), Span::raw(clip(&entry.target, room))]));
        for piece in wrap(&entry.outcome, width.saturating_sub(INDENT).max(10)) {
            lines.push(Line::from(vec![Span::raw(" ".repeat(INDENT)), Span::styled(piece, style)]));
        }
    }
    frame.render_widget(Paragraph::new(lines).block(block).scroll((scroll, 0)), rect);
}

/// `12-04 02:31:07` in the console's local time.
fn when(ms: i64, utc_offset_s: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms.saturating_add(utc_offset_s.saturating_mul(1000)))
        .map_or_else(|| "?".repeat(14), |t| t.format("%m-%d %H:%M:%S").to_string())
}
