//! The namespace state machine: replaying records in log order, it knows which keys held which
//! role in each namespace at every log index, accepts or rejects each transition with a reason,
//! and answers "may key K publish in namespace N at index I".
//!
//! Who signs what:
//! - `claim` is signed by the key it claims (proof of possession), only for an unclaimed namespace,
//!   and always with role `owner`;
//! - `grant` and `revoke` are signed by a key that is an owner of the namespace at that index;
//! - releases and yanks are signed by a key with role `owner` or `publish` at that index.
//!
//! A role granted at index G covers records at indexes after G; a role revoked at index R covers
//! no record after R, so a revoked key's later signatures are rejected while its earlier ones
//! stay valid.

use std::collections::BTreeMap;

use crate::key::VerifierKey;
use crate::name::Namespace;
use crate::note::{self, KeySet, Note, NoteError};
use crate::record::{NamespaceOp, NamespaceRecord, Record, RecordError, Role};

/// Why a record was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamespaceError {
    #[error("log index {index} is not after the last applied index {last}")]
    OutOfOrder { index: u64, last: u64 },
    #[error("namespace {0} is already claimed")]
    AlreadyClaimed(Namespace),
    #[error("a claim of {namespace} must be signed by the claimed key {key}, signed by: {signers}")]
    ClaimNotSelfSigned {
        namespace: Namespace,
        key: String,
        signers: String,
    },
    #[error("namespace {0} is not claimed")]
    Unclaimed(Namespace),
    #[error("{op} in {namespace} must be signed by a current owner, signed by: {signers}")]
    NotOwner {
        op: NamespaceOp,
        namespace: Namespace,
        signers: String,
    },
    #[error("key {key} already has role {role} in {namespace}")]
    AlreadyGranted {
        namespace: Namespace,
        key: String,
        role: Role,
    },
    #[error("key {key} does not hold role {role} in {namespace}")]
    NotGranted {
        namespace: Namespace,
        key: String,
        role: Role,
    },
    #[error("revoking {key} would leave {namespace} without an owner")]
    LastOwner { namespace: Namespace, key: String },
    #[error(
        "no signer of this record may publish in {namespace} at log index {index}, signed by: {signers}"
    )]
    NotAuthorised {
        namespace: Namespace,
        index: u64,
        signers: String,
    },
}

/// Why a log entry (a signed record) was refused while replaying the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("log entry {index}: {source}")]
    Note { index: u64, source: NoteError },
    #[error("log entry {index}: {source}")]
    Record { index: u64, source: RecordError },
    #[error("log entry {index}: {source}")]
    Namespace { index: u64, source: NamespaceError },
}

/// One key's role over a span of log indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub key: VerifierKey,
    pub role: Role,
    /// Index of the claim or grant record; the role covers records after it.
    pub from: u64,
    /// Index of the revoke (or re-grant) record that ended it, if any.
    pub until: Option<u64>,
}

impl Membership {
    fn covers(&self, index: u64) -> bool {
        self.from < index && self.until.is_none_or(|u| index < u)
    }
}

/// Every namespace's membership history.
#[derive(Debug, Clone, Default)]
pub struct NamespaceState {
    namespaces: BTreeMap<Namespace, Vec<Membership>>,
    last: Option<u64>,
}

fn list(keys: &[VerifierKey]) -> String {
    if keys.is_empty() {
        return "nobody".to_string();
    }
    keys.iter()
        .map(VerifierKey::label)
        .collect::<Vec<_>>()
        .join(", ")
}

impl NamespaceState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one record at log `index`, given the keys whose signatures on it verified. Indexes
    /// must increase. On error the state is unchanged.
    pub fn apply(
        &mut self,
        index: u64,
        record: &Record,
        signers: &[VerifierKey],
    ) -> Result<(), NamespaceError> {
        if let Some(last) = self.last
            && index <= last
        {
            return Err(NamespaceError::OutOfOrder { index, last });
        }
        match record {
            Record::Namespace(n) => self.apply_namespace(index, n, signers)?,
            Record::Release(_) | Record::Yank(_) => {
                self.check_publish(record.namespace(), index, signers)?;
            }
        }
        self.last = Some(index);
        Ok(())
    }

    fn apply_namespace(
        &mut self,
        index: u64,
        rec: &NamespaceRecord,
        signers: &[VerifierKey],
    ) -> Result<(), NamespaceError> {
        let ns = &rec.namespace;
        let key_text = rec.key.to_string();
        match rec.op {
            NamespaceOp::Claim => {
                if self.namespaces.contains_key(ns) {
                    return Err(NamespaceError::AlreadyClaimed(ns.clone()));
                }
                if !signers.contains(&rec.key) {
                    return Err(NamespaceError::ClaimNotSelfSigned {
                        namespace: ns.clone(),
                        key: key_text,
                        signers: list(signers),
                    });
                }
                self.namespaces.insert(
                    ns.clone(),
                    vec![Membership {
                        key: rec.key.clone(),
                        role: Role::Owner,
                        from: index,
                        until: None,
                    }],
                );
            }
            NamespaceOp::Grant | NamespaceOp::Revoke => {
                let Some(members) = self.namespaces.get_mut(ns) else {
                    return Err(NamespaceError::Unclaimed(ns.clone()));
                };
                let owner_signed = members.iter().any(|m| {
                    m.until.is_none() && m.role == Role::Owner && signers.contains(&m.key)
                });
                if !owner_signed {
                    return Err(NamespaceError::NotOwner {
                        op: rec.op,
                        namespace: ns.clone(),
                        signers: list(signers),
                    });
                }
                let current = members
                    .iter()
                    .position(|m| m.until.is_none() && m.key == rec.key);
                if rec.op == NamespaceOp::Grant {
                    if let Some(i) = current {
                        if members[i].role == rec.role {
                            return Err(NamespaceError::AlreadyGranted {
                                namespace: ns.clone(),
                                key: key_text,
                                role: rec.role,
                            });
                        }
                        let demotes_last_owner = members[i].role == Role::Owner
                            && members
                                .iter()
                                .filter(|m| m.until.is_none() && m.role == Role::Owner)
                                .count()
                                == 1;
                        if demotes_last_owner {
                            return Err(NamespaceError::LastOwner {
                                namespace: ns.clone(),
                                key: key_text,
                            });
                        }
                        // A grant of another role replaces the old one from this index on.
                        members[i].until = Some(index);
                    }
                    members.push(Membership {
                        key: rec.key.clone(),
                        role: rec.role,
                        from: index,
                        until: None,
                    });
                } else {
                    let Some(i) = current.filter(|&i| members[i].role == rec.role) else {
                        return Err(NamespaceError::NotGranted {
                            namespace: ns.clone(),
                            key: key_text,
                            role: rec.role,
                        });
                    };
                    let owners = members
                        .iter()
                        .filter(|m| m.until.is_none() && m.role == Role::Owner)
                        .count();
                    if rec.role == Role::Owner && owners == 1 {
                        return Err(NamespaceError::LastOwner {
                            namespace: ns.clone(),
                            key: key_text,
                        });
                    }
                    members[i].until = Some(index);
                }
            }
        }
        Ok(())
    }

    /// The keys whose signatures can matter for `record`: every key that ever held a role in
    /// its namespace, and for a claim the claimed key. Roles and indexes are checked by
    /// [`NamespaceState::apply`]; this only decides which signature lines to verify.
    pub fn keys_for(&self, record: &Record) -> KeySet {
        let mut keys = KeySet::new();
        for k in self.candidates(record) {
            keys.insert(k.clone());
        }
        keys
    }

    /// The keys a record may be signed by at this point of the replay: every key the
    /// namespace's records named, and a claim's own key.
    fn candidates<'a>(&'a self, record: &'a Record) -> impl Iterator<Item = &'a VerifierKey> {
        let claimed = match record {
            Record::Namespace(n) if n.op == NamespaceOp::Claim => Some(&n.key),
            _ => None,
        };
        self.history(record.namespace())
            .iter()
            .map(|m| &m.key)
            .chain(claimed)
    }

    /// Replays one log entry: parses the signed record in `leaf`, verifies its signatures
    /// against the keys of its namespace, and applies it at `index`. Returns the record and the
    /// keys that signed it. This is what the registry runs before accepting a record and what
    /// a monitor runs over the whole log.
    pub fn apply_entry(
        &mut self,
        index: u64,
        leaf: &[u8],
    ) -> Result<(Record, Vec<VerifierKey>), EntryError> {
        self.apply_entry_known(index, leaf, None)
    }

    /// [`NamespaceState::apply_entry`] with the keys already known to have signed these exact
    /// leaf bytes (a client's cache of records it verified before, keyed by leaf hash): when
    /// every one of them is a key the record could be signed by, the signatures are not
    /// verified again. Otherwise, as `apply_entry`.
    pub fn apply_entry_known(
        &mut self,
        index: u64,
        leaf: &[u8],
        known: Option<&[VerifierKey]>,
    ) -> Result<(Record, Vec<VerifierKey>), EntryError> {
        let parsed = Note::parse(leaf).map_err(|source| EntryError::Note { index, source })?;
        let record =
            Record::from_note(&parsed).map_err(|source| EntryError::Record { index, source })?;
        let verified = self.apply_parsed_known(index, leaf, &parsed, &record, known)?;
        Ok((record, verified))
    }

    /// [`NamespaceState::apply_entry_known`] for a caller that has already parsed `leaf` into
    /// `parsed` and `record` (a chain walk does, to follow the links): the same checks, without
    /// parsing the leaf again. Returns the keys that signed it.
    pub fn apply_parsed_known(
        &mut self,
        index: u64,
        leaf: &[u8],
        parsed: &Note,
        record: &Record,
        known: Option<&[VerifierKey]>,
    ) -> Result<Vec<VerifierKey>, EntryError> {
        let note_err = |source| EntryError::Note { index, source };
        let verified = match known.filter(|keys| {
            !keys.is_empty() && keys.iter().all(|k| self.candidates(record).any(|c| c == k))
        }) {
            Some(keys) => keys.to_vec(),
            None => match note::verify(leaf, &self.keys_for(record)) {
                Ok(v) => v.verified_by,
                // No known signer at all is an authorisation failure, reported as such below.
                Err(NoteError::NoVerifiedSignature { .. }) => Vec::new(),
                Err(e) => return Err(note_err(e)),
            },
        };
        self.apply(index, record, &verified).map_err(|source| {
            // With no known key verifying, say whose signature lines the record carries.
            let source = match source {
                NamespaceError::NotAuthorised {
                    namespace, index, ..
                } if verified.is_empty() => NamespaceError::NotAuthorised {
                    namespace,
                    index,
                    signers: format!(
                        "no key the namespace ever named (signature lines: {})",
                        parsed
                            .signatures
                            .iter()
                            .map(|l| crate::key_label(&l.name, l.key_id))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                },
                other => other,
            };
            EntryError::Namespace { index, source }
        })?;
        Ok(verified)
    }

    /// Whether `key` may publish (or yank) in `namespace` for a record at log `index`.
    pub fn may_publish(&self, namespace: &Namespace, key: &VerifierKey, index: u64) -> bool {
        self.namespaces
            .get(namespace)
            .is_some_and(|ms| ms.iter().any(|m| &m.key == key && m.covers(index)))
    }

    /// Checks that at least one of `signers` may publish in `namespace` at `index`.
    pub fn check_publish(
        &self,
        namespace: &Namespace,
        index: u64,
        signers: &[VerifierKey],
    ) -> Result<(), NamespaceError> {
        if signers
            .iter()
            .any(|k| self.may_publish(namespace, k, index))
        {
            return Ok(());
        }
        Err(NamespaceError::NotAuthorised {
            namespace: namespace.clone(),
            index,
            signers: list(signers),
        })
    }

    /// The whole membership history of a namespace, in log order (empty if unclaimed).
    pub fn history(&self, namespace: &Namespace) -> &[Membership] {
        self.namespaces
            .get(namespace)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The keys and roles in force after the last applied record.
    pub fn current(&self, namespace: &Namespace) -> Vec<(&VerifierKey, Role)> {
        self.history(namespace)
            .iter()
            .filter(|m| m.until.is_none())
            .map(|m| (&m.key, m.role))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::key::SignerKey;
    use crate::record::{Digest, Release, Timestamp};

    fn key(n: u8) -> VerifierKey {
        SignerKey::from_seed(&format!("k{n}"), &[n; 32])
            .unwrap()
            .verifier()
    }

    fn ns_rec(op: NamespaceOp, k: &VerifierKey, role: Role) -> Record {
        Record::Namespace(NamespaceRecord {
            namespace: Namespace::parse("acme").unwrap(),
            prev: crate::chain::Prev::None,
            op,
            key: k.clone(),
            role,
            time: Timestamp::parse("2026-11-21T19:56:57Z").unwrap(),
        })
    }

    fn release() -> Record {
        Record::Release(Release {
            package: crate::name::PackageName::parse("acme:auth").unwrap(),
            prev: crate::chain::Prev::None,
            version: crate::name::Version::new(1, 0, 0),
            digest: Digest::of(b"x"),
            size: 1,
            time: Timestamp::parse("2026-11-21T19:56:57Z").unwrap(),
            imports: vec![],
            exports: vec![],
        })
    }

    #[test]
    fn lifecycle() {
        let (owner, publisher, stranger) = (key(1), key(2), key(3));
        let acme = Namespace::parse("acme").unwrap();
        let mut s = NamespaceState::new();

        // A claim signed by someone else is refused.
        let e = s
            .apply(
                0,
                &ns_rec(NamespaceOp::Claim, &owner, Role::Owner),
                std::slice::from_ref(&stranger),
            )
            .unwrap_err();
        assert!(matches!(e, NamespaceError::ClaimNotSelfSigned { .. }));
        // A release before any claim is refused.
        assert!(matches!(
            s.apply(0, &release(), std::slice::from_ref(&owner)),
            Err(NamespaceError::NotAuthorised { .. })
        ));
        s.apply(
            1,
            &ns_rec(NamespaceOp::Claim, &owner, Role::Owner),
            std::slice::from_ref(&owner),
        )
        .unwrap();
        assert!(matches!(
            s.apply(
                2,
                &ns_rec(NamespaceOp::Claim, &stranger, Role::Owner),
                std::slice::from_ref(&stranger)
            ),
            Err(NamespaceError::AlreadyClaimed(_))
        ));
        // Only an owner can grant.
        assert!(matches!(
            s.apply(
                2,
                &ns_rec(NamespaceOp::Grant, &stranger, Role::Publish),
                std::slice::from_ref(&stranger)
            ),
            Err(NamespaceError::NotOwner { .. })
        ));
        s.apply(
            3,
            &ns_rec(NamespaceOp::Grant, &publisher, Role::Publish),
            std::slice::from_ref(&owner),
        )
        .unwrap();
        assert!(matches!(
            s.apply(
                4,
                &ns_rec(NamespaceOp::Grant, &publisher, Role::Publish),
                std::slice::from_ref(&owner)
            ),
            Err(NamespaceError::AlreadyGranted { .. })
        ));
        // A publisher cannot grant.
        assert!(matches!(
            s.apply(
                4,
                &ns_rec(NamespaceOp::Grant, &stranger, Role::Publish),
                std::slice::from_ref(&publisher)
            ),
            Err(NamespaceError::NotOwner { .. })
        ));
        s.apply(5, &release(), std::slice::from_ref(&publisher))
            .unwrap();
        s.apply(
            6,
            &ns_rec(NamespaceOp::Revoke, &publisher, Role::Publish),
            std::slice::from_ref(&owner),
        )
        .unwrap();
        // After the revoke, the publisher's signatures no longer count; earlier ones still do.
        assert!(matches!(
            s.apply(7, &release(), std::slice::from_ref(&publisher)),
            Err(NamespaceError::NotAuthorised { index: 7, .. })
        ));
        assert!(s.may_publish(&acme, &publisher, 5));
        assert!(!s.may_publish(&acme, &publisher, 3));
        assert!(!s.may_publish(&acme, &publisher, 7));
        assert!(s.may_publish(&acme, &owner, 7));
        // The last owner cannot be revoked.
        assert!(matches!(
            s.apply(
                7,
                &ns_rec(NamespaceOp::Revoke, &owner, Role::Owner),
                std::slice::from_ref(&owner)
            ),
            Err(NamespaceError::LastOwner { .. })
        ));
        // Revoking a role the key does not hold is refused.
        assert!(matches!(
            s.apply(
                7,
                &ns_rec(NamespaceOp::Revoke, &stranger, Role::Publish),
                std::slice::from_ref(&owner)
            ),
            Err(NamespaceError::NotGranted { .. })
        ));
        // Out of order indexes are refused.
        assert!(matches!(
            s.apply(6, &release(), std::slice::from_ref(&owner)),
            Err(NamespaceError::OutOfOrder { .. })
        ));
        // Hand over ownership: grant a second owner, who then revokes the first.
        s.apply(
            8,
            &ns_rec(NamespaceOp::Grant, &stranger, Role::Owner),
            std::slice::from_ref(&owner),
        )
        .unwrap();
        s.apply(
            9,
            &ns_rec(NamespaceOp::Revoke, &owner, Role::Owner),
            std::slice::from_ref(&stranger),
        )
        .unwrap();
        assert!(matches!(
            s.apply(
                10,
                &ns_rec(NamespaceOp::Grant, &owner, Role::Owner),
                std::slice::from_ref(&owner)
            ),
            Err(NamespaceError::NotOwner { .. })
        ));
        assert_eq!(s.current(&acme), vec![(&stranger, Role::Owner)]);
        assert_eq!(s.history(&acme).len(), 3);
    }

    #[test]
    fn replay_signed_entries() {
        let owner = SignerKey::from_seed("owner", &[1; 32]).unwrap();
        let publisher = SignerKey::from_seed("publisher", &[2; 32]).unwrap();
        let mut s = NamespaceState::new();
        let claim = ns_rec(NamespaceOp::Claim, &owner.verifier(), Role::Owner);
        let grant = ns_rec(NamespaceOp::Grant, &publisher.verifier(), Role::Publish);
        let revoke = ns_rec(NamespaceOp::Revoke, &publisher.verifier(), Role::Publish);

        // Granting before the namespace exists, even when well signed, is refused.
        let early = grant.sign(&[&owner]).unwrap();
        assert!(matches!(
            s.apply_entry(0, early.as_bytes()),
            Err(EntryError::Namespace {
                index: 0,
                source: NamespaceError::Unclaimed(_)
            })
        ));
        let (rec, by) = s
            .apply_entry(1, claim.sign(&[&owner]).unwrap().as_bytes())
            .unwrap();
        assert_eq!(rec, claim);
        assert_eq!(by, vec![owner.verifier()]);
        // A grant signed by the would-be publisher itself carries no owner signature.
        assert!(matches!(
            s.apply_entry(2, grant.sign(&[&publisher]).unwrap().as_bytes()),
            Err(EntryError::Namespace {
                source: NamespaceError::NotOwner { .. },
                ..
            })
        ));
        s.apply_entry(3, grant.sign(&[&owner]).unwrap().as_bytes())
            .unwrap();
        let rel = release().sign(&[&publisher]).unwrap();
        s.apply_entry(4, rel.as_bytes()).unwrap();
        s.apply_entry(5, revoke.sign(&[&owner]).unwrap().as_bytes())
            .unwrap();
        assert!(matches!(
            s.apply_entry(6, rel.as_bytes()),
            Err(EntryError::Namespace {
                source: NamespaceError::NotAuthorised { index: 6, .. },
                ..
            })
        ));
        // A tampered body under a known key is a signature error, not silently ignored.
        let forged = rel.replace("size 1\n", "size 2\n");
        assert!(matches!(
            s.apply_entry(7, forged.as_bytes()),
            Err(EntryError::Note {
                source: NoteError::InvalidSignature { .. },
                ..
            })
        ));
        assert!(matches!(
            s.apply_entry(8, b"not a note"),
            Err(EntryError::Note { index: 8, .. })
        ));
    }
}
