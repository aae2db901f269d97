//! The footer: the filter being typed, or the last action's result or the keys that work here,
//! always ending with `? help  q quit` on the right, so the way out is on screen at any size.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};

use super::widgets::{clip, key_hint, wrap};

/// The most lines a message in the footer takes (the rest is cut with an ellipsis).
const MAX_FLASH_LINES: usize = 4;
use crate::tui::app::App;
use crate::tui::keymap::Action;

/// The footer's height at `width` columns: one line, or the lines the message takes.
pub fn height(app: &App, width: u16) -> u16 {
    if app.filter_input.is_some() {
        return 1;
    }
    flash_lines(app, width).map_or(1, |lines| u16::try_from(lines.len()).unwrap_or(1).max(1))
}

/// `? help  q quit`, at the right of the footer's last line.
fn fixed_hints(app: &App) -> Vec<Span<'static>> {
    [Action::Help, Action::Quit]
        .iter()
        .filter_map(|action| app.keymap.bindings.iter().find(|b| b.action == *action))
        .flat_map(|b| key_hint(&app.theme, b.keys.first().map(|k| k.label()).unwrap_or_default(), b.label))
        .collect()
}

/// The message's lines at `width` columns, beside the hints: at most [`MAX_FLASH_LINES`],
/// the last cut with an ellipsis.
fn flash_lines(app: &App, width: u16) -> Option<Vec<String>> {
    let flash = app.flash.as_ref()?;
    let fixed = Line::from(fixed_hints(app)).width();
    let room = usize::from(width).saturating_sub(fixed);
    let width = room.saturating_sub(2).max(1);
    let mut lines = wrap(&flash.text, width);
    if lines.len() > MAX_FLASH_LINES {
        lines.truncate(MAX_FLASH_LINES);
        if let Some(last) = lines.last_mut() {
            *last = clip(&format!("{last} …"), width);
        }
    }
    Some(lines)
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let theme = &app.theme;
    if let Some(input) = &app.filter_input {
        let prompt = format!(" filter {}: ", app.focus.title().to_lowercase());
        let width = prompt.chars().count() as u16;
        let line = Line::from(vec![Span::styled(prompt, theme.key), Span::raw(input.value().to_owned())]);
        frame.render_widget(Paragraph::new(line), area);
        let x = area.x + width + input.visual_cursor() as u16;
        frame.set_cursor_position(Position::new(x.min(area.right().saturating_sub(1)), area.y));
        return;
    }
    if area.height == 0 {
        return; // a terminal a row or two high: the panes have it all
    }
    let fixed = fixed_hints(app);
    let fixed_width = u16::try_from(Line::from(fixed.clone()).width()).unwrap_or(u16::MAX);
    // The hints on the footer's last line; a message may have lines above it (the layout gave
    // the footer as many as [`height`] says).
    let last = Rect { y: area.bottom().saturating_sub(1), height: 1, ..area };
    let [left, right] =
        Layout::horizontal([Constraint::Min(0), Constraint::Length(fixed_width.min(area.width))]).areas(last);
    frame.render_widget(Paragraph::new(Line::from(fixed)), right);
    let room = usize::from(left.width);
    if let (Some(flash), Some(mut lines)) = (&app.flash, flash_lines(app, area.width)) {
        // Said whole, until the message goes (a saved path, a rollout's reason); on a terminal
        // too short for all of it, as many lines as the layout gave, the last cut with "…".
        let style = if flash.error { theme.danger } else { theme.ok };
        if lines.len() > usize::from(area.height) {
            lines.truncate(usize::from(area.height));
            let width = room.saturating_sub(2).max(1);
            if let Some(last) = lines.last_mut() {
                *last = clip(&format!("{last} …"), width);
            }
        }
        let rect = Rect { y: area.y, height: area.height, ..left };
        frame.render_widget(Clear, Rect { height: area.height.saturating_sub(1), ..area });
        let lines: Vec<Line> =
            lines.into_iter().map(|l| Line::from(Span::styled(format!(" {l}"), style))).collect();
        frame.render_widget(Paragraph::new(lines), rect);
        return;
    }
    // The keys of this pane, then the common ones, as many as fit whole.
    let mut spans = vec![Span::raw(" ")];
    let mut used = 1;
    for binding in app.keymap.footer(app.focus.scope()) {
        if matches!(binding.action, Action::Help | Action::Quit) {
            continue;
        }
        let hint = key_hint(theme, binding.keys_label(), binding.label);
        let width = Line::from(hint.clone()).width();
        if used + width > room {
            break;
        }
        used += width;
        spans.extend(hint);
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), left);
}
