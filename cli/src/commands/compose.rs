//! `gridreg compose`: plug components into a socket component and report what is left to import.

use std::io::Write;

use anyhow::Context;
use clap::Args;
use gridreg_verifier::policy::{Date, Severity, Subject, Verdict};

use crate::client;
use crate::commands::RegistryOpt;
use crate::compose::{Part, compose};
use crate::exit::{Failure, Status};
use crate::input;
use crate::output::{Style, paint};
use crate::policy_file;

/// Plug components' exports into a socket component's imports (like `wac plug`).
///
/// Each plug export satisfies the socket import of the same name or, failing that, of a
/// semver-compatible name. Prints which import each plug satisfied and the composed component's
/// remaining imports with their capability classes, writes OUT and, beside it,
/// OUT.composition.json (each input's reference, digest and what it satisfied). With --policy the
/// composed component's surface is judged, and nothing is written if it fails.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  gridreg compose processor.wasm --plug converter.wasm -o app.wasm
  gridreg compose app.wasm --plug auth.wasm --plug db.wasm -o out.wasm --policy ci
  gridreg compose processor.wasm --plug converter.wasm -o app.wasm --json

Exit status: 0 composed (and the policy passed), 1 the composed component violates the policy,
2 an input is missing or invalid, a plug satisfies nothing, or plugs are ambiguous.")]
pub struct Opts {
    /// The component whose imports are to be satisfied: a .wasm file or a registry reference
    /// (pulled with every check but the policy, which judges the composed component).
    #[arg(value_name = "SOCKET")]
    pub socket: String,
    /// A component whose exports satisfy some of the socket's imports (repeatable).
    #[arg(long = "plug", value_name = "PLUG", required = true)]
    pub plugs: Vec<String>,
    /// Where to write the composed component (and OUT.composition.json beside it).
    #[arg(short, long, value_name = "OUT")]
    pub output: String,
    /// Judge the composed component's imports by this policy (file or built-in name).
    #[arg(long, short)]
    pub policy: Option<String>,
    #[command(flatten)]
    pub registry: RegistryOpt,
    /// Print the composition manifest as JSON instead of the human report.
    #[arg(long)]
    pub json: bool,
}

impl Opts {
    pub fn run(self) -> anyhow::Result<Status> {
        let policy = match &self.policy {
            Some(p) => Some(policy_file::load(p)?),
            None => None,
        };
        let mut inputs = Vec::new();
        for spec in std::iter::once(&self.socket).chain(&self.plugs) {
            let today = crate::policy_file::today(None)?;
            match client::fetch_reference(spec, self.registry.get(), None, today)? {
                Some(fetched) => inputs.push(fetched),
                None => inputs.push(input::read(spec)?),
            }
        }
        let socket = Part {
            reference: &inputs[0].name,
            bytes: &inputs[0].bytes,
        };
        let plugs: Vec<Part<'_>> = inputs[1..]
            .iter()
            .map(|i| Part {
                reference: &i.name,
                bytes: &i.bytes,
            })
            .collect();
        let composed = compose(&socket, &plugs)?;

        let verdict = policy.as_ref().map(|p| {
            let today = Date::from_unix_seconds(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0),
            );
            (p, p.evaluate(&Subject::new(&composed.audit, today)))
        });

        let manifest = composed.manifest(&self.output);
        if self.json {
            println!("{}", serde_json::to_string_pretty(&manifest)?);
        } else {
            let mut out = String::new();
            for p in &composed.plugs {
                for s in &p.satisfied {
                    let via = if s.export == s.import {
                        String::new()
                    } else {
                        format!(" (its export {})", s.export)
                    };
                    out.push_str(&format!(
                        "{} {} satisfies {}{via}\n",
                        paint(Style::Good, "plugged"),
                        p.reference,
                        s.import
                    ));
                }
            }
            if composed.audit.imports.is_empty() {
                out.push_str("composed component imports nothing\n");
            } else {
                out.push_str("composed component still imports:\n");
                for i in &composed.audit.imports {
                    out.push_str(&format!(
                        "  {}  {}\n",
                        i.name,
                        paint(Style::Dim, i.class.as_str())
                    ));
                }
            }
            print!("{out}");
        }

        if let Some((p, eval)) = &verdict {
            for v in &eval.violations {
                let label = match v.severity {
                    Severity::Error => paint(Style::Bad, "error"),
                    _ => paint(Style::Warn, "warning"),
                };
                eprintln!("{label} [{}]: {}", v.rule, v.message);
            }
            if eval.verdict == Verdict::Fail {
                return Err(Failure(format!(
                    "the composed component violates policy `{}`; nothing was written",
                    p.name()
                ))
                .into());
            }
        }

        write_atomically(&self.output, &composed.bytes)?;
        let manifest_path = format!("{}.composition.json", self.output);
        let mut text = serde_json::to_string_pretty(&manifest)?;
        text.push('\n');
        write_atomically(&manifest_path, text.as_bytes())?;
        if !self.json {
            println!(
                "wrote {} ({}, {}) and {manifest_path}",
                self.output,
                input::human_size(composed.audit.size),
                composed.audit.digest
            );
        }
        Ok(Status::Ok)
    }
}

/// Writes through a temporary file beside `path` and renames it, so a reader never sees a
/// half-written component.
fn write_atomically(path: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let target = std::path::Path::new(path);
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("`{path}`: expected a file path"))?;
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, target)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write `{path}`"))
}
