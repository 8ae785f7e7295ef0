//! `gridreg verify`: the CI gate. Audits files against a capability policy.

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use gridreg_verifier::policy::{Severity, Subject, Verdict};
use gridreg_verifier::report::{FileReport, Outcome, sarif};
use gridreg_verifier::{Audit, audit_with_digest};
use rayon::prelude::*;

use crate::exit::Status;
use crate::input::{self, human_size};
use crate::output::{Style, paint};
use crate::policy_file;

/// Statically audit components and modules against a capability policy: the CI gate.
///
/// Every file is validated fully, its imports are classified into capability classes (stdio,
/// filesystem, network, http-outgoing, ...) and judged by the policy. Files are audited in
/// parallel. POLICY is a TOML file or the name of a built-in policy: default, strict,
/// http-proxy, ci (see policies/README.md).
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  gridreg verify app.wasm                                 built-in `default` policy
  gridreg verify build/*.wasm --policy policies/ci.toml   gate every component of a build
  gridreg verify app.wasm --policy strict --baseline app-1.0.wasm   also forbid new capabilities
  gridreg verify app.wasm --format sarif > gridreg.sarif  for GitHub code scanning
  gridreg verify app.wasm --format json | jq .verdict

The human format prints one line per file (PASS, WARN, FAIL or ERROR, the file, its kind, size,
policy and capability classes), each violation below it, and a total line for several files.
Under GitHub Actions (GITHUB_ACTIONS=true) it also prints a workflow annotation per violation
(`::error file=...::`, `::warning ...` when the policy is in warn mode or the rule only warns).

Exit status: 0 every file passed (or only warnings / a policy in warn mode), 1 a file violates
the policy, 2 a file or the policy could not be read or is invalid.")]
pub struct Opts {
    /// The .wasm files (`-` for standard input).
    #[arg(required = true)]
    pub files: Vec<String>,
    /// Policy file, or a built-in policy name.
    #[arg(long, short, default_value = "default")]
    pub policy: String,
    /// Output format: human, json (one object per file, one per line), sarif (SARIF 2.1.0).
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Shorthand for --format json.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// The previous version: capability classes it did not have are judged by the policy's [drift] rule.
    #[arg(long, value_name = "OLD")]
    pub baseline: Option<String>,
    /// The package name the files are published as (`acme:auth`), for the policy's [[exemptions]].
    #[arg(long)]
    pub package: Option<String>,
    /// Judge exemption expiry as of this date (YYYY-MM-DD) instead of today (UTC).
    #[arg(long, value_name = "DATE")]
    pub today: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
    Sarif,
}

impl Opts {
    pub fn run(self) -> anyhow::Result<Status> {
        let policy = policy_file::load(&self.policy)?;
        let today = policy_file::today(self.today.as_deref())?;
        if self.files.iter().filter(|f| *f == "-").count() > 1 {
            bail!("standard input (`-`) can be given only once");
        }
        let baseline: Option<Audit> = match &self.baseline {
            Some(path) => {
                let input = input::read(path)?;
                Some(
                    audit_with_digest(&input.bytes, input.digest)
                        .with_context(|| format!("baseline `{}` is not valid", input.name))?,
                )
            }
            None => None,
        };

        let reports: Vec<FileReport> = self
            .files
            .par_iter()
            .map(|file| {
                let (input, audit) = match input::read_audited(file) {
                    Ok(r) => r,
                    Err(e) => return FileReport::error(file.clone(), format!("{e:#}")),
                };
                let audit = match audit {
                    Ok(a) => a,
                    Err(e) => return FileReport::error(input.name, e),
                };
                let subject = Subject {
                    audit: &audit,
                    package: self.package.as_deref(),
                    baseline: baseline.as_ref(),
                    today,
                };
                let eval = policy.evaluate(&subject);
                FileReport::audited(input.name, audit, policy.name(), eval)
            })
            .collect();

        let format = if self.json { Format::Json } else { self.format };
        match format {
            Format::Json => {
                for r in &reports {
                    println!("{}", serde_json::to_string(r)?);
                }
            }
            Format::Sarif => println!(
                "{}",
                serde_json::to_string_pretty(&sarif(&reports, env!("CARGO_PKG_VERSION")))?
            ),
            Format::Human => print!("{}", human(&reports, github_actions())),
        }

        let any_error = reports
            .iter()
            .any(|r| matches!(r.outcome, Outcome::Error { .. }));
        let any_fail = reports
            .iter()
            .any(|r| matches!(&r.outcome, Outcome::Audited(a) if a.verdict == Verdict::Fail));
        if any_error {
            // Input errors outrank policy failures: the gate could not look at everything.
            if format == Format::Human {
                eprintln!(
                    "error: {} could not be audited",
                    count(
                        reports
                            .iter()
                            .filter(|r| matches!(r.outcome, Outcome::Error { .. }))
                            .count(),
                        "file"
                    )
                );
            }
            return Err(crate::exit::Reported.into());
        }
        Ok(if any_fail { Status::Failed } else { Status::Ok })
    }
}

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Whether to add GitHub Actions workflow commands to the human format: the runner sets
/// `GITHUB_ACTIONS=true` in every step.
fn github_actions() -> bool {
    std::env::var_os("GITHUB_ACTIONS").is_some_and(|v| v == "true")
}

/// A GitHub Actions annotation: `::LEVEL file=FILE,title=TITLE::MESSAGE`, escaped as the runner
/// reads it (`%`, CR and LF everywhere; `:` and `,` too in properties). Standard input has no file.
fn annotation(level: &str, file: &str, title: &str, message: &str) -> String {
    fn data(s: &str) -> String {
        s.replace('%', "%25")
            .replace('\r', "%0D")
            .replace('\n', "%0A")
    }
    fn property(s: &str) -> String {
        data(s).replace(':', "%3A").replace(',', "%2C")
    }
    // The runner places annotations by paths relative to the workspace.
    let workspace = std::env::var("GITHUB_WORKSPACE").unwrap_or_default();
    let file = file
        .strip_prefix(workspace.as_str())
        .and_then(|f| f.strip_prefix('/'))
        .filter(|_| !workspace.is_empty())
        .unwrap_or(file);
    let file = file.strip_prefix("./").unwrap_or(file);
    let location = if file == "<stdin>" {
        String::new()
    } else {
        format!("file={},", property(file))
    };
    format!(
        "::{level} {location}title={}::{}\n",
        property(title),
        data(message)
    )
}

fn human(reports: &[FileReport], github: bool) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let (mut pass, mut warn, mut fail, mut error) = (0, 0, 0, 0);
    for r in reports {
        match &r.outcome {
            Outcome::Error { error: e, .. } => {
                error += 1;
                let _ = writeln!(
                    s,
                    "{}  {}",
                    paint(Style::Bad, "ERROR"),
                    paint(Style::Bold, &r.file)
                );
                let _ = writeln!(s, "  {e}");
                if github {
                    s.push_str(&annotation(
                        "error",
                        &r.file,
                        "gridreg verify (not audited)",
                        e,
                    ));
                }
            }
            Outcome::Audited(a) => {
                let tag = match a.verdict {
                    Verdict::Pass => {
                        pass += 1;
                        paint(Style::Good, "PASS ")
                    }
                    Verdict::Warn => {
                        warn += 1;
                        paint(Style::Warn, "WARN ")
                    }
                    Verdict::Fail => {
                        fail += 1;
                        paint(Style::Bad, "FAIL ")
                    }
                };
                let caps: Vec<&str> = a.capabilities.iter().map(|c| c.as_str()).collect();
                let kind = match a.kind {
                    gridreg_verifier::Kind::Component => "component",
                    gridreg_verifier::Kind::Module => "core module",
                };
                let _ = writeln!(
                    s,
                    "{tag} {}  ({kind}, {}, policy {}, capabilities: {})",
                    paint(Style::Bold, &r.file),
                    human_size(a.size),
                    a.policy,
                    if caps.is_empty() {
                        "none".to_string()
                    } else {
                        caps.join(", ")
                    }
                );
                for v in &a.violations {
                    let sev = match v.severity {
                        Severity::Error => paint(Style::Bad, "error  "),
                        Severity::Warning => paint(Style::Warn, "warning"),
                    };
                    let _ = writeln!(s, "  {sev} {:<22} {}", v.rule.id(), v.message);
                }
                if github {
                    for v in &a.violations {
                        // An error of a policy in warn mode does not fail the gate: a warning.
                        let level = match (a.verdict, v.severity) {
                            (Verdict::Fail, Severity::Error) => "error",
                            _ => "warning",
                        };
                        let title = format!("gridreg {} (policy {})", v.rule.id(), a.policy);
                        s.push_str(&annotation(level, &r.file, &title, &v.message));
                    }
                }
            }
        }
    }
    if reports.len() > 1 {
        let _ = writeln!(
            s,
            "{}: {pass} passed, {warn} warned, {fail} failed, {error} unreadable",
            count(reports.len(), "file")
        );
    }
    s
}
