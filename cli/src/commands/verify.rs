//! `gridreg verify` (being written).

use clap::Args;

use crate::exit::Status;

/// Not written yet.
#[derive(Debug, Args)]
pub struct Opts {}

impl Opts {
    pub fn run(self) -> anyhow::Result<Status> {
        anyhow::bail!("`gridreg verify` is not built yet")
    }
}
