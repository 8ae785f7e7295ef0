//! Why the sequencer refused a record, below both the sequencer and the namespace policies that
//! judge a batch, so neither has to know the other.

use gridreg_protocol::Prev;
use gridreg_protocol::namespace::NamespaceError;

/// Why the sequencer refused a record. Nothing was written for it.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("{package}@{version} already exists; versions are immutable, even after a yank")]
    VersionExists { package: String, version: String },
    #[error("{package}@{version} does not exist, so it cannot be yanked")]
    NoSuchRelease { package: String, version: String },
    #[error("{package}@{version} is already yanked")]
    AlreadyYanked { package: String, version: String },
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    /// The record's `prev` is not its chain's head: a replay, or another record got there first.
    #[error(
        "the record names {found} as the head of {chain}, but the head is {head}; sign the record \
         again with `prev {head}`"
    )]
    StalePrev {
        chain: String,
        head: Prev,
        found: Prev,
    },
    #[error("{0}")]
    PolicyViolation(String),
    #[error("the log could not be written: {0}")]
    Internal(String),
}
