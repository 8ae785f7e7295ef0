//! Commands this build was made without (compiled only then). The gate build
//! (`--no-default-features --features gate`, for CI) leaves out `run` (wasmtime), `compose` (wac)
//! and `serve` (the registry server); they still parse, whatever their arguments (`--help`
//! included), and exit 2 with a message naming the build that has them, instead of being unknown
//! subcommands.

use std::ffi::OsString;

use anyhow::bail;
use clap::Args;

use crate::exit::Status;

// The arguments of a command that is not in this build: anything, unchecked. (No doc comment:
// it would replace the command's own one-line help, given on its variant in `Command`.)
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct Opts {
    #[arg(num_args = 0.., allow_hyphen_values = true, trailing_var_arg = true, hide = true)]
    pub args: Vec<OsString>,
}

/// The error `gridreg COMMAND` exits 2 with when the cargo `feature` that has it is off.
pub fn run(command: &str, feature: &str) -> anyhow::Result<Status> {
    let which = if cfg!(any(feature = "run", feature = "compose", feature = "serve")) {
        format!("built without the `{feature}` feature")
    } else {
        "the `gate` build".to_string()
    };
    bail!(
        "`gridreg {command}` is not in this build ({which}); install the full build: \
         cargo install --locked --path cli (in a clone of gridreg)"
    )
}
