//! Lines for the long-running commands that also print (`rocky bench`, `rocky sim`): when their
//! output is piped into `head` and the pipe closes, they stop as an error that unwinds (so the
//! broker and fleet they started are stopped with it) and `rocky` then ends quietly. They cannot
//! take SIGPIPE's default as the commands that only print do: their sockets would die of it.

use std::io::Write;

/// Standard output was closed by its reader: not a failure of the command.
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed")]
pub struct OutputClosed;

/// Writes one line to standard output; [`OutputClosed`] when nobody reads it any more.
pub fn line(text: std::fmt::Arguments<'_>) -> Result<(), OutputClosed> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(OutputClosed),
        // Any other failure to print is not worth ending a measurement for.
        _ => Ok(()),
    }
}

/// `println!` that stops the command when standard output is closed (`?` in a function that
/// returns `anyhow::Result`).
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::commands::output::line(format_args!($($arg)*))?
    };
}
pub(crate) use say;
