//! The registry's timestamp key: a C2SP tlog cosignature on every checkpoint it serves, renewed
//! while the log stands still, so clients can tell a live registry from a frozen one or from an
//! old checkpoint replayed by a mirror (docs/protocol.md §6.10).
//!
//! The key is derived from the log key ([`Cosigner::derived_from`]), so replicas that share the
//! log key share it too, and the log key vouches for it in a signed statement served at
//! `GET /v1/log/timestamp-key`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gridreg_protocol::cosignature::timestamp_key_statement;
use gridreg_protocol::{Cosigner, KeyError, Note, SignerKey};

/// A served cosignature is renewed once it is this old (the protocol promises a minute), so a
/// checkpoint fetched at any moment carries the current second, at the cost of at most one
/// signature a second however many requests come in.
pub const RENEW_AFTER: Duration = Duration::from_secs(1);

/// Seconds since the Unix epoch, as cosignatures and checkpoints carry time (0 for a clock set
/// before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Stamps served checkpoints with the timestamp key.
pub struct Timestamper {
    key: Cosigner,
    statement: String,
    last: Mutex<Option<Stamped>>,
}

struct Stamped {
    /// The log-signed checkpoint note this was made from.
    from: String,
    time: u64,
    served: Arc<str>,
}

impl Timestamper {
    /// The timestamp key of the log signed by `log_key`, with the statement naming it.
    pub fn new(log_key: &SignerKey) -> Result<Self, KeyError> {
        let origin = log_key.name();
        let key = Cosigner::derived_from(log_key, &format!("{origin}/timestamp"))?;
        let statement = Note::sign(
            &timestamp_key_statement(origin, &key.verifier()),
            &[log_key],
        )
        .map_err(|e| KeyError::BadName(e.to_string()))?
        .to_text();
        Ok(Self {
            key,
            statement,
            last: Mutex::new(None),
        })
    }

    /// The log key's signed statement naming the timestamp key.
    pub fn statement(&self) -> &str {
        &self.statement
    }

    /// `checkpoint` (a log-signed checkpoint note) with a cosignature of the current time.
    pub fn stamp(&self, checkpoint: &str) -> Arc<str> {
        self.stamp_at(checkpoint, unix_now())
    }

    /// [`Self::stamp`] at `now` (seconds since the epoch). The last stamp is reused while it
    /// is for the same checkpoint and younger than [`RENEW_AFTER`], so serving costs no
    /// signature per request.
    pub fn stamp_at(&self, checkpoint: &str, now: u64) -> Arc<str> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = last.as_ref()
            && s.from == checkpoint
            && now >= s.time
            && now - s.time < RENEW_AFTER.as_secs()
        {
            return s.served.clone();
        }
        let served: Arc<str> = match Note::parse(checkpoint.as_bytes()) {
            Ok(mut note) => {
                self.key.cosign_note(&mut note, now);
                note.to_text().into()
            }
            // The sequencer signed it, so it parses; if it ever did not, serving it unstamped
            // makes clients refuse it at the freshness check rather than taking the server down.
            Err(e) => {
                tracing::error!(error = %e, "the newest checkpoint does not parse as a note");
                return checkpoint.into();
            }
        };
        *last = Some(Stamped {
            from: checkpoint.to_string(),
            time: now,
            served: served.clone(),
        });
        served
    }
}

impl std::fmt::Debug for Timestamper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timestamper")
            .field("key", &self.key.verifier())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use gridreg_protocol::cosignature::parse_timestamp_key_statement;
    use gridreg_protocol::{Checkpoint, KeySet, note};

    #[test]
    fn stamps_are_renewed_every_second_and_on_every_new_checkpoint() {
        let log = SignerKey::from_seed("reg.example", &[1; 32]).unwrap();
        let t = Timestamper::new(&log).unwrap();
        let verified = note::verify(
            t.statement().as_bytes(),
            &KeySet::from_keys([log.verifier()]),
        )
        .unwrap();
        let key = parse_timestamp_key_statement(verified.text(), "reg.example").unwrap();
        let cp = |size| -> String {
            Checkpoint::new("reg.example", size, [size as u8; 32])
                .sign(&[&log])
                .unwrap()
                .note
        };
        let time = |text: &str| key.cosigned_time(&Note::parse(text.as_bytes()).unwrap());
        let one = cp(1);
        assert_eq!(time(&t.stamp_at(&one, 1000)), Ok(1000));
        assert_eq!(time(&t.stamp_at(&one, 1000)), Ok(1000), "reused");
        assert_eq!(time(&t.stamp_at(&one, 1001)), Ok(1001), "renewed");
        let two = cp(2);
        assert_eq!(time(&t.stamp_at(&two, 1031)), Ok(1031), "a new checkpoint");
        // A clock that went back gets a fresh stamp rather than one from its future.
        assert_eq!(time(&t.stamp_at(&two, 900)), Ok(900));
    }
}
