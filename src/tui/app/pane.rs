//! What every pane of the main view has: a filter the operator types, and where its selection
//! and scroll stand. Each pane's state (`Jobs`, `Devices`, `Rollouts`, `TrafficLog`, a file each
//! beside this one) owns its rows with them and answers [`PaneState`], so the keys that act on
//! "the focused pane" (filter, clear, page) are written once, and the pane is drawn by its own
//! file in `ui/`.

use super::super::keymap::Scope;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Jobs,
    Rollouts,
    Traffic,
    Devices,
}

impl Pane {
    /// In Tab order.
    pub const ALL: [Pane; 4] = [Pane::Jobs, Pane::Rollouts, Pane::Traffic, Pane::Devices];

    pub fn scope(self) -> Scope {
        match self {
            Pane::Jobs => Scope::Jobs,
            Pane::Rollouts => Scope::Rollouts,
            Pane::Traffic => Scope::Traffic,
            Pane::Devices => Scope::Global,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Pane::Jobs => "Jobs",
            Pane::Rollouts => "Rollouts",
            Pane::Traffic => "Traffic",
            Pane::Devices => "Devices",
        }
    }
}

/// A pane whose state has `cursor: Cursor` and `filter: String`, and starts again at its first
/// row when its rows are narrowed anew.
macro_rules! pane_from_the_top {
    ($($pane:ty),+) => {$(
        impl PaneState for $pane {
            fn filter(&self) -> &str {
                &self.filter
            }

            fn filter_mut(&mut self) -> &mut String {
                &mut self.filter
            }

            fn reset_cursor(&mut self) {
                self.cursor = Cursor::default();
            }
        }
    )+};
}

pane_from_the_top!(super::Devices, super::Rollouts);

/// What the keys that act on whichever pane has the focus need of it.
pub trait PaneState {
    /// The filter the pane's rows are narrowed by (empty: all rows).
    fn filter(&self) -> &str;
    fn filter_mut(&mut self) -> &mut String;
    /// Back to where a fresh view of the pane starts (after its rows were narrowed anew).
    fn reset_cursor(&mut self);
}

/// A table's selection and scroll position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    pub selected: usize,
    pub offset: usize,
    /// On the last row wherever the table grows to (the jobs pane: the newest job), until the
    /// operator moves off it; moving back to the last row follows again.
    pub follow: bool,
}

impl Cursor {
    /// On the last row, following it.
    pub fn following() -> Self {
        Self { selected: 0, offset: 0, follow: true }
    }

    /// As drawn for `len` rows in a `height`-row window: on the last row while following.
    pub fn shown(mut self, len: usize, height: usize) -> Self {
        if self.follow {
            self.selected = len.saturating_sub(1);
        }
        self.clamp(len, height);
        self
    }

    /// Moves by `delta` within `len` rows and keeps the selection inside a `height`-row window.
    pub fn move_by(&mut self, delta: isize, len: usize, height: usize) {
        let last = len.saturating_sub(1);
        // From where the selection is drawn: "the newest" is asked for as a huge index, and a
        // move must start from the row shown, or the first keys after it do nothing.
        self.selected = self.selected.min(last).saturating_add_signed(delta).min(last);
        self.clamp(len, height);
    }

    pub fn clamp(&mut self, len: usize, height: usize) {
        let height = height.max(1);
        self.selected = self.selected.min(len.saturating_sub(1));
        if self.selected < self.offset {
            self.offset = self.selected;
        } else if self.selected >= self.offset + height {
            self.offset = self.selected + 1 - height;
        }
        self.offset = self.offset.min(len.saturating_sub(height));
    }
}

/// The traffic pane follows the newest line unless frozen; selection is by line `seq` so it
/// survives old lines leaving the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrafficView {
    pub follow: bool,
    pub selected: u64,
    pub top: u64,
}
