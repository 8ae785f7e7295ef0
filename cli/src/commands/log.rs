//! `gridreg log checkpoint|verify|monitor`: look at the registry's transparency log from the
//! client's side. `monitor` replays the whole log and reports what a security team wants to
//! know: who was granted keys, which releases gained capabilities, and any record that should
//! not be there.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use gridreg_protocol::bundle::{MAP_ENTRY_TYPE, MapEntry};
use gridreg_protocol::map::{HeadMap, MapKey};
use gridreg_protocol::merkle::{Hash, append_leaves, leaf_hash, tree_hash};
use gridreg_protocol::{Chains, Head, NamespaceState, Record};
use serde::Serialize;

use crate::client::{remote, tiles, trust, verify};
use crate::commands::RegistryOpt;
use crate::exit::{Failure, Status};

/// Inspect and audit the registry's transparency log.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  gridreg log checkpoint                       print the latest checkpoint, verified
  gridreg log verify                           prove the log only grew since this client last looked
  gridreg log monitor                          replay and audit the whole log
  gridreg log monitor --namespace acme --from 1200 --json
  gridreg log monitor --tiles                  the same, read through the C2SP tiles only

Exit status: 0 fine; 1 a check failed (fork, rollback, bad signature, a checkpoint timestamped
longer ago than max_age) or monitor found something;
2 bad input or the registry is unreachable.")]
pub struct Opts {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Debug, Subcommand)]
pub enum Action {
    /// Print the latest checkpoint after checking its signature and consistency.
    Checkpoint(Common),
    /// Check consistency from the stored checkpoint to the registry's latest and store it.
    Verify(Common),
    /// Replay the log: verify every entry's inclusion and signatures, recompute every release's
    /// import/export lines from its bytes, and report keys granted, capability escalation
    /// between consecutive versions, records signed by unexpected keys, and records whose `prev`
    /// is not their chain's head (exit 1 on findings).
    Monitor(Monitor),
}

#[derive(Debug, Args)]
pub struct Common {
    #[command(flatten)]
    pub registry: RegistryOpt,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct Monitor {
    #[command(flatten)]
    pub common: Common,
    /// Report only on this namespace (the whole log is still replayed).
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Report only on entries from this index on (earlier ones are replayed, not re-audited).
    #[arg(long, value_name = "INDEX", default_value_t = 0)]
    pub from: u64,
    /// Read the log through its C2SP tlog-tiles only (`/checkpoint`, `/tile/...`), checking
    /// every tile against the entries and the tree computed from them.
    #[arg(long)]
    pub tiles: bool,
}

impl Opts {
    pub fn run(self) -> anyhow::Result<Status> {
        match self.action {
            Action::Checkpoint(c) => checkpoint(&c, true),
            Action::Verify(c) => checkpoint(&c, false),
            Action::Monitor(m) => monitor(&m),
        }
    }
}

fn checkpoint(c: &Common, print_note: bool) -> anyhow::Result<Status> {
    let session = trust::connect(c.registry.get())?;
    let (cp, outcome, age) = verify::current_checkpoint(&session, &mut verify::Timings::default())?;
    if c.json {
        use base64::Engine as _;
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "origin": session.origin(),
                "size": cp.size(),
                "root": base64::engine::general_purpose::STANDARD.encode(cp.root()),
                "checkpoint": cp.note,
                "consistency": outcome.describe(cp.size()),
                "age_seconds": age.as_secs(),
            }))?
        );
    } else if print_note {
        print!("{}", cp.note);
        eprintln!(
            "verified: signed by the pinned log key; timestamped {} ago; {}",
            trust::human(age),
            outcome.describe(cp.size())
        );
    } else {
        println!(
            "log {} verified: timestamped {} ago; {}",
            session.origin(),
            trust::human(age),
            outcome.describe(cp.size())
        );
    }
    Ok(Status::Ok)
}

#[derive(Debug, Serialize)]
struct Finding {
    index: u64,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    package: Option<String>,
    message: String,
}

#[derive(Debug, Serialize)]
struct Grant {
    index: u64,
    namespace: String,
    op: String,
    key: String,
    role: String,
}

fn monitor(m: &Monitor) -> anyhow::Result<Status> {
    let session = trust::connect(m.common.registry.get())?;
    let path = if m.tiles {
        "/checkpoint"
    } else {
        "/v1/log/checkpoint"
    };
    let (cp, outcome, _) =
        verify::current_checkpoint_at(&session, path, &mut verify::Timings::default())?;
    let size = cp.size();
    let (entries, tiles_read) = if m.tiles {
        let log = tiles::read(&session.api, size)?;
        (log.entries, Some(log.fetched))
    } else {
        (remote::entries(&session.api, 0, size)?, None)
    };

    // Every entry's inclusion at once: the leaves must hash to the signed root.
    let leaves: Vec<Hash> = entries
        .iter()
        .map(|e| leaf_hash(e.body.as_bytes()))
        .collect();
    let stored = append_leaves(0, &leaves, &Vec::<Hash>::new())
        .map_err(|e| anyhow::anyhow!("building the tree: {e}"))?;
    let root = tree_hash(size, &stored).map_err(|e| anyhow::anyhow!("tree hash: {e}"))?;
    if &root != cp.root() {
        return Err(Failure(format!(
            "inclusion: the {size} entries the registry served do not hash to the root of its signed checkpoint"
        ))
        .into());
    }

    let wanted = |ns: &str| m.namespace.as_deref().is_none_or(|w| w == ns);
    let mut state = NamespaceState::new();
    let mut chains = Chains::new();
    let mut findings = Vec::new();
    let mut grants = Vec::new();
    // The capabilities of the previous release of each package, in log order.
    let mut last_caps: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
    let mut releases = 0usize;
    // The head map recomputed by replay (docs/protocol.md §6.8): every map entry must commit to
    // exactly it. Heads wait in `pending` until the next map entry needs the root.
    let mut map = HeadMap::new();
    let mut pending: Vec<(MapKey, Head)> = Vec::new();
    let mut map_entries = 0usize;
    for e in &entries {
        let report = e.index >= m.from;
        if is_map_entry(&e.body) {
            map_entries += 1;
            map.apply_keyed(pending.drain(..))
                .map_err(|err| anyhow::anyhow!("recomputing the head map: {err}"))?;
            let problem = match MapEntry::verify(e.body.as_bytes(), &session.log_key) {
                Err(err) => Some(format!("the map entry does not verify: {err}")),
                Ok(entry) if entry.size != e.index => Some(format!(
                    "the map entry says size {}, expected its own log index {}",
                    entry.size, e.index
                )),
                Ok(entry) if entry.root != map.root() => Some(format!(
                    "the map entry commits to root {}, the log's chain heads give {}",
                    hex::encode(entry.root),
                    hex::encode(map.root())
                )),
                Ok(_) => None,
            };
            if let Some(message) = problem
                && report
            {
                findings.push(Finding {
                    index: e.index,
                    kind: "map-mismatch",
                    package: None,
                    message,
                });
            }
            continue;
        }
        let applied = state.apply_entry(e.index, e.body.as_bytes());
        let (record, _signers) = match applied {
            Ok(r) => r,
            Err(err) => {
                let ns = gridreg_protocol::Note::parse(e.body.as_bytes())
                    .ok()
                    .and_then(|n| Record::from_note(&n).ok())
                    .map(|r| {
                        // A record the rules refuse is still its chain's head.
                        pending
                            .push((MapKey::of(&r.chain()), Head::of(e.index, e.body.as_bytes())));
                        (
                            r.namespace().to_string(),
                            r.package().map(ToString::to_string),
                        )
                    });
                if report && ns.as_ref().is_none_or(|(n, _)| wanted(n)) {
                    findings.push(Finding {
                        index: e.index,
                        kind: "unexpected-signer",
                        package: ns.and_then(|(_, p)| p),
                        message: err.to_string(),
                    });
                }
                continue;
            }
        };
        let ns = record.namespace().to_string();
        // Every record names its chain's head (a replay, a fork or a gap shows up here); one
        // that does not is reported and the chain goes on from it, as the registry stored it.
        if let Err(err) = chains.check(&record)
            && report
            && wanted(&ns)
        {
            findings.push(Finding {
                index: e.index,
                kind: "broken-chain",
                package: record.package().map(ToString::to_string),
                message: err.to_string(),
            });
        }
        let head = Head::of(e.index, e.body.as_bytes());
        chains.set(record.chain(), head);
        pending.push((MapKey::of(&record.chain()), head));
        match &record {
            Record::Namespace(n) => {
                if report && wanted(&ns) {
                    grants.push(Grant {
                        index: e.index,
                        namespace: ns.clone(),
                        op: n.op.to_string(),
                        key: n.key.to_string(),
                        role: n.role.to_string(),
                    });
                }
            }
            Record::Yank(_) => {}
            Record::Release(r) => {
                if !report || !wanted(&ns) {
                    continue;
                }
                releases += 1;
                let package = r.package.to_string();
                let name = format!("{package}@{}", r.version);
                let mut bytes = Vec::new();
                let got = session
                    .api
                    .download(
                        &format!("/v1/content/{}", r.digest),
                        &mut bytes,
                        r.size,
                        r.size,
                    )
                    .with_context(|| format!("downloading {name} (log index {})", e.index))?;
                if got.digest != r.digest {
                    findings.push(Finding {
                        index: e.index,
                        kind: "content-mismatch",
                        package: Some(package.clone()),
                        message: format!(
                            "{name}: the served bytes hash to {}, the record signs {}",
                            got.digest, r.digest
                        ),
                    });
                    continue;
                }
                let audit = match gridreg_verifier::audit_with_digest(&bytes, r.digest) {
                    Ok(a) => a,
                    Err(err) => {
                        findings.push(Finding {
                            index: e.index,
                            kind: "invalid-component",
                            package: Some(package.clone()),
                            message: format!("{name}: {err}"),
                        });
                        continue;
                    }
                };
                if let Some(diff) = audit.surface_diff(&r.imports, &r.exports) {
                    findings.push(Finding {
                        index: e.index,
                        kind: "surface-mismatch",
                        package: Some(package.clone()),
                        message: format!("{name}: {diff}"),
                    });
                }
                let caps: BTreeSet<String> = audit
                    .capabilities
                    .iter()
                    .map(|c| c.as_str().to_string())
                    .collect();
                if let Some((prev, before)) = last_caps.get(&package) {
                    let new: Vec<&String> = caps.difference(before).collect();
                    if !new.is_empty() {
                        findings.push(Finding {
                            index: e.index,
                            kind: "capability-escalation",
                            package: Some(package.clone()),
                            message: format!(
                                "{name} gained {} over {prev}",
                                new.iter()
                                    .map(|s| s.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        });
                    }
                }
                last_caps.insert(package, (r.version.to_string(), caps));
            }
        }
    }

    // Every checkpoint ends in a map entry, so a client can prove chain heads at it.
    if let Some(last) = entries.last()
        && !is_map_entry(&last.body)
    {
        findings.push(Finding {
            index: last.index,
            kind: "map-mismatch",
            package: None,
            message: format!(
                "the checkpoint of size {size} does not end in a map entry (log index {} is not one)",
                last.index
            ),
        });
    }

    if m.common.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "origin": session.origin(),
                "size": size,
                "map_entries_checked": map_entries,
                "consistency": outcome.describe(size),
                "releases_audited": releases,
                "tiles_checked": tiles_read,
                "grants": grants,
                "findings": findings,
            }))?
        );
    } else {
        println!(
            "log {}: {size} entries, every one included in the signed checkpoint; {}",
            session.origin(),
            outcome.describe(size)
        );
        if let Some(n) = tiles_read {
            println!("  read through {n} tiles and entry bundles, every one checked");
        }
        println!("  {releases} releases re-audited from their bytes");
        println!("  {map_entries} map entries recomputed from the chain heads");
        for g in &grants {
            println!(
                "  key    #{:<6} {} {} {} {}",
                g.index, g.namespace, g.op, g.role, g.key
            );
        }
        for f in &findings {
            println!("  FINDING #{:<5} {:<22} {}", f.index, f.kind, f.message);
        }
        if findings.is_empty() {
            println!("  no findings");
        }
    }
    Ok(if findings.is_empty() {
        Status::Ok
    } else {
        Status::Failed
    })
}

/// Whether a log entry is a map entry (its note text's first line is the map entry type); the
/// caller then verifies it as one.
fn is_map_entry(body: &str) -> bool {
    body.strip_prefix(MAP_ENTRY_TYPE)
        .is_some_and(|rest| rest.starts_with('\n'))
}
