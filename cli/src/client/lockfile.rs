//! `gridreg.lock`: which exact release of each package a project pulled (version, digest, log
//! index), so later pulls can refuse anything else (`--locked`) and measure capability drift
//! against the locked version.
//!
//! ```toml
//! # Written by `gridreg pull`. Commit it.
//! version = 1
//!
//! [[package]]
//! name = "acme:auth"
//! version = "1.2.0"
//! digest = "sha256:..."
//! log_index = 7
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use super::fsutil;

pub const FILE_NAME: &str = "gridreg.lock";
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockFile {
    pub version: u32,
    #[serde(default, rename = "package")]
    pub packages: Vec<Locked>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Locked {
    pub name: String,
    pub version: String,
    pub digest: String,
    pub log_index: u64,
}

impl Default for LockFile {
    fn default() -> Self {
        LockFile {
            version: FORMAT_VERSION,
            packages: Vec::new(),
        }
    }
}

/// The lockfile in the current directory, or `path` when given.
pub fn path(flag: Option<&Path>) -> PathBuf {
    flag.map_or_else(|| PathBuf::from(FILE_NAME), Path::to_path_buf)
}

impl LockFile {
    /// Reads a lockfile; a missing file is an empty one.
    pub fn load(path: &Path) -> anyhow::Result<LockFile> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LockFile::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let lock: LockFile = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
        if lock.version != FORMAT_VERSION {
            bail!(
                "{}: expected lockfile version {FORMAT_VERSION}, found {}",
                path.display(),
                lock.version
            );
        }
        let mut seen = std::collections::HashSet::new();
        for p in &lock.packages {
            if !seen.insert(p.name.as_str()) {
                bail!("{}: package {} is locked twice", path.display(), p.name);
            }
        }
        Ok(lock)
    }

    pub fn get(&self, package: &str) -> Option<&Locked> {
        self.packages.iter().find(|p| p.name == package)
    }

    /// Records `entry`, replacing the package's previous entry; entries stay sorted by name.
    pub fn set(&mut self, entry: Locked) {
        self.packages.retain(|p| p.name != entry.name);
        self.packages.push(entry);
        self.packages.sort_by(|a, b| a.name.cmp(&b.name));
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let body = toml::to_string_pretty(self).context("encoding the lockfile")?;
        let text = format!("# Written by `gridreg pull`. Commit it.\n{body}");
        fsutil::write_atomic(path, text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn round_trip_and_strictness() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FILE_NAME);
        let mut lock = LockFile::load(&p).unwrap();
        lock.set(Locked {
            name: "b:x".into(),
            version: "1.0.0".into(),
            digest: format!("sha256:{}", "0".repeat(64)),
            log_index: 3,
        });
        lock.set(Locked {
            name: "a:y".into(),
            version: "2.0.0".into(),
            digest: format!("sha256:{}", "1".repeat(64)),
            log_index: 5,
        });
        lock.set(Locked {
            name: "b:x".into(),
            version: "1.1.0".into(),
            digest: format!("sha256:{}", "2".repeat(64)),
            log_index: 9,
        });
        lock.save(&p).unwrap();
        let back = LockFile::load(&p).unwrap();
        assert_eq!(back, lock);
        assert_eq!(back.packages[0].name, "a:y");
        assert_eq!(back.get("b:x").unwrap().version, "1.1.0");

        std::fs::write(&p, "version = 2\n").unwrap();
        assert!(
            LockFile::load(&p)
                .unwrap_err()
                .to_string()
                .contains("expected lockfile version 1")
        );
        std::fs::write(
            &p,
            "version = 1\n[[package]]\nname = \"a:b\"\nversion = \"1.0.0\"\ndigest = \"d\"\nlog_index = 1\n[[package]]\nname = \"a:b\"\nversion = \"1.0.0\"\ndigest = \"d\"\nlog_index = 1\n",
        )
        .unwrap();
        assert!(
            LockFile::load(&p)
                .unwrap_err()
                .to_string()
                .contains("locked twice")
        );
    }
}
