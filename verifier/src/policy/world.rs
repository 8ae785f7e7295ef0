//! The WASI worlds a policy can name in `[world] target`, parsed from the WIT vendored under
//! `wit/wasi/` and compiled into the crate, so checking a world never touches the filesystem.

use std::sync::OnceLock;

use wit_parser::{Resolve, WorldKey};

use crate::taxonomy::InterfaceName;

/// The vendored WASI packages in dependency order (each only uses packages listed before it),
/// with the path they are reported under if the WIT ever fails to parse.
const VENDORED: &[(&str, &str)] = &[
    (
        "wit/wasi/io/io.wit",
        include_str!("../../../wit/wasi/io/io.wit"),
    ),
    (
        "wit/wasi/clocks/clocks.wit",
        include_str!("../../../wit/wasi/clocks/clocks.wit"),
    ),
    (
        "wit/wasi/random/random.wit",
        include_str!("../../../wit/wasi/random/random.wit"),
    ),
    (
        "wit/wasi/filesystem/filesystem.wit",
        include_str!("../../../wit/wasi/filesystem/filesystem.wit"),
    ),
    (
        "wit/wasi/sockets/sockets.wit",
        include_str!("../../../wit/wasi/sockets/sockets.wit"),
    ),
    (
        "wit/wasi/cli/cli.wit",
        include_str!("../../../wit/wasi/cli/cli.wit"),
    ),
    (
        "wit/wasi/http/http.wit",
        include_str!("../../../wit/wasi/http/http.wit"),
    ),
];

/// One vendored world and everything it imports once `include`s and `use`s are elaborated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendoredWorld {
    /// `ns:pkg/world` without version.
    pub id: String,
    pub version: Option<String>,
    /// Import names as a component would spell them: `wasi:io/poll@0.2.12`, or a plain name for
    /// functions and unnamed interfaces.
    pub imports: Vec<String>,
    /// The interface imports split once into unversioned name and version, as every check of
    /// every import compares against them.
    offers: Vec<(String, Option<String>)>,
}

impl VendoredWorld {
    /// `ns:pkg/world@version`.
    pub fn full_name(&self) -> String {
        match &self.version {
            Some(v) => format!("{}@{v}", self.id),
            None => self.id.clone(),
        }
    }

    /// Whether a component import fits this world: the same interface, at a version compatible
    /// with the world's (see [`versions_compatible`]). Plain names must match exactly.
    pub fn admits(&self, import: &str) -> bool {
        let Some(wanted) = InterfaceName::parse(import) else {
            return self.imports.iter().any(|i| i == import);
        };
        let id = wanted.unversioned();
        self.offers.iter().any(|(offered, version)| {
            *offered == id
                && match (version.as_deref(), wanted.version) {
                    (Some(a), Some(b)) => versions_compatible(a, b),
                    (None, None) => true,
                    _ => false,
                }
        })
    }
}

/// Semver compatibility as the component model applies it to WASI: `1.x` with `1.y`, and for
/// `0.x` releases the same major and minor (`0.2.6` with `0.2.0`). Pre-releases only match
/// themselves, as nothing is promised between them; unparseable versions compare as text.
pub fn versions_compatible(a: &str, b: &str) -> bool {
    match (semver::Version::parse(a), semver::Version::parse(b)) {
        (Ok(a), Ok(b)) => {
            if !a.pre.is_empty() || !b.pre.is_empty() {
                (a.major, a.minor, a.patch, &a.pre) == (b.major, b.minor, b.patch, &b.pre)
            } else if a.major == 0 {
                b.major == 0 && a.minor == b.minor
            } else {
                a.major == b.major
            }
        }
        _ => a == b,
    }
}

/// Every vendored world, parsed once per process. An error here means the vendored WIT itself
/// is broken, which a test catches; it is reported, never a panic.
pub fn vendored_worlds() -> Result<&'static [VendoredWorld], String> {
    static WORLDS: OnceLock<Result<Vec<VendoredWorld>, String>> = OnceLock::new();
    WORLDS
        .get_or_init(load)
        .as_ref()
        .map(Vec::as_slice)
        .map_err(Clone::clone)
}

fn load() -> Result<Vec<VendoredWorld>, String> {
    let mut resolve = Resolve::default();
    for (path, text) in VENDORED {
        resolve
            .push_str(path, text)
            .map_err(|e| format!("vendored WIT {path} does not parse: {e:#}"))?;
    }
    let mut worlds = Vec::new();
    for (_, world) in resolve.worlds.iter() {
        let Some(pkg_id) = world.package else {
            continue;
        };
        let pkg = &resolve.packages[pkg_id].name;
        let imports = world
            .imports
            .keys()
            .map(|key| match key {
                WorldKey::Interface(id) => resolve
                    .id_of(*id)
                    .unwrap_or_else(|| resolve.name_world_key(key)),
                WorldKey::Name(name) => name.clone(),
            })
            .collect::<Vec<String>>();
        let offers = imports
            .iter()
            .filter_map(|i| InterfaceName::parse(i))
            .map(|i| (i.unversioned(), i.version.map(str::to_string)))
            .collect();
        worlds.push(VendoredWorld {
            id: format!("{}:{}/{}", pkg.namespace, pkg.name, world.name),
            version: pkg.version.as_ref().map(ToString::to_string),
            imports,
            offers,
        });
    }
    worlds.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(worlds)
}

/// Finds the vendored world a policy names (`wasi:http/proxy@0.2.0`). The version may be any
/// release compatible with the vendored one, or left out.
pub fn find_world(target: &str) -> Result<&'static VendoredWorld, String> {
    let worlds = vendored_worlds()?;
    let listing = || {
        worlds
            .iter()
            .map(VendoredWorld::full_name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(name) = InterfaceName::parse(target) else {
        return Err(format!(
            "bad world name {target:?}: expected namespace:package/world@version, e.g. \"wasi:http/proxy@0.2.0\""
        ));
    };
    let id = name.unversioned();
    let found = worlds.iter().find(|w| {
        w.id == id
            && match (name.version, &w.version) {
                (None, _) => true,
                (Some(want), Some(have)) => versions_compatible(want, have),
                (Some(_), None) => false,
            }
    });
    found.ok_or_else(|| {
        format!(
            "world {target:?} is not vendored: expected one of {} (or a compatible version)",
            listing()
        )
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn vendored_wit_parses_and_has_the_wasi_worlds() {
        let worlds = vendored_worlds().unwrap();
        let ids: Vec<&str> = worlds.iter().map(|w| w.id.as_str()).collect();
        for want in ["wasi:cli/command", "wasi:cli/imports", "wasi:http/proxy"] {
            assert!(ids.contains(&want), "{want} missing from {ids:?}");
        }
        let proxy = find_world("wasi:http/proxy@0.2.0").unwrap();
        assert!(proxy.admits("wasi:http/outgoing-handler@0.2.0"));
        assert!(proxy.admits("wasi:cli/stdout@0.2.6"));
        // Pulled in by `use` from wasi:http/types, not listed by hand in the world.
        assert!(proxy.admits("wasi:io/streams@0.2.3"));
        assert!(!proxy.admits("wasi:sockets/tcp@0.2.0"));
        assert!(!proxy.admits("wasi:filesystem/preopens@0.2.0"));
        assert!(!proxy.admits("wasi:cli/environment@0.2.0"));
        assert!(!proxy.admits("wasi:cli/stdout@0.3.0"));
        assert!(!proxy.admits("wasi:cli/stdout"));
        let command = find_world("wasi:cli/command").unwrap();
        assert!(command.admits("wasi:sockets/tcp@0.2.0"));
        assert!(command.admits("wasi:filesystem/preopens@0.2.1"));
    }

    #[test]
    fn unknown_or_incompatible_worlds_are_refused() {
        let e = find_world("wasi:http/proxy@0.3.0").unwrap_err();
        assert!(
            e.contains("not vendored") && e.contains("wasi:http/proxy@0.2."),
            "{e}"
        );
        assert!(find_world("acme:app/main@1.0.0").is_err());
        assert!(
            find_world("not a world")
                .unwrap_err()
                .contains("bad world name")
        );
    }

    #[test]
    fn version_compatibility_follows_semver_and_zero_minor() {
        assert!(versions_compatible("0.2.0", "0.2.12"));
        assert!(!versions_compatible("0.2.0", "0.3.0"));
        assert!(versions_compatible("1.0.0", "1.4.2"));
        assert!(!versions_compatible("1.0.0", "2.0.0"));
        assert!(!versions_compatible("0.2.0-rc1", "0.2.0"));
        assert!(versions_compatible("0.2.0-rc1", "0.2.0-rc1"));
        assert!(versions_compatible("weird", "weird"));
        assert!(!versions_compatible("weird", "0.2.0"));
    }
}
