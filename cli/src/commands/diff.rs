//! `gridreg diff`: what changed in the surface and capabilities between two versions.

use anyhow::Context;
use clap::Args;
use gridreg_protocol::Digest;
use gridreg_verifier::{Drift, audit_with_digest};
use serde::Serialize;

use crate::exit::Status;
use crate::input;
use crate::output::{Style, paint};

/// Show interfaces and capability classes added or removed between two versions of a component.
///
/// Interfaces are compared without their version, so `wasi:cli/stdout@0.2.0` → `@0.2.6` shows as a
/// version change, not as a removal and an addition. New capability classes are what a reviewer
/// should look at first: they are printed first.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  gridreg diff app-1.0.wasm app-1.1.wasm
  gridreg diff old.wasm new.wasm --json
  gridreg diff old.wasm new.wasm --exit-code   # exit 1 when the new version gained a capability class

Exit status: 0 compared (whatever changed, unless --exit-code), 1 with --exit-code: new capability
classes, 2 a file could not be read or is not valid WebAssembly.")]
pub struct Opts {
    /// The old version (.wasm).
    pub old: String,
    /// The new version (.wasm).
    pub new: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Exit with status 1 when the new version can reach a capability class the old one could not.
    #[arg(long)]
    pub exit_code: bool,
}

#[derive(Serialize)]
struct JsonOut<'a> {
    old: Side<'a>,
    new: Side<'a>,
    #[serde(flatten)]
    drift: &'a Drift,
}

#[derive(Serialize)]
struct Side<'a> {
    file: &'a str,
    digest: &'a Digest,
}

impl Opts {
    pub fn run(self) -> anyhow::Result<Status> {
        let old_in = input::read(&self.old)?;
        let new_in = input::read(&self.new)?;
        let old = audit_with_digest(&old_in.bytes, old_in.digest)
            .with_context(|| format!("`{}` is not valid", old_in.name))?;
        let new = audit_with_digest(&new_in.bytes, new_in.digest)
            .with_context(|| format!("`{}` is not valid", new_in.name))?;
        let drift = Drift::between(&old, &new);
        if self.json {
            let out = JsonOut {
                old: Side {
                    file: &old_in.name,
                    digest: &old.digest,
                },
                new: Side {
                    file: &new_in.name,
                    digest: &new.digest,
                },
                drift: &drift,
            };
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            print!("{}", human(&old_in.name, &new_in.name, &drift));
        }
        if self.exit_code && !drift.added_capabilities.is_empty() {
            return Ok(Status::Failed);
        }
        Ok(Status::Ok)
    }
}

fn human(old: &str, new: &str, d: &Drift) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "--- {old}\n+++ {new}");
    if d.is_empty() {
        let _ = writeln!(s, "no change in imports, exports or capabilities");
        return s;
    }
    let classes =
        |v: &[gridreg_verifier::Class]| v.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ");
    if !d.added_capabilities.is_empty() {
        let _ = writeln!(
            s,
            "{}",
            paint(
                Style::Bad,
                &format!("new capabilities: {}", classes(&d.added_capabilities))
            )
        );
    }
    if !d.removed_capabilities.is_empty() {
        let _ = writeln!(
            s,
            "dropped capabilities: {}",
            classes(&d.removed_capabilities)
        );
    }
    for i in &d.added_imports {
        let _ = writeln!(
            s,
            "{}",
            paint(Style::Good, &format!("+ import {}  ({})", i.name, i.class))
        );
    }
    for i in &d.removed_imports {
        let _ = writeln!(
            s,
            "{}",
            paint(Style::Bad, &format!("- import {}  ({})", i.name, i.class))
        );
    }
    for c in &d.changed_imports {
        let _ = writeln!(s, "~ import {}  {} -> {}", c.interface, c.old, c.new);
    }
    for e in &d.added_exports {
        let _ = writeln!(s, "{}", paint(Style::Good, &format!("+ export {e}")));
    }
    for e in &d.removed_exports {
        let _ = writeln!(s, "{}", paint(Style::Bad, &format!("- export {e}")));
    }
    for c in &d.changed_exports {
        let _ = writeln!(s, "~ export {}  {} -> {}", c.interface, c.old, c.new);
    }
    s
}
