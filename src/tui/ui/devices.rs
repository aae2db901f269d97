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
            // "resp ← dev-07 [42, FOTA_REQUEST_ACK]" → "[42, FOTA_REQUEST_ACK]": the row names the device.
            let response =
                d.last_response.as_deref().map(|r| r.splitn(4, ' ').nth(3).unwrap_or(r)).unwrap_or("");
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
