//! Colours by meaning. Only the terminal's own palette (no fixed backgrounds), so the console
//! reads on light and dark terminals; with `NO_COLOR` every meaning is carried by text and
//! modifiers (bold, dim, reverse) instead.

use ratatui::style::{Color, Modifier, Style};

use crate::engine::JobState;
use crate::rollout::{Outcome, RolloutState};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    pub ok: Style,
    pub danger: Style,
    pub warn: Style,
    pub active: Style,
    pub muted: Style,
    pub accent: Style,
    pub selected: Style,
    pub title: Style,
    pub key: Style,
    pub border: Style,
    pub focused_border: Style,
    pub bar: Style,
}

impl Theme {
    pub fn color() -> Self {
        Self {
            ok: Style::new().fg(Color::Green),
            danger: Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            warn: Style::new().fg(Color::Yellow),
            active: Style::new().fg(Color::Cyan),
            muted: Style::new().add_modifier(Modifier::DIM),
            accent: Style::new().fg(Color::Magenta),
            selected: Style::new().add_modifier(Modifier::REVERSED),
            title: Style::new().add_modifier(Modifier::BOLD),
            key: Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
            border: Style::new().add_modifier(Modifier::DIM),
            focused_border: Style::new().fg(Color::Cyan),
            bar: Style::new().fg(Color::Cyan),
        }
    }

    /// For a light background: darker shades of the 256-colour palette where the basic yellow
    /// and cyan are faint on white.
    pub fn light() -> Self {
        let dark_green = Color::Indexed(28);
        let dark_red = Color::Indexed(160);
        let amber = Color::Indexed(130);
        let blue = Color::Indexed(25);
        Self {
            ok: Style::new().fg(dark_green),
            danger: Style::new().fg(dark_red).add_modifier(Modifier::BOLD),
            warn: Style::new().fg(amber).add_modifier(Modifier::BOLD),
            active: Style::new().fg(blue),
            muted: Style::new().fg(Color::Indexed(243)),
            accent: Style::new().fg(Color::Indexed(90)),
            selected: Style::new().add_modifier(Modifier::REVERSED),
            title: Style::new().add_modifier(Modifier::BOLD),
            key: Style::new().fg(blue).add_modifier(Modifier::BOLD),
            border: Style::new().fg(Color::Indexed(246)),
            focused_border: Style::new().fg(blue),
            bar: Style::new().fg(blue),
        }
    }

    /// The palette asked for, unless `NO_COLOR` is set (to anything), as no-color.org asks.
    pub fn for_palette(palette: crate::config::Palette) -> Self {
        if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
            Self::monochrome()
        } else {
            match palette {
                crate::config::Palette::Dark => Self::color(),
                crate::config::Palette::Light => Self::light(),
            }
        }
    }

    pub fn monochrome() -> Self {
        let plain = Style::new();
        Self {
            ok: plain,
            danger: plain.add_modifier(Modifier::BOLD),
            warn: plain.add_modifier(Modifier::UNDERLINED),
            active: plain,
            muted: plain.add_modifier(Modifier::DIM),
            accent: plain,
            selected: plain.add_modifier(Modifier::REVERSED),
            title: plain.add_modifier(Modifier::BOLD),
            key: plain.add_modifier(Modifier::BOLD),
            border: plain,
            focused_border: plain.add_modifier(Modifier::BOLD),
            bar: plain,
        }
    }

    pub fn state(&self, state: JobState) -> Style {
        match state {
            JobState::Succeeded | JobState::UpToDate => self.ok,
            JobState::Failed | JobState::Rejected | JobState::TimedOut | JobState::RolledBack => self.danger,
            JobState::Cancelled => self.warn,
            JobState::Queued => self.muted,
            JobState::Requesting | JobState::Transferring | JobState::Finishing | JobState::Confirming => {
                self.active
            }
        }
    }

    pub fn rollout_state(&self, state: RolloutState) -> Style {
        match state {
            RolloutState::Succeeded => self.ok,
            RolloutState::Aborted => self.danger,
            RolloutState::Completed | RolloutState::Cancelled | RolloutState::Paused => self.warn,
            RolloutState::Running => self.active,
            RolloutState::Scheduled => self.muted,
        }
    }

    pub fn outcome(&self, outcome: Outcome) -> Style {
        match outcome {
            Outcome::Succeeded | Outcome::Confirmed | Outcome::UpToDate => self.ok,
            Outcome::Rejected | Outcome::Failed | Outcome::TimedOut | Outcome::RolledBack => self.danger,
            Outcome::Cancelled | Outcome::Retrying => self.warn,
            Outcome::Active | Outcome::Confirming => self.active,
            Outcome::Pending => self.muted,
        }
    }
}
