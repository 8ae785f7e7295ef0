//! The smallest command fixture: a `wasi:cli/run` component whose only capability is stdout.

use wasip2::cli::stdout::get_stdout;

struct Hello;

impl wasip2::exports::cli::run::Guest for Hello {
    fn run() -> Result<(), ()> {
        // Writing through the stream directly keeps std's stdio and start-up imports out.
        get_stdout()
            .blocking_write_and_flush(b"hello from gridreg\n")
            .map_err(|_| ())
    }
}

wasip2::cli::command::export!(Hello with_types_in wasip2);
