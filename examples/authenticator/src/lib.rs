//! Library component fixture exporting `neon:cybergrid/authenticator@0.1.0`; it reads its
//! secret from the environment and its expiry against the wall clock, so it has imports to audit.

use std::time::{SystemTime, UNIX_EPOCH};

wit_bindgen::generate!({
    path: "../../wit/neon-cybergrid",
    world: "authenticator-provider",
});

use exports::neon::cybergrid::authenticator::Guest;

/// The token every user must present.
const TOKEN_VAR: &str = "AUTH_TOKEN";
/// Optional Unix time in seconds after which no token is accepted.
const EXPIRES_VAR: &str = "AUTH_EXPIRES";

struct Authenticator;

impl Guest for Authenticator {
    fn authenticate(user: String, token: String) -> bool {
        if user.is_empty() || token.is_empty() {
            return false;
        }
        // With no configured token nothing can match: failing closed is the point of the check.
        let Ok(expected) = std::env::var(TOKEN_VAR) else {
            return false;
        };
        if !constant_time_eq(expected.as_bytes(), token.as_bytes()) {
            return false;
        }
        match std::env::var(EXPIRES_VAR) {
            Err(_) => true,
            // An expiry that does not parse is a misconfiguration, so it rejects rather than
            // silently granting forever.
            Ok(expires) => match (expires.trim().parse::<u64>(), now_unix_seconds()) {
                (Ok(expires), Some(now)) => now < expires,
                _ => false,
            },
        }
    }
}

/// Seconds since the Unix epoch from `wasi:clocks/wall-clock`, or none if the clock is before it.
fn now_unix_seconds() -> Option<u64> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// Compares without stopping at the first difference, so timing says nothing about the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

export!(Authenticator);
