//! `wasi:sockets/ip-name-lookup` held to the `--allow-host` list: the guest may look up only the
//! names it was granted. Any other name is refused before a query leaves the machine, because a
//! lookup is itself traffic (a name such as `<secret>.attacker.example` carries data to whoever
//! answers for that domain), whatever the connect check would later say about the address.
//! Literal IP addresses involve no query and pass; connecting to them is still checked.

use std::net::IpAddr;

use wasmtime::component::{HasData, Resource};
use wasmtime_wasi::p2::bindings::sockets::ip_name_lookup::{
    Host as LookupHost, HostResolveAddressStream, ResolveAddressStream,
};
use wasmtime_wasi::p2::bindings::sockets::network::{
    self, ErrorCode, HostNetwork, IpAddress, Network,
};
use wasmtime_wasi::p2::{DynPollable, SocketError};
use wasmtime_wasi::sockets::WasiSocketsCtxView;

/// The names the guest may look up, and those it asked for and was refused (reported after the
/// run, as refused HTTP requests are).
#[derive(Debug, Default)]
pub struct NameList {
    /// The `--allow-host` names, without a trailing dot.
    pub allowed: Vec<String>,
    pub denied: Vec<String>,
}

impl NameList {
    /// Whether looking `name` up is covered: a literal address, or a name on the list (case and
    /// a trailing dot aside).
    pub fn allows(&self, name: &str) -> bool {
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        if bare.parse::<IpAddr>().is_ok() {
            return true;
        }
        let name = name.trim_end_matches('.');
        self.allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
    }
}

/// The generated `add_to_linker` borrow for the restricted lookup.
pub struct NameLookup;

impl HasData for NameLookup {
    type Data<'a> = RestrictedLookup<'a>;
}

/// wasmtime's lookup, asked only for names on the list.
pub struct RestrictedLookup<'a> {
    pub sockets: WasiSocketsCtxView<'a>,
    pub names: &'a mut NameList,
}

impl LookupHost for RestrictedLookup<'_> {
    fn resolve_addresses(
        &mut self,
        network: Resource<Network>,
        name: String,
    ) -> Result<Resource<ResolveAddressStream>, SocketError> {
        if !self.names.allows(&name) {
            self.names.denied.push(name);
            return Err(ErrorCode::AccessDenied.into());
        }
        self.sockets.resolve_addresses(network, name)
    }
}

// The lookup's errors are `wasi:sockets/network` error codes; their conversion is wasmtime's.
impl network::Host for RestrictedLookup<'_> {
    fn convert_error_code(&mut self, error: SocketError) -> wasmtime::Result<ErrorCode> {
        self.sockets.convert_error_code(error)
    }

    fn network_error_code(
        &mut self,
        err: Resource<wasmtime_wasi::p2::bindings::io::error::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        self.sockets.network_error_code(err)
    }
}

impl HostNetwork for RestrictedLookup<'_> {
    fn drop(&mut self, network: Resource<Network>) -> wasmtime::Result<()> {
        HostNetwork::drop(&mut self.sockets, network)
    }
}

impl HostResolveAddressStream for RestrictedLookup<'_> {
    fn resolve_next_address(
        &mut self,
        stream: Resource<ResolveAddressStream>,
    ) -> Result<Option<IpAddress>, SocketError> {
        self.sockets.resolve_next_address(stream)
    }

    fn subscribe(
        &mut self,
        stream: Resource<ResolveAddressStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        self.sockets.subscribe(stream)
    }

    fn drop(&mut self, stream: Resource<ResolveAddressStream>) -> wasmtime::Result<()> {
        HostResolveAddressStream::drop(&mut self.sockets, stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_names_and_literal_addresses_pass() {
        let names = NameList {
            allowed: vec!["api.example.com".into(), "localhost".into()],
            denied: Vec::new(),
        };
        for ok in [
            "api.example.com",
            "API.Example.com",
            "api.example.com.",
            "localhost",
            "127.0.0.1",
            "::1",
            "[::1]",
        ] {
            assert!(names.allows(ok), "{ok}");
        }
        for no in [
            "example.com",
            "x.api.example.com",
            "api.example.com.attacker.example",
            "c2VjcmV0.attacker.example",
            "",
            "127.0.0.1.nip.io",
        ] {
            assert!(!names.allows(no), "{no}");
        }
    }
}
