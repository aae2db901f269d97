//! The status bar: broker and its state, jobs per state, throughput with a sparkline, drops.
//! Wide terminals get all of it on two lines; narrower ones a compact form that keeps every job
//! count whole (shorter words first, never a cut number), with the traffic's drops moving to
//! the traffic pane's title.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Sparkline};

use crate::engine::JobState;
use crate::service::ConnectionState;
use crate::tui::app::App;
use crate::tui::format;

/// From this width the status bar has room for everything, in full words.
const WIDE: u16 = 120;

/// The terminal width from which the status bar's second line holds every traffic count (the
/// traffic pane's title repeats them below it).
pub const TRAFFIC_COUNTS_WHOLE_FROM: u16 = 140;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let theme = &app.theme;
    let (dot, state_style) = match &app.connection {
        ConnectionState::Connected => ("●", theme.ok),
        ConnectionState::Connecting | ConnectionState::Reconnecting { .. } => ("◌", theme.warn),
        ConnectionState::Disconnected { .. } | ConnectionState::Stopped => ("○", theme.danger),
    };
    let rate = app.throughput.rate(app.now);
    let connection = Span::styled(format!("{dot} {}", app.connection.label()), state_style);
    if area.width < WIDE || area.height < 2 {
        // Compact: the connection first (it says why nothing moves), then the counts.
        let mut first = vec![Span::styled(" ROCKY ", theme.title), connection, Span::raw(" ")];
        if app.session.insecure_tls {
            first.push(Span::styled("INSECURE TLS ", theme.danger));
        }
        // The reason needs the wide bar; the fact does not: without it, the commands a user
        // points at this address talk to whatever else holds it.
        if app.session.http.as_deref().is_some_and(|http| http.starts_with("off")) {
            first.push(Span::styled("API OFF ", theme.warn));
        }
        let used = Line::from(first.clone()).width();
        first.push(Span::styled(
            super::widgets::clip(&app.session.broker, usize::from(area.width).saturating_sub(used)),
            theme.muted,
        ));
        let rate_text = format!(" ↑ {}", format::rate(rate));
        let room = usize::from(area.width).saturating_sub(rate_text.chars().count() + 1);
        let mut counts = counts(app);
        if Line::from(counts.clone()).width() > room {
            counts = counts_short(app);
        }
        counts.insert(0, Span::raw(" "));
        counts.push(Span::styled(rate_text, theme.active));
        if area.height < 2 {
            let mut line = first;
            line.push(Span::raw(" "));
            line.extend(counts);
            frame.render_widget(Paragraph::new(Line::from(line)), area);
            return;
        }
        let [top, bottom] = Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
        frame.render_widget(Paragraph::new(Line::from(first)), top);
        frame.render_widget(Paragraph::new(Line::from(counts)), bottom);
        return;
    }
    let mut first =
        vec![Span::styled(" ROCKY ", theme.title), Span::raw(app.session.broker.clone()), Span::raw(" ")];
    if app.session.insecure_tls {
        first.push(Span::styled("INSECURE TLS", theme.danger));
        first.push(Span::raw(" "));
    }
    first.push(connection);
    if let Some(http) = app.session.http.as_ref() {
        // Never at the counts' expense: a long reason the API is off ends with "…".
        let used = Line::from(first.clone()).width() + 3 + Line::from(counts_short(app)).width();
        let room = usize::from(area.width).saturating_sub(used);
        first.push(Span::styled(super::widgets::clip(&format!("  api {http}"), room), theme.muted));
    }
    first.push(Span::raw("   "));
    // The counts in full words when they fit on the line, else in short ones: never cut.
    let full = counts(app);
    let used = Line::from(first.clone()).width();
    if used + Line::from(full.clone()).width() <= usize::from(area.width) {
        first.extend(full);
    } else {
        first.extend(counts_short(app));
    }
    let drops = app.traffic.dropped + app.counters.missed_events;
    let second = Line::from(vec![Span::styled(format!(" ↑ {:>10} ", format::rate(rate)), theme.active)]);
    // Pieces said whole, as many as fit, in this order; below TRAFFIC_COUNTS_WHOLE_FROM the
    // traffic pane's title says the counts too.
    let dropped_style = if drops > 0 { theme.warn } else { theme.muted };
    let mut pieces = vec![
        (format!(" {} traffic lines", app.traffic.len()), theme.muted),
        (format!(" · dropped {}", app.traffic.dropped), dropped_style),
        (format!(" · missed events {}", app.counters.missed_events), dropped_style),
    ];
    if app.counters.bad_frames + app.counters.ignored > 0 {
        pieces.push((format!(" · bad frames {}", app.counters.bad_frames), theme.warn));
        pieces.push((format!(" · ignored {}", app.counters.ignored), theme.warn));
    }
    let (mode, mode_style) =
        if app.traffic.view.follow { (" · following", theme.muted) } else { (" · FROZEN", theme.warn) };
    pieces.push((mode.to_owned(), mode_style));
    let [top, bottom] = Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
    frame.render_widget(Paragraph::new(Line::from(first)), top);
    let [rate_area, spark_area, tail_area] =
        Layout::horizontal([Constraint::Length(15), Constraint::Length(40), Constraint::Min(10)])
            .areas(bottom);
    frame.render_widget(Paragraph::new(second), rate_area);
    let series = app.throughput.series(app.now, usize::from(spark_area.width));
    frame.render_widget(Sparkline::default().data(&series).style(theme.bar), spark_area);
    let mut room = usize::from(tail_area.width);
    let mut tail = Vec::new();
    for (text, style) in pieces {
        let width = text.chars().count();
        if width > room {
            break;
        }
        room -= width;
        tail.push(Span::styled(text, style));
    }
    frame.render_widget(Paragraph::new(Line::from(tail)), tail_area);
}

/// "3 transferring · 21 succeeded · 1 timed out", or the hint when there are no jobs.
fn counts(app: &App) -> Vec<Span<'static>> {
    let theme = &app.theme;
    let counts = app.jobs.counts();
    if counts.is_empty() {
        return vec![Span::styled("no jobs yet: press n", theme.muted)];
    }
    let mut spans = Vec::new();
    for (i, (state, n)) in counts.iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled(" · ", theme.muted));
        }
        spans.push(Span::styled(format!("{n} {}", state.label()), theme.state(*state)));
    }
    spans
}

/// The same counts in short words: "3 xfer 21 ok 1 t/o".
fn counts_short(app: &App) -> Vec<Span<'static>> {
    let theme = &app.theme;
    let mut spans = Vec::new();
    for (i, (state, n)) in app.jobs.counts().iter().enumerate() {
        if i > 0 {
            spans.push(Span::raw(" "));
        }
        spans.push(Span::styled(format!("{n} {}", short(*state)), theme.state(*state)));
    }
    spans
}

fn short(state: JobState) -> &'static str {
    match state {
        JobState::Queued => "queued",
        JobState::Requesting => "req",
        JobState::Transferring => "xfer",
        JobState::Finishing => "fin",
        JobState::Confirming => "conf",
        JobState::Succeeded => "ok",
        JobState::UpToDate => "current",
        JobState::RolledBack => "back",
        JobState::Rejected => "rej",
        JobState::Failed => "failed",
        JobState::TimedOut => "t/o",
        JobState::Cancelled => "cncl",
    }
}
