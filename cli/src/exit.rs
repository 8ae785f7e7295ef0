//! Exit statuses and how errors become them: a [`Failure`] (the input was fine but did not pass a
//! policy or verification check) exits 1; every other error is a usage or input problem and exits 2.

use std::process::ExitCode;

/// What a command that ran to completion reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Everything passed.
    Ok,
    /// A policy or verification check failed; the command already printed why.
    Failed,
    /// An exit status chosen by the command (`gridreg run` passes the guest's own code through).
    Code(u8),
}

impl From<Status> for ExitCode {
    fn from(s: Status) -> Self {
        match s {
            Status::Ok => ExitCode::SUCCESS,
            Status::Failed => ExitCode::from(1),
            Status::Code(c) => ExitCode::from(c),
        }
    }
}

/// An error that means "checked, and it did not pass" rather than "could not check".
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Failure(pub String);

/// An input error whose details the command already printed (per file, in its own format):
/// exit 2 without printing anything more.
#[derive(Debug, thiserror::Error)]
#[error("input error (already reported)")]
pub struct Reported;

/// Prints an error chain the way rustc and cargo do and picks the exit status.
pub fn report(err: &anyhow::Error) -> ExitCode {
    if err.downcast_ref::<Reported>().is_some() {
        return ExitCode::from(2);
    }
    let mut msg = format!("error: {err}");
    for cause in err.chain().skip(1) {
        msg.push_str(&format!("\n  caused by: {cause}"));
    }
    eprintln!("{msg}");
    if err.downcast_ref::<Failure>().is_some() {
        ExitCode::from(1)
    } else {
        ExitCode::from(2)
    }
}
