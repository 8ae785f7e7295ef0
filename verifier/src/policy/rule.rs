//! What a policy evaluation reports: the rules that can fire, their violations and the verdict.

use std::fmt;

use serde::{Serialize, Serializer};

/// A rule a violation comes from. Serialised as its id (`capability-denied`), which is what JSON
/// output, SARIF `ruleId` and documentation all use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    CapabilityDenied,
    CapabilityNotAllowed,
    InterfaceDenied,
    ImportNotAllowed,
    UnknownImport,
    SizeLimit,
    ExemptionExpired,
    NewCapability,
    WorldMismatch,
}

impl Rule {
    /// Every rule, in documentation order (SARIF's rule table lists them in this order).
    pub const ALL: &'static [Rule] = &[
        Rule::CapabilityDenied,
        Rule::CapabilityNotAllowed,
        Rule::InterfaceDenied,
        Rule::ImportNotAllowed,
        Rule::UnknownImport,
        Rule::SizeLimit,
        Rule::ExemptionExpired,
        Rule::NewCapability,
        Rule::WorldMismatch,
    ];

    pub fn id(&self) -> &'static str {
        match self {
            Rule::CapabilityDenied => "capability-denied",
            Rule::CapabilityNotAllowed => "capability-not-allowed",
            Rule::InterfaceDenied => "interface-denied",
            Rule::ImportNotAllowed => "import-not-allowed",
            Rule::UnknownImport => "unknown-import",
            Rule::SizeLimit => "size-limit",
            Rule::ExemptionExpired => "exemption-expired",
            Rule::NewCapability => "new-capability",
            Rule::WorldMismatch => "world-mismatch",
        }
    }

    /// One sentence saying what the rule checks.
    pub fn description(&self) -> &'static str {
        match self {
            Rule::CapabilityDenied => {
                "An import belongs to a capability class listed in [capabilities].deny."
            }
            Rule::CapabilityNotAllowed => {
                "An import belongs to a capability class in neither [capabilities].allow nor deny, and the default is deny."
            }
            Rule::InterfaceDenied => {
                "An import matches an [[interfaces]] rule whose action is deny."
            }
            Rule::ImportNotAllowed => {
                "An import comes from a non-WASI package that matches no glob in [imports].allow."
            }
            Rule::UnknownImport => {
                "An import name cannot be classified, so no capability rule can vouch for it."
            }
            Rule::SizeLimit => "The binary is larger than [limits].max_size.",
            Rule::ExemptionExpired => {
                "An exemption for this package has passed its expiry date and no longer applies."
            }
            Rule::NewCapability => {
                "The component reaches a capability class that the baseline version did not."
            }
            Rule::WorldMismatch => "An import is not part of the [world].target world.",
        }
    }

    /// The rule with this id, for tools that read reports back.
    pub fn from_id(id: &str) -> Option<Rule> {
        Rule::ALL.iter().copied().find(|r| r.id() == id)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl Serialize for Rule {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.id())
    }
}

/// How much a violation weighs: errors fail an enforcing policy, warnings never do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One finding: which rule, how severe, a sentence for humans, and the import and class it is
/// about where it is about one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub rule: Rule,
    pub severity: Severity,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]: {}", self.severity, self.rule, self.message)
    }
}

/// The overall outcome of checking one binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "pass",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
        })
    }
}

/// The verdict and every violation behind it, in a stable order: per-import findings in import
/// order, then size, exemptions, drift and world findings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    pub verdict: Verdict,
    pub violations: Vec<Violation>,
}

impl Evaluation {
    pub fn errors(&self) -> impl Iterator<Item = &Violation> {
        self.violations
            .iter()
            .filter(|v| v.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Violation> {
        self.violations
            .iter()
            .filter(|v| v.severity == Severity::Warning)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rule_ids_are_unique_and_round_trip() {
        let mut ids: Vec<&str> = Rule::ALL.iter().map(|r| r.id()).collect();
        for r in Rule::ALL {
            assert_eq!(Rule::from_id(r.id()), Some(*r));
            assert!(r.description().ends_with('.'));
        }
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), Rule::ALL.len());
        assert_eq!(Rule::from_id("nope"), None);
    }

    #[test]
    fn violations_serialise_with_rule_ids_and_skip_empty_fields() {
        let v = Violation {
            rule: Rule::SizeLimit,
            severity: Severity::Error,
            message: "too big".into(),
            import: None,
            class: None,
        };
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"rule": "size-limit", "severity": "error", "message": "too big"})
        );
        let e = Evaluation {
            verdict: Verdict::Warn,
            violations: vec![],
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"verdict": "warn", "violations": []})
        );
    }
}
