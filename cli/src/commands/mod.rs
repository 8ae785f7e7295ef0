//! The list of commands, in one place. Each command lives in its own file with an `Opts` struct
//! (whose doc comment is its `--help`) and a `run(self)`. A command whose cargo feature is off
//! (`run`, `compose`, `serve`: the gate build, cli/Cargo.toml) is still a subcommand, taking any
//! arguments, and exits 2 naming the build that has it ([`missing`]).

use clap::{Args, Parser, Subcommand};

use crate::exit::Status;

#[cfg(feature = "compose")]
pub mod compose;
pub mod diff;
pub mod inspect;
pub mod keygen;
pub mod log;
#[cfg(not(all(feature = "run", feature = "compose", feature = "serve")))]
pub mod missing;
pub mod namespace;
pub mod publish;
pub mod pull;
pub mod registry;
#[cfg(feature = "run")]
pub mod run;
#[cfg(feature = "serve")]
pub mod serve;
pub mod verify;
#[cfg(feature = "serve")]
pub mod witness;
pub mod yank;
use crate::output::GlobalOpts;

/// `gridreg --version`: the full build prints the version alone, as it always has; any other
/// build says so.
#[cfg(all(feature = "run", feature = "compose", feature = "serve"))]
const VERSION: &str = env!("CARGO_PKG_VERSION");
#[cfg(not(any(feature = "run", feature = "compose", feature = "serve")))]
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (gate build: without run, compose and serve)"
);
#[cfg(all(
    any(feature = "run", feature = "compose", feature = "serve"),
    not(all(feature = "run", feature = "compose", feature = "serve"))
))]
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (custom build: without some of run, compose and serve)"
);

/// `--registry`, the same option with the same help in every command that talks to a registry
/// (flattened into its `Opts`).
#[derive(Debug, Clone, Default, Args)]
pub struct RegistryOpt {
    /// Registry name from the configuration, or a URL [default: $GRIDREG_REGISTRY, else the
    /// configured default, else http://127.0.0.1:7411].
    #[arg(long = "registry", value_name = "NAME|URL")]
    pub name_or_url: Option<String>,
    /// Accept checkpoints timestamped up to this long ago for this command (90s, 30m, 24h, 7d)
    /// [default: the registry's max_age, else 24h].
    #[arg(long, value_name = "DURATION", value_parser = crate::client::config::parse_duration)]
    pub max_age: Option<std::time::Duration>,
}

impl RegistryOpt {
    /// What was given, for [`crate::client::trust::connect`].
    pub fn get(&self) -> crate::client::trust::Target<'_> {
        crate::client::trust::Target {
            registry: self.name_or_url.as_deref(),
            max_age: self.max_age,
        }
    }
}

/// Registry and supply-chain verifier for WebAssembly components.
///
/// Audit what a component can reach, publish it signed into a transparency-logged registry,
/// and pull it back with every claim re-checked on your own machine.
#[derive(Debug, Parser)]
#[command(
    name = "gridreg",
    version = VERSION,
    propagate_version = true,
    max_term_width = 100
)]
#[command(
    after_help = "Exit status: 0 ok, 1 a policy or verification check failed, 2 usage or input error."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Inspect(inspect::Opts),
    Verify(verify::Opts),
    Diff(diff::Opts),
    Keygen(keygen::Opts),
    #[cfg(feature = "run")]
    Run(run::Opts),
    /// Run a `wasi:cli/run` component in wasmtime [not in this build: the full build has it].
    #[cfg(not(feature = "run"))]
    Run(missing::Opts),
    #[cfg(feature = "compose")]
    Compose(compose::Opts),
    /// Plug components into a socket component [not in this build: the full build has it].
    #[cfg(not(feature = "compose"))]
    Compose(missing::Opts),
    #[cfg(feature = "serve")]
    Serve(serve::Opts),
    /// Run the registry server [not in this build: the full build has it].
    #[cfg(not(feature = "serve"))]
    Serve(missing::Opts),
    #[cfg(feature = "serve")]
    Witness(witness::Opts),
    /// Run a transparency-log witness [not in this build: the full build has it].
    #[cfg(not(feature = "serve"))]
    Witness(missing::Opts),
    Publish(publish::Opts),
    Pull(pull::Opts),
    Namespace(namespace::Opts),
    Yank(yank::Opts),
    Registry(registry::Opts),
    Log(log::Opts),
}

impl Command {
    pub fn run(self) -> anyhow::Result<Status> {
        match self {
            Command::Inspect(o) => o.run(),
            Command::Verify(o) => o.run(),
            Command::Diff(o) => o.run(),
            Command::Keygen(o) => o.run(),
            #[cfg(feature = "run")]
            Command::Run(o) => o.run(),
            #[cfg(not(feature = "run"))]
            Command::Run(_) => missing::run("run", "run"),
            #[cfg(feature = "compose")]
            Command::Compose(o) => o.run(),
            #[cfg(not(feature = "compose"))]
            Command::Compose(_) => missing::run("compose", "compose"),
            #[cfg(feature = "serve")]
            Command::Serve(o) => o.run(),
            #[cfg(not(feature = "serve"))]
            Command::Serve(_) => missing::run("serve", "serve"),
            #[cfg(feature = "serve")]
            Command::Witness(o) => o.run(),
            #[cfg(not(feature = "serve"))]
            Command::Witness(_) => missing::run("witness", "serve"),
            Command::Publish(o) => o.run(),
            Command::Pull(o) => o.run(),
            Command::Namespace(o) => o.run(),
            Command::Yank(o) => o.run(),
            Command::Registry(o) => o.run(),
            Command::Log(o) => o.run(),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    /// clap's own consistency checks over every command (duplicate flags, bad defaults, ...).
    #[test]
    fn command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
