//! Which host implementations go into the linker: one WASI interface at a time, and only those the
//! component imports and the policy allowed, so nothing the policy refused is even reachable.

use std::collections::BTreeSet;

use gridreg_verifier::Import;
use gridreg_verifier::taxonomy::InterfaceName;
use wasmtime::Engine;
use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
use wasmtime_wasi::p2::bindings as wasi;
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi::sockets::{WasiSockets, WasiSocketsView};
use wasmtime_wasi_http::{WasiHttp, WasiHttpView};

use super::Host;
use super::names::NameLookup;

/// The WASI interfaces (unversioned) `gridreg run` can provide.
pub const PROVIDED: &[&str] = &[
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
    "wasi:sockets/ip-name-lookup",
    "wasi:http/types",
    "wasi:http/outgoing-handler",
];

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(
        "import {name} (class {class}) is allowed by the policy, but gridreg run has no \
         implementation of it: plug a component that exports it with `gridreg compose`"
    )]
    NotProvided { name: String, class: String },
    #[error("cannot add {name} to the linker: {source}")]
    Wasmtime {
        name: String,
        #[source]
        source: wasmtime::Error,
    },
}

/// `wasi:io` resources live in the store's resource table; this names that borrow for the
/// generated `add_to_linker` functions.
struct HasIo;

impl HasData for HasIo {
    type Data<'a> = &'a mut ResourceTable;
}

/// How the guest is called, which decides the bindings of the interfaces that can block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// `gridreg run`: one synchronous call on the main thread.
    Sync,
    /// `gridreg run --listen`: calls on tokio tasks, so blocking operations must be futures.
    Async,
}

/// A linker holding exactly the interfaces behind `imports` (each of which the caller has already
/// checked against the policy). Versions are matched by wasmtime across 0.2.x, so a component
/// built against 0.2.12 links against the host's 0.2.x implementation.
pub fn build(
    engine: &Engine,
    imports: &[Import],
    flavour: Flavour,
) -> Result<Linker<Host>, LinkError> {
    let mut linker = Linker::new(engine);
    let mut added = BTreeSet::new();
    for import in imports {
        let unversioned = InterfaceName::parse(&import.name)
            .map(|n| n.unversioned())
            .filter(|u| PROVIDED.contains(&u.as_str()))
            .ok_or_else(|| LinkError::NotProvided {
                name: import.name.clone(),
                class: import.class.to_string(),
            })?;
        if added.insert(unversioned.clone()) {
            let added = match flavour {
                Flavour::Sync => add(&mut linker, &unversioned),
                Flavour::Async => add_async(&mut linker, &unversioned),
            };
            added.map_err(|source| LinkError::Wasmtime {
                name: import.name.clone(),
                source,
            })?;
        }
    }
    Ok(linker)
}

/// Adds one interface's asynchronous implementation where it differs from the synchronous one
/// (streams, polling, files, sockets, HTTP), and otherwise the shared one from [`add`].
fn add_async(l: &mut Linker<Host>, unversioned: &str) -> wasmtime::Result<()> {
    let http_options = wasmtime_wasi_http::p2::bindings::LinkOptions::default();
    match unversioned {
        "wasi:io/poll" => {
            wasmtime_wasi_io::bindings::wasi::io::poll::add_to_linker::<Host, HasIo>(l, |h| {
                &mut h.table
            })
        }
        "wasi:io/streams" => wasmtime_wasi_io::bindings::wasi::io::streams::add_to_linker::<
            Host,
            HasIo,
        >(l, |h| &mut h.table),
        "wasi:filesystem/types" => {
            wasi::filesystem::types::add_to_linker::<Host, WasiFilesystem>(l, Host::filesystem)
        }
        "wasi:sockets/tcp" => {
            wasi::sockets::tcp::add_to_linker::<Host, WasiSockets>(l, Host::sockets)
        }
        "wasi:sockets/udp" => {
            wasi::sockets::udp::add_to_linker::<Host, WasiSockets>(l, Host::sockets)
        }
        "wasi:sockets/udp-create-socket" => {
            wasi::sockets::udp_create_socket::add_to_linker::<Host, WasiSockets>(l, Host::sockets)
        }
        "wasi:http/types" => wasmtime_wasi_http::p2::bindings::http::types::add_to_linker::<
            Host,
            WasiHttp,
        >(l, &http_options.into(), Host::http),
        "wasi:http/outgoing-handler" => {
            wasmtime_wasi_http::p2::bindings::http::outgoing_handler::add_to_linker::<Host, WasiHttp>(
                l,
                Host::http,
            )
        }
        other => add(l, other),
    }
}

/// Adds one interface's implementation. Blocking operations (streams, files, sockets, HTTP) use the
/// synchronous bindings; the rest are the same in both flavours.
fn add(l: &mut Linker<Host>, unversioned: &str) -> wasmtime::Result<()> {
    let net_options = wasi::sync::LinkOptions::default();
    let http_options = wasmtime_wasi_http::p2::bindings::LinkOptions::default();
    match unversioned {
        "wasi:io/error" => {
            wasmtime_wasi_io::bindings::wasi::io::error::add_to_linker::<Host, HasIo>(l, |h| {
                &mut h.table
            })
        }
        "wasi:io/poll" => wasi::sync::io::poll::add_to_linker::<Host, HasIo>(l, |h| &mut h.table),
        "wasi:io/streams" => {
            wasi::sync::io::streams::add_to_linker::<Host, HasIo>(l, |h| &mut h.table)
        }
        "wasi:cli/environment" => {
            wasi::cli::environment::add_to_linker::<Host, WasiCli>(l, Host::cli)
        }
        "wasi:cli/exit" => wasi::cli::exit::add_to_linker::<Host, WasiCli>(l, Host::cli),
        "wasi:cli/stdin" => wasi::cli::stdin::add_to_linker::<Host, WasiCli>(l, Host::cli),
        "wasi:cli/stdout" => wasi::cli::stdout::add_to_linker::<Host, WasiCli>(l, Host::cli),
        "wasi:cli/stderr" => wasi::cli::stderr::add_to_linker::<Host, WasiCli>(l, Host::cli),
        "wasi:cli/terminal-input" => {
            wasi::cli::terminal_input::add_to_linker::<Host, WasiCli>(l, Host::cli)
        }
        "wasi:cli/terminal-output" => {
            wasi::cli::terminal_output::add_to_linker::<Host, WasiCli>(l, Host::cli)
        }
        "wasi:cli/terminal-stdin" => {
            wasi::cli::terminal_stdin::add_to_linker::<Host, WasiCli>(l, Host::cli)
        }
        "wasi:cli/terminal-stdout" => {
            wasi::cli::terminal_stdout::add_to_linker::<Host, WasiCli>(l, Host::cli)
        }
        "wasi:cli/terminal-stderr" => {
            wasi::cli::terminal_stderr::add_to_linker::<Host, WasiCli>(l, Host::cli)
        }
        "wasi:clocks/wall-clock" => {
            wasi::clocks::wall_clock::add_to_linker::<Host, WasiClocks>(l, Host::clocks)
        }
        "wasi:clocks/monotonic-clock" => {
            wasi::clocks::monotonic_clock::add_to_linker::<Host, WasiClocks>(l, Host::clocks)
        }
        "wasi:random/random" => {
            wasi::random::random::add_to_linker::<Host, WasiRandom>(l, |h| h.wasi.random())
        }
        "wasi:random/insecure" => {
            wasi::random::insecure::add_to_linker::<Host, WasiRandom>(l, |h| h.wasi.random())
        }
        "wasi:random/insecure-seed" => {
            wasi::random::insecure_seed::add_to_linker::<Host, WasiRandom>(l, |h| h.wasi.random())
        }
        "wasi:filesystem/types" => wasi::sync::filesystem::types::add_to_linker::<
            Host,
            WasiFilesystem,
        >(l, Host::filesystem),
        "wasi:filesystem/preopens" => {
            wasi::filesystem::preopens::add_to_linker::<Host, WasiFilesystem>(l, Host::filesystem)
        }
        "wasi:sockets/network" => wasi::sockets::network::add_to_linker::<Host, WasiSockets>(
            l,
            &(&net_options).into(),
            Host::sockets,
        ),
        "wasi:sockets/instance-network" => {
            wasi::sockets::instance_network::add_to_linker::<Host, WasiSockets>(l, Host::sockets)
        }
        "wasi:sockets/tcp" => {
            wasi::sync::sockets::tcp::add_to_linker::<Host, WasiSockets>(l, Host::sockets)
        }
        "wasi:sockets/tcp-create-socket" => {
            wasi::sockets::tcp_create_socket::add_to_linker::<Host, WasiSockets>(l, Host::sockets)
        }
        "wasi:sockets/udp" => {
            wasi::sync::sockets::udp::add_to_linker::<Host, WasiSockets>(l, Host::sockets)
        }
        "wasi:sockets/udp-create-socket" => {
            wasi::sync::sockets::udp_create_socket::add_to_linker::<Host, WasiSockets>(
                l,
                Host::sockets,
            )
        }
        // Only the --allow-host names (runtime/names.rs), not whatever the guest asks for.
        "wasi:sockets/ip-name-lookup" => {
            wasi::sockets::ip_name_lookup::add_to_linker::<Host, NameLookup>(l, Host::name_lookup)
        }
        "wasi:http/types" => wasmtime_wasi_http::p2::bindings::sync::http::types::add_to_linker::<
            Host,
            WasiHttp,
        >(l, &http_options.into(), Host::http),
        "wasi:http/outgoing-handler" => {
            wasmtime_wasi_http::p2::bindings::sync::http::outgoing_handler::add_to_linker::<
                Host,
                WasiHttp,
            >(l, Host::http)
        }
        other => Err(wasmtime::format_err!(
            "no implementation of {other} in gridreg run"
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use gridreg_verifier::taxonomy::classify_component_import;

    use super::*;

    fn import(name: &str) -> Import {
        Import {
            name: name.to_string(),
            class: classify_component_import(name),
        }
    }

    #[test]
    fn every_provided_interface_can_be_added() {
        let engine = Engine::default();
        let imports: Vec<Import> = PROVIDED
            .iter()
            .map(|n| import(&format!("{n}@0.2.6")))
            .collect();
        for flavour in [Flavour::Sync, Flavour::Async] {
            if let Err(e) = build(&engine, &imports, flavour) {
                panic!("{flavour:?}: {e}");
            }
        }
    }

    fn refused(imports: &[Import]) -> LinkError {
        match build(&Engine::default(), imports, Flavour::Sync) {
            Err(e) => e,
            Ok(_) => panic!("expected {imports:?} to be refused"),
        }
    }

    #[test]
    fn foreign_import_is_not_provided() {
        let err = refused(&[import("neon:cybergrid/converter@0.1.0")]);
        let text = err.to_string();
        assert!(text.contains("neon:cybergrid/converter@0.1.0"), "{text}");
        assert!(text.contains("import:neon:cybergrid"), "{text}");
        let err = refused(&[import("wasi:keyvalue/store@0.2.0")]);
        assert!(matches!(err, LinkError::NotProvided { .. }));
    }
}
