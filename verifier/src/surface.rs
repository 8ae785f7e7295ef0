//! Comparing a declared surface (a release record's `import` / `export` lines) with a binary's
//! own. The registry refuses a record whose lines differ, and every client and monitor checks the
//! same thing again on its own audit, so the comparison lives here, once.

use std::fmt;

use crate::audit::Audit;

/// How one declared list differs from the binary's: names the binary has that the list omits,
/// and names the list has that the binary lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SurfaceDiff<'a> {
    /// `"import"` or `"export"`.
    pub what: &'static str,
    pub missing: Vec<&'a str>,
    pub extra: Vec<&'a str>,
}

impl fmt::Display for SurfaceDiff<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = self.what;
        if !self.missing.is_empty() {
            write!(
                f,
                "the binary has {what} lines the record omits: {}",
                self.missing.join(", ")
            )?;
            if !self.extra.is_empty() {
                f.write_str("; ")?;
            }
        }
        if !self.extra.is_empty() {
            write!(
                f,
                "the record lists {what} lines the binary lacks: {}",
                self.extra.join(", ")
            )?;
        }
        Ok(())
    }
}

fn diff<'a>(
    what: &'static str,
    declared: &'a [String],
    actual: &[&'a str],
) -> Option<SurfaceDiff<'a>> {
    let missing: Vec<&str> = actual
        .iter()
        .copied()
        .filter(|a| !declared.iter().any(|d| d == a))
        .collect();
    let extra: Vec<&str> = declared
        .iter()
        .map(String::as_str)
        .filter(|d| !actual.contains(d))
        .collect();
    (!missing.is_empty() || !extra.is_empty()).then_some(SurfaceDiff {
        what,
        missing,
        extra,
    })
}

impl Audit {
    /// The first difference between declared `imports` / `exports` lines and this binary's own
    /// (imports checked first), or `None` when both lists are equal.
    pub fn surface_diff<'a>(
        &'a self,
        imports: &'a [String],
        exports: &'a [String],
    ) -> Option<SurfaceDiff<'a>> {
        let own_imports: Vec<&str> = self.imports.iter().map(|i| i.name.as_str()).collect();
        let own_exports: Vec<&str> = self.exports.iter().map(String::as_str).collect();
        diff("import", imports, &own_imports).or_else(|| diff("export", exports, &own_exports))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    #[test]
    fn names_both_sides_and_checks_imports_first() {
        let wat = r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32))) (func (export "run")))"#;
        let audit = crate::audit(&wat::parse_str(wat).unwrap()).unwrap();
        let own = vec!["wasi_snapshot_preview1.fd_write".to_string()];
        let run = vec!["run".to_string()];
        assert_eq!(audit.surface_diff(&own, &run), None);
        let lying = vec!["wasi_snapshot_preview1.sock_accept".to_string()];
        let d = audit.surface_diff(&lying, &[]).unwrap();
        assert_eq!(d.what, "import");
        assert_eq!(
            d.to_string(),
            "the binary has import lines the record omits: wasi_snapshot_preview1.fd_write; \
             the record lists import lines the binary lacks: wasi_snapshot_preview1.sock_accept"
        );
        let d = audit.surface_diff(&own, &[]).unwrap();
        assert_eq!(
            d.to_string(),
            "the binary has export lines the record omits: run"
        );
    }
}
