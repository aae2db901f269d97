//! `rocky`: parses the command line and hands over to one command. Everything else lives in the
//! library (`rocky::*`) or in `commands/`, one file per command.

mod commands;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = commands::Cli::parse();
    if commands::Command::prints_and_ends(cli.command.as_ref()) {
        // SAFETY: restoring the default disposition of SIGPIPE before any thread starts; no
        // handler is installed, so nothing runs in signal context.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("rocky: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // `rocky bench | head`: the reader had what it wanted; the command stopped what it ran.
        Err(e) if e.chain().any(|cause| cause.is::<commands::output::OutputClosed>()) => {
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rocky: {}", causes(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each once: many errors already name their cause in their own
/// message, and printing the chain as well said it twice ("…: no database here yet: no database
/// here yet").
fn causes(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
    }
    text
}
