//! The `?` overlay, generated from the keymap, and the confirmation popup.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph};

use super::widgets::centered;
use crate::tui::app::{App, Confirm};
use crate::tui::keymap::Scope;
use crate::tui::source::RolloutVerb;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, scroll: u16) {
    let theme = &app.theme;
    let rect = centered(area, 78, area.height.saturating_sub(2).max(10));
    frame.render_widget(Clear, rect);
    let mut lines = Vec::new();
    for (scope, title) in [
        (Scope::Global, "Everywhere"),
        (Scope::Jobs, "Jobs pane"),
        (Scope::Rollouts, "Rollouts pane (Tab reaches it once there is a rollout)"),
        (Scope::Traffic, "Traffic pane"),
    ] {
        lines.push(Line::from(Span::styled(title, theme.title)));
        for binding in app.keymap.bindings.iter().filter(|b| b.scope == scope) {
            lines.push(Line::from(vec![
                Span::styled(format!("  {:<14}", binding.keys_label()), theme.key),
                Span::raw(binding.help),
            ]));
        }
        lines.push(Line::default());
    }
    lines.push(Line::from(Span::styled("New-job form", theme.title)));
    for (keys, help) in [
        ("↑/↓", "Move between fields"),
        ("Tab", "Complete a firmware path (else next field)"),
        ("Enter", "Start (a rollout is shown whole first)"),
        ("", "Labels, waves, a start cap or thresholds make it a rollout:"),
        ("", "Enter shows it whole, a second Enter starts it"),
        ("Esc", "Close without creating anything"),
    ] {
        lines.push(Line::from(vec![Span::styled(format!("  {keys:<14}"), theme.key), Span::raw(help)]));
    }
    lines.push(Line::default());
    lines.push(Line::from(Span::styled("Filters", theme.title)));
    lines.push(Line::from("  Jobs by device or state; traffic by device, job number or command name."));
    lines.push(Line::default());
    let log = app.log_path.as_ref().map_or_else(|| "(not written)".to_owned(), |p| p.display().to_string());
    lines.push(Line::from(vec![Span::styled("Log file  ", theme.title), Span::raw(log)]));
    let block = Block::new()
        .borders(Borders::ALL)
        .border_type(BorderType::Double)
        .border_style(theme.focused_border)
        .title(Span::styled(" Help ", theme.title))
        .title_bottom(Span::styled(" ↑↓ scroll · Esc or ? close ", theme.muted));
    frame.render_widget(Paragraph::new(lines).block(block).scroll((scroll, 0)), rect);
}

pub fn draw_confirm(frame: &mut Frame, area: Rect, app: &App, confirm: &Confirm) {
    let theme = &app.theme;
    let question = match confirm {
        Confirm::Cancel(id) => {
            let device = app.jobs.rows.get(id).map(|j| j.device_id.to_string()).unwrap_or_default();
            format!("Cancel job {id} on {device}? Nothing more is sent for it.")
        }
        Confirm::Retry(id) => {
            let what = app
                .jobs
                .rows
                .get(id)
                .map(|j| format!("{} to {}", j.image.name, j.device_id))
                .unwrap_or_default();
            format!("Run job {id} again as a new job ({what})?")
        }
        Confirm::Rollout(id, verb) => {
            let name = app.rollouts.get(*id).map(|r| format!(" {:?}", r.name)).unwrap_or_default();
            let effect = match verb {
                RolloutVerb::Pause => "No new job starts; running ones finish.",
                RolloutVerb::Resume => "Jobs start again under its rules.",
                RolloutVerb::Cancel => {
                    "Every job it started is cancelled, transfers under way too, and nothing more starts. \
                     This cannot be undone."
                }
            };
            format!("{} rollout {id}{name}? {effect}", capitalised(verb.as_str()))
        }
        Confirm::Quit { active } => {
            let jobs = if *active == 1 { "1 job is" } else { "jobs are" };
            let count = if *active == 1 { String::new() } else { format!("{active} ") };
            format!("{count}{jobs} still queued or running. Quit anyway? {}", app.session.on_quit)
        }
    };
    let rect = centered(area, 64, 6);
    frame.render_widget(Clear, rect);
    let block = Block::new()
        .borders(Borders::ALL)
        .border_type(BorderType::Double)
        .border_style(theme.danger)
        .title(Span::styled(" Confirm ", theme.danger));
    let lines = vec![
        Line::from(question),
        Line::default(),
        Line::from(vec![
            Span::styled("y", theme.key),
            Span::raw("/Enter yes   "),
            Span::styled("n", theme.key),
            Span::raw("/Esc no"),
        ]),
    ];
    frame.render_widget(Paragraph::new(lines).wrap(ratatui::widgets::Wrap { trim: true }).block(block), rect);
}

/// "pause" → "Pause".
fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}
