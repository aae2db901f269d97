//! Rendering: a pure function of [`App`] into a frame. Rows are built for the visible part of
//! each table only, so ten thousand jobs cost what a screenful costs.

mod audit;
mod detail;
mod devices;
mod footer;
mod form;
mod help;
mod jobs;
mod rollouts;
mod status;
mod traffic;
mod widgets;

use ratatui::Frame;

use ratatui::layout::Rect;

use super::app::{App, Overlay, Pane};
use super::layout::layout;

pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    let areas = layout(area, app.focus, app.rollouts.list.len(), footer::height(app, area.width));
    status::draw(frame, areas.status, app);
    for pane in Pane::ALL {
        if let Some(rect) = areas.pane(pane) {
            draw_pane(frame, rect, app, pane);
        }
    }
    footer::draw(frame, areas.footer, app);
    match &app.overlay {
        None => {}
        Some(Overlay::Help { scroll }) => help::draw(frame, area, app, *scroll),
        Some(Overlay::JobDetail { job, scroll }) => detail::draw_job(frame, area, app, *job, *scroll),
        Some(Overlay::TrafficDetail { seq, scroll }) => detail::draw_traffic(frame, area, app, *seq, *scroll),
        Some(Overlay::RolloutDetail { id, scroll, .. }) => {
            rollouts::draw_detail(frame, area, app, *id, *scroll)
        }
        Some(Overlay::Audit { scroll }) => audit::draw(frame, area, app, *scroll),
        Some(Overlay::Form(form)) => form::draw(frame, area, app, form),
        Some(Overlay::Confirm(confirm)) => help::draw_confirm(frame, area, app, confirm),
    }
}

/// The footer's lines at `width` columns: one, or those a message takes.
pub fn footer_height(app: &App, width: u16) -> u16 {
    footer::height(app, width)
}

/// Each pane is drawn by its own file, from its own state in `app/` (rows, cursor, filter).
fn draw_pane(frame: &mut Frame, area: Rect, app: &App, pane: Pane) {
    match pane {
        Pane::Jobs => jobs::draw(frame, area, app),
        Pane::Rollouts => rollouts::draw(frame, area, app),
        Pane::Traffic => traffic::draw(frame, area, app),
        Pane::Devices => devices::draw(frame, area, app),
    }
}
