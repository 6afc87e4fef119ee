//! Lock names and the key that holds each lease.

use crate::error::LockError;

/// The longest lock name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 1024;

/// The key prefix used when none is configured.
pub const DEFAULT_PREFIX: &str = "lock:";

/// The Redis key that holds the lease of lock `name`: `{prefix}{name}` with the
/// name as a hash tag, so the lock's keys share one cluster slot.
pub(crate) fn lease_key(prefix: &str, name: &str) -> String {
    // `concat`, not `format!`: key names are built on every acquire and release,
    // and the formatting machinery was a tenth of the client's work per lock.
    [prefix, "{", name, "}"].concat()
}

/// Checks a lock name: non-empty, at most [`MAX_NAME_LEN`] bytes.
pub(crate) fn validate_name(name: &str) -> Result<(), LockError> {
    let reason = if name.is_empty() {
        "the name is empty; give each lock a non-empty name such as `invoice:42`".to_owned()
    } else if name.len() > MAX_NAME_LEN {
        format!(
            "the name is {} bytes long; the limit is {MAX_NAME_LEN}",
            name.len()
        )
    } else {
        return Ok(());
    };
    let mut shown: String = name.chars().take(64).collect();
    if shown.len() < name.len() {
        shown.push('…');
    }
    Err(LockError::InvalidName {
        name: shown,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_overlong_names_are_rejected() {
        assert!(matches!(
            validate_name(""),
            Err(LockError::InvalidName { .. })
        ));
        let long = "x".repeat(MAX_NAME_LEN + 1);
        let error = validate_name(&long)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("limit is 1024"), "{error}");
        assert!(validate_name("invoice:42").is_ok());
        assert!(validate_name("ünïcode ✓").is_ok());
    }

    #[test]
    fn the_name_is_the_hash_tag() {
        assert_eq!(lease_key("lock:", "invoice:42"), "lock:{invoice:42}");
    }
}
