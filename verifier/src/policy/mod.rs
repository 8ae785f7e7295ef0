//! The policy language: a TOML file saying which capabilities, interfaces and packages a
//! component may import, how big it may be, who must sign it, how it may drift from its previous
//! version and which world it must fit, and the evaluation of an audit against it.
//!
//! Parsing validates everything up front (classes, globs, sizes, dates, keys, worlds), so that a
//! policy that parses can be evaluated without any further failure.

mod error;
mod raw;
mod rule;
mod value;
mod world;

use std::ops::Range;

use serde::Serialize;
use toml::Spanned;

use crate::audit::{Audit, Import};
use crate::drift::Drift;
use crate::size::parse_size;
use crate::taxonomy::{Class, KNOWN_CLASSES};

pub use error::PolicyError;
pub use rule::{Evaluation, Rule, Severity, Verdict, Violation};
pub use value::{Date, Glob};
pub use world::{VendoredWorld, find_world, vendored_worlds, versions_compatible};

/// Whether violations fail the check or are only reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Enforce,
    Warn,
}

/// What a rule does with an import it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Deny,
}

/// What to do when a component gains a capability class over its baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftAction {
    Deny,
    Warn,
    Allow,
}

/// Who must have signed a release for `pull` and `run` to accept it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signers {
    /// Verifier keys, `NAME+KEYID+BASE64`, each checked to parse.
    pub keys: Vec<String>,
    /// How many distinct keys of `keys` must have signed; between 1 and `keys.len()`.
    pub threshold: usize,
}

#[derive(Debug, Clone)]
struct InterfaceRule {
    pattern: Glob,
    action: Action,
}

#[derive(Debug, Clone)]
struct Exemption {
    package: Glob,
    allow: Vec<Glob>,
    reason: Option<String>,
    expires: Option<Date>,
}

impl Exemption {
    fn expired(&self, today: Date) -> bool {
        self.expires.is_some_and(|d| d < today)
    }

    fn covers(&self, class: &Class) -> bool {
        self.allow.iter().any(|g| g.matches(class.as_str()))
    }

    fn describe(&self, package: &str) -> String {
        let mut s = format!("exemption for package {:?}", self.package.as_str());
        if self.package.as_str() != package {
            s.push_str(&format!(" (matching {package})"));
        }
        if let Some(reason) = &self.reason {
            s.push_str(&format!(", reason {reason:?},"));
        }
        s
    }
}

/// A parsed and validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    name: String,
    mode: Mode,
    allow: Vec<Glob>,
    deny: Vec<Glob>,
    default: Action,
    interfaces: Vec<InterfaceRule>,
    imports_allow: Vec<Glob>,
    max_size: Option<(u64, String)>,
    signers: Option<Signers>,
    drift: DriftAction,
    exemptions: Vec<Exemption>,
    world: Option<(String, &'static VendoredWorld)>,
}

/// What is being judged: a locally computed audit, the package it claims to be (for
/// exemptions), the previous version's audit (for drift) and today's date (for expiry).
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub audit: &'a Audit,
    pub package: Option<&'a str>,
    pub baseline: Option<&'a Audit>,
    pub today: Date,
}

impl<'a> Subject<'a> {
    /// A subject with no package name and no baseline.
    pub fn new(audit: &'a Audit, today: Date) -> Subject<'a> {
        Subject {
            audit,
            package: None,
            baseline: None,
            today,
        }
    }
}

/// Why one import is refused, and the expired exemption that would have let it through, if any.
struct Denial<'p> {
    violation: Violation,
    expired: Option<&'p Exemption>,
}

impl Policy {
    /// Parses and validates policy text. `source_name` (usually the path) prefixes errors.
    pub fn parse(text: &str, source_name: &str) -> Result<Policy, PolicyError> {
        let cx = Cx {
            text,
            source: source_name,
        };
        let raw: raw::RawPolicy = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            // toml's messages can span lines; one line reads better after `file:line:col:`.
            let message = e
                .message()
                .trim()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            if message == "missing field `policy`" {
                return cx.err(
                    0..0,
                    "missing [policy] table: expected [policy] with at least name = \"...\""
                        .to_string(),
                );
            }
            cx.err(offset..offset, format!("invalid policy: {message}"))
        })?;
        cx.validate(raw)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn signers(&self) -> Option<&Signers> {
        self.signers.as_ref()
    }

    /// The size limit in bytes, if any.
    pub fn max_size(&self) -> Option<u64> {
        self.max_size.as_ref().map(|(n, _)| *n)
    }

    pub fn drift(&self) -> DriftAction {
        self.drift
    }

    /// The world imports must fit, as written in the policy.
    pub fn world_target(&self) -> Option<&str> {
        self.world.as_ref().map(|(name, _)| name.as_str())
    }

    /// Judges a whole audit: every import, the size, exemptions, drift and world fit.
    pub fn evaluate(&self, subject: &Subject) -> Evaluation {
        let audit = subject.audit;
        let mut violations = Vec::new();
        for import in &audit.imports {
            if let Some(denial) = self.judge(import, subject.package, subject.today) {
                violations.push(denial.violation);
            }
        }
        if let Some((limit, written)) = &self.max_size
            && audit.size > *limit
        {
            violations.push(Violation {
                rule: Rule::SizeLimit,
                severity: Severity::Error,
                message: format!(
                    "size {} bytes exceeds [limits].max_size {written} ({limit} bytes)",
                    audit.size
                ),
                import: None,
                class: None,
            });
        }
        if let Some(package) = subject.package {
            for ex in &self.exemptions {
                if ex.package.matches(package) && ex.expired(subject.today) {
                    violations.push(expired_violation(ex, package, None, None));
                }
            }
        }
        if let Some(baseline) = subject.baseline {
            violations.extend(self.drift_violations(baseline, audit));
        }
        for import in &audit.imports {
            if let Some(v) = self.world_violation(import) {
                violations.push(v);
            }
        }
        let verdict = if violations.iter().any(|v| v.severity == Severity::Error) {
            match self.mode {
                Mode::Enforce => Verdict::Fail,
                Mode::Warn => Verdict::Warn,
            }
        } else if violations.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Warn
        };
        Evaluation {
            verdict,
            violations,
        }
    }

    /// Whether one import may be linked (what `gridreg run` asks per import), and if not, the
    /// rule that refuses it. An import that only an expired exemption would allow is refused
    /// with `exemption-expired`, naming the exemption. The policy's mode is not applied here:
    /// the caller decides what a warn-mode refusal means.
    pub fn check_import(
        &self,
        import: &Import,
        package: Option<&str>,
        today: Date,
    ) -> Result<(), Violation> {
        if let Some(denial) = self.judge(import, package, today) {
            return Err(match (denial.expired, package) {
                (Some(ex), Some(pkg)) => {
                    expired_violation(ex, pkg, Some(&import.name), Some(import.class.as_str()))
                }
                _ => denial.violation,
            });
        }
        match self.world_violation(import) {
            Some(v) => Err(v),
            None => Ok(()),
        }
    }

    /// The capability decision for one import, in the documented order: `[[interfaces]]`
    /// rules, then `[capabilities].deny`, `allow`, `[imports].allow`, the `io` plumbing rule,
    /// and finally `default`. Active exemptions for the package lift any refusal for the classes
    /// they list.
    fn judge(&self, import: &Import, package: Option<&str>, today: Date) -> Option<Denial<'_>> {
        let class = &import.class;
        let name = &import.name;
        let refusal = self.refusal(import)?;
        let Some(package) = package else {
            return Some(Denial {
                violation: refusal,
                expired: None,
            });
        };
        let mut expired = None;
        for ex in self.exemptions.iter() {
            if ex.package.matches(package) && ex.covers(class) {
                if !ex.expired(today) {
                    return None;
                }
                expired.get_or_insert(ex);
            }
        }
        let mut violation = refusal;
        if let Some(ex) = expired
            && let Some(date) = ex.expires
        {
            violation.message.push_str(&format!(
                "; the exemption for {:?} that allowed {name} expired on {date}",
                ex.package.as_str()
            ));
        }
        Some(Denial { violation, expired })
    }

    /// The rule that refuses this import before exemptions are considered, if any.
    fn refusal(&self, import: &Import) -> Option<Violation> {
        let class = &import.class;
        let name = &import.name;
        let refuse = |rule: Rule, why: String| {
            Some(Violation {
                rule,
                severity: Severity::Error,
                message: format!("import {name} (class {class}) {why}"),
                import: Some(name.clone()),
                class: Some(class.to_string()),
            })
        };
        if let Some(rule) = self.interfaces.iter().find(|r| r.pattern.matches(name)) {
            return match rule.action {
                Action::Allow => None,
                Action::Deny => refuse(
                    Rule::InterfaceDenied,
                    format!(
                        "is denied by [[interfaces]] rule {:?}",
                        rule.pattern.as_str()
                    ),
                ),
            };
        }
        if self.deny.iter().any(|g| g.matches(class.as_str())) {
            return refuse(
                Rule::CapabilityDenied,
                "is denied by [capabilities].deny".to_string(),
            );
        }
        if self.allow.iter().any(|g| g.matches(class.as_str())) {
            return None;
        }
        if let Some(pkg) = class.foreign_package()
            && self.imports_allow.iter().any(|g| g.matches(pkg))
        {
            return None;
        }
        if class.as_str() == "io" {
            return None;
        }
        if class.as_str() == Class::UNKNOWN {
            // A name the taxonomy cannot read cannot be judged by class, so a permissive default
            // does not cover it: only an explicit `allow = ["unknown"]` or a rule does.
            return refuse(
                Rule::UnknownImport,
                "cannot be classified and \"unknown\" is not in [capabilities].allow".to_string(),
            );
        }
        match (self.default, class.foreign_package()) {
            (Action::Allow, _) => None,
            (Action::Deny, Some(pkg)) => refuse(
                Rule::ImportNotAllowed,
                format!(
                    "comes from package {pkg}, which matches no glob in [imports].allow, and [capabilities].default is \"deny\""
                ),
            ),
            (Action::Deny, None) => refuse(
                Rule::CapabilityNotAllowed,
                "is not in [capabilities].allow and [capabilities].default is \"deny\"".to_string(),
            ),
        }
    }

    fn drift_violations(&self, baseline: &Audit, audit: &Audit) -> Vec<Violation> {
        let severity = match self.drift {
            DriftAction::Allow => return Vec::new(),
            DriftAction::Warn => Severity::Warning,
            DriftAction::Deny => Severity::Error,
        };
        Drift::between(baseline, audit)
            .added_capabilities
            .iter()
            .map(|class| {
                let bringers: Vec<&str> = audit
                    .imports
                    .iter()
                    .filter(|i| &i.class == class)
                    .map(|i| i.name.as_str())
                    .collect();
                Violation {
                    rule: Rule::NewCapability,
                    severity,
                    message: format!(
                        "new capability {class} not present in the baseline, brought by {}",
                        bringers.join(", ")
                    ),
                    import: bringers.first().map(|s| (*s).to_string()),
                    class: Some(class.to_string()),
                }
            })
            .collect()
    }

    fn world_violation(&self, import: &Import) -> Option<Violation> {
        let (target, world) = self.world.as_ref()?;
        if world.admits(&import.name) {
            return None;
        }
        Some(Violation {
            rule: Rule::WorldMismatch,
            severity: Severity::Error,
            message: format!(
                "import {} (class {}) is not an import of world {target}",
                import.name, import.class
            ),
            import: Some(import.name.clone()),
            class: Some(import.class.to_string()),
        })
    }
}

fn expired_violation(
    ex: &Exemption,
    package: &str,
    import: Option<&str>,
    class: Option<&str>,
) -> Violation {
    let date = ex.expires.map(|d| d.to_string()).unwrap_or_default();
    let what = match import {
        Some(name) => format!("; import {name} is no longer exempt"),
        None => String::new(),
    };
    Violation {
        rule: Rule::ExemptionExpired,
        severity: Severity::Error,
        message: format!(
            "{} expired on {date} and no longer applies{what}",
            ex.describe(package)
        ),
        import: import.map(str::to_string),
        class: class.map(str::to_string),
    }
}

/// The text being parsed and its name, for locating errors.
struct Cx<'a> {
    text: &'a str,
    source: &'a str,
}

impl Cx<'_> {
    fn err(&self, span: Range<usize>, message: String) -> PolicyError {
        PolicyError::at(self.text, self.source, span.start, message)
    }

    fn validate(&self, raw: raw::RawPolicy) -> Result<Policy, PolicyError> {
        let name = raw.policy.name.get_ref().trim().to_string();
        if name.is_empty() {
            return Err(self.err(
                raw.policy.name.span(),
                "empty policy name: expected a name such as \"default\"".to_string(),
            ));
        }
        let mode = match &raw.policy.mode {
            None => Mode::Enforce,
            Some(m) => match m.get_ref().as_str() {
                "enforce" => Mode::Enforce,
                "warn" => Mode::Warn,
                other => {
                    return Err(self.err(
                        m.span(),
                        format!("bad mode {other:?}: expected \"enforce\" or \"warn\""),
                    ));
                }
            },
        };

        let (allow, deny, default) = match &raw.capabilities {
            None => (Vec::new(), Vec::new(), Action::Deny),
            Some(caps) => {
                let allow = self.classes(&caps.allow)?;
                let deny = self.classes(&caps.deny)?;
                if let Some(both) = caps
                    .deny
                    .iter()
                    .find(|d| caps.allow.iter().any(|a| a.get_ref() == d.get_ref()))
                {
                    return Err(self.err(
                        both.span(),
                        format!(
                            "class {:?} is in both [capabilities].allow and deny: expected each class in at most one list",
                            both.get_ref()
                        ),
                    ));
                }
                let default = match &caps.default {
                    None => Action::Deny,
                    Some(d) => self.action(d, "default")?,
                };
                (allow, deny, default)
            }
        };

        let interfaces = raw
            .interfaces
            .iter()
            .map(|r| {
                Ok(InterfaceRule {
                    pattern: self.glob(&r.name)?,
                    action: self.action(&r.action, "action")?,
                })
            })
            .collect::<Result<Vec<_>, PolicyError>>()?;

        let imports_allow = match &raw.imports {
            None => Vec::new(),
            Some(i) => i
                .allow
                .iter()
                .map(|g| self.glob(g))
                .collect::<Result<_, _>>()?,
        };

        let max_size = match raw.limits.as_ref().and_then(|l| l.max_size.as_ref()) {
            None => None,
            Some(v) => Some(self.size(v)?),
        };

        let signers = match &raw.signers {
            None => None,
            Some(s) => Some(self.signers(s)?),
        };

        let drift = match raw.drift.as_ref().and_then(|d| d.new_capabilities.as_ref()) {
            None => DriftAction::Warn,
            Some(d) => match d.get_ref().as_str() {
                "deny" => DriftAction::Deny,
                "warn" => DriftAction::Warn,
                "allow" => DriftAction::Allow,
                other => {
                    return Err(self.err(
                        d.span(),
                        format!(
                            "bad new_capabilities {other:?}: expected \"deny\", \"warn\" or \"allow\""
                        ),
                    ));
                }
            },
        };

        let exemptions = raw
            .exemptions
            .iter()
            .map(|ex| self.exemption(ex.get_ref()))
            .collect::<Result<Vec<_>, PolicyError>>()?;

        let world = match &raw.world {
            None => None,
            Some(w) => {
                let target = w.target.get_ref();
                let found = find_world(target).map_err(|m| self.err(w.target.span(), m))?;
                Some((target.clone(), found))
            }
        };

        Ok(Policy {
            name,
            mode,
            allow,
            deny,
            default,
            interfaces,
            imports_allow,
            max_size,
            signers,
            drift,
            exemptions,
            world,
        })
    }

    fn classes(&self, names: &[Spanned<String>]) -> Result<Vec<Glob>, PolicyError> {
        names
            .iter()
            .map(|n| {
                let name = n.get_ref();
                if Class::parse(name).is_none() {
                    return Err(self.err(
                        n.span(),
                        format!(
                            "unknown capability class {name:?}: expected one of {} or import:<ns>:<pkg>",
                            KNOWN_CLASSES.join(", ")
                        ),
                    ));
                }
                self.glob(n)
            })
            .collect()
    }

    fn glob(&self, pattern: &Spanned<String>) -> Result<Glob, PolicyError> {
        Glob::parse(pattern.get_ref()).map_err(|m| self.err(pattern.span(), m))
    }

    fn action(&self, value: &Spanned<String>, key: &str) -> Result<Action, PolicyError> {
        match value.get_ref().as_str() {
            "allow" => Ok(Action::Allow),
            "deny" => Ok(Action::Deny),
            other => Err(self.err(
                value.span(),
                format!("bad {key} {other:?}: expected \"allow\" or \"deny\""),
            )),
        }
    }

    fn size(&self, value: &Spanned<toml::Value>) -> Result<(u64, String), PolicyError> {
        match value.get_ref() {
            toml::Value::String(s) => parse_size(s)
                .map(|n| (n, s.clone()))
                .map_err(|m| self.err(value.span(), m)),
            toml::Value::Integer(n) if *n >= 0 => Ok((n.unsigned_abs(), format!("{n}B"))),
            other => Err(self.err(
                value.span(),
                format!(
                    "bad max_size: expected a size such as \"50MiB\" or a number of bytes, found {}",
                    describe(other)
                ),
            )),
        }
    }

    fn signers(&self, raw: &Spanned<raw::RawSigners>) -> Result<Signers, PolicyError> {
        let s = raw.get_ref();
        if s.keys.is_empty() {
            return Err(self.err(
                raw.span(),
                "empty [signers].keys: expected at least one verifier key NAME+KEYID+BASE64"
                    .to_string(),
            ));
        }
        let mut keys = Vec::with_capacity(s.keys.len());
        for key in &s.keys {
            gridreg_protocol::VerifierKey::parse(key.get_ref()).map_err(|e| {
                self.err(
                    key.span(),
                    format!("bad signer key {:?}: {e}", key.get_ref()),
                )
            })?;
            keys.push(key.get_ref().clone());
        }
        let threshold = match &s.threshold {
            None => 1,
            Some(t) => {
                let n = *t.get_ref();
                match usize::try_from(n) {
                    Ok(n) if n >= 1 && n <= keys.len() => n,
                    _ => {
                        return Err(self.err(
                            t.span(),
                            format!(
                                "bad threshold {n}: expected a number from 1 to {} (the number of keys)",
                                keys.len()
                            ),
                        ));
                    }
                }
            }
        };
        Ok(Signers { keys, threshold })
    }

    fn exemption(&self, ex: &raw::RawExemption) -> Result<Exemption, PolicyError> {
        let expires = match &ex.expires {
            None => None,
            Some(v) => Some(self.date(v)?),
        };
        Ok(Exemption {
            package: self.glob(&ex.package)?,
            allow: self.classes(&ex.allow)?,
            reason: ex.reason.as_ref().map(|r| r.get_ref().clone()),
            expires,
        })
    }

    fn date(&self, value: &Spanned<toml::Value>) -> Result<Date, PolicyError> {
        match value.get_ref() {
            toml::Value::String(s) => Date::parse(s).map_err(|m| self.err(value.span(), m)),
            toml::Value::Datetime(dt) if dt.time.is_none() && dt.offset.is_none() => dt
                .date
                .and_then(|d| Date::from_ymd(i32::from(d.year), d.month, d.day))
                .ok_or_else(|| {
                    self.err(
                        value.span(),
                        format!("bad date {dt}: expected a calendar date YYYY-MM-DD"),
                    )
                }),
            other => Err(self.err(
                value.span(),
                format!(
                    "bad date: expected a calendar date such as \"2027-03-31\", found {}",
                    describe(other)
                ),
            )),
        }
    }
}

/// A TOML value's kind and text, for "found ..." in messages.
fn describe(value: &toml::Value) -> String {
    format!("{} {value}", value.type_str())
}
