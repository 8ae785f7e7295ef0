//! Errors from reading a binary. Every variant says what was expected and what was found, with the
//! byte offset where one applies.

/// Why a binary could not be audited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    #[error("empty input: expected a WebAssembly component or module, found 0 bytes")]
    Empty,
    #[error(
        "not a WebAssembly binary: expected the magic bytes 00 61 73 6d (\"\\0asm\") at offset 0, found {found}"
    )]
    NotWasm { found: String },
    #[error("invalid WebAssembly at byte offset {offset} ({offset:#x}): {message}")]
    Invalid { offset: usize, message: String },
    #[error("{0}")]
    Wit(String),
}

impl AuditError {
    /// The byte offset the error points at, where there is one.
    pub fn offset(&self) -> Option<usize> {
        match self {
            AuditError::Invalid { offset, .. } => Some(*offset),
            AuditError::NotWasm { .. } => Some(0),
            _ => None,
        }
    }
}
