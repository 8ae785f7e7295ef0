//! `gridreg`: the command-line entry point. Parses arguments, runs one command, maps the outcome
//! onto the exit statuses CI relies on (0 ok, 1 policy or verification failure, 2 usage or input).

use clap::Parser;

mod client;
mod commands;
#[cfg(feature = "compose")]
mod compose;
mod exit;
mod input;
mod output;
mod policy_file;
#[cfg(feature = "run")]
mod runtime;
#[cfg(any(feature = "run", feature = "serve"))]
mod signal;

/// mimalloc instead of the system allocator: the audit, the server and wasmtime allocate many
/// small short-lived objects from several threads, where it is measurably faster (bench/RESULTS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = commands::Cli::parse();
    output::init(&cli.global);
    let code = match cli.command.run() {
        Ok(status) => status.code(),
        Err(err) => exit::report(&err),
    };
    exit::exit_now(code)
}
