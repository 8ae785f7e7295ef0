//! What `gridreg run` may hand a guest beyond its imports: the `--dir`, `--env` and
//! `--allow-host` grants, parsed from the command line and capped by the policy, so a grant the
//! policy forbids is an error rather than a silent gift.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use gridreg_verifier::policy::Date;
use gridreg_verifier::taxonomy::classify_component_import;
use gridreg_verifier::{Import, Policy};

/// A preopened directory: `HOST::GUEST[:rw]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    pub host: PathBuf,
    pub guest: String,
    pub writable: bool,
}

/// One entry of the host allow-list: a name or IP literal, and optionally one port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRule {
    /// Lower case; IPv6 literals without brackets.
    pub host: String,
    pub port: Option<u16>,
}

impl HostRule {
    /// Whether a request to `host:port` (as the guest wrote it in a URL) is covered.
    pub fn matches_name(&self, host: &str, port: u16) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.host.eq_ignore_ascii_case(host) && self.port.is_none_or(|p| p == port)
    }
}

impl std::fmt::Display for HostRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.port {
            Some(p) => write!(f, "{host}:{p}"),
            None => f.write_str(&host),
        }
    }
}

/// Everything asked for on the command line.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    pub dirs: Vec<DirGrant>,
    pub env: Vec<(String, String)>,
    pub hosts: Vec<HostRule>,
}

/// The grants once the policy has agreed to them, with the host allow-list split by how the
/// guest may use it.
#[derive(Debug, Clone, Default)]
pub struct Capped {
    pub dirs: Vec<DirGrant>,
    pub env: Vec<(String, String)>,
    /// TCP/UDP destinations (empty when the policy does not allow `network`).
    pub socket_hosts: Vec<HostRule>,
    /// Outgoing HTTP destinations (empty when the policy does not allow `http-outgoing`).
    pub http_hosts: Vec<HostRule>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GrantError {
    #[error("--dir {0:?}: expected HOST::GUEST or HOST::GUEST:rw (for example ./data::/data)")]
    DirSyntax(String),
    #[error("--dir {arg:?}: host directory {host:?} {why}")]
    DirHost {
        arg: String,
        host: String,
        why: String,
    },
    #[error("--env {0:?}: expected KEY=VALUE with a non-empty KEY")]
    EnvSyntax(String),
    #[error("--allow-host {0:?}: expected HOST or HOST:PORT (IPv6 as [ADDR] or [ADDR]:PORT)")]
    HostSyntax(String),
    /// The policy forbids what the flag asks for.
    #[error("{flag} asks for {what}, but policy `{policy}` refuses it: {reason}")]
    Refused {
        flag: &'static str,
        what: String,
        policy: String,
        reason: String,
    },
}

impl GrantError {
    /// Whether this is the policy saying no (exit 1) rather than a malformed flag (exit 2).
    pub fn is_policy(&self) -> bool {
        matches!(self, GrantError::Refused { .. })
    }
}

/// Parses `HOST::GUEST[:rw]`. `::` separates because host paths may contain a single `:`
/// (Windows drives) and guest paths are absolute Unix-style paths.
pub fn parse_dir(arg: &str) -> Result<DirGrant, GrantError> {
    let (host, rest) = arg
        .split_once("::")
        .ok_or_else(|| GrantError::DirSyntax(arg.to_string()))?;
    let (guest, writable) = match rest.strip_suffix(":rw") {
        Some(g) => (g, true),
        None => match rest.strip_suffix(":ro") {
            Some(g) => (g, false),
            None => (rest, false),
        },
    };
    if host.is_empty() || guest.is_empty() || guest.contains(':') {
        return Err(GrantError::DirSyntax(arg.to_string()));
    }
    let path = PathBuf::from(host);
    match std::fs::metadata(&path) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(GrantError::DirHost {
                arg: arg.to_string(),
                host: host.to_string(),
                why: "is not a directory".to_string(),
            });
        }
        Err(e) => {
            return Err(GrantError::DirHost {
                arg: arg.to_string(),
                host: host.to_string(),
                why: format!("cannot be opened: {e}"),
            });
        }
    }
    Ok(DirGrant {
        host: path,
        guest: guest.to_string(),
        writable,
    })
}

/// Parses `KEY=VALUE` (the value may contain `=` and may be empty).
pub fn parse_env(arg: &str) -> Result<(String, String), GrantError> {
    match arg.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(GrantError::EnvSyntax(arg.to_string())),
    }
}

/// Parses `HOST`, `HOST:PORT`, `[V6]` or `[V6]:PORT`. A bare IPv6 literal without brackets is
/// accepted too, as a host with no port, since its colons cannot be a port separator.
pub fn parse_host(arg: &str) -> Result<HostRule, GrantError> {
    let bad = || GrantError::HostSyntax(arg.to_string());
    let (host, port) = if let Some(rest) = arg.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(bad)?),
        };
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad());
        }
        (h, port)
    } else if arg.parse::<std::net::Ipv6Addr>().is_ok() {
        (arg, None)
    } else {
        match arg.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (arg, None),
        }
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad)?),
        None => None,
    };
    let valid_name = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '_'));
    if !valid_name {
        return Err(bad());
    }
    Ok(HostRule {
        host: host.to_ascii_lowercase(),
        port,
    })
}

/// The interface a grant stands for when the component does not import it itself: the policy is
/// asked about this name, so `[[interfaces]]` rules written for it apply.
const ENV_IFACE: &str = "wasi:cli/environment@0.2.6";
const DIR_IFACE: &str = "wasi:filesystem/preopens@0.2.6";
const TCP_IFACE: &str = "wasi:sockets/tcp@0.2.6";
const HTTP_IFACE: &str = "wasi:http/outgoing-handler@0.2.6";

/// Asks `policy` whether the class behind `iface` may be used, preferring the component's own
/// import of that interface (at its real version) over the stand-in name.
fn ask(
    policy: &Policy,
    imports: &[Import],
    iface: &str,
    today: Date,
) -> Result<(), gridreg_verifier::Violation> {
    let unversioned = iface.split('@').next().unwrap_or(iface);
    let import = imports
        .iter()
        .find(|i| i.name.split('@').next() == Some(unversioned))
        .cloned()
        .unwrap_or_else(|| Import {
            name: iface.to_string(),
            class: classify_component_import(iface),
        });
    policy.check_import(&import, None, today)
}

/// Checks every grant against the policy. `enforce` is false for a policy in warn mode: a
/// refused grant is then only reported through `warnings`, as the policy asks.
pub fn cap(
    grants: &Grants,
    policy: &Policy,
    imports: &[Import],
    today: Date,
    enforce: bool,
    warnings: &mut Vec<String>,
) -> Result<Capped, GrantError> {
    let mut refuse = |flag: &'static str, what: &str, v: gridreg_verifier::Violation| {
        let err = GrantError::Refused {
            flag,
            what: what.to_string(),
            policy: policy.name().to_string(),
            reason: format!("{} [{}]", v.message, v.rule),
        };
        if enforce {
            Err(err)
        } else {
            warnings.push(err.to_string());
            Ok(())
        }
    };
    if !grants.env.is_empty()
        && let Err(v) = ask(policy, imports, ENV_IFACE, today)
    {
        refuse("--env", "environment variables (class environment)", v)?;
    }
    if !grants.dirs.is_empty()
        && let Err(v) = ask(policy, imports, DIR_IFACE, today)
    {
        refuse("--dir", "preopened directories (class filesystem)", v)?;
    }
    let mut capped = Capped {
        dirs: grants.dirs.clone(),
        env: grants.env.clone(),
        ..Capped::default()
    };
    if !grants.hosts.is_empty() {
        let net = ask(policy, imports, TCP_IFACE, today);
        let http = ask(policy, imports, HTTP_IFACE, today);
        match (net, http) {
            (Err(v), Err(_)) => {
                refuse(
                    "--allow-host",
                    "network access (classes network and http-outgoing)",
                    v,
                )?;
                // Warn mode: the policy reports but does not restrict.
                capped.socket_hosts = grants.hosts.clone();
                capped.http_hosts = grants.hosts.clone();
            }
            (net, http) => {
                if net.is_ok() {
                    capped.socket_hosts = grants.hosts.clone();
                }
                if http.is_ok() {
                    capped.http_hosts = grants.hosts.clone();
                }
            }
        }
    }
    Ok(capped)
}

/// The socket addresses an allow-list names, resolved once before the guest starts so the
/// guest's own name lookups cannot change what the list means.
#[derive(Debug, Clone, Default)]
pub struct ResolvedHosts {
    entries: Vec<(IpAddr, Option<u16>)>,
}

impl ResolvedHosts {
    pub fn resolve(rules: &[HostRule]) -> Result<ResolvedHosts, String> {
        let mut entries = Vec::new();
        for rule in rules {
            let addrs = (rule.host.as_str(), 0)
                .to_socket_addrs()
                .map_err(|e| format!("--allow-host {rule}: cannot resolve {:?}: {e}", rule.host))?;
            for a in addrs {
                entries.push((a.ip(), rule.port));
            }
        }
        Ok(ResolvedHosts { entries })
    }

    /// Whether the guest may connect or send to `addr`.
    pub fn allows(&self, addr: SocketAddr) -> bool {
        let ip = canonical(addr.ip());
        self.entries.iter().any(|(allowed, port)| {
            canonical(*allowed) == ip && port.is_none_or(|p| p == addr.port())
        })
    }
}

/// IPv4-mapped IPv6 addresses compare as their IPv4 form.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn policy(text: &str) -> Policy {
        Policy::parse(text, "test.toml").unwrap()
    }

    #[test]
    fn dir_syntax() {
        let tmp = std::env::temp_dir();
        let host = tmp.to_str().unwrap();
        let g = parse_dir(&format!("{host}::/data")).unwrap();
        assert_eq!((g.guest.as_str(), g.writable), ("/data", false));
        let g = parse_dir(&format!("{host}::/data:rw")).unwrap();
        assert_eq!((g.guest.as_str(), g.writable), ("/data", true));
        let g = parse_dir(&format!("{host}::/data:ro")).unwrap();
        assert!(!g.writable);
        assert!(matches!(
            parse_dir("/tmp:/data"),
            Err(GrantError::DirSyntax(_))
        ));
        assert!(matches!(
            parse_dir("::/data"),
            Err(GrantError::DirSyntax(_))
        ));
        assert!(matches!(
            parse_dir("/no/such/dir/anywhere::/data"),
            Err(GrantError::DirHost { .. })
        ));
    }

    #[test]
    fn env_syntax() {
        assert_eq!(parse_env("A=b=c").unwrap(), ("A".into(), "b=c".into()));
        assert_eq!(parse_env("A=").unwrap(), ("A".into(), "".into()));
        assert!(parse_env("=x").is_err());
        assert!(parse_env("A").is_err());
    }

    #[test]
    fn host_syntax() {
        assert_eq!(
            parse_host("Example.COM:8080").unwrap(),
            HostRule {
                host: "example.com".into(),
                port: Some(8080)
            }
        );
        assert_eq!(parse_host("127.0.0.1").unwrap().port, None);
        assert_eq!(parse_host("[::1]:80").unwrap().host, "::1");
        assert_eq!(parse_host("::1").unwrap().port, None);
        assert!(parse_host("a.com:0").is_err());
        assert!(parse_host("a.com:http").is_err());
        assert!(parse_host("[nothex]:80").is_err());
        assert!(parse_host("a b").is_err());
        assert!(parse_host("").is_err());
        assert_eq!(parse_host("[::1]:80").unwrap().to_string(), "[::1]:80");
    }

    #[test]
    fn host_rule_matching() {
        let r = parse_host("localhost:8080").unwrap();
        assert!(r.matches_name("LOCALHOST", 8080));
        assert!(!r.matches_name("localhost", 8081));
        let any = parse_host("[::1]").unwrap();
        assert!(any.matches_name("[::1]", 1));
    }

    #[test]
    fn resolved_hosts_check_ip_and_port() {
        let r = ResolvedHosts::resolve(&[parse_host("127.0.0.1:9000").unwrap()]).unwrap();
        assert!(r.allows("127.0.0.1:9000".parse().unwrap()));
        assert!(!r.allows("127.0.0.1:9001".parse().unwrap()));
        assert!(!r.allows("127.0.0.2:9000".parse().unwrap()));
        assert!(r.allows("[::ffff:127.0.0.1]:9000".parse().unwrap()));
    }

    #[test]
    fn grants_are_capped_by_policy() {
        let p = policy(
            "[policy]\nname = \"p\"\n[capabilities]\nallow = [\"stdio\", \"environment\"]\ndeny = [\"network\"]\n",
        );
        let today = Date::from_unix_seconds(0);
        let mut warnings = Vec::new();
        let env = Grants {
            env: vec![("A".into(), "1".into())],
            ..Grants::default()
        };
        assert!(cap(&env, &p, &[], today, true, &mut warnings).is_ok());

        let dirs = Grants {
            dirs: vec![parse_dir(&format!("{}::/d", std::env::temp_dir().display())).unwrap()],
            ..Grants::default()
        };
        let err = cap(&dirs, &p, &[], today, true, &mut warnings).unwrap_err();
        assert!(err.is_policy());
        let text = err.to_string();
        assert!(
            text.contains("--dir asks for preopened directories"),
            "{text}"
        );
        assert!(text.contains("capability-not-allowed"), "{text}");

        let hosts = Grants {
            hosts: vec![parse_host("127.0.0.1").unwrap()],
            ..Grants::default()
        };
        let text = cap(&hosts, &p, &[], today, true, &mut warnings)
            .unwrap_err()
            .to_string();
        assert!(text.contains("--allow-host"), "{text}");
        assert!(text.contains("capability-denied"), "{text}");

        // Warn mode reports and grants.
        let capped = cap(&hosts, &p, &[], today, false, &mut warnings).unwrap();
        assert_eq!(capped.socket_hosts.len(), 1);
        assert_eq!(warnings.len(), 1);
    }

    #[test]
    fn host_list_goes_only_where_the_policy_allows() {
        let p = policy(
            "[policy]\nname = \"p\"\n[capabilities]\nallow = [\"http-outgoing\"]\ndeny = [\"network\"]\n",
        );
        let hosts = Grants {
            hosts: vec![parse_host("example.com").unwrap()],
            ..Grants::default()
        };
        let capped = cap(
            &hosts,
            &p,
            &[],
            Date::from_unix_seconds(0),
            true,
            &mut Vec::new(),
        )
        .unwrap();
        assert!(capped.socket_hosts.is_empty());
        assert_eq!(capped.http_hosts.len(), 1);
    }
}
