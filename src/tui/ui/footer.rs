//! The footer: the filter being typed, or the last action's result or the keys that work here,
//! always ending with `? help  q quit` on the right, so the way out is on screen at any size.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::widgets::{clip, key_hint};
use crate::tui::app::App;
use crate::tui::keymap::Action;

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
    let fixed: Vec<Span> = [Action::Help, Action::Quit]
        .iter()
        .filter_map(|action| app.keymap.bindings.iter().find(|b| b.action == *action))
        .flat_map(|b| key_hint(theme, b.keys.first().map(|k| k.label()).unwrap_or_default(), b.label))
        .collect();
    let fixed_width = u16::try_from(Line::from(fixed.clone()).width()).unwrap_or(u16::MAX);
    let [left, right] =
        Layout::horizontal([Constraint::Min(0), Constraint::Length(fixed_width.min(area.width))]).areas(area);
    frame.render_widget(Paragraph::new(Line::from(fixed)), right);
    let room = usize::from(left.width);
    if let Some(flash) = &app.flash {
        let style = if flash.error { theme.danger } else { theme.ok };
        let text = clip(&format!(" {}", flash.text), room.saturating_sub(1));
        frame.render_widget(Paragraph::new(Span::styled(text, style)), left);
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
