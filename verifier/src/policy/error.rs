//! The one error a policy file can produce: where in the file, and what was expected vs found.

use std::fmt;

/// A policy that cannot be used, located at the offending value: `file:line:col: message`.
/// Lines and columns count from 1; columns count characters, as editors do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The name the caller gave the policy text, usually its path.
    pub source: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl PolicyError {
    /// Builds an error pointing at byte `offset` of `text`. Offsets past the end or inside a
    /// character are clamped, so a bad span can never cause a panic.
    pub(crate) fn at(text: &str, source: &str, offset: usize, message: String) -> PolicyError {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        PolicyError {
            source: source.to_string(),
            line,
            column,
            message,
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.source, self.line, self.column, self.message
        )
    }
}

// `source` is the file name, not a cause, so the std `source()` keeps its default of `None`.
impl std::error::Error for PolicyError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let text = "a = 1\nbb = \"é\"\nc";
        let e = PolicyError::at(text, "p.toml", 0, "m".into());
        assert_eq!((e.line, e.column), (1, 1));
        let e = PolicyError::at(text, "p.toml", 11, "m".into());
        assert_eq!((e.line, e.column), (2, 6));
        let e = PolicyError::at(text, "p.toml", 12, "m".into());
        assert_eq!((e.line, e.column), (2, 7));
        // Inside the two-byte é: clamped back to its start.
        let e = PolicyError::at(text, "p.toml", 13, "m".into());
        assert_eq!((e.line, e.column), (2, 7));
        let e = PolicyError::at(text, "p.toml", 999, "m".into());
        assert_eq!((e.line, e.column), (3, 2));
        assert_eq!(e.to_string(), "p.toml:3:2: m");
    }
}
