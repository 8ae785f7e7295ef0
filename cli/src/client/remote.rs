//! The reads the client makes of the registry's API. The bodies are `protocol::api`'s, the same
//! types the registry serves; everything in them is a claim that the client checks against
//! signed records, proofs and the bytes themselves before it believes it.

use gridreg_protocol::api::{
    ChainHead, InclusionProof, LogEntries, LogEntry, PackageVersions, ReleaseInfo, decode_hashes,
};
use gridreg_protocol::name::Candidate;
use gridreg_protocol::{ChainKey, Hash, PackageName, Prev, Reference};
use serde::de::IgnoredAny;

use super::http::{Api, HttpError};

/// The versions of a package; `None` when the registry does not know it.
pub fn versions(api: &Api, package: &PackageName) -> anyhow::Result<Option<PackageVersions>> {
    match api.get_json::<PackageVersions>(&format!("/v1/packages/{package}")) {
        Ok(v) => Ok(Some(v)),
        Err(e)
            if e.downcast_ref::<HttpError>()
                .is_some_and(HttpError::is_not_found) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The version `reference` means among the registry's list (yanked excluded from ranges).
pub fn resolve(api: &Api, reference: &Reference) -> anyhow::Result<String> {
    let Some(list) = versions(api, &reference.package)? else {
        anyhow::bail!(
            "the registry at {} has no package {}",
            api.base(),
            reference.package
        );
    };
    let candidates: Vec<Candidate> = list
        .versions
        .iter()
        .filter_map(|v| {
            semver::Version::parse(&v.version)
                .ok()
                .map(|version| Candidate {
                    version,
                    yanked: v.yanked,
                })
        })
        .collect();
    match reference.resolve(&candidates) {
        Some(c) => Ok(c.version.to_string()),
        None => anyhow::bail!(
            "no release of {} matches `{reference}`; published: {}",
            reference.package,
            listed_versions(list.versions.iter().map(|v| (v.version.as_str(), v.yanked)))
        ),
    }
}

/// Versions for a message, each marked when yanked: `1.0.0, 1.1.0 (yanked)`, or `none`.
pub fn listed_versions<V: std::fmt::Display>(versions: impl Iterator<Item = (V, bool)>) -> String {
    let listed: Vec<String> = versions
        .map(|(v, yanked)| {
            if yanked {
                format!("{v} (yanked)")
            } else {
                v.to_string()
            }
        })
        .collect();
    if listed.is_empty() {
        "none".to_string()
    } else {
        listed.join(", ")
    }
}

/// One release. The client audits the bytes itself, so the registry's audit report is skipped.
pub fn release(
    api: &Api,
    package: &PackageName,
    version: &str,
) -> anyhow::Result<ReleaseInfo<IgnoredAny>> {
    api.get_json(&format!("/v1/packages/{package}/{version}"))
}

/// The head of `chain` as the registry reports it: the `prev` a new record must name. Not
/// verified: a wrong head only gets the record refused (`stale_prev`), never accepted wrongly.
pub fn chain_head(api: &Api, chain: &ChainKey) -> anyhow::Result<Prev> {
    let path = match chain {
        ChainKey::Namespace(ns) => format!("/v1/chains/namespace/{ns}"),
        ChainKey::Package(p) => format!("/v1/chains/package/{p}"),
    };
    let h: ChainHead = api.get_json(&path)?;
    if h.chain != chain.to_string() {
        anyhow::bail!("asked for the head of {chain}, got one for {}", h.chain);
    }
    Prev::parse(&h.head).map_err(|e| anyhow::anyhow!("the head of {chain}: {e}"))
}

/// An inclusion proof for `index` in the tree of `size`.
pub fn inclusion_proof(api: &Api, index: u64, size: u64) -> anyhow::Result<Vec<Hash>> {
    let p: InclusionProof = api.get_json(&format!(
        "/v1/log/proof/inclusion?index={index}&size={size}"
    ))?;
    if p.index != index || p.size != size {
        anyhow::bail!(
            "asked for the inclusion proof of {index} in {size}, got one for {} in {}",
            p.index,
            p.size
        );
    }
    decode_hashes(&p.hashes).map_err(|e| anyhow::anyhow!("inclusion proof of {index}: {e}"))
}

/// Log entries `start <= index < end`, following the registry's paging.
pub fn entries(api: &Api, start: u64, end: u64) -> anyhow::Result<Vec<LogEntry>> {
    let mut out = Vec::new();
    let mut next = start;
    while next < end {
        let page: LogEntries = api.get_json(&format!("/v1/log/entries?start={next}&end={end}"))?;
        if page.entries.is_empty() {
            anyhow::bail!("the registry returned no log entries from {next} (asked up to {end})");
        }
        for e in page.entries {
            if e.index != next {
                anyhow::bail!(
                    "expected log entry {next}, the registry sent entry {}",
                    e.index
                );
            }
            next += 1;
            out.push(e);
            if next >= end {
                break;
            }
        }
    }
    Ok(out)
}
