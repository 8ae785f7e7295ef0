//! Machine-readable results of `verify`: one [`FileReport`] per input with the fields
//! docs/protocol.md §10.2 fixes for `verify --json`, and the SARIF 2.1.0 log that GitHub code
//! scanning accepts.

use gridreg_protocol::Digest;
use serde::Serialize;
use serde_json::{Value, json};

use crate::audit::{Audit, Import, Kind};
use crate::policy::{Evaluation, Rule, Severity, Verdict, Violation};
use crate::taxonomy::Class;

/// What `verify --json` prints for one file.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub file: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// An audited file with its verdict, or a file that could not be audited at all.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Outcome {
    Audited(Box<Audited>),
    Error {
        verdict: &'static str,
        error: String,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct Audited {
    pub digest: Digest,
    pub kind: Kind,
    pub size: u64,
    pub imports: Vec<Import>,
    pub exports: Vec<String>,
    pub capabilities: Vec<Class>,
    pub policy: String,
    pub verdict: Verdict,
    pub violations: Vec<Violation>,
}

impl FileReport {
    pub fn audited(
        file: impl Into<String>,
        audit: Audit,
        policy: &str,
        eval: Evaluation,
    ) -> FileReport {
        FileReport {
            file: file.into(),
            outcome: Outcome::Audited(Box::new(Audited {
                digest: audit.digest,
                kind: audit.kind,
                size: audit.size,
                imports: audit.imports,
                exports: audit.exports,
                capabilities: audit.capabilities,
                policy: policy.to_string(),
                verdict: eval.verdict,
                violations: eval.violations,
            })),
        }
    }

    /// A file that could not be read or is not valid WebAssembly: verdict `error`.
    pub fn error(file: impl Into<String>, error: impl std::fmt::Display) -> FileReport {
        FileReport {
            file: file.into(),
            outcome: Outcome::Error {
                verdict: "error",
                error: error.to_string(),
            },
        }
    }
}

/// The rule id SARIF uses for inputs that are not valid WebAssembly.
pub const INVALID_INPUT_RULE: &str = "invalid-input";

/// A SARIF 2.1.0 log of `reports`: one run, gridreg's rules in the driver, one result per
/// violation (and per unreadable input), located at the file it is about.
pub fn sarif(reports: &[FileReport], tool_version: &str) -> Value {
    let mut rules: Vec<Value> = Rule::ALL
        .iter()
        .map(|r| {
            json!({
                "id": r.id(),
                "name": pascal(r.id()),
                "shortDescription": {"text": r.description()},
                "fullDescription": {"text": r.description()},
                "help": {"text": format!("{} See policies/README.md for the policy format.", r.description())},
                "defaultConfiguration": {"level": "error"},
                "properties": {"tags": ["security", "supply-chain", "webassembly"]},
            })
        })
        .collect();
    rules.push(json!({
        "id": INVALID_INPUT_RULE,
        "name": "InvalidInput",
        "shortDescription": {"text": "The file is not a valid WebAssembly component or module."},
        "fullDescription": {"text": "The file could not be read, or it failed WebAssembly validation, so nothing about it can be trusted."},
        "help": {"text": "Rebuild the component, or check that the right file was given."},
        "defaultConfiguration": {"level": "error"},
    }));
    let rule_index = |id: &str| rules.iter().position(|r| r["id"] == id).unwrap_or(0);

    let mut results = Vec::new();
    let mut artifacts = Vec::new();
    for (artifact_index, report) in reports.iter().enumerate() {
        let uri = artifact_uri(&report.file);
        let location = json!([{
            "physicalLocation": {
                "artifactLocation": {"uri": uri, "index": artifact_index},
                "region": {"startLine": 1}
            }
        }]);
        match &report.outcome {
            Outcome::Audited(a) => {
                artifacts.push(json!({
                    "location": {"uri": uri},
                    "length": a.size,
                    "hashes": {"sha-256": hex::encode(a.digest.0)},
                }));
                for v in &a.violations {
                    let id = v.rule.id();
                    results.push(json!({
                        "ruleId": id,
                        "ruleIndex": rule_index(id),
                        "level": match v.severity { Severity::Error => "error", Severity::Warning => "warning" },
                        "message": {"text": format!("{}: {}", report.file, v.message)},
                        "locations": location,
                        "partialFingerprints": {
                            "gridreg/v1": fingerprint(&[&report.file, id, v.import.as_deref().unwrap_or(""), &v.message])
                        },
                        "properties": {
                            "import": v.import,
                            "class": v.class,
                            "policy": a.policy,
                        },
                    }));
                }
            }
            Outcome::Error { error, .. } => {
                artifacts.push(json!({"location": {"uri": uri}}));
                results.push(json!({
                    "ruleId": INVALID_INPUT_RULE,
                    "ruleIndex": rule_index(INVALID_INPUT_RULE),
                    "level": "error",
                    "message": {"text": format!("{}: {}", report.file, error)},
                    "locations": location,
                    "partialFingerprints": {"gridreg/v1": fingerprint(&[&report.file, INVALID_INPUT_RULE])},
                }));
            }
        }
    }
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "gridreg",
                "semanticVersion": tool_version,
                "informationUri": "https://example.invalid/gridreg",
                "rules": rules,
            }},
            "artifacts": artifacts,
            "results": results,
            "columnKind": "unicodeCodePoints",
        }]
    })
}

/// SARIF URIs are relative references with forward slashes; standard input has no path.
fn artifact_uri(file: &str) -> String {
    if file == "<stdin>" {
        return "stdin".to_string();
    }
    let f = file.replace('\\', "/");
    f.strip_prefix("./").unwrap_or(&f).to_string()
}

fn pascal(id: &str) -> String {
    id.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// A stable fingerprint so code scanning tracks a finding across runs.
fn fingerprint(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..16])
}
