//! The status bar: broker and its state, jobs per state, throughput with a sparkline, drops.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Sparkline};

use crate::runtime::ConnectionState;
use crate::tui::app::App;
use crate::tui::format;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let theme = &app.theme;
    let (dot, state_style) = match &app.connection {
        ConnectionState::Connected => ("●", theme.ok),
        ConnectionState::Connecting | ConnectionState::Reconnecting { .. } => ("◌", theme.warn),
        ConnectionState::Disconnected { .. } | ConnectionState::Stopped => ("○", theme.danger),
    };
    let mut first = vec![Span::styled(" ROCKY ", theme.title), Span::raw(app.broker.clone()), Span::raw(" ")];
    if app.insecure_tls {
        first.push(Span::styled("INSECURE TLS", theme.danger));
        first.push(Span::raw(" "));
    }
    first.push(Span::styled(format!("{dot} {}", app.connection.label()), state_style));
    // On narrow terminals the job counts matter more than the API address.
    if let Some(http) = app.http.as_ref().filter(|_| area.width >= 110) {
        first.push(Span::styled(format!("  api {http}"), theme.muted));
    }
    first.push(Span::raw("   "));
    let counts = app.jobs.counts();
    if counts.is_empty() {
        first.push(Span::styled("no jobs yet: press n", theme.muted));
    }
    for (i, (state, n)) in counts.iter().enumerate() {
        if i > 0 {
            first.push(Span::styled(" · ", theme.muted));
        }
        first.push(Span::styled(format!("{n} {}", state.label()), theme.state(*state)));
    }
    let rate = app.throughput.rate(app.now);
    let drops = app.traffic.dropped + app.missed_events;
    let second = Line::from(vec![Span::styled(format!(" ↑ {:>10} ", format::rate(rate)), theme.active)]);
    let tail = Line::from(vec![
        Span::styled(format!(" {} traffic lines", app.traffic.len()), theme.muted),
        Span::styled(
            format!(" · dropped {} · missed events {}", app.traffic.dropped, app.missed_events),
            if drops > 0 { theme.warn } else { theme.muted },
        ),
        Span::styled(
            if app.bad_frames + app.ignored > 0 {
                format!(" · bad frames {} · ignored {}", app.bad_frames, app.ignored)
            } else {
                String::new()
            },
            theme.warn,
        ),
        Span::styled(
            if app.traffic_view.follow { " · following" } else { " · FROZEN" },
            if app.traffic_view.follow { theme.muted } else { theme.warn },
        ),
    ]);
    if area.height < 2 {
        let mut line = first;
        line.push(Span::styled(format!("  ↑ {}", format::rate(rate)), theme.active));
        frame.render_widget(Paragraph::new(Line::from(line)), area);
        return;
    }
    let [top, bottom] = Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
    frame.render_widget(Paragraph::new(Line::from(first)), top);
    let [rate_area, spark_area, tail_area] =
        Layout::horizontal([Constraint::Length(15), Constraint::Length(40), Constraint::Min(10)])
            .areas(bottom);
    frame.render_widget(Paragraph::new(second), rate_area);
    let series = app.throughput.series(app.now, usize::from(spark_area.width));
    frame.render_widget(Sparkline::default().data(&series).style(theme.bar), spark_area);
    frame.render_widget(Paragraph::new(tail), tail_area);
}
