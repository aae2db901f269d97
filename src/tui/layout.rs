//! Where each pane goes for a terminal size. Shared by rendering and mouse hit-testing, so a
//! click lands on what was drawn.

use ratatui::layout::{Constraint, Direction, Layout, Rect};

use super::app::Pane;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    pub status: Rect,
    pub jobs: Option<Rect>,
    pub rollouts: Option<Rect>,
    pub traffic: Option<Rect>,
    pub devices: Option<Rect>,
    pub footer: Rect,
}

impl Areas {
    pub fn pane(&self, pane: Pane) -> Option<Rect> {
        match pane {
            Pane::Jobs => self.jobs,
            Pane::Rollouts => self.rollouts,
            Pane::Traffic => self.traffic,
            Pane::Devices => self.devices,
        }
    }

    /// Rows of data a pane shows (inside its border, below a table header).
    pub fn rows(&self, pane: Pane) -> usize {
        let header = if pane == Pane::Traffic { 0 } else { 1 };
        self.pane(pane).map_or(1, |r| usize::from(r.height.saturating_sub(2 + header)).max(1))
    }
}

/// Rollout rows the strip above the jobs shows before it scrolls.
const ROLLOUT_ROWS: u16 = 5;
/// Body height from which the rollouts strip sits above the jobs; below, it takes the jobs'
/// place while it has focus.
const ROLLOUT_STRIP_FROM: u16 = 30;
/// Below this width the panes are tabs: the focused one has the whole body (Tab for the next).
pub const TABS_BELOW: u16 = 100;

/// Wide terminals show every pane; below [`TABS_BELOW`] columns, and on short terminals, the
/// panes are tabs: only the focused one is shown, on the whole body. Rollouts (`rollouts` of
/// them) get a strip above the jobs when the terminal is tall, else the jobs' place while
/// focused. The footer is `footer_lines` high (a message of several lines takes them from the
/// panes, rather than covering their last rows: a pane that follows its newest row keeps it in
/// view).
pub fn layout(area: Rect, focus: Pane, rollouts: usize, footer_lines: u16) -> Areas {
    let status_height = if area.height < 20 { 1 } else { 2 };
    let footer_lines = footer_lines.clamp(1, area.height.saturating_sub(status_height + 1).max(1));
    let [status, body, footer] = Layout::vertical([
        Constraint::Length(status_height),
        Constraint::Min(1),
        Constraint::Length(footer_lines),
    ])
    .areas(area);
    if body.height < 12 || area.width < TABS_BELOW {
        let mut areas = Areas { status, jobs: None, rollouts: None, traffic: None, devices: None, footer };
        match focus {
            Pane::Jobs => areas.jobs = Some(body),
            Pane::Rollouts => areas.rollouts = Some(body),
            Pane::Traffic => areas.traffic = Some(body),
            Pane::Devices => areas.devices = Some(body),
        }
        return areas;
    }
    let [top, bottom] =
        Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(body);
    let mut areas = split(area.width, status, top, bottom, focus, footer);
    if rollouts > 0 || focus == Pane::Rollouts {
        if body.height >= ROLLOUT_STRIP_FROM {
            let rows = (rollouts as u16).clamp(1, ROLLOUT_ROWS);
            let [strip, jobs] =
                Layout::vertical([Constraint::Length(rows + 3), Constraint::Min(1)]).areas(top);
            areas.rollouts = Some(strip);
            areas.jobs = Some(jobs);
        } else if focus == Pane::Rollouts {
            areas.rollouts = areas.jobs.take();
        }
    }
    areas
}

/// The jobs on top; traffic and devices below, side by side when wide enough.
fn split(width: u16, status: Rect, top: Rect, bottom: Rect, focus: Pane, footer: Rect) -> Areas {
    let rollouts = None;
    if width >= 100 {
        let [traffic, devices] = Layout::default()
            .direction(Direction::Horizontal)
            .constraints([Constraint::Percentage(62), Constraint::Percentage(38)])
            .areas(bottom);
        Areas { status, jobs: Some(top), rollouts, traffic: Some(traffic), devices: Some(devices), footer }
    } else if focus == Pane::Devices {
        Areas { status, jobs: Some(top), rollouts, traffic: None, devices: Some(bottom), footer }
    } else {
        Areas { status, jobs: Some(top), rollouts, traffic: Some(bottom), devices: None, footer }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_shows_everything_narrow_makes_tabs() {
        let wide = layout(Rect::new(0, 0, 160, 48), Pane::Jobs, 0, 1);
        assert!(wide.jobs.is_some() && wide.traffic.is_some() && wide.devices.is_some());
        assert!(wide.rollouts.is_none(), "no rollouts: no strip");
        for pane in Pane::ALL {
            let small = layout(Rect::new(0, 0, 80, 24), pane, 2, 1);
            let shown: Vec<Pane> = Pane::ALL.into_iter().filter(|p| small.pane(*p).is_some()).collect();
            assert_eq!(shown, [pane], "80×24: the focused pane alone");
            assert_eq!(small.pane(pane).unwrap().height, 24 - 2 - 1, "on the whole body");
        }
        let tiny = layout(Rect::new(0, 0, 120, 12), Pane::Traffic, 0, 1);
        assert!(tiny.jobs.is_none() && tiny.traffic.is_some());
    }

    #[test]
    fn rollouts_get_a_strip_when_tall_and_the_jobs_place_when_short() {
        let tall = layout(Rect::new(0, 0, 200, 50), Pane::Jobs, 2, 1);
        let (strip, jobs) = (tall.rollouts.unwrap(), tall.jobs.unwrap());
        assert_eq!(strip.height, 2 + 3, "two rows, a header and the border");
        assert_eq!(strip.y + strip.height, jobs.y, "the strip sits right above the jobs");
        let many = layout(Rect::new(0, 0, 200, 50), Pane::Jobs, 40, 1);
        assert_eq!(many.rollouts.unwrap().height, ROLLOUT_ROWS + 3, "the strip scrolls beyond that");
        let short = layout(Rect::new(0, 0, 120, 28), Pane::Jobs, 2, 1);
        assert!(short.rollouts.is_none() && short.jobs.is_some());
        let focused = layout(Rect::new(0, 0, 120, 28), Pane::Rollouts, 2, 1);
        assert!(focused.rollouts.is_some() && focused.jobs.is_none(), "it takes the jobs' place");
        let empty = layout(Rect::new(0, 0, 200, 50), Pane::Rollouts, 0, 1);
        assert!(empty.rollouts.is_some(), "focused with none: shown, empty");
    }
}
