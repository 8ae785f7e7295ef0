//! `gridreg inspect`: what a component or module is and what it can reach.

use anyhow::Context;
use clap::Args;
use gridreg_verifier::{Audit, audit_with_digest, wit_text};
use serde::Serialize;

use crate::exit::Status;
use crate::input::{self, human_size};
use crate::output::{Style, paint};

/// Show a component's or module's imports (with their capability class), exports, WIT, producers,
/// size and digest.
///
/// The file is validated fully first; an invalid binary is an error with the byte offset.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  gridreg inspect app.wasm              imports with classes, exports, producers, digest
  gridreg inspect app.wasm --wit        the component's WIT, as `wasm-tools component wit` prints it
  gridreg inspect app.wasm --json       machine output
  curl -s https://host/app.wasm | gridreg inspect -

Exit status: 0 inspected, 2 the file could not be read or is not valid WebAssembly.")]
pub struct Opts {
    /// The .wasm file (`-` for standard input).
    pub file: String,
    /// Print the component's WIT instead of the summary (with --json: add a "wit" field).
    #[arg(long)]
    pub wit: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct JsonOut<'a> {
    file: &'a str,
    #[serde(flatten)]
    audit: &'a Audit,
    #[serde(skip_serializing_if = "Option::is_none")]
    wit: Option<String>,
}

impl Opts {
    pub fn run(self) -> anyhow::Result<Status> {
        let input = input::read(&self.file)?;
        let report = audit_with_digest(&input.bytes, input.digest)
            .with_context(|| format!("`{}` is not valid", input.name))?;
        let wit = if self.wit {
            Some(
                wit_text(&input.bytes)
                    .with_context(|| format!("cannot print the WIT of `{}`", input.name))?,
            )
        } else {
            None
        };
        if self.json {
            let out = JsonOut {
                file: &input.name,
                audit: &report,
                wit,
            };
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else if let Some(wit) = wit {
            print!("{wit}");
            if !wit.ends_with('\n') {
                println!();
            }
        } else {
            print!("{}", human(&input.name, &report));
        }
        Ok(Status::Ok)
    }
}

fn human(name: &str, a: &Audit) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let kind = match a.kind {
        gridreg_verifier::Kind::Component => "component",
        gridreg_verifier::Kind::Module => "core module",
    };
    let _ = writeln!(
        s,
        "{}  {kind}, {} ({} bytes)",
        paint(Style::Bold, name),
        human_size(a.size),
        a.size
    );
    let _ = writeln!(s, "digest        {}", a.digest);
    let caps: Vec<&str> = a.capabilities.iter().map(|c| c.as_str()).collect();
    let _ = writeln!(
        s,
        "capabilities  {}",
        if caps.is_empty() {
            "(none)".to_string()
        } else {
            caps.join(", ")
        }
    );
    let width = a.imports.iter().map(|i| i.name.len()).max().unwrap_or(0);
    let _ = writeln!(s, "imports ({})", a.imports.len());
    for i in &a.imports {
        let _ = writeln!(
            s,
            "  {:width$}  {}",
            i.name,
            paint(Style::Dim, i.class.as_str())
        );
    }
    let _ = writeln!(s, "exports ({})", a.exports.len());
    for e in &a.exports {
        let _ = writeln!(s, "  {e}");
    }
    if !a.producers.is_empty() {
        let _ = writeln!(s, "producers");
        let fw = a.producers.iter().map(|p| p.field.len()).max().unwrap_or(0);
        for p in &a.producers {
            let _ = writeln!(s, "  {:fw$}  {} {}", p.field, p.name, p.version);
        }
    }
    s
}
