//! The chains a client verified, kept to continue from (docs/protocol.md §8.6.5 and §9.3): for
//! each package this client proved, the heads of its package chain and its namespace chain as
//! of a checkpoint, and every record of both with the keys that verified it. The next
//! `pull --verify` of the package asks the registry only for the records above those heads,
//! checks that each chain still leads down to its held head, and replays the held records
//! without hashing or verifying them again.
//!
//! One file per package and log, under the state directory beside the trusted checkpoint and
//! as trusted as it. A file that does not parse, or is of another package, is ignored (the pull
//! fetches and proves the whole chains again) and rewritten; a registry whose chain no longer
//! passes through a held head is refused, never worked around by fetching everything.
//!
//! Format (`gridreg held chains v1`): header lines `package <ns:name>`, `size <checkpoint
//! size>`, `package-head <index>:<hex>|none`, `namespace-head <index>:<hex>|none`, then `key
//! <verifier key>` lines (numbered from 0), then one `entry <index> <key numbers, comma-separated>
//! <leaf length>` line per record in increasing log index, each followed by exactly that many
//! bytes of leaf and a newline.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use gridreg_protocol::bundle::{Held, HeldEntry};
use gridreg_protocol::{Head, PackageName, Prev, VerifierKey};

use super::fsutil;

const HEADER: &str = "gridreg held chains v1";

/// The file for `package` under `dir` (the log's directory of held chains).
pub fn path(dir: &Path, package: &PackageName) -> PathBuf {
    // A package name is `ns:name` of lowercase letters, digits and hyphens; `+` keeps the
    // file name portable.
    dir.join(package.to_string().replace(':', "+"))
}

/// The held chains of `package` at `path`, or `None` when there are none or the file does not
/// parse or is of another package.
pub fn load(path: &Path, package: &PackageName) -> Option<Held> {
    let bytes = std::fs::read(path).ok()?;
    let held = parse(&bytes)?;
    (&held.package == package).then_some(held)
}

/// Writes `held` atomically. A failure to write is not an error of the command: the next pull
/// proves the whole chains again.
pub fn save(path: &Path, held: &Held) {
    if let Err(e) = fsutil::write_atomic(path, &render(held)) {
        eprintln!(
            "warning: could not save the verified chains {}: {e:#}",
            path.display()
        );
    }
}

fn head_text(h: Option<Head>) -> String {
    Prev::after(h).to_string()
}

fn render(held: &Held) -> Vec<u8> {
    let mut keys: Vec<&VerifierKey> = Vec::new();
    let mut head = format!(
        "{HEADER}\npackage {}\nsize {}\npackage-head {}\nnamespace-head {}\n",
        held.package,
        held.checkpoint_size,
        head_text(held.package_head),
        head_text(held.namespace_head)
    );
    let mut body = String::new();
    for e in &held.entries {
        let ids: Vec<String> = e
            .signers
            .iter()
            .map(|k| {
                let n = keys.iter().position(|x| *x == k).unwrap_or_else(|| {
                    keys.push(k);
                    keys.len() - 1
                });
                n.to_string()
            })
            .collect();
        let _ = writeln!(
            body,
            "entry {} {} {}\n{}",
            e.index,
            ids.join(","),
            e.leaf.len(),
            e.leaf
        );
    }
    for k in keys {
        let _ = writeln!(head, "key {k}");
    }
    head.push_str(&body);
    head.into_bytes()
}

fn parse(bytes: &[u8]) -> Option<Held> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut rest = text;
    let mut line = || -> Option<&str> {
        let (l, r) = rest.split_once('\n')?;
        rest = r;
        Some(l)
    };
    if line()? != HEADER {
        return None;
    }
    let package = PackageName::parse(line()?.strip_prefix("package ")?).ok()?;
    let checkpoint_size = line()?.strip_prefix("size ")?.parse().ok()?;
    let package_head = Prev::parse(line()?.strip_prefix("package-head ")?)
        .ok()?
        .head();
    let namespace_head = Prev::parse(line()?.strip_prefix("namespace-head ")?)
        .ok()?
        .head();
    let mut keys: Vec<VerifierKey> = Vec::new();
    let mut entries: Vec<HeldEntry> = Vec::new();
    while !rest.is_empty() {
        let (l, r) = rest.split_once('\n')?;
        rest = r;
        if let Some(k) = l.strip_prefix("key ") {
            if !entries.is_empty() {
                return None;
            }
            keys.push(VerifierKey::parse(k).ok()?);
            continue;
        }
        let mut fields = l.strip_prefix("entry ")?.split(' ');
        let index: u64 = fields.next()?.parse().ok()?;
        let ids = fields.next()?;
        let len: usize = fields.next()?.parse().ok()?;
        if fields.next().is_some() || entries.last().is_some_and(|e| e.index >= index) {
            return None;
        }
        let signers = if ids.is_empty() {
            Vec::new()
        } else {
            ids.split(',')
                .map(|n| n.parse::<usize>().ok().and_then(|n| keys.get(n).cloned()))
                .collect::<Option<Vec<_>>>()?
        };
        let leaf = rest.get(..len)?;
        rest = rest.get(len..)?.strip_prefix('\n')?;
        entries.push(HeldEntry {
            index,
            leaf: leaf.into(),
            signers,
        });
    }
    Some(Held {
        package,
        checkpoint_size,
        package_head,
        namespace_head,
        entries,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use gridreg_protocol::SignerKey;

    fn held() -> Held {
        let a = SignerKey::from_seed("alice", &[3; 32]).unwrap().verifier();
        let b = SignerKey::from_seed("bob", &[5; 32]).unwrap().verifier();
        Held {
            package: PackageName::parse("acme:auth").unwrap(),
            checkpoint_size: 12,
            package_head: Some(Head::of(9, b"nine")),
            namespace_head: None,
            entries: vec![
                HeldEntry {
                    index: 2,
                    leaf: "gridreg/namespace/v2\nline\n\n— alice sig\n".into(),
                    signers: vec![a.clone()],
                },
                HeldEntry {
                    index: 9,
                    leaf: "text\n\nentry 1 2 3\n".into(),
                    signers: vec![b, a],
                },
            ],
        }
    }

    #[test]
    fn round_trip() {
        let h = held();
        assert_eq!(parse(&render(&h)).unwrap(), h);
    }

    #[test]
    fn damaged_files_are_ignored() {
        let text = render(&held());
        for cut in [0, 10, text.len() / 2, text.len() - 1] {
            assert!(parse(&text[..cut]).is_none(), "cut at {cut}");
        }
        let mut longer = text.clone();
        longer.extend_from_slice(b"entry 1 0 3\nabc\n");
        assert!(parse(&longer).is_none(), "an index out of order");
        let s = String::from_utf8(text).unwrap();
        assert!(parse(s.replace("entry 9 1,0", "entry 9 1,7").as_bytes()).is_none());
        assert!(parse(s.replace(HEADER, "gridreg held chains v9").as_bytes()).is_none());
    }

    #[test]
    fn another_package_is_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let pkg = PackageName::parse("acme:auth").unwrap();
        let p = path(dir.path(), &pkg);
        save(&p, &held());
        assert_eq!(load(&p, &pkg), Some(held()));
        let other = PackageName::parse("acme:other").unwrap();
        assert_eq!(load(&p, &other), None);
        assert!(p.ends_with("acme+auth"));
    }
}
