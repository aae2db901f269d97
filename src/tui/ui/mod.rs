//! Rendering: a pure function of [`App`] into a frame. Rows are built for the visible part of
//! each table only, so ten thousand jobs cost what a screenful costs.

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

use super::app::{App, Overlay};
use super::layout::layout;

pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    let areas = layout(area, app.focus, app.rollouts.list.len());
    status::draw(frame, areas.status, app);
    if let Some(rect) = areas.jobs {
        jobs::draw(frame, rect, app);
    }
    if let Some(rect) = areas.rollouts {
        rollouts::draw(frame, rect, app);
    }
    if let Some(rect) = areas.traffic {
        traffic::draw(frame, rect, app);
    }
    if let Some(rect) = areas.devices {
        devices::draw(frame, rect, app);
    }
    footer::draw(frame, areas.footer, app);
    match &app.overlay {
        None => {}
        Some(Overlay::Help { scroll }) => help::draw(frame, area, app, *scroll),
        Some(Overlay::JobDetail { job, scroll }) => detail::draw_job(frame, area, app, *job, *scroll),
        Some(Overlay::TrafficDetail { seq, scroll }) => detail::draw_traffic(frame, area, app, *seq, *scroll),
        Some(Overlay::RolloutDetail { id, scroll }) => rollouts::draw_detail(frame, area, app, *id, *scroll),
        Some(Overlay::Form(form)) => form::draw(frame, area, app, form),
        Some(Overlay::Confirm(confirm)) => help::draw_confirm(frame, area, app, confirm),
    }
}
