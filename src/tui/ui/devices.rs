//! Every device seen, with its last word and its current or last job.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Span;
use ratatui::widgets::{Cell, Row, Table};

use super::widgets::{clip, pane_block};
use crate::inventory::labels::render;
use crate::tui::app::{App, DeviceRow, Pane};
use crate::tui::format;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let theme = &app.theme;
    let len = app.visible_devices_len();
    let rows_shown = usize::from(area.height.saturating_sub(3)).max(1);
    let mut cursor = app.devices.cursor;
    cursor.clamp(len, rows_shown);
    let focused = app.focus == Pane::Devices;
    let shown = app.visible_devices_window(cursor.offset, rows_shown);
    // The id, the job and its counts are shown whole; then, while there is room, when it was
    // seen, the image name and the labels (these two cut with an ellipsis if they must), and
    // the last response. A column with nothing to show is left out.
    let widest = |f: &dyn Fn(&DeviceRow) -> usize| shown.iter().map(|d| f(d)).max().unwrap_or(0);
    let id_w = widest(&|d| d.id.chars().count()).max(6);
    let job_w = widest(&|d| d.job.map_or(1, |(id, s)| id.to_string().len() + 2 + s.label().len())).max(3);
    let done_w = widest(&|d| d.succeeded.to_string().len() + d.failed.to_string().len() + 3).max(4);
    let labels: Vec<String> = shown.iter().map(|d| render(&d.labels)).collect();
    let labels_need = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let firmware_need = widest(&|d| d.firmware.as_deref().map_or(0, |f| f.chars().count()));
    let runs_need = widest(&|d| d.runs.as_deref().map_or(0, |r| r.chars().count()));
    let mut left = usize::from(area.width.saturating_sub(2)).saturating_sub(id_w + job_w + done_w + 2);
    let mut take = |want: usize, least: usize| -> usize {
        if want == 0 || left < least.min(want) + 1 {
            return 0;
        }
        let got = want.min(left - 1);
        left -= got + 1;
        got
    };
    let seen_w = take(10, 10);
    let runs_w = take(runs_need, 14);
    let firmware_w = take(firmware_need, 8);
    let labels_w = take(labels_need, 8);
    let response_w = take(usize::MAX, 20);
    let rows: Vec<Row> = shown
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mut cells = vec![Cell::from(d.id.clone())];
            if seen_w > 0 {
                let seen = d
                    .last_seen
                    .and_then(|t| app.now.duration_since(t).ok())
                    .map(|ago| format!("{} ago", format::duration(ago)))
                    .unwrap_or_else(|| "–".to_owned());
                cells.push(Cell::from(seen));
            }
            if runs_w > 0 {
                cells.push(Cell::from(clip(d.runs.as_deref().unwrap_or("–"), runs_w)));
            }
            cells.push(match d.job {
                Some((id, state)) => {
                    Cell::from(Span::styled(format!("#{id} {}", state.label()), theme.state(state)))
                }
                None => Cell::from("–"),
            });
            cells.push(Cell::from(format!("{}✓ {}✗", d.succeeded, d.failed)));
            if firmware_w > 0 {
                cells.push(Cell::from(clip(d.firmware.as_deref().unwrap_or("–"), firmware_w)));
            }
            if labels_w > 0 {
                cells.push(Cell::from(clip(&labels[i], labels_w)));
            }
            if response_w > 0 {
                let response = d.last_response.as_deref().map(|r| frame_part(r, &d.id)).unwrap_or("");
                cells.push(Cell::from(clip(response, response_w)));
            }
            let row = Row::new(cells);
            if focused && cursor.offset + i == cursor.selected { row.style(theme.selected) } else { row }
        })
        .collect();
    let as_len = |n: usize| Constraint::Length(u16::try_from(n).unwrap_or(u16::MAX));
    let mut widths = vec![as_len(id_w)];
    let mut titles = vec!["DEVICE"];
    if seen_w > 0 {
        widths.push(as_len(seen_w));
        titles.push("SEEN");
    }
    if runs_w > 0 {
        widths.push(as_len(runs_w));
        titles.push("RUNS");
    }
    widths.extend([as_len(job_w), as_len(done_w)]);
    titles.extend(["JOB", "DONE"]);
    for (width, title) in [(firmware_w, "FIRMWARE"), (labels_w, "LABELS"), (response_w, "LAST RESPONSE")] {
        if width > 0 {
            widths.push(as_len(width));
            titles.push(title);
        }
    }
    let header = Row::new(titles).style(theme.title);
    let block = pane_block(app, format!("Devices {len}"), focused, app.filter(Pane::Devices));
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
