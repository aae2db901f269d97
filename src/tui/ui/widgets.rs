//! Small drawing helpers shared by the panes.

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders};

use crate::tui::app::App;
use crate::tui::theme::Theme;

/// A pane's border: highlighted when focused, with its filter (if any) in the title.
pub fn pane_block<'a>(app: &App, title: String, focused: bool, filter: &str) -> Block<'a> {
    let theme = &app.theme;
    let style = if focused { theme.focused_border } else { theme.border };
    let mut spans =
        vec![Span::styled(format!(" {title} "), if focused { theme.title } else { Style::new() })];
    if !filter.is_empty() {
        spans.push(Span::styled(format!("/{filter} "), theme.accent));
    }
    // Panes as tabs: the others are named, so they can be found.
    if app.size.0 < crate::tui::layout::TABS_BELOW {
        let others: Vec<&str> = crate::tui::app::Pane::ALL
            .into_iter()
            .filter(|p| !title.starts_with(p.title()))
            .filter(|p| *p != crate::tui::app::Pane::Rollouts || !app.rollouts.list.is_empty())
            .map(|p| p.title())
            .collect();
        // Below 100 columns a pane is as wide as the terminal: the names that fit whole.
        let used = Line::from(spans.clone()).width() + 4;
        let room = usize::from(app.size.0).saturating_sub(used);
        spans.push(Span::styled(tab_hint(&others, room), theme.muted));
    }
    Block::new()
        .borders(Borders::ALL)
        .border_type(if focused { BorderType::Thick } else { BorderType::Plain })
        .border_style(style)
        .title(Line::from(spans))
}

/// "Tab: Traffic · Devices " in `room` columns: the names that fit whole, then "…".
fn tab_hint(others: &[&str], room: usize) -> String {
    for shown in (0..=others.len()).rev() {
        let mut hint = format!("Tab: {}", others[..shown].join(" · "));
        if shown < others.len() {
            hint.push_str(if shown == 0 { "…" } else { " …" });
        }
        hint.push(' ');
        if hint.chars().count() <= room {
            return hint;
        }
    }
    String::new()
}

/// A text progress bar with eighth-block resolution.
pub fn bar(fraction: f64, width: usize) -> String {
    const PARTS: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    let fraction = if fraction.is_finite() { fraction.clamp(0.0, 1.0) } else { 0.0 };
    let eighths = (fraction * width as f64 * 8.0).round() as usize;
    let full = eighths / 8;
    let mut out = "█".repeat(full.min(width));
    if full < width {
        out.push(PARTS[eighths % 8]);
        out.push_str(&" ".repeat(width - full - 1));
    }
    out
}

/// A device-paced job's bar: what the device confirmed solid (`█`), what was sent beyond it in a
/// lighter glyph (`▒`, readable without colour), the rest blank. Returns the two parts.
pub fn paced_bar(confirmed: f64, sent: f64, width: usize) -> (String, String) {
    let cells = |fraction: f64| {
        let fraction = if fraction.is_finite() { fraction.clamp(0.0, 1.0) } else { 0.0 };
        (fraction * width as f64).round() as usize
    };
    let solid = cells(confirmed).min(width);
    let light = cells(sent).clamp(solid, width) - solid;
    ("█".repeat(solid), format!("{}{}", "▒".repeat(light), " ".repeat(width - solid - light)))
}

/// A centred rectangle of at most `width` × `height` inside `area`.
pub fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let [row] =
        Layout::vertical([Constraint::Length(height.min(area.height))]).flex(Flex::Center).areas(area);
    let [rect] =
        Layout::horizontal([Constraint::Length(width.min(area.width))]).flex(Flex::Center).areas(row);
    rect
}

pub use crate::text::clip;

/// `text` broken at spaces into lines of at most `width` characters (a word longer than that
/// after a `/` where it has one, so a path breaks between its parts, else at the width), every
/// character kept.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut out = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let mut word: Vec<char> = word.chars().collect();
        while word.len() > width {
            if !line.is_empty() {
                out.push(std::mem::take(&mut line));
            }
            let at =
                word[..width].iter().rposition(|c| *c == '/').filter(|&i| i > 0).map_or(width, |i| i + 1);
            out.push(word.drain(..at).collect());
        }
        let word: String = word.into_iter().collect();
        let needed = line.chars().count() + usize::from(!line.is_empty()) + word.chars().count();
        if needed > width && !line.is_empty() {
            out.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    if !line.is_empty() || out.is_empty() {
        out.push(line);
    }
    out
}

/// Lines of a detail overlay fitted to `width` columns: a line too long keeps its first span
/// (a field's label, a timeline's time) and goes on under the rest of it, not at the left edge,
/// broken as [`wrap`] breaks (a hash at the width, a path between its parts).
pub fn hang(lines: Vec<Line<'_>>, width: usize) -> Vec<Line<'_>> {
    let mut out = Vec::with_capacity(lines.len());
    for line in lines {
        if line.width() <= width || line.spans.len() < 2 {
            out.push(line);
            continue;
        }
        let label = line.spans[0].clone();
        let indent = label.width();
        if indent * 2 > width {
            out.push(line);
            continue;
        }
        let style = line.spans.last().map(|s| s.style).unwrap_or_default();
        let value: String = line.spans[1..].iter().map(|s| s.content.as_ref()).collect();
        for (index, piece) in wrap(&value, width - indent).into_iter().enumerate() {
            let head = if index == 0 { label.clone() } else { Span::raw(" ".repeat(indent)) };
            out.push(Line::from(vec![head, Span::styled(piece, style)]));
        }
    }
    out
}

pub fn key_hint<'a>(theme: &Theme, key: String, label: &'a str) -> Vec<Span<'a>> {
    vec![Span::styled(key, theme.key), Span::raw(format!(" {label}  "))]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_field_goes_on_under_its_value_not_at_the_edge() {
        let hash = "ab".repeat(32);
        let lines = vec![Line::from(vec![Span::raw("      sha256  "), Span::raw(hash.clone())])];
        let fitted = hang(lines, 50);
        let texts: Vec<String> = fitted.iter().map(|l| l.to_string()).collect();
        assert_eq!(
            texts,
            [format!("      sha256  {}", &hash[..36]), format!("{}{}", " ".repeat(14), &hash[36..])]
        );
        let short = vec![Line::from(vec![Span::raw("  a  "), Span::raw("b")])];
        assert_eq!(hang(short.clone(), 50), short);
    }

    #[test]
    fn the_tab_hint_names_the_panes_that_fit_whole() {
        let others = ["Jobs", "Rollouts", "Devices"];
        assert_eq!(tab_hint(&others, 80), "Tab: Jobs · Rollouts · Devices ");
        assert_eq!(tab_hint(&others, 25), "Tab: Jobs · Rollouts … ");
        assert_eq!(tab_hint(&others, 8), "Tab: … ");
        assert_eq!(tab_hint(&others, 3), "");
    }

    #[test]
    fn bars_fill_by_eighths() {
        assert_eq!(bar(0.0, 4), "    ");
        assert_eq!(bar(1.0, 4), "████");
        assert_eq!(bar(0.5, 4), "██  ");
        assert_eq!(bar(0.5 + 1.0 / 16.0, 4), "██▎ ");
        assert_eq!(bar(0.625, 4), "██▌ ");
        assert_eq!(bar(f64::NAN, 3), "   ");
        assert_eq!(clip("abcdef", 4), "abc…");
    }
}
