//! The console's keys as data: the footer, the `?` overlay and the input handler all read this
//! one table, so help can never disagree with what a key does.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Up,
    Down,
    Top,
    Bottom,
    PageUp,
    PageDown,
    NextPane,
    PrevPane,
    Open,
    Back,
    NewJob,
    Cancel,
    Retry,
    Filter,
    Freeze,
    ToggleChunks,
    History,
    ToggleMouse,
    Save,
    PauseRollout,
    ResumeRollout,
    CancelRollout,
    RolloutJobs,
    Audit,
    Help,
    Quit,
}

/// Where a binding applies: everywhere, or only when that pane has focus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Global,
    Jobs,
    Rollouts,
    Traffic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub code: KeyCode,
    pub ctrl: bool,
}

impl Key {
    const fn plain(code: KeyCode) -> Self {
        Self { code, ctrl: false }
    }

    const fn ch(c: char) -> Self {
        Self::plain(KeyCode::Char(c))
    }

    pub fn label(&self) -> String {
        let base = match self.code {
            KeyCode::Char(' ') => "Space".to_owned(),
            KeyCode::Char(c) => c.to_string(),
            KeyCode::Up => "↑".into(),
            KeyCode::Down => "↓".into(),
            KeyCode::PageUp => "PgUp".into(),
            KeyCode::PageDown => "PgDn".into(),
            KeyCode::Home => "Home".into(),
            KeyCode::End => "End".into(),
            KeyCode::Tab => "Tab".into(),
            KeyCode::BackTab => "S-Tab".into(),
            KeyCode::Enter => "Enter".into(),
            KeyCode::Esc => "Esc".into(),
            other => format!("{other:?}"),
        };
        if self.ctrl { format!("C-{base}") } else { base }
    }
}

#[derive(Debug, Clone)]
pub struct Binding {
    pub keys: Vec<Key>,
    pub action: Action,
    pub scope: Scope,
    /// One or two words for the footer.
    pub label: &'static str,
    /// A sentence for the help overlay.
    pub help: &'static str,
}

impl Binding {
    pub fn keys_label(&self) -> String {
        self.keys.iter().map(Key::label).collect::<Vec<_>>().join("/")
    }
}

#[derive(Debug, Clone)]
pub struct Keymap {
    pub bindings: Vec<Binding>,
}

impl Default for Keymap {
    fn default() -> Self {
        use Action::*;
        use KeyCode as K;
        let b = |keys: Vec<Key>, action, scope, label, help| Binding { keys, action, scope, label, help };
        let g = Scope::Global;
        Self {
            bindings: vec![
                b(vec![Key::ch('j'), Key::plain(K::Down)], Down, g, "down", "Move the selection down"),
                b(vec![Key::ch('k'), Key::plain(K::Up)], Up, g, "up", "Move the selection up"),
                b(vec![Key::ch('g'), Key::plain(K::Home)], Top, g, "top", "Jump to the first row"),
                b(
                    vec![Key::ch('G'), Key::plain(K::End)],
                    Bottom,
                    g,
                    "bottom",
                    "Jump to the last row (and follow it again)",
                ),
                b(vec![Key::plain(K::PageUp)], PageUp, g, "page up", "Scroll a page up"),
                b(vec![Key::plain(K::PageDown)], PageDown, g, "page down", "Scroll a page down"),
                b(vec![Key::plain(K::Tab)], NextPane, g, "pane", "Focus the next pane"),
                b(vec![Key::plain(K::BackTab)], PrevPane, g, "pane back", "Focus the previous pane"),
                b(vec![Key::plain(K::Enter)], Open, g, "detail", "Open the selected row's detail"),
                b(vec![Key::plain(K::Esc)], Back, g, "back", "Close the overlay, or clear the filter"),
                b(vec![Key::ch('n')], NewJob, g, "new job", "Create update jobs (form)"),
                b(vec![Key::ch('c')], Cancel, Scope::Jobs, "cancel", "Cancel the selected job (asks first)"),
                b(
                    vec![Key::ch('r')],
                    Retry,
                    Scope::Jobs,
                    "retry",
                    "Run a finished job again as a new job (asks first)",
                ),
                b(
                    vec![Key::ch('/')],
                    Filter,
                    g,
                    "filter",
                    "Filter the focused pane (device, state, job, command)",
                ),
                b(
                    vec![Key::ch('f'), Key::ch('p')],
                    Freeze,
                    Scope::Traffic,
                    "freeze",
                    "Freeze or follow the traffic view",
                ),
                b(
                    vec![Key::ch('t')],
                    ToggleChunks,
                    Scope::Traffic,
                    "chunks",
                    "Fold chunk publishes per job, or show each",
                ),
                b(
                    vec![Key::ch('h')],
                    History,
                    Scope::Jobs,
                    "history",
                    "History: finished jobs only, newest first (again: all jobs)",
                ),
                b(
                    vec![Key::ch('p')],
                    PauseRollout,
                    Scope::Rollouts,
                    "pause",
                    "Pause the selected rollout: no new jobs start (asks first)",
                ),
                b(
                    vec![Key::ch('r')],
                    ResumeRollout,
                    Scope::Rollouts,
                    "resume",
                    "Resume it, or open its manual gate (asks first)",
                ),
                b(
                    vec![Key::ch('c')],
                    CancelRollout,
                    Scope::Rollouts,
                    "cancel",
                    "Cancel it and its jobs, running ones too (asks first)",
                ),
                b(
                    vec![Key::ch('f')],
                    RolloutJobs,
                    Scope::Rollouts,
                    "its jobs",
                    "Show only its jobs in the jobs pane (Esc there: all)",
                ),
                b(
                    vec![Key::ch('m')],
                    ToggleMouse,
                    g,
                    "mouse",
                    "Release the mouse for copying text (again: take it back)",
                ),
                b(
                    vec![Key::ch('w')],
                    Save,
                    g,
                    "write",
                    "Write the selection (or the traffic shown) to a file",
                ),
                b(vec![Key::ch('a')], Audit, g, "audit", "The audit trail: who changed what, newest first"),
                b(vec![Key::ch('?')], Help, g, "help", "Show or hide this help"),
                b(
                    vec![Key::ch('q'), Key { code: K::Char('c'), ctrl: true }],
                    Quit,
                    g,
                    "quit",
                    "Quit (asks while jobs are active)",
                ),
            ],
        }
    }
}

impl Keymap {
    /// The action for `event` in a pane with scope `pane`, if any.
    pub fn lookup(&self, event: &KeyEvent, pane: Scope) -> Option<Action> {
        let ctrl = event.modifiers.contains(KeyModifiers::CONTROL);
        self.bindings
            .iter()
            .filter(|b| b.scope == Scope::Global || b.scope == pane)
            .find(|b| b.keys.iter().any(|k| k.code == event.code && k.ctrl == ctrl))
            .map(|b| b.action)
    }

    /// Bindings shown in the footer for a pane: its own first, then the common ones.
    pub fn footer(&self, pane: Scope) -> Vec<&Binding> {
        const COMMON: [Action; 6] =
            [Action::NewJob, Action::Open, Action::Filter, Action::NextPane, Action::Help, Action::Quit];
        let own = self.bindings.iter().filter(|b| b.scope == pane && pane != Scope::Global);
        let common = COMMON.iter().filter_map(|a| self.bindings.iter().find(|b| b.action == *a));
        own.chain(common).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn every_documented_key_maps_to_its_action() {
        let map = Keymap::default();
        let cases = [
            (key(KeyCode::Char('j')), Scope::Jobs, Some(Action::Down)),
            (key(KeyCode::Down), Scope::Jobs, Some(Action::Down)),
            (key(KeyCode::Char('k')), Scope::Traffic, Some(Action::Up)),
            (key(KeyCode::Char('g')), Scope::Jobs, Some(Action::Top)),
            (key(KeyCode::Char('G')), Scope::Jobs, Some(Action::Bottom)),
            (key(KeyCode::PageDown), Scope::Jobs, Some(Action::PageDown)),
            (key(KeyCode::Tab), Scope::Jobs, Some(Action::NextPane)),
            (key(KeyCode::Enter), Scope::Traffic, Some(Action::Open)),
            (key(KeyCode::Esc), Scope::Traffic, Some(Action::Back)),
            (key(KeyCode::Char('n')), Scope::Traffic, Some(Action::NewJob)),
            (key(KeyCode::Char('c')), Scope::Jobs, Some(Action::Cancel)),
            (key(KeyCode::Char('c')), Scope::Traffic, None),
            (key(KeyCode::Char('r')), Scope::Jobs, Some(Action::Retry)),
            (key(KeyCode::Char('/')), Scope::Jobs, Some(Action::Filter)),
            (key(KeyCode::Char('f')), Scope::Traffic, Some(Action::Freeze)),
            (key(KeyCode::Char('p')), Scope::Traffic, Some(Action::Freeze)),
            (key(KeyCode::Char('t')), Scope::Traffic, Some(Action::ToggleChunks)),
            (key(KeyCode::Char('h')), Scope::Jobs, Some(Action::History)),
            (key(KeyCode::Char('?')), Scope::Jobs, Some(Action::Help)),
            (key(KeyCode::Char('a')), Scope::Rollouts, Some(Action::Audit)),
            (key(KeyCode::Char('q')), Scope::Jobs, Some(Action::Quit)),
            (KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL), Scope::Traffic, Some(Action::Quit)),
            (key(KeyCode::Char('p')), Scope::Rollouts, Some(Action::PauseRollout)),
            (key(KeyCode::Char('r')), Scope::Rollouts, Some(Action::ResumeRollout)),
            (key(KeyCode::Char('c')), Scope::Rollouts, Some(Action::CancelRollout)),
            (key(KeyCode::Char('f')), Scope::Rollouts, Some(Action::RolloutJobs)),
            (key(KeyCode::Char('p')), Scope::Jobs, None),
            (key(KeyCode::Char('z')), Scope::Jobs, None),
        ];
        for (event, scope, expected) in cases {
            assert_eq!(map.lookup(&event, scope), expected, "{event:?} in {scope:?}");
        }
    }

    #[test]
    fn footer_lists_pane_keys_first() {
        let map = Keymap::default();
        let footer = map.footer(Scope::Jobs);
        assert_eq!(footer[0].action, Action::Cancel);
        assert!(footer.iter().any(|b| b.action == Action::Help));
        assert!(map.footer(Scope::Traffic).iter().all(|b| b.action != Action::Cancel));
    }
}
