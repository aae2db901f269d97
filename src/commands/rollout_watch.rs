//! `rocky rollout watch ID` and `rocky rollout show ID --csv`: a rollout followed until it ends
//! (a bar per wave, counts, time left), so a person or a CI pipeline can wait on it, and every
//! device's outcome as CSV.
//!
//! Watch exits 0 when the rollout succeeds, 1 when it completes with devices not updated, 2 when
//! it is aborted or cancelled, 3 when it cannot be followed (no such rollout, a refused token,
//! or the server failing for 30 s). On a terminal it redraws in place; piped (a CI log), it prints a
//! line only when something changed.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use reqwest::Method;
use rocky::rollout::{RolloutId, RolloutState, RolloutView, WaveView};

use super::api_client::ApiClient;

/// How often the rollout is read.
const EVERY: Duration = Duration::from_secs(1);
/// A bar's width in cells.
const BAR: usize = 24;
/// Devices read a page at a time for the CSV (the API's largest window).
const PAGE: usize = 10_000;

/// The exit code when the rollout could not be followed (the server kept failing, or has no
/// such rollout): apart from 1, which says the rollout completed with devices not updated.
pub const EXIT_ERROR: i32 = 3;
/// Failed reads in a row before the watch gives up (one a second).
const TRIES: u32 = 30;

/// The exit code a rollout's end means.
pub fn exit_code(state: RolloutState) -> i32 {
    match state {
        RolloutState::Succeeded => 0,
        RolloutState::Completed => 1,
        _ => 2,
    }
}

/// Follows rollout `id` until it ends; answers the exit code its end means.
pub async fn watch(api: &ApiClient, id: RolloutId) -> anyhow::Result<i32> {
    let terminal = std::io::stdout().is_terminal();
    let width = crossterm::terminal::size().map_or(usize::MAX, |(columns, _)| usize::from(columns.max(20)));
    let mut last: Option<Vec<String>> = None;
    let mut failed = 0;
    loop {
        // One device is enough: the waves carry the counts.
        let view = match read(api, id).await {
            Ok(view) => {
                failed = 0;
                view
            }
            Err(error) => {
                failed += 1;
                // A missing rollout or a refused token does not get better by waiting.
                let lasting = ["no rollout", "token", "401", "403", "404"]
                    .iter()
                    .any(|w| error.to_string().contains(w));
                if lasting || failed >= TRIES {
                    eprintln!("rocky: {error:#}");
                    return Ok(EXIT_ERROR);
                }
                tokio::time::sleep(EVERY).await;
                continue;
            }
        };
        let mut lines = describe(&view);
        if terminal {
            // A line longer than the terminal would wrap and spoil the redraw.
            for line in &mut lines {
                if line.chars().count() > width {
                    *line = line.chars().take(width.saturating_sub(1)).chain(['…']).collect();
                }
            }
        }
        let mut out = std::io::stdout().lock();
        if terminal {
            // Back over what was drawn, then draw again.
            if let Some(previous) = &last {
                write!(out, "\x1b[{}A", previous.len())?;
            }
            for line in &lines {
                writeln!(out, "\x1b[2K{line}")?;
            }
        } else if last.as_ref() != Some(&lines) {
            // A log gets the lines whose content changed (time left alone changes often).
            let changed: Vec<&String> = match &last {
                Some(previous) if previous.len() == lines.len() => lines
                    .iter()
                    .zip(previous)
                    .filter(|(a, b)| stable(a) != stable(b))
                    .map(|(a, _)| a)
                    .collect(),
                _ => lines.iter().collect(),
            };
            for line in changed {
                writeln!(out, "{line}")?;
            }
        }
        out.flush()?;
        last = Some(lines);
        if view.state.is_final() {
            return Ok(exit_code(view.state));
        }
        tokio::time::sleep(EVERY).await;
    }
}

async fn read(api: &ApiClient, id: RolloutId) -> anyhow::Result<RolloutView> {
    let (_, body) = api.call(Method::GET, &format!("/rollouts/{id}?limit=1"), None).await?;
    serde_json::from_value(body).map_err(|e| anyhow::anyhow!("the server's rollout is not readable: {e}"))
}

/// A line without its changing time left, to tell whether anything else changed.
fn stable(line: &str) -> &str {
    line.split(" · about ").next().unwrap_or(line)
}

/// The rollout in lines: its state, then a bar per wave.
fn describe(view: &RolloutView) -> Vec<String> {
    let totals = view.totals();
    let finished = totals.devices.saturating_sub(totals.pending + totals.active);
    let eta = view
        .eta_ms
        .filter(|_| !view.state.is_final())
        .map(|ms| format!(" · about {} left", rocky::tui::format::duration(Duration::from_millis(ms))))
        .unwrap_or_default();
    let mut lines = vec![format!(
        "rollout {} {:?}: {}{} · {finished}/{} finished, {} succeeded, {} failed{eta}",
        view.id,
        view.name,
        view.state.as_str(),
        view.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default(),
        totals.devices,
        totals.succeeded,
        totals.failed
    )];
    lines.extend(view.waves.iter().map(wave_line));
    lines
}

fn wave_line(wave: &WaveView) -> String {
    let c = &wave.counts;
    let done = c.devices.saturating_sub(c.pending + c.active);
    let filled = (done.min(c.devices) * BAR).checked_div(c.devices).unwrap_or(BAR);
    format!(
        "  wave {:<3} [{}{}] {done}/{}  ✓{} ✗{} ⊘{} active {}",
        wave.wave,
        "█".repeat(filled),
        "░".repeat(BAR - filled),
        c.devices,
        c.succeeded,
        c.failed,
        c.cancelled,
        c.active
    )
}

/// Every device of rollout `id` as CSV on stdout: `device_id,outcome,job_id,attempts,detail`.
pub async fn csv(api: &ApiClient, id: RolloutId) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let mut from = 0;
    loop {
        let (_, body) =
            api.call(Method::GET, &format!("/rollouts/{id}?from={from}&limit={PAGE}"), None).await?;
        let view: RolloutView = serde_json::from_value(body)
            .map_err(|e| anyhow::anyhow!("the server's rollout is not readable: {e}"))?;
        // The header once the rollout is known to be there (an error prints nothing on stdout).
        if from == 0 && writeln!(out, "device_id,outcome,job_id,attempts,detail").is_err() {
            return Ok(());
        }
        let devices = view.devices.unwrap_or_default();
        for slot in &devices {
            let job = slot.job_id.map(|j| j.to_string()).unwrap_or_default();
            let detail = field(slot.detail.as_deref().unwrap_or_default());
            // A closed pipe (`| head`) ends the listing quietly.
            if writeln!(
                out,
                "{},{},{job},{},{detail}",
                field(slot.device_id.as_str()),
                slot.outcome.label(),
                slot.attempts
            )
            .is_err()
            {
                return Ok(());
            }
        }
        from += devices.len();
        if devices.is_empty() || from >= view.device_count {
            return Ok(());
        }
    }
}

/// A CSV field: quoted when it holds a comma, quote or line break (quotes doubled); a leading
/// `=`, `+`, `-` or `@` is prefixed with `'` so a spreadsheet does not run it as a formula.
fn field(text: &str) -> String {
    let text =
        if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text.to_owned() };
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(field("dev-01"), "dev-01");
        assert_eq!(field("a, b"), "\"a, b\"");
        assert_eq!(field("say \"no\""), "\"say \"\"no\"\"\"");
        assert_eq!(field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(field("line\nbreak"), "\"line\nbreak\"");
    }

    #[test]
    fn each_end_has_its_exit_code() {
        assert_eq!(exit_code(RolloutState::Succeeded), 0);
        assert_eq!(exit_code(RolloutState::Completed), 1);
        assert_eq!(exit_code(RolloutState::Aborted), 2);
        assert_eq!(exit_code(RolloutState::Cancelled), 2);
    }
}
