//! The policy file exactly as TOML spells it, with the span of every value kept so that
//! validation errors can point at the offending text. Unknown tables and keys are rejected here.

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub policy: RawHeader,
    pub capabilities: Option<RawCapabilities>,
    #[serde(default)]
    pub interfaces: Vec<RawInterface>,
    pub imports: Option<RawImports>,
    pub limits: Option<RawLimits>,
    pub signers: Option<Spanned<RawSigners>>,
    pub drift: Option<RawDrift>,
    #[serde(default)]
    pub exemptions: Vec<Spanned<RawExemption>>,
    pub world: Option<RawWorld>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHeader {
    pub name: Spanned<String>,
    pub mode: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCapabilities {
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
    #[serde(default)]
    pub deny: Vec<Spanned<String>>,
    pub default: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInterface {
    pub name: Spanned<String>,
    pub action: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawImports {
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    /// A string with a unit (`"50MiB"`) or a plain integer number of bytes.
    pub max_size: Option<Spanned<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSigners {
    #[serde(default)]
    pub keys: Vec<Spanned<String>>,
    pub threshold: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDrift {
    pub new_capabilities: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExemption {
    pub package: Spanned<String>,
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
    pub reason: Option<Spanned<String>>,
    /// A string `"2027-03-31"` or a bare TOML local date `2027-03-31`.
    pub expires: Option<Spanned<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorld {
    pub target: Spanned<String>,
}
