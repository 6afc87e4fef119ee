//! Lease tokens: 128 random bits from the OS generator, unique per acquisition,
//! followed by the holder's record (who asked, and when), so that the lease
//! itself says who holds it, with no extra key or request.
//!
//! A token is `[shape prefix]<32 hex>|<f or x><unix ms>|<pid>|<host>|<label>`:
//! the shape prefix (`s<n>-`, `r-`, `w-`, none for an exclusive lock) is read
//! by the scripts, `f` marks a lease that asked for a fencing token, the time
//! is when the token was made (the acquire's start), and the label is the
//! client's [`holder_label`](crate::LockClientBuilder::holder_label), empty if
//! none. No part contains `:` (notices split on it) or `|`. The record is for
//! people and dashboards only: safety comes from the random part, compared
//! whole on every request.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::LockError;

/// The longest holder label accepted, in bytes.
pub(crate) const MAX_LABEL_LEN: usize = 64;

/// Who a client's leases say holds them: the tail every token of the client
/// ends with, `|<pid>|<host>|<label>`, made once per client.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    tail: String,
}

impl Identity {
    /// This process on this host, with `label` (checked: at most
    /// [`MAX_LABEL_LEN`] bytes, no `:`, `|`, whitespace or control characters).
    pub(crate) fn new(label: Option<&str>) -> Result<Identity, String> {
        let label = label.unwrap_or_default();
        if label.len() > MAX_LABEL_LEN {
            return Err(format!(
                "the holder label is {} bytes long; the limit is {MAX_LABEL_LEN}",
                label.len()
            ));
        }
        if let Some(bad) = label
            .chars()
            .find(|c| matches!(c, ':' | '|') || c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "the holder label `{}` contains {bad:?}; use letters, digits and `-_./@`",
                label.escape_debug()
            ));
        }
        let host: String = gethostname::gethostname()
            .to_string_lossy()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .take(MAX_LABEL_LEN)
            .collect();
        Ok(Identity {
            tail: format!("|{}|{host}|{label}", std::process::id()),
        })
    }

    /// A fresh token for lock `name`: `prefix` (its shape), the random part, and
    /// this holder's record, `fenced` if the lease asks for a fencing token.
    pub(crate) fn mint(&self, name: &str, prefix: &str, fenced: bool) -> Result<String, LockError> {
        let mut token = String::with_capacity(prefix.len() + 32 + 16 + self.tail.len());
        token.push_str(prefix);
        push_random_hex(name, &mut token)?;
        token.push('|');
        token.push(if fenced { 'f' } else { 'x' });
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis());
        // Writing into a String cannot fail.
        let _ = write!(token, "{now}");
        token.push_str(&self.tail);
        Ok(token)
    }
}

/// What a token says about its holder (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record<'a> {
    pub(crate) fenced: bool,
    pub(crate) since: SystemTime,
    pub(crate) pid: u32,
    pub(crate) host: &'a str,
    pub(crate) label: &'a str,
}

/// The holder's record in `token`; `None` for a token without one (made by an
/// older version of this crate) or one that does not parse.
pub(crate) fn record(token: &str) -> Option<Record<'_>> {
    let mut parts = token.split('|');
    let _random = parts.next()?;
    let stamp = parts.next()?;
    let (fenced, millis) = match stamp.split_at_checked(1)? {
        ("f", millis) => (true, millis),
        ("x", millis) => (false, millis),
        _ => return None,
    };
    let since = UNIX_EPOCH.checked_add(Duration::from_millis(millis.parse().ok()?))?;
    let pid = parts.next()?.parse().ok()?;
    let host = parts.next()?;
    let label = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    Some(Record {
        fenced,
        since,
        pid,
        host,
        label,
    })
}

/// Makes a fresh random token as 32 lowercase hex digits.
pub(crate) fn new_token(name: &str) -> Result<String, LockError> {
    let mut token = String::with_capacity(32);
    push_random_hex(name, &mut token)?;
    Ok(token)
}

/// Appends 128 random bits from the OS generator, as 32 lowercase hex digits.
fn push_random_hex(name: &str, token: &mut String) -> Result<(), LockError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|error| LockError::Config {
        subject: format!("lock `{name}`"),
        reason: format!("the OS random generator failed ({error}); cannot make a lease token"),
    })?;
    // By hand: formatting each byte costs more than the rest of an acquire's
    // client-side work (~10k instructions per token, measured with callgrind).
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        token.push(char::from(HEX[usize::from(byte >> 4)]));
        token.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    Ok(())
}

/// A random number in `0..bound` for jitter, from a per-thread xorshift generator
/// seeded once from the OS (jitter is an optimisation, never needed for safety,
/// so it need not cost a system call per wait as a token does).
pub(crate) fn jitter(bound: u64) -> u64 {
    thread_local! {
        static STATE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }
    if bound == 0 {
        return 0;
    }
    STATE.with(|state| {
        let mut x = state.get();
        if x == 0 {
            // Any non-zero seed works; without the OS generator, the clock and
            // this thread's state address still spread processes and threads.
            x = getrandom::u64().unwrap_or_else(|_| {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |since| since.as_nanos() as u64);
                nanos ^ (std::ptr::from_ref(state) as usize as u64).rotate_left(32)
            }) | 1;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        x % bound
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_32_hex_digits_and_differ() {
        let a = new_token("t").unwrap_or_default();
        let b = new_token("t").unwrap_or_default();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn tokens_use_all_sixteen_lowercase_hex_digits() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let token = new_token("t").unwrap_or_default();
            assert!(
                token
                    .bytes()
                    .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
            );
            seen.extend(token.into_bytes());
        }
        assert_eq!(
            seen.len(),
            16,
            "all 16 digits appear in 6,400 random digits"
        );
    }

    #[test]
    fn a_token_carries_its_holders_record() {
        let identity = Identity::new(Some("billing-worker")).unwrap_or_else(|e| panic!("{e}"));
        let before = SystemTime::now() - Duration::from_millis(1);
        let token = identity.mint("t", "s3-", true).unwrap_or_default();
        assert!(token.starts_with("s3-"), "{token}");
        assert!(!token.contains(':'), "{token}");
        let found = record(&token).unwrap_or_else(|| panic!("no record in {token}"));
        assert!(found.fenced);
        assert_eq!(found.pid, std::process::id());
        assert_eq!(found.label, "billing-worker");
        assert!(!found.host.is_empty());
        assert!(found.since >= before && found.since <= SystemTime::now());
        let plain = Identity::new(None).unwrap_or_else(|e| panic!("{e}"));
        let token = plain.mint("t", "", false).unwrap_or_default();
        assert_eq!(
            record(&token).map(|r| (r.fenced, r.label)),
            Some((false, ""))
        );
        // Tokens of older versions carry no record.
        assert_eq!(record("0123456789abcdef0123456789abcdef"), None);
        assert_eq!(record("ab|q12|1|h|"), None);
    }

    #[test]
    fn labels_that_would_break_the_token_are_refused() {
        for bad in ["a:b", "a|b", "two words", "tab\t", &"x".repeat(65)] {
            let error = Identity::new(Some(bad)).err().unwrap_or_default();
            assert!(error.contains("holder label"), "{bad:?}: {error}");
        }
        assert!(Identity::new(Some("svc/eu-1@v2.3_x")).is_ok());
    }

    #[test]
    fn jitter_stays_below_its_bound_and_spreads() {
        assert_eq!(jitter(0), 0);
        let draws: Vec<u64> = (0..1_000).map(|_| jitter(10)).collect();
        assert!(draws.iter().all(|d| *d < 10));
        let distinct: std::collections::HashSet<_> = draws.into_iter().collect();
        assert_eq!(distinct.len(), 10, "every value of 0..10 in 1,000 draws");
    }
}
