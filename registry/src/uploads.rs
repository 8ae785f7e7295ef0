//! Caps on pending uploads: content uploaded that no release has named yet. Uploads exist only
//! to be published, so the bytes one uploader (a token, or a client address when no token is
//! given) may have pending are capped, and so are all uploaders' together
//! (`--max-pending-uploads-per-client`, `--max-pending-uploads`). Bytes count from the first
//! chunk received, so an upload in progress cannot outrun the cap, and stop counting when a
//! release names the content, when the upload fails, or when the collector of unnamed uploads
//! has passed over it (deleted, or found named by a release another replica accepted).
//!
//! The ledger is this process's: it starts empty, so after a restart uploads pending from before
//! count only against the collector's TTL, and each replica caps what it receives.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use gridreg_protocol::Digest;

/// Default cap on all pending uploads together.
pub const DEFAULT_MAX_PENDING: u64 = 8 << 30;
/// Default cap on one uploader's pending uploads.
pub const DEFAULT_MAX_PENDING_PER_CLIENT: u64 = 1 << 30;

/// Who an upload is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Uploader {
    /// A bearer token, by its id.
    Token(String),
    /// A client with no token, by its address: an IPv4 address, or an IPv6 address's /64
    /// network (see [`Uploader::from_address`]).
    Address(IpAddr),
    /// No token and no known address (a request that did not come through the listener).
    Unknown,
}

impl Uploader {
    /// The uploader a client address counts as: its client network
    /// ([`crate::listen::client_network`]), the same unit the listener caps connections by.
    pub fn from_address(ip: IpAddr) -> Uploader {
        Uploader::Address(crate::listen::client_network(ip))
    }
}

impl std::fmt::Display for Uploader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Uploader::Token(id) => write!(f, "token {id}"),
            Uploader::Address(IpAddr::V6(net)) => write!(f, "client network {net}/64"),
            Uploader::Address(ip) => write!(f, "client address {ip}"),
            Uploader::Unknown => f.write_str("this client"),
        }
    }
}

/// Why bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    #[error(
        "{who} has {pending} bytes of uploads no release names yet and this upload adds \
         {adding} more; the limit is {limit} bytes per client: publish the releases that name \
         the pending uploads, or wait for unnamed uploads to be deleted"
    )]
    Client {
        who: String,
        pending: u64,
        adding: u64,
        limit: u64,
    },
    #[error(
        "the registry holds {pending} bytes of uploads no release names yet and this upload adds \
         {adding} more; its limit is {limit} bytes: try again once pending uploads are published \
         or deleted"
    )]
    Total {
        pending: u64,
        adding: u64,
        limit: u64,
    },
}

#[derive(Debug, Default)]
struct Ledger {
    total: u64,
    by_uploader: HashMap<Uploader, u64>,
    /// Stored uploads still counted: who uploaded, how many bytes, when stored.
    stored: HashMap<Digest, (Uploader, u64, Instant)>,
}

impl Ledger {
    fn release(&mut self, who: &Uploader, bytes: u64) {
        self.total = self.total.saturating_sub(bytes);
        if let Some(n) = self.by_uploader.get_mut(who) {
            *n = n.saturating_sub(bytes);
            if *n == 0 {
                self.by_uploader.remove(who);
            }
        }
    }
}

/// The pending-upload ledger, shared by every request.
#[derive(Debug)]
pub struct Uploads {
    max_total: u64,
    max_per_client: u64,
    ledger: Mutex<Ledger>,
}

impl Default for Uploads {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_PENDING, DEFAULT_MAX_PENDING_PER_CLIENT)
    }
}

impl Uploads {
    pub fn new(max_total: u64, max_per_client: u64) -> Self {
        Self {
            max_total,
            max_per_client,
            ledger: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts counting an upload by `who`; its bytes are added as they arrive.
    pub fn begin(self: &Arc<Self>, who: Uploader) -> Reservation {
        Reservation {
            uploads: self.clone(),
            who,
            bytes: 0,
        }
    }

    /// Bytes pending in all and for `who`.
    pub fn pending(&self, who: &Uploader) -> (u64, u64) {
        let l = self.lock();
        (l.total, l.by_uploader.get(who).copied().unwrap_or(0))
    }

    /// A release naming `digest` was accepted: its upload is no longer pending.
    pub fn named(&self, digest: &Digest) {
        let mut l = self.lock();
        if let Some((who, bytes, _)) = l.stored.remove(digest) {
            l.release(&who, bytes);
        }
    }

    /// The collector has passed over every upload stored before `before` (deleting those no
    /// release names): none of them is pending any more.
    pub fn forget_before(&self, before: Instant) {
        let mut l = self.lock();
        let old: Vec<Digest> = l
            .stored
            .iter()
            .filter(|(_, (_, _, at))| *at < before)
            .map(|(d, _)| *d)
            .collect();
        for d in old {
            if let Some((who, bytes, _)) = l.stored.remove(&d) {
                l.release(&who, bytes);
            }
        }
    }
}

/// The bytes of one upload in progress; given back when dropped unless stored.
#[derive(Debug)]
pub struct Reservation {
    uploads: Arc<Uploads>,
    who: Uploader,
    bytes: u64,
}

impl Reservation {
    /// Counts `n` more bytes, or refuses them if a cap would be passed.
    pub fn add(&mut self, n: u64) -> Result<(), QuotaError> {
        let u = &self.uploads;
        let mut l = u.lock();
        let mine = l.by_uploader.get(&self.who).copied().unwrap_or(0);
        if mine.saturating_add(n) > u.max_per_client {
            return Err(QuotaError::Client {
                who: self.who.to_string(),
                pending: mine - self.bytes,
                adding: self.bytes + n,
                limit: u.max_per_client,
            });
        }
        if l.total.saturating_add(n) > u.max_total {
            return Err(QuotaError::Total {
                pending: l.total - self.bytes,
                adding: self.bytes + n,
                limit: u.max_total,
            });
        }
        l.total += n;
        *l.by_uploader.entry(self.who.clone()).or_default() += n;
        self.bytes += n;
        Ok(())
    }

    /// The upload is stored as `digest`: its bytes stay counted until a release names it or
    /// the collector has passed over it.
    pub fn stored(mut self, digest: Digest) {
        let bytes = std::mem::take(&mut self.bytes);
        let mut l = self.uploads.lock();
        // Stored twice at once (two uploads of the same bytes): count it once.
        if l.stored.contains_key(&digest) {
            l.release(&self.who, bytes);
            return;
        }
        l.stored
            .insert(digest, (self.who.clone(), bytes, Instant::now()));
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            let bytes = std::mem::take(&mut self.bytes);
            self.uploads.lock().release(&self.who, bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn ip(s: &str) -> Uploader {
        Uploader::Address(s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])))
    }

    #[test]
    fn one_client_is_capped_and_others_go_on() {
        let u = Arc::new(Uploads::new(100, 40));
        let mut a = u.begin(ip("10.0.0.1"));
        a.add(30).expect("within");
        a.stored(Digest([1; 32]));
        let mut b = u.begin(ip("10.0.0.1"));
        let e = b.add(11).expect_err("over the client cap");
        assert!(
            matches!(
                e,
                QuotaError::Client {
                    pending: 30,
                    limit: 40,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("client address 10.0.0.1"), "{e}");
        b.add(10).expect("exactly at the cap");
        drop(b);
        // Another address has its own share.
        let mut c = u.begin(ip("10.0.0.2"));
        c.add(40).expect("own cap");
        assert_eq!(u.pending(&ip("10.0.0.1")), (70, 30));
    }

    #[test]
    fn the_total_is_capped_across_clients() {
        let u = Arc::new(Uploads::new(50, 40));
        let mut a = u.begin(Uploader::Token("t1".into()));
        a.add(40).expect("within");
        let mut b = u.begin(Uploader::Token("t2".into()));
        let e = b.add(11).expect_err("over the total");
        assert_eq!(
            e,
            QuotaError::Total {
                pending: 40,
                adding: 11,
                limit: 50
            }
        );
        // A failed upload gives its bytes back.
        drop(a);
        b.add(40).expect("room again");
    }

    #[test]
    fn naming_or_collecting_an_upload_frees_its_bytes() {
        let u = Arc::new(Uploads::new(100, 40));
        let who = Uploader::Unknown;
        let mut a = u.begin(who.clone());
        a.add(40).unwrap();
        a.stored(Digest([1; 32]));
        assert!(u.begin(who.clone()).add(1).is_err());
        u.named(&Digest([1; 32]));
        assert_eq!(u.pending(&who), (0, 0));
        // Naming again (a second release of the same bytes) changes nothing.
        u.named(&Digest([1; 32]));
        let mut b = u.begin(who.clone());
        b.add(40).unwrap();
        b.stored(Digest([2; 32]));
        u.forget_before(Instant::now());
        assert_eq!(u.pending(&who), (0, 0));
    }

    #[test]
    fn an_ipv6_client_counts_as_its_64_network() {
        let a = Uploader::from_address("2001:db8:1:2::1".parse().unwrap());
        let b = Uploader::from_address("2001:db8:1:2:ffff:1:2:3".parse().unwrap());
        let other = Uploader::from_address("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, other);
        assert_eq!(a.to_string(), "client network 2001:db8:1:2::/64");
        // An IPv4-mapped address is its IPv4 form; IPv4 addresses count one by one.
        let mapped = Uploader::from_address("::ffff:10.0.0.1".parse().unwrap());
        assert_eq!(mapped, ip("10.0.0.1"));
        assert_ne!(ip("10.0.0.1"), ip("10.0.0.2"));
        assert_eq!(mapped.to_string(), "client address 10.0.0.1");
    }

    #[test]
    fn the_same_bytes_stored_twice_count_once() {
        let u = Arc::new(Uploads::new(100, 100));
        let who = Uploader::Unknown;
        let mut a = u.begin(who.clone());
        let mut b = u.begin(who.clone());
        a.add(30).unwrap();
        b.add(30).unwrap();
        a.stored(Digest([7; 32]));
        b.stored(Digest([7; 32]));
        assert_eq!(u.pending(&who), (30, 30));
        u.named(&Digest([7; 32]));
        assert_eq!(u.pending(&who), (0, 0));
    }
}
