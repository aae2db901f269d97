//! Every device seen, with its last word and its current or last job.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Span;
use ratatui::widgets::{Cell, Row, Table};

use super::widgets::pane_block;
use crate::tui::app::{App, Pane};
use crate::tui::format;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let theme = &app.theme;
    let devices = app.visible_devices();
    let rows_shown = usize::from(area.height.saturating_sub(3)).max(1);
    let mut cursor = app.devices_cursor;
    cursor.clamp(devices.len(), rows_shown);
    let focused = app.focus == Pane::Devices;
    let rows: Vec<Row> = devices
        .iter()
        .enumerate()
        .skip(cursor.offset)
        .take(rows_shown)
        .map(|(i, d)| {
            let seen = d
                .last_seen
                .and_then(|t| app.now.duration_since(t).ok())
                .map(|ago| format!("{} ago", format::duration(ago)))
                .unwrap_or_else(|| "–".to_owned());
            let job = match d.job {
                Some((id, state)) => {
                    Cell::from(Span::styled(format!("#{id} {}", state.as_str()), theme.state(state)))
                }
                None => Cell::from("–"),
            };
            let response = d.last_response.as_deref().map(|r| frame_part(r, &d.id)).unwrap_or("");
            let row = Row::new(vec![
                Cell::from(d.id.clone()),
                Cell::from(seen),
                job,
                Cell::from(format!("{}✓ {}✗", d.succeeded, d.failed)),
                Cell::from(response.to_owned()),
            ]);
            if focused && i == cursor.selected { row.style(theme.selected) } else { row }
        })
        .collect();
    let widths = [
        Constraint::Length(12),
        Constraint::Length(10),
        Constraint::Length(17),
        Constraint::Length(7),
        Constraint::Min(10),
    ];
    let header = Row::new(vec!["DEVICE", "SEEN", "JOB", "DONE", "LAST RESPONSE"]).style(theme.title);
    let block = pane_block(app, format!("Devices {}", devices.len()), focused, app.filter(Pane::Devices));
    frame.render_widget(Table::new(rows, widths).header(header).block(block), area);
}

/// "resp ← dev-07 [42, FOTA_REQUEST_ACK]" → "[42, FOTA_REQUEST_ACK]": the row already names the
/// device. Cut by the known prefix, not by spaces, since a device id may contain spaces.
fn frame_part<'a>(text: &'a str, device: &str) -> &'a str {
    text.strip_prefix("resp ← ").and_then(|rest| rest.strip_prefix(device)).map_or(text, str::trim_start)
}

#[cfg(test)]
mod tests {
    use super::frame_part;

    #[test]
    fn the_device_prefix_is_cut_even_when_the_id_has_spaces() {
        assert_eq!(frame_part("resp ← dev-07 [42, FOTA_REQUEST_ACK]", "dev-07"), "[42, FOTA_REQUEST_ACK]");
        assert_eq!(frame_part("resp ← pump 3 [7, FOTA_DONE_SUCCESS]", "pump 3"), "[7, FOTA_DONE_SUCCESS]");
        assert_eq!(frame_part("something else", "d"), "something else");
    }
}
