//! The operator console (ratatui + crossterm). It never talks MQTT: it reads the runtime's
//! event stream into [`app::App`] and sends commands through the runtime's handle.
//!
//! - `app`: the state, as plain data, fed by events.
//! - `input` + `keymap` + `form`: keys and mouse to state changes and commands.
//! - `ui` + `layout` + `theme`: a pure render of the state.
//! - `console`: the event loop; `terminal`: the one guard that restores the terminal.

pub mod app;
pub mod console;
pub mod export;
pub mod form;
pub mod format;
pub mod input;
pub mod keymap;
pub mod layout;
pub mod rollout_fields;
pub mod source;
pub mod terminal;
pub mod theme;
pub mod ui;

#[cfg(test)]
mod tests;
