//! The capability taxonomy: which class each import name falls into. The tables below are the
//! whole policy-relevant knowledge about WASI names; growing the taxonomy means adding rows here.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A capability class, e.g. `network` or `import:acme:ledger`. Serialised as its plain name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Class(String);

impl Class {
    pub const UNKNOWN: &'static str = "unknown";

    /// The class of a dependency on a non-WASI package (`import:<ns>:<pkg>`), or of a core module
    /// import from a module other than WASI (`import:<module>`).
    pub fn foreign(package: &str) -> Class {
        Class(format!("import:{package}"))
    }

    pub fn unknown() -> Class {
        Class(Self::UNKNOWN.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `Some("acme:auth")` for `import:acme:auth`.
    pub fn foreign_package(&self) -> Option<&str> {
        self.0.strip_prefix("import:")
    }

    /// Parses a class name as written in a policy; `None` when it is neither a known class nor of
    /// the `import:<package>` form.
    pub fn parse(name: &str) -> Option<Class> {
        if KNOWN_CLASSES.contains(&name) {
            return Some(Class(name.to_string()));
        }
        match name.strip_prefix("import:") {
            Some(pkg)
                if !pkg.is_empty()
                    && pkg
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-:_*.".contains(c)) =>
            {
                Some(Class(name.to_string()))
            }
            _ => None,
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Every class name with a fixed meaning, in the order documentation lists them.
pub const KNOWN_CLASSES: &[&str] = &[
    "stdio",
    "environment",
    "exit",
    "clocks",
    "random",
    "filesystem",
    "network",
    "http-outgoing",
    "logging",
    "keyvalue",
    "config",
    "blobstore",
    "nn",
    "io",
    "unknown",
];

/// How an interface name is matched within its package.
#[derive(Debug, Clone, Copy)]
enum Iface {
    /// Every interface of the package.
    Any,
    /// Exactly this interface.
    Is(&'static str),
    /// Interfaces whose name starts with this (`terminal-` matches `terminal-stdout`, ...).
    Prefix(&'static str),
}

/// Component-model imports: (package without version, interface, class). First match wins, so
/// specific rows come before package-wide ones.
const COMPONENT_TABLE: &[(&str, Iface, &str)] = &[
    ("wasi:cli", Iface::Is("stdin"), "stdio"),
    ("wasi:cli", Iface::Is("stdout"), "stdio"),
    ("wasi:cli", Iface::Is("stderr"), "stdio"),
    ("wasi:cli", Iface::Prefix("terminal-"), "stdio"),
    ("wasi:cli", Iface::Is("environment"), "environment"),
    ("wasi:cli", Iface::Is("exit"), "exit"),
    ("wasi:clocks", Iface::Any, "clocks"),
    ("wasi:random", Iface::Any, "random"),
    ("wasi:filesystem", Iface::Any, "filesystem"),
    ("wasi:sockets", Iface::Any, "network"),
    ("wasi:http", Iface::Is("outgoing-handler"), "http-outgoing"),
    // wasi:http/types only defines resources; requests leave through outgoing-handler.
    ("wasi:http", Iface::Is("types"), "io"),
    ("wasi:io", Iface::Any, "io"),
    ("wasi:logging", Iface::Any, "logging"),
    ("wasi:keyvalue", Iface::Any, "keyvalue"),
    ("wasi:config", Iface::Any, "config"),
    ("wasi:blobstore", Iface::Any, "blobstore"),
    ("wasi:nn", Iface::Any, "nn"),
];

/// WASI preview 1 (`wasi_snapshot_preview1`, and the older `wasi_unstable`) functions. Byte-stream
/// calls on an already open descriptor (`fd_read`, `fd_write`, ...) are what stdio needs, so they
/// count as stdio; reaching a file takes a preopen (`fd_prestat_*`) and `path_*`, which count as
/// filesystem.
const PREVIEW1_TABLE: &[(&str, &str)] = &[
    ("fd_read", "stdio"),
    ("fd_write", "stdio"),
    ("fd_close", "stdio"),
    ("fd_seek", "stdio"),
    ("fd_tell", "stdio"),
    ("fd_sync", "stdio"),
    ("fd_datasync", "stdio"),
    ("fd_fdstat_get", "stdio"),
    ("fd_fdstat_set_flags", "stdio"),
    ("fd_fdstat_set_rights", "stdio"),
    ("fd_", "filesystem"),
    ("path_", "filesystem"),
    ("sock_", "network"),
    ("environ_", "environment"),
    ("args_", "environment"),
    ("clock_", "clocks"),
    ("random_get", "random"),
    ("proc_exit", "exit"),
    ("proc_raise", "exit"),
    ("poll_oneoff", "io"),
    ("sched_yield", "io"),
];

/// Module names that mean WASI preview 1.
pub const PREVIEW1_MODULES: &[&str] = &["wasi_snapshot_preview1", "wasi_unstable"];

/// An interface name split into its parts: `ns:pkg/iface@version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceName<'a> {
    pub namespace: &'a str,
    pub package: &'a str,
    pub interface: &'a str,
    pub version: Option<&'a str>,
}

impl<'a> InterfaceName<'a> {
    /// Parses `ns:pkg/iface` with an optional `@version`; nested namespaces/packages
    /// (`a:b:c/d`) are accepted as the component model allows.
    pub fn parse(name: &'a str) -> Option<Self> {
        let (path, version) = match name.split_once('@') {
            Some((p, v)) if !v.is_empty() => (p, Some(v)),
            Some(_) => return None,
            None => (name, None),
        };
        let (pkg_path, interface) = path.rsplit_once('/')?;
        let (namespace, package) = pkg_path.split_once(':')?;
        let ok = |s: &str| !s.is_empty() && s.split(':').all(is_kebab);
        if !ok(namespace) || !ok(package) || !is_kebab(interface) {
            return None;
        }
        Some(InterfaceName {
            namespace,
            package,
            interface,
            version,
        })
    }

    /// `ns:pkg` without version.
    pub fn package_id(&self) -> String {
        format!("{}:{}", self.namespace, self.package)
    }

    /// `ns:pkg/iface` without version.
    pub fn unversioned(&self) -> String {
        format!("{}:{}/{}", self.namespace, self.package, self.interface)
    }
}

/// WIT kebab-case: words separated by single `-`, each starting with a letter and either all
/// lower case or all upper case (digits allowed after the first letter).
fn is_kebab(s: &str) -> bool {
    !s.is_empty()
        && s.split('-').all(|w| {
            let starts_with_letter = w.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
            let lower = w
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
            let upper = w
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
            starts_with_letter && (lower || upper)
        })
}

/// The class of a component import name such as `wasi:sockets/tcp@0.2.0`.
pub fn classify_component_import(name: &str) -> Class {
    let Some(parsed) = InterfaceName::parse(name) else {
        return Class::unknown();
    };
    let pkg = parsed.package_id();
    for (table_pkg, iface, class) in COMPONENT_TABLE {
        if *table_pkg != pkg {
            continue;
        }
        let hit = match iface {
            Iface::Any => true,
            Iface::Is(i) => parsed.interface == *i,
            Iface::Prefix(p) => parsed.interface.starts_with(p),
        };
        if hit {
            return Class((*class).to_string());
        }
    }
    Class::foreign(&pkg)
}

/// The class of a core-module import `module.field`.
pub fn classify_module_import(module: &str, field: &str) -> Class {
    if PREVIEW1_MODULES.contains(&module) {
        for (prefix, class) in PREVIEW1_TABLE {
            let hit = if prefix.ends_with('_') {
                field.starts_with(prefix)
            } else {
                field == *prefix
            };
            if hit {
                return Class((*class).to_string());
            }
        }
        return Class::unknown();
    }
    if module.is_empty() {
        return Class::unknown();
    }
    Class::foreign(module)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_imports_fall_into_their_class() {
        let cases = [
            ("wasi:cli/stdout@0.2.6", "stdio"),
            ("wasi:cli/terminal-stdout@0.2.0", "stdio"),
            ("wasi:cli/environment@0.2.0", "environment"),
            ("wasi:cli/exit@0.2.3", "exit"),
            ("wasi:clocks/monotonic-clock@0.2.0", "clocks"),
            ("wasi:random/insecure-seed@0.2.0", "random"),
            ("wasi:filesystem/preopens@0.2.0", "filesystem"),
            ("wasi:sockets/tcp@0.2.0", "network"),
            ("wasi:http/outgoing-handler@0.2.0", "http-outgoing"),
            ("wasi:http/types@0.2.0", "io"),
            ("wasi:io/streams@0.2.0", "io"),
            ("wasi:keyvalue/store@0.2.0-draft", "keyvalue"),
            ("wasi:cli/run@0.2.0", "import:wasi:cli"),
            ("acme:ledger/client@1.0.0", "import:acme:ledger"),
            ("neon:cybergrid/converter", "import:neon:cybergrid"),
            ("not an interface", "unknown"),
            ("plain-name", "unknown"),
            ("wasi:cli/stdout@", "unknown"),
            ("Wasi:cli/stdout", "unknown"),
        ];
        for (name, class) in cases {
            assert_eq!(classify_component_import(name).as_str(), class, "{name}");
        }
    }

    #[test]
    fn preview1_imports_fall_into_their_class() {
        let cases = [
            ("fd_write", "stdio"),
            ("fd_read", "stdio"),
            ("fd_prestat_get", "filesystem"),
            ("fd_readdir", "filesystem"),
            ("path_open", "filesystem"),
            ("sock_accept", "network"),
            ("environ_get", "environment"),
            ("args_sizes_get", "environment"),
            ("clock_time_get", "clocks"),
            ("random_get", "random"),
            ("proc_exit", "exit"),
            ("poll_oneoff", "io"),
            ("made_up", "unknown"),
        ];
        for (field, class) in cases {
            assert_eq!(
                classify_module_import("wasi_snapshot_preview1", field).as_str(),
                class,
                "{field}"
            );
        }
        assert_eq!(
            classify_module_import("env", "memory").as_str(),
            "import:env"
        );
    }

    #[test]
    fn class_names_parse_only_when_known() {
        assert!(Class::parse("network").is_some());
        assert!(Class::parse("import:acme:ledger").is_some());
        assert!(Class::parse("netwrok").is_none());
        assert!(Class::parse("import:").is_none());
    }
}
