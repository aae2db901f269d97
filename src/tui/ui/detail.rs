//! Detail overlays: a job's whole story, and one message down to its bytes.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph, Wrap};

use super::widgets::{bar, centered, hang};
use crate::engine::JobId;
use crate::protocol::{diagnostic, hex_dump, hex_row_width};
use crate::service::TrafficDirection;
use crate::tui::app::App;
use crate::tui::format;

pub fn overlay_block<'a>(app: &App, title: String) -> Block<'a> {
    Block::new()
        .borders(Borders::ALL)
        .border_type(BorderType::Double)
        .border_style(app.theme.focused_border)
        .title(Span::styled(format!(" {title} "), app.theme.title))
        .title_bottom(Span::styled(" ↑↓ scroll · Esc back ", app.theme.muted))
}

fn field<'a>(app: &App, name: &str, value: String) -> Line<'a> {
    Line::from(vec![Span::styled(format!("{name:>12}  "), app.theme.muted), Span::raw(value)])
}

pub fn draw_job(frame: &mut Frame, area: Rect, app: &App, id: JobId, scroll: u16) {
    let rect = centered(area, area.width.saturating_sub(4).max(40), area.height.saturating_sub(2).max(10));
    frame.render_widget(Clear, rect);
    let Some(job) = app.jobs.rows.get(&id) else {
        let text = Paragraph::new(format!("job {id} is not known to the console"))
            .block(overlay_block(app, format!("Job {id}")));
        frame.render_widget(text, rect);
        return;
    };
    let theme = &app.theme;
    let stamp = |t: Option<std::time::SystemTime>| {
        t.map(|t| format::clock_ms(t, app.utc_offset_s)).unwrap_or_else(|| "–".into())
    };
    let mut lines = vec![
        field(app, "device", job.device_id.to_string()),
        Line::from(vec![
            Span::styled(format!("{:>12}  ", "state"), theme.muted),
            Span::styled(job.state.label().to_owned(), theme.state(job.state)),
        ]),
        field(
            app,
            "progress",
            format!(
                "{} chunk {}/{} ({:.0}%)",
                bar(job.progress(), 20),
                job.chunks_done,
                job.chunks_total,
                job.progress() * 100.0
            ),
        ),
        field(
            app,
            "pace",
            match (job.window, job.chunks_confirmed) {
                (Some(window), Some(confirmed)) => format!(
                    "device-paced, window {window}{}: {confirmed} of {} chunks confirmed",
                    if window == 0 { " (paused)" } else { "" },
                    job.chunks_total
                ),
                _ => "pushed as fast as the broker takes them".to_owned(),
            },
        ),
        field(app, "image", format!("{} · {}", job.image.name, format::bytes(job.image.size))),
        field(app, "sha256", job.image.sha256.to_string()),
        field(app, "chunk size", format::bytes(u64::from(job.chunk_size))),
        field(app, "sent", format::bytes(job.bytes_sent)),
        field(
            app,
            "delta",
            match &job.delta {
                Some(delta) => format!(
                    "Δ {} of {} (a patch from {})",
                    format::bytes(delta.patch_size),
                    format::bytes(job.image.size),
                    crate::protocol::short_hash(&delta.base)
                ),
                None => "none (the whole image)".to_owned(),
            },
        ),
        field(app, "attempts", job.attempts.to_string()),
        field(app, "created", stamp(Some(job.created()))),
        field(app, "started", stamp(job.started())),
        field(app, "finished", stamp(job.finished())),
    ];
    // The confirm extension: what the job waits for, or when the device said it runs the image.
    match (job.state, job.confirm_boot, job.confirmed()) {
        (crate::engine::JobState::Confirming, Some(boot), _) => {
            lines.push(field(app, "confirm", format!("waiting for a status after boot {boot}")));
        }
        (_, _, Some(at)) => lines.push(field(app, "confirmed", stamp(Some(at)))),
        _ => {}
    }
    // The manifest extension: which key signed what the device was sent; for a device that
    // runs AWS's OTA agent, the job document's signature.
    lines.push(match &job.aws {
        Some(aws) => field(app, "signed", aws.signing_words()),
        None => field(
            app,
            "manifest",
            match &job.manifest {
                Some(m) => {
                    let version =
                        m.payload().version.as_deref().map(|v| format!(", version {v}")).unwrap_or_default();
                    format!("signed by key {} ({}){version}, seq {}", m.kid(), m.alg(), m.payload().seq)
                }
                None => "none (an unsigned image)".to_owned(),
            },
        ),
    });
    if let Some(error) = &job.error {
        lines.push(Line::from(vec![
            Span::styled(format!("{:>12}  ", "error"), theme.muted),
            Span::styled(error.clone(), theme.danger),
        ]));
    }
    lines.push(Line::default());
    lines.push(Line::from(Span::styled("Timeline", theme.title)));
    for (at, text) in &job.timeline {
        lines.push(Line::from(vec![
            Span::styled(format!("  {}  ", format::clock_ms(*at, app.utc_offset_s)), theme.muted),
            Span::raw(text.clone()),
        ]));
    }
    lines.push(Line::default());
    lines.push(Line::from(Span::styled("Traffic (as kept in the traffic history)", theme.title)));
    let traffic: Vec<Line> = app
        .traffic
        .iter()
        .filter(|l| l.job == Some(id))
        .map(|l| {
            let style = if l.decode_error {
                theme.danger
            } else if l.direction == TrafficDirection::In {
                theme.ok
            } else {
                theme.accent
            };
            Line::from(vec![
                Span::styled(format!("  {}  ", format::clock_ms(l.time, app.utc_offset_s)), theme.muted),
                Span::styled(l.text.clone(), style),
            ])
        })
        .collect();
    if traffic.is_empty() {
        lines.push(Line::from(Span::styled("  (none kept)", theme.muted)));
    }
    lines.extend(traffic);
    // Wrapped, so a hash or an error longer than the terminal is shown whole, not cut.
    let paragraph = Paragraph::new(hang(lines, usize::from(rect.width.saturating_sub(2))))
        .block(overlay_block(app, format!("Job {id}")))
        .wrap(Wrap { trim: false })
        .scroll((scroll, 0));
    frame.render_widget(paragraph, rect);
}

pub fn draw_traffic(frame: &mut Frame, area: Rect, app: &App, seq: u64, scroll: u16) {
    let rect = centered(area, area.width.saturating_sub(4).max(40), area.height.saturating_sub(2).max(10));
    frame.render_widget(Clear, rect);
    let theme = &app.theme;
    let Some(line) = app.traffic.by_seq(seq) else {
        let text = Paragraph::new("this message has left the traffic history")
            .block(overlay_block(app, "Message".into()));
        frame.render_widget(text, rect);
        return;
    };
    let direction = match line.direction {
        TrafficDirection::Out => "Rocky → device",
        TrafficDirection::In => "device → Rocky",
    };
    let mut lines = vec![
        field(app, "time", format::clock_ms(line.time, app.utc_offset_s)),
        field(app, "direction", direction.to_owned()),
        field(app, "topic", line.topic.clone()),
        field(app, "QoS", line.qos.to_string()),
        match line.chunks {
            // A folded run: the first chunk's own size, then the run's.
            Some(run) => field(
                app,
                "size",
                format!(
                    "{} a chunk · chunks {}–{} of {}, {} in all",
                    format::bytes(run.first_size),
                    run.first,
                    run.last,
                    run.total,
                    format::bytes(run.bytes)
                ),
            ),
            None => field(app, "size", format!("{} B", line.size)),
        },
        Line::from(vec![
            Span::styled(format!("{:>12}  ", "decoded"), theme.muted),
            Span::styled(line.text.clone(), if line.decode_error { theme.danger } else { theme.title }),
        ]),
    ];
    if let Some(job) = line.job {
        lines.push(field(app, "job", job.to_string()));
    }
    lines.push(Line::default());
    if line.chunks.is_some() {
        lines.push(Line::from(Span::styled("Raw firmware bytes (first chunk of the run)", theme.title)));
    } else {
        lines.push(Line::from(Span::styled("CBOR (diagnostic notation)", theme.title)));
        match diagnostic(&line.payload) {
            Ok(text) => lines.push(Line::from(format!("  {text}"))),
            Err(e) => lines.push(Line::from(Span::styled(format!("  not CBOR: {e}"), theme.danger))),
        }
    }
    lines.push(Line::default());
    // Every byte kept, to scroll through (a message's first KEPT_PAYLOAD bytes are kept).
    let kept = line.payload.len();
    let whole = line.chunks.map_or(line.size, |run| usize::try_from(run.first_size).unwrap_or(usize::MAX));
    let title = if kept < whole {
        format!("Hex (the first {kept} B of {whole} B are kept)")
    } else {
        format!("Hex ({kept} B)")
    };
    lines.push(Line::from(Span::styled(title, theme.title)));
    // As many bytes a row as fit the overlay without wrapping (16, 8 or 4).
    let inner = usize::from(rect.width.saturating_sub(2));
    // Each row is indented by two.
    let per_row = [16, 8, 4].into_iter().find(|&n| 2 + hex_row_width(n) <= inner).unwrap_or(4);
    for row in hex_dump(&line.payload, crate::tui::app::KEPT_PAYLOAD, per_row) {
        lines.push(Line::from(format!("  {row}")));
    }
    let paragraph = Paragraph::new(hang(lines, usize::from(rect.width.saturating_sub(2))))
        .block(overlay_block(app, format!("Message #{seq}")))
        .wrap(Wrap { trim: false })
        .scroll((scroll, 0));
    frame.render_widget(paragraph, rect);
}
