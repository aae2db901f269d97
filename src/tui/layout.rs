//! Where each pane goes for a terminal size. Shared by rendering and mouse hit-testing, so a
//! click lands on what was drawn.

use ratatui::layout::{Constraint, Direction, Layout, Rect};

use super::app::Pane;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    pub status: Rect,
    pub jobs: Option<Rect>,
    pub traffic: Option<Rect>,
    pub devices: Option<Rect>,
    pub footer: Rect,
}

impl Areas {
    pub fn pane(&self, pane: Pane) -> Option<Rect> {
        match pane {
            Pane::Jobs => self.jobs,
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

/// Wide terminals show all three panes; below 100 columns the devices pane takes the traffic
/// pane's place while it has focus; on very short terminals only the focused pane is shown.
pub fn layout(area: Rect, focus: Pane) -> Areas {
    let status_height = if area.height < 20 { 1 } else { 2 };
    let [status, body, footer] =
        Layout::vertical([Constraint::Length(status_height), Constraint::Min(1), Constraint::Length(1)])
            .areas(area);
    if body.height < 12 {
        let mut areas = Areas { status, jobs: None, traffic: None, devices: None, footer };
        match focus {
            Pane::Jobs => areas.jobs = Some(body),
            Pane::Traffic => areas.traffic = Some(body),
            Pane::Devices => areas.devices = Some(body),
        }
        return areas;
    }
    let [top, bottom] =
        Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(body);
    if area.width >= 100 {
        let [traffic, devices] = Layout::default()
            .direction(Direction::Horizontal)
            .constraints([Constraint::Percentage(62), Constraint::Percentage(38)])
            .areas(bottom);
        Areas { status, jobs: Some(top), traffic: Some(traffic), devices: Some(devices), footer }
    } else if focus == Pane::Devices {
        Areas { status, jobs: Some(top), traffic: None, devices: Some(bottom), footer }
    } else {
        Areas { status, jobs: Some(top), traffic: Some(bottom), devices: None, footer }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_shows_everything_narrow_collapses() {
        let wide = layout(Rect::new(0, 0, 160, 48), Pane::Jobs);
        assert!(wide.jobs.is_some() && wide.traffic.is_some() && wide.devices.is_some());
        let small = layout(Rect::new(0, 0, 80, 24), Pane::Jobs);
        assert!(small.devices.is_none() && small.traffic.is_some());
        let small_devices = layout(Rect::new(0, 0, 80, 24), Pane::Devices);
        assert!(small_devices.devices.is_some() && small_devices.traffic.is_none());
        let tiny = layout(Rect::new(0, 0, 60, 12), Pane::Traffic);
        assert!(tiny.jobs.is_none() && tiny.traffic.is_some());
    }
}
