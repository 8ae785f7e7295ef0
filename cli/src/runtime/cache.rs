//! The compiled-code cache: a component compiled once is stored, keyed by its content digest and
//! the engine's compatibility hash, so later runs skip Cranelift. An entry carries its own key
//! (so it is bound to the component and engine it was compiled for, whatever its file is called)
//! and a SHA-256 of its payload, both checked before wasmtime is handed the bytes; an entry that
//! fails either check is rebuilt from the component's bytes.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use gridreg_protocol::Digest;
use sha2::{Digest as _, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// First bytes of every entry; the version changes whenever the layout below does. Layout:
/// `MAGIC || key (32 bytes) || SHA-256(payload) (32 bytes) || payload`.
const MAGIC: &[u8; 16] = b"gridreg-cwasm-2\n";

/// Where entries live: `$GRIDREG_CACHE_DIR`, else `$XDG_CACHE_HOME/gridreg/compiled`, else
/// `$HOME/.cache/gridreg/compiled`. `None` when none of those is set.
pub fn default_dir() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = var("GRIDREG_CACHE_DIR") {
        return Some(dir);
    }
    let base = var("XDG_CACHE_HOME").or_else(|| var("HOME").map(|h| h.join(".cache")))?;
    Some(base.join("gridreg").join("compiled"))
}

/// Feeds `Hash` output into SHA-256, so the key is stable across runs and processes (std's
/// hashers promise neither).
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        // Unused: the key is the full SHA-256 from `finalize`.
        0
    }
}

/// The entry key for the component's `digest` under this engine's settings: its file name (in
/// hex) and the first thing the entry holds.
fn key_bytes(engine: &Engine, digest: &Digest) -> [u8; 32] {
    let mut h = ShaHasher(Sha256::new());
    h.write(MAGIC);
    h.write(digest.to_string().as_bytes());
    engine.precompile_compatibility_hash().hash(&mut h);
    h.0.finalize().into()
}

/// The entry name for the component's `digest` under this engine's settings.
#[cfg(test)]
fn key(engine: &Engine, digest: &Digest) -> String {
    hex::encode(key_bytes(engine, digest))
}

/// What happened when a component was looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Loaded from a valid entry.
    Hit,
    /// No entry: compiled and stored.
    Miss,
    /// An entry existed but failed its check (named reason): compiled and replaced.
    Rebuilt(String),
    /// Compiled, but the entry could not be written (reason): the run goes on without caching.
    NotStored(String),
}

/// Loads the component from the cache or compiles (and stores) it.
pub fn load_or_compile(
    engine: &Engine,
    dir: Option<&Path>,
    digest: &Digest,
    wasm: &[u8],
) -> wasmtime::Result<(Component, Lookup)> {
    let Some(dir) = dir else {
        return Ok((
            Component::new(engine, wasm)?,
            Lookup::NotStored("no cache directory ($HOME is not set)".to_string()),
        ));
    };
    let key = key_bytes(engine, digest);
    let path = dir.join(format!("{}.cwasm", hex::encode(key)));
    let mut problem = None;
    match std::fs::read(&path) {
        Ok(entry) => match check(&entry, &key) {
            Ok(payload) => match deserialize(engine, payload) {
                Ok(c) => return Ok((c, Lookup::Hit)),
                Err(e) => problem = Some(format!("wasmtime refused it: {e}")),
            },
            Err(why) => problem = Some(why),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => problem = Some(format!("cannot read it: {e}")),
    }
    let serialized = engine.precompile_component(wasm)?;
    // Load from the bytes just produced, not from the file, so what runs never depends on
    // whether the write below succeeds.
    let component = deserialize(engine, &serialized)?;
    let lookup = match store(&path, &key, &serialized) {
        Ok(()) => match problem {
            Some(p) => Lookup::Rebuilt(format!("{}: {p}", path.display())),
            None => Lookup::Miss,
        },
        Err(e) => Lookup::NotStored(format!("cannot write {}: {e}", path.display())),
    };
    Ok((component, lookup))
}

/// Splits an entry into its payload after checking the magic, that the entry was made for `key`
/// (this component under this engine), and the payload's SHA-256.
fn check<'a>(entry: &'a [u8], key: &[u8; 32]) -> Result<&'a [u8], String> {
    let header = MAGIC.len() + 64;
    if entry.len() < header || &entry[..MAGIC.len()] != MAGIC {
        return Err(format!(
            "expected a gridreg cache entry ({} header bytes), found {} bytes without one",
            header,
            entry.len()
        ));
    }
    let (made_for, rest) = entry[MAGIC.len()..].split_at(32);
    if made_for != key {
        return Err(format!(
            "the entry was compiled for another component or engine (key {}, expected {}); its file was renamed or copied",
            hex::encode(made_for),
            hex::encode(key)
        ));
    }
    let (expected, payload) = rest.split_at(32);
    // Exactly 32 bytes, by the length check above.
    let expected = Digest(<[u8; 32]>::try_from(expected).unwrap_or_default());
    let found = Digest::of(payload);
    if found != expected {
        return Err(format!(
            "payload hash mismatch: expected {expected}, found {found}"
        ));
    }
    Ok(payload)
}

/// Turns serialized code back into a component.
///
/// Sound because the bytes are either what `Engine::precompile_component` returned a moment ago
/// in this process, or an entry whose SHA-256 matched the hash written beside it when this
/// program stored exactly those bytes for this component's digest and this engine's
/// compatibility hash (the key inside the entry), and wasmtime still checks its own header for
/// version and settings. The cache directory belongs to
/// the user, so only that user could have planted an entry, and they can already run anything.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, payload: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: see the function's documentation: the payload is code this program produced and
    // whose integrity was checked just before this call.
    unsafe { Component::deserialize(engine, payload) }
}

/// Writes an entry atomically: a temporary file in the same directory, synced, then renamed over
/// the final name, so a reader never sees half an entry and concurrent writers cannot interleave.
fn store(path: &Path, key: &[u8; 32], payload: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(
        ".{}.{}.{nonce}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("entry"),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(MAGIC)?;
        f.write_all(key)?;
        f.write_all(&Digest::of(payload).0)?;
        f.write_all(payload)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const WAT: &str = "(component (core module (func (export \"f\"))))";

    #[test]
    fn miss_then_hit_then_corrupt_is_rebuilt() {
        let engine = Engine::default();
        let wasm = wat::parse_str(WAT).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let digest = Digest::of(&wasm);

        let (_, l) = load_or_compile(&engine, Some(dir.path()), &digest, &wasm).unwrap();
        assert_eq!(l, Lookup::Miss);
        let (_, l) = load_or_compile(&engine, Some(dir.path()), &digest, &wasm).unwrap();
        assert_eq!(l, Lookup::Hit);

        let path = dir.path().join(format!("{}.cwasm", key(&engine, &digest)));
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let (_, l) = load_or_compile(&engine, Some(dir.path()), &digest, &wasm).unwrap();
        match l {
            Lookup::Rebuilt(why) => assert!(why.contains("hash mismatch"), "{why}"),
            other => panic!("expected a rebuild, got {other:?}"),
        }
        let (_, l) = load_or_compile(&engine, Some(dir.path()), &digest, &wasm).unwrap();
        assert_eq!(l, Lookup::Hit);

        std::fs::write(&path, b"short").unwrap();
        let (_, l) = load_or_compile(&engine, Some(dir.path()), &digest, &wasm).unwrap();
        assert!(
            matches!(l, Lookup::Rebuilt(ref w) if w.contains("header")),
            "{l:?}"
        );
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    /// Someone with write access to the cache directory (a shared or restored CI cache) copies
    /// one component's entry over another's name: the run must not execute the other code.
    #[test]
    fn an_entry_copied_over_another_components_name_is_rebuilt() {
        let engine = Engine::default();
        let dir = tempfile::tempdir().unwrap();
        let a = wat::parse_str("(component (core module (func (export \"a\"))) (core instance (instantiate 0)) (func (export \"run-a\") (canon lift (core func 0 \"a\"))))").unwrap();
        let b = wat::parse_str("(component (core module (func (export \"b\"))) (core instance (instantiate 0)) (func (export \"run-b\") (canon lift (core func 0 \"b\"))))").unwrap();
        let (da, db) = (Digest::of(&a), Digest::of(&b));
        load_or_compile(&engine, Some(dir.path()), &da, &a).unwrap();
        load_or_compile(&engine, Some(dir.path()), &db, &b).unwrap();
        let path = |d: &Digest| dir.path().join(format!("{}.cwasm", key(&engine, d)));
        std::fs::copy(path(&db), path(&da)).unwrap();

        let (component, l) = load_or_compile(&engine, Some(dir.path()), &da, &a).unwrap();
        match l {
            Lookup::Rebuilt(why) => assert!(why.contains("another component"), "{why}"),
            other => panic!("expected a rebuild, got {other:?}"),
        }
        let exports: Vec<String> = component
            .component_type()
            .exports(&engine)
            .map(|(name, _)| name.to_string())
            .collect();
        assert_eq!(exports, ["run-a"]);
        // The rebuilt entry is A's again.
        let (_, l) = load_or_compile(&engine, Some(dir.path()), &da, &a).unwrap();
        assert_eq!(l, Lookup::Hit);
    }

    #[test]
    fn key_depends_on_digest_and_engine_settings() {
        let a = Engine::default();
        let mut cfg = wasmtime::Config::new();
        cfg.consume_fuel(true);
        let b = Engine::new(&cfg).unwrap();
        let (d0, d1) = (Digest([0; 32]), Digest([1; 32]));
        assert_eq!(key(&a, &d0), key(&a, &d0));
        assert_ne!(key(&a, &d0), key(&a, &d1));
        assert_ne!(key(&a, &d0), key(&b, &d0));
    }
}
