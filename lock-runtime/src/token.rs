//! Lease tokens: 128 random bits from the OS generator, unique per acquisition.

use crate::LockError;

/// Makes a fresh token as 32 lowercase hex digits.
pub(crate) fn new_token(name: &str) -> Result<String, LockError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|error| LockError::Config {
        subject: format!("lock `{name}`"),
        reason: format!("the OS random generator failed ({error}); cannot make a lease token"),
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A uniformly random number in `0..bound` for jitter; falls back to 0 if the OS
/// generator fails (jitter is an optimisation, never needed for safety).
pub(crate) fn jitter(bound: u64) -> u64 {
    if bound == 0 {
        return 0;
    }
    getrandom::u64().map(|r| r % bound).unwrap_or(0)
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
}
