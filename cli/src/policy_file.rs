//! Finding the policy a command should apply: a path to a TOML file, or the name of one of the
//! ready policies in `policies/`, which are built into the binary so they work from anywhere.

use anyhow::{Context, bail};
use gridreg_verifier::Policy;
use gridreg_verifier::policy::Date;

/// The ready policies, by name.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("default", include_str!("../../policies/default.toml")),
    ("strict", include_str!("../../policies/strict.toml")),
    ("http-proxy", include_str!("../../policies/http-proxy.toml")),
    ("ci", include_str!("../../policies/ci.toml")),
];

/// Loads `spec`: an existing file wins; otherwise a built-in name. A directory never is a policy
/// file: `--policy ci` in a repository with a `ci/` folder (this one has) is the built-in `ci`.
pub fn load(spec: &str) -> anyhow::Result<Policy> {
    let path = std::path::Path::new(spec);
    let built_in = BUILT_IN.iter().find(|(name, _)| *name == spec);
    if path.exists() && !(built_in.is_some() && path.is_dir()) {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read policy `{spec}`"))?;
        return Ok(Policy::parse(&text, spec)?);
    }
    if let Some((name, text)) = built_in {
        return Ok(Policy::parse(text, &format!("<built-in policy {name}>"))?);
    }
    let names: Vec<&str> = BUILT_IN.iter().map(|(n, _)| *n).collect();
    bail!(
        "no policy file `{spec}`, and no built-in policy of that name (built-in: {})",
        names.join(", ")
    )
}

/// The date exemption expiry is judged at: `--today` when given, otherwise today (UTC).
pub fn today(given: Option<&str>) -> anyhow::Result<Date> {
    match given {
        Some(t) => Date::parse(t)
            .map_err(anyhow::Error::msg)
            .context("--today"),
        None => {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            Ok(Date::from_unix_seconds(
                i64::try_from(secs).unwrap_or(i64::MAX),
            ))
        }
    }
}
