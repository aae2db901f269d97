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
    let runtime = match async_runtime().and_then(|mut builder| builder.build().map_err(|e| e.to_string())) {
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

/// The async runtime every command runs on: its tasks on one worker thread unless
/// `TOKIO_WORKER_THREADS` asks for more (the command's own top-level future runs on the main
/// thread, and the embedded broker has a runtime of its own).
///
/// Why one: Rocky's work is one driver task that owns every job and one messenger task that
/// owns the broker session, handing each chunk to the other; the store's writes, building
/// patches, loading images and name lookups have threads of their own. A second worker adds no
/// parallelism to that pair, only wake-ups between threads: on a 2-core machine shared with
/// mosquitto, Rocky spent 2.1-2.3 CPU s per GB of chunks on one worker against 3.3-4.4 on two
/// (docs/scale.md, "One async thread").
fn async_runtime() -> Result<tokio::runtime::Builder, String> {
    let workers = match std::env::var("TOKIO_WORKER_THREADS") {
        Err(std::env::VarError::NotPresent) => 1,
        Ok(text) => match text.trim().parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => {
                return Err(format!(
                    "TOKIO_WORKER_THREADS must be a whole number of at least 1, not {text:?}"
                ));
            }
        },
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err("TOKIO_WORKER_THREADS must be a whole number of at least 1".to_owned());
        }
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all().worker_threads(workers);
    Ok(builder)
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
