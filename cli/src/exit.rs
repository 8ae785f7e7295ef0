//! Exit statuses and how errors become them: a [`Failure`] (the input was fine but did not pass a
//! policy or verification check) exits 1; every other error is a usage or input problem and exits 2.

use std::io::Write as _;

/// What a command that ran to completion reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Everything passed.
    Ok,
    /// A policy or verification check failed; the command already printed why.
    Failed,
    /// An exit status chosen by the command (`gridreg run` passes the guest's own code through).
    #[cfg(feature = "run")]
    Code(u8),
}

impl Status {
    /// The process exit status.
    pub fn code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Failed => 1,
            #[cfg(feature = "run")]
            Status::Code(c) => c,
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
pub fn report(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<Reported>().is_some() {
        return 2;
    }
    let mut msg = format!("error: {err}");
    for cause in err.chain().skip(1) {
        msg.push_str(&format!("\n  caused by: {cause}"));
    }
    eprintln!("{msg}");
    if err.downcast_ref::<Failure>().is_some() {
        1
    } else {
        2
    }
}

/// Ends the process with `code` once the command has finished (every value it owned is dropped,
/// so files, databases and servers are closed): flushes standard output and error, then exits
/// without the C runtime's exit handlers. Those only hand memory back to the system, which the
/// exit does anyway; the allocator's (a forced collection that madvises every arena away) cost
/// ~1 ms, a sixth of a `gridreg verify` of a typical component.
#[allow(unsafe_code)]
pub fn exit_now(code: u8) -> ! {
    let _ = std::io::stdout().lock().flush();
    let _ = std::io::stderr().lock().flush();
    // SAFETY: `_exit` ends the process at once; nothing runs after it. Buffered Rust output was
    // flushed above and no C stdio buffers are written by this program.
    unsafe { libc::_exit(i32::from(code)) }
}
