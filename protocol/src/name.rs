//! Package names (`namespace:name`, WIT package syntax), versions and version requirements, and
//! resolving a requirement against the versions a registry lists (some of them yanked).

use std::fmt;
use std::str::FromStr;

pub use semver::{Version, VersionReq};

/// Longest namespace or package-name label we accept, in bytes. WIT sets no limit; a bound keeps
/// records and URLs small and rules out pathological input.
pub const MAX_LABEL_LEN: usize = 64;

/// Why a name, version or reference was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("expected a name, found an empty string")]
    Empty,
    #[error("name `{0}` is longer than {MAX_LABEL_LEN} bytes")]
    TooLong(String),
    #[error(
        "expected a lowercase kebab-case label (words of a-z and 0-9, each starting with a letter, joined by single `-`), found `{0}`"
    )]
    BadLabel(String),
    #[error("expected a package name `namespace:name`, found `{0}`")]
    MissingColon(String),
    #[error("expected a semver version like `1.2.0`, found `{found}`: {reason}")]
    BadVersion { found: String, reason: String },
    #[error(
        "expected a version requirement like `^1.2` or `=1.2.0` after `@`, found `{found}`: {reason}"
    )]
    BadRequirement { found: String, reason: String },
}

/// Checks one WIT label: lowercase kebab-case words, each starting with a letter.
fn check_label(s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    if s.len() > MAX_LABEL_LEN {
        return Err(NameError::TooLong(s.to_string()));
    }
    for word in s.split('-') {
        let mut chars = word.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        if !first_ok || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()) {
            return Err(NameError::BadLabel(s.to_string()));
        }
    }
    Ok(())
}

/// A namespace: the part of a package name before `:` (`acme` in `acme:auth`). Keys are granted
/// roles per namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Namespace(String);

impl Namespace {
    /// Parses a namespace label.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        check_label(s)?;
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Namespace {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A package name `namespace:name`, both lowercase kebab-case labels as in WIT.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PackageName {
    namespace: Namespace,
    name: String,
}

impl PackageName {
    /// Parses `namespace:name`. A version suffix is not part of a package name; see [`Reference`].
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let Some((ns, name)) = s.split_once(':') else {
            return Err(if s.is_empty() {
                NameError::Empty
            } else {
                NameError::MissingColon(s.to_string())
            });
        };
        let namespace = Namespace::parse(ns)?;
        check_label(name)?;
        Ok(Self {
            namespace,
            name: name.to_string(),
        })
    }

    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for PackageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.namespace, self.name)
    }
}

impl FromStr for PackageName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Parses a full semver version (`1.2.0`, `1.0.0-rc.1`), nothing looser.
pub fn parse_version(s: &str) -> Result<Version, NameError> {
    Version::parse(s).map_err(|e| NameError::BadVersion {
        found: s.to_string(),
        reason: e.to_string(),
    })
}

/// Which versions of a package a reference asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// No requirement: the newest release that is neither yanked nor a pre-release.
    Newest,
    /// Exactly this version (`@1.2.0` or `@=1.2.0`); it may resolve to a yanked release, so a
    /// lockfile keeps working after a yank.
    Exact(Version),
    /// A semver range (`@^1.2`, `@~1.2.3`, `@>=1, <2`): the newest matching non-yanked release.
    Range(VersionReq),
}

impl Requirement {
    /// Parses the text after `@`.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let bad = |reason: String| NameError::BadRequirement {
            found: s.to_string(),
            reason,
        };
        if s.trim().is_empty() {
            return Err(bad("the requirement is empty".to_string()));
        }
        if let Ok(v) = Version::parse(s) {
            return Ok(Self::Exact(v));
        }
        if let Some(rest) = s.strip_prefix('=')
            && let Ok(v) = Version::parse(rest.trim())
        {
            return Ok(Self::Exact(v));
        }
        VersionReq::parse(s)
            .map(Self::Range)
            .map_err(|e| bad(e.to_string()))
    }

    /// Whether `v` satisfies this requirement, ignoring yanks.
    pub fn matches(&self, v: &Version) -> bool {
        match self {
            Self::Newest => v.pre.is_empty(),
            Self::Exact(want) => want == v,
            Self::Range(req) => req.matches(v),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Newest => Ok(()),
            Self::Exact(v) => write!(f, "{v}"),
            Self::Range(r) => write!(f, "{r}"),
        }
    }
}

/// A package reference as typed on the command line: `acme:auth`, `acme:auth@1.2.0`,
/// `acme:auth@^1.2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub package: PackageName,
    pub requirement: Requirement,
}

impl Reference {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        match s.split_once('@') {
            None => Ok(Self {
                package: PackageName::parse(s)?,
                requirement: Requirement::Newest,
            }),
            Some((pkg, req)) => Ok(Self {
                package: PackageName::parse(pkg)?,
                requirement: Requirement::parse(req)?,
            }),
        }
    }

    /// Picks the version this reference means among `candidates`; see [`resolve`].
    pub fn resolve<'a>(&self, candidates: &'a [Candidate]) -> Option<&'a Candidate> {
        resolve(&self.requirement, candidates)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.requirement {
            Requirement::Newest => write!(f, "{}", self.package),
            r => write!(f, "{}@{r}", self.package),
        }
    }
}

impl FromStr for Reference {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// One published version of a package, as far as resolution cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub version: Version,
    pub yanked: bool,
}

/// Resolves a requirement: an exact version matches itself even when yanked; otherwise the
/// newest matching version that is not yanked wins. The order of `candidates` does not matter.
pub fn resolve<'a>(req: &Requirement, candidates: &'a [Candidate]) -> Option<&'a Candidate> {
    match req {
        Requirement::Exact(v) => candidates.iter().find(|c| &c.version == v),
        _ => candidates
            .iter()
            .filter(|c| !c.yanked && req.matches(&c.version))
            .max_by(|a, b| a.version.cmp(&b.version)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn package_names() {
        let p = PackageName::parse("acme:auth-v2").unwrap();
        assert_eq!(p.namespace().as_str(), "acme");
        assert_eq!(p.name(), "auth-v2");
        assert_eq!(p.to_string(), "acme:auth-v2");
        for bad in [
            "",
            "acme",
            ":auth",
            "acme:",
            "Acme:auth",
            "acme:Auth",
            "acme:auth-",
            "acme:-auth",
            "acme:a--b",
            "acme:2fa",
            "acme:auth:x",
            "acme:a_b",
            "acme:auth@1.0.0",
            "ac me:x",
        ] {
            assert!(
                PackageName::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
        let long = format!("acme:{}", "a".repeat(MAX_LABEL_LEN + 1));
        assert!(matches!(
            PackageName::parse(&long),
            Err(NameError::TooLong(_))
        ));
    }

    #[test]
    fn references() {
        let r = Reference::parse("acme:auth").unwrap();
        assert_eq!(r.requirement, Requirement::Newest);
        let r = Reference::parse("acme:auth@1.2.0").unwrap();
        assert_eq!(r.requirement, Requirement::Exact(Version::new(1, 2, 0)));
        let r = Reference::parse("acme:auth@=1.2.0").unwrap();
        assert_eq!(r.requirement, Requirement::Exact(Version::new(1, 2, 0)));
        let r = Reference::parse("acme:auth@^1.2").unwrap();
        assert!(matches!(r.requirement, Requirement::Range(_)));
        assert_eq!(r.to_string(), "acme:auth@^1.2");
        assert!(Reference::parse("acme:auth@").is_err());
        assert!(Reference::parse("acme:auth@banana").is_err());
        assert!(Reference::parse("acme@1.0.0").is_err());
    }

    fn cands(list: &[(&str, bool)]) -> Vec<Candidate> {
        list.iter()
            .map(|(v, y)| Candidate {
                version: Version::parse(v).unwrap(),
                yanked: *y,
            })
            .collect()
    }

    #[test]
    fn resolution_skips_yanked_except_exact() {
        let c = cands(&[
            ("1.2.0", false),
            ("1.3.0", true),
            ("1.2.5", false),
            ("2.0.0-rc.1", false),
            ("0.9.0", false),
        ]);
        let pick = |s: &str| {
            Reference::parse(s)
                .unwrap()
                .resolve(&c)
                .map(|c| c.version.to_string())
        };
        assert_eq!(pick("acme:a").as_deref(), Some("1.2.5"));
        assert_eq!(pick("acme:a@^1.2").as_deref(), Some("1.2.5"));
        assert_eq!(pick("acme:a@1.3.0").as_deref(), Some("1.3.0"));
        assert_eq!(pick("acme:a@=1.3.0").as_deref(), Some("1.3.0"));
        assert_eq!(pick("acme:a@^0.9").as_deref(), Some("0.9.0"));
        assert_eq!(pick("acme:a@^3").as_deref(), None);
        assert_eq!(pick("acme:a@1.4.0").as_deref(), None);
        assert_eq!(pick("acme:a@>=2.0.0-rc.1").as_deref(), Some("2.0.0-rc.1"));
        let all_yanked = cands(&[("1.0.0", true)]);
        assert!(
            Reference::parse("acme:a")
                .unwrap()
                .resolve(&all_yanked)
                .is_none()
        );
    }
}
