//! The new-job form overlay.

use ratatui::Frame;
use ratatui::layout::{Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph};

use super::widgets::{centered, clip};
use crate::protocol::short_hash;
use crate::tui::app::App;
use crate::tui::form::{Field, Form, Preview};
use crate::tui::format;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, form: &Form) {
    let theme = &app.theme;
    let rect = centered(area, 76, 16);
    frame.render_widget(Clear, rect);
    let block = Block::new()
        .borders(Borders::ALL)
        .border_type(BorderType::Double)
        .border_style(theme.focused_border)
        .title(Span::styled(" New update job ", theme.title))
        .title_bottom(Span::styled(
            " Enter submit · Esc cancel · ↑↓ field · Tab complete path ",
            theme.muted,
        ));
    let inner = block.inner(rect);
    frame.render_widget(block, rect);
    let label_width = 12u16;
    let value_width = usize::from(inner.width.saturating_sub(label_width + 1));
    let mut lines: Vec<Line> = Vec::new();
    let mut cursor = None;
    for field in Field::ALL {
        let input = form.input(field);
        let focused = form.field == field;
        let placeholder = match field {
            Field::Devices => "dev-01, dev-02, sensor-*".to_owned(),
            Field::Firmware => "path/to/image.bin or https://…".to_owned(),
            Field::ChunkSize => format!("{} (default)", form.default_chunk),
            Field::MaxRate => "none, or like 80KiB/s".to_owned(),
        };
        let scroll = input.visual_scroll(value_width);
        let value = if input.value().is_empty() {
            Span::styled(placeholder, theme.muted)
        } else {
            Span::raw(input.value().chars().skip(scroll).take(value_width).collect::<String>())
        };
        let label_style = if focused { theme.key } else { theme.muted };
        if focused {
            let x = inner.x + label_width + 1 + (input.visual_cursor().saturating_sub(scroll)) as u16;
            cursor =
                Some(Position::new(x.min(inner.right().saturating_sub(1)), inner.y + lines.len() as u16));
        }
        lines.push(Line::from(vec![
            Span::styled(format!("{:>width$} ", field.label(), width = label_width as usize), label_style),
            value,
        ]));
        match form.error(field) {
            Some(error) => lines.push(Line::from(Span::styled(
                format!("{:>13}{}", "", clip(error, value_width)),
                theme.danger,
            ))),
            None => lines.push(Line::default()),
        }
    }
    let preview = match &form.preview {
        Preview::Empty => Span::styled("name a file or URL to see its size and SHA-256", theme.muted),
        Preview::Loading => Span::styled("loading…", theme.warn),
        Preview::Ready(image) => Span::styled(
            format!(
                "{} · {} · sha256 {}",
                image.name(),
                format::bytes(image.size()),
                short_hash(image.sha256())
            ),
            theme.ok,
        ),
        Preview::Failed(_) => Span::styled("no image", theme.danger),
    };
    lines.push(Line::from(vec![Span::styled(format!("{:>12} ", "Image"), theme.muted), preview]));
    if let Preview::Ready(image) = &form.preview {
        let chunks = form
            .chunk_size()
            .ok()
            .and_then(|c| image.chunk_count(c))
            .map(|n| format!("{n} chunks"))
            .unwrap_or_default();
        lines.push(Line::from(vec![
            Span::styled(format!("{:>12} ", "sha256"), theme.muted),
            Span::raw(clip(&crate::protocol::sha256_hex(image.sha256()), value_width)),
        ]));
        lines.push(Line::from(vec![
            Span::styled(format!("{:>12} ", ""), theme.muted),
            Span::styled(chunks, theme.muted),
        ]));
    }
    if let Some(message) = &form.message {
        lines.push(Line::default());
        lines.push(Line::from(Span::styled(
            message.clone(),
            if form.submitting { theme.ok } else { theme.warn },
        )));
    }
    frame.render_widget(Paragraph::new(lines), inner);
    if let Some(position) = cursor {
        frame.set_cursor_position(position);
    }
}
