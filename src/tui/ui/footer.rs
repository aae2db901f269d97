//! The footer: the filter being typed, the last action's result, or the keys that work here.

use ratatui::Frame;
use ratatui::layout::{Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::widgets::key_hint;
use crate::tui::app::App;

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
    if let Some(flash) = &app.flash {
        let style = if flash.error { theme.danger } else { theme.ok };
        frame.render_widget(Paragraph::new(Span::styled(format!(" {}", flash.text), style)), area);
        return;
    }
    let mut spans = vec![Span::raw(" ")];
    for binding in app.keymap.footer(app.focus.scope()) {
        spans.extend(key_hint(theme, binding.keys_label(), binding.label));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
