//! The new-job form overlay. It grows with the terminal (up to 120 columns) and wraps every
//! error whole under its field, so a cause is never cut off.

use ratatui::Frame;
use ratatui::layout::{Position, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph};

use super::widgets::{centered, clip, wrap};
use crate::protocol::short_hash;
use crate::tui::app::App;
use crate::tui::form::{Field, Form, Preview};
use crate::tui::format;

/// Columns for the labels, right-aligned, and the space after them.
const LABEL: usize = 12;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, form: &Form) {
    let theme = &app.theme;
    let width = area.width.saturating_sub(4).clamp(40.min(area.width), 120);
    let value_width = usize::from(width.saturating_sub(2)).saturating_sub(LABEL + 1).max(1);
    let known = app.devices.known();
    let mut lines: Vec<Line> = Vec::new();
    if let Some(message) = form.message.as_ref().filter(|_| !(form.armed || form.submitting)) {
        push_wrapped(&mut lines, message, value_width, theme.warn);
        lines.push(Line::default());
    }
    let mut cursor_line = None;
    // The line after the focused field and its error: kept in view with it.
    let mut focus_end = 0;
    for field in Field::ALL {
        if field == Field::Name {
            lines.push(Line::from(Span::styled(
                format!("{:>LABEL$} any of these makes it a rollout", "rollout ·"),
                theme.muted,
            )));
        }
        let input = form.input(field);
        let focused = form.field == field;
        let placeholder = match field {
            Field::Devices => "dev-01, dev-02 · dev-* · model=esp32-c3 (labels: a rollout)".to_owned(),
            Field::Firmware => "path/to/image.bin or https://…".to_owned(),
            Field::ChunkSize => format!("{} (default)", form.default_chunk),
            Field::MaxRate => "none, or like 80KiB/s".to_owned(),
            Field::Name => "the image to the devices (default)".to_owned(),
            Field::Waves => "1, 10%, 100% (counted from the start)".to_owned(),
            Field::PerMinute => "no cap, or job starts a minute".to_owned(),
            Field::AtOnce => "no cap, or jobs active at once".to_owned(),
            Field::Success => "95% (a wave goes on at this share succeeded)".to_owned(),
            Field::Abort => "never, or like 20% after 10".to_owned(),
            Field::Retries => "none, or like 2 after 30s (each wait doubles)".to_owned(),
            Field::Gates => "auto, or manual (resume before each wave)".to_owned(),
        };
        let scroll = input.visual_scroll(value_width);
        let value = if input.value().is_empty() {
            Span::styled(clip(&placeholder, value_width), theme.muted)
        } else {
            Span::raw(input.value().chars().skip(scroll).take(value_width).collect::<String>())
        };
        if focused {
            cursor_line = Some((lines.len(), input.visual_cursor().saturating_sub(scroll)));
        }
        let label_style = if focused { theme.key } else { theme.muted };
        lines.push(Line::from(vec![Span::styled(format!("{:>LABEL$} ", field.label()), label_style), value]));
        if let Some(error) = form.error(field) {
            push_wrapped(&mut lines, error, value_width, theme.danger);
            if focused {
                focus_end = lines.len();
            }
        } else if field == Field::Devices && !input.value().trim().is_empty() {
            // How many devices the field names, as it is typed.
            let count = if form.is_rollout() {
                form.targets(&known).map(|picked| picked.count)
            } else {
                form.devices(&known).map(|devices| devices.len())
            };
            if let Ok(n) = count {
                let text = if n == 1 { "→ 1 device".to_owned() } else { format!("→ {n} devices") };
                push_wrapped(&mut lines, &text, value_width, theme.muted);
            }
            if let Some(note) = form.never_seen_note(&known, &app.devices) {
                push_wrapped(&mut lines, &note, value_width, theme.warn);
            }
        }
    }
    lines.push(Line::default());
    let preview = match &form.preview {
        Preview::Empty => Span::styled("name a file or URL to see its size and SHA-256", theme.muted),
        Preview::Loading => Span::styled("loading…", theme.warn),
        Preview::Ready(image) => Span::styled(
            format!(
                "{} · {} · sha256 {} · {}",
                image.name(),
                format::bytes(image.size()),
                short_hash(image.sha256()),
                match &form.manifest {
                    Some(manifest) =>
                        format!("signed by key {} (seq {})", manifest.kid(), manifest.payload().seq),
                    None => "unsigned".to_owned(),
                }
            ),
            theme.ok,
        ),
        Preview::Failed(_) => Span::styled("no image (the reason is under the firmware field)", theme.danger),
    };
    let preview = Span::styled(clip(&preview.content, value_width), preview.style);
    lines.push(Line::from(vec![Span::styled(format!("{:>LABEL$} ", "Image"), theme.muted), preview]));
    if let Preview::Ready(image) = &form.preview {
        let chunks = form
            .chunk_size()
            .ok()
            .and_then(|c| image.chunk_count(c))
            .map(|n| format!("{n} chunks"))
            .unwrap_or_default();
        // The whole hash, wrapped when the form is narrow: an operator compares it with the one
        // the build printed, and 58 of 64 digits prove nothing.
        let hex = crate::protocol::sha256_hex(image.sha256());
        let pieces = match value_width {
            w if w >= hex.len() => vec![hex.clone()],
            w if w >= hex.len() / 2 => vec![hex[..32].to_owned(), hex[32..].to_owned()],
            w => wrap(&hex, w),
        };
        for (index, piece) in pieces.into_iter().enumerate() {
            let label = if index == 0 { "sha256" } else { "" };
            lines.push(Line::from(vec![
                Span::styled(format!("{label:>LABEL$} "), theme.muted),
                Span::raw(piece),
            ]));
        }
        lines.push(Line::from(vec![
            Span::styled(format!("{:>LABEL$} ", ""), theme.muted),
            Span::styled(chunks, theme.muted),
        ]));
    }
    if form.is_rollout() {
        let (text, style) = match form.rollout_summary(&known) {
            Ok(summary) => (summary, if form.armed { theme.warn } else { theme.ok }),
            Err(problem) => (problem, theme.danger),
        };
        lines.push(Line::from(Span::styled(format!("{:>LABEL$} ", "Rollout"), theme.muted)));
        push_wrapped(&mut lines, &text, value_width, style);
        // The review's dry run: what starting it would do, as the server plans it.
        if form.armed {
            lines.push(Line::from(Span::styled(format!("{:>LABEL$} ", "Plan"), theme.muted)));
            match &form.dry_run {
                None => push_wrapped(
                    &mut lines,
                    "planning (a dry run: nothing is created)…",
                    value_width,
                    theme.muted,
                ),
                Some(Ok(plan)) => {
                    for line in plan {
                        push_wrapped(&mut lines, line, value_width, Style::default());
                    }
                }
                Some(Err(why)) => {
                    push_wrapped(&mut lines, &format!("no dry run: {why}"), value_width, theme.danger)
                }
            }
        }
    }
    // While a rollout is shown for review its message ends the form (in view with the
    // review); any other (what to fix, loading) leads it, in view with the first fields.
    if let Some(message) = form.message.as_ref().filter(|_| form.armed || form.submitting) {
        lines.push(Line::default());
        push_wrapped(&mut lines, message, value_width, theme.ok);
    }
    let title = if form.is_rollout() { " New rollout " } else { " New update job " };
    let enter = if form.is_rollout() && !form.armed { "Enter review" } else { "Enter start" };
    let block = Block::new()
        .borders(Borders::ALL)
        .border_type(BorderType::Double)
        .border_style(theme.focused_border)
        .title(Span::styled(title, theme.title))
        .title_bottom(Span::styled(
            [
                format!(" {enter} · Esc cancel · ↑↓ field · Tab complete path "),
                format!(" {enter} · Esc cancel · ↑↓ field "),
                format!(" {enter} · Esc cancel "),
            ]
            .into_iter()
            .find(|hint| hint.chars().count() + 2 <= usize::from(width))
            .unwrap_or_default(),
            theme.muted,
        ));
    let height = u16::try_from(lines.len() + 2).unwrap_or(u16::MAX);
    let rect = centered(area, width, height);
    frame.render_widget(Clear, rect);
    let inner = block.inner(rect);
    frame.render_widget(block, rect);
    // Taller than the terminal: scrolled so the focused field and what is said of it stay in
    // view; while a rollout is shown for review, its summary at the end is.
    let height = usize::from(inner.height);
    let top = match cursor_line {
        _ if form.armed => lines.len().saturating_sub(height),
        Some((line, _)) => focus_end.max(line + 1).saturating_sub(height).min(line),
        None => 0,
    };
    let scroll = u16::try_from(top).unwrap_or(0);
    frame.render_widget(Paragraph::new(lines).scroll((scroll, 0)), inner);
    if let Some((line, column)) = cursor_line.filter(|(line, _)| *line >= top) {
        let y = inner.y + u16::try_from(line - top).unwrap_or(0);
        let x = inner.x + (LABEL + 1) as u16 + column as u16;
        if y < inner.bottom() {
            frame.set_cursor_position(Position::new(x.min(inner.right().saturating_sub(1)), y));
        }
    }
}

/// `text` under a field's value, broken at spaces to `width` (a word longer than that at the
/// width), every piece shown.
fn push_wrapped(lines: &mut Vec<Line<'_>>, text: &str, width: usize, style: Style) {
    for piece in wrap(text, width) {
        lines.push(Line::from(Span::styled(format!("{:>LABEL$} {piece}", ""), style)));
    }
}

#[cfg(test)]
mod tests {
    use super::super::widgets::wrap;

    #[test]
    fn wrapping_keeps_every_character() {
        let text = "cannot read fw/nonexistent.bin: No such file or directory (os error 2)";
        let lines = wrap(text, 20);
        assert!(lines.iter().all(|l| l.chars().count() <= 20), "{lines:?}");
        assert_eq!(lines.join(" "), text);
        assert_eq!(wrap("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap("", 4), [""]);
        assert_eq!(wrap("to /home/op/.local/rocky.log", 12), ["to", "/home/op/", ".local/", "rocky.log"]);
    }
}
