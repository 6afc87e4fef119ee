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

/// The key of lock `name` on a Redis Cluster: [`lease_key`], unless that key's
/// hash tag is empty (a name starting with `}`: `lock:{}x}`), which Redis
/// Cluster then ignores, hashing the whole key, so that the lock's other keys
/// (`…:fence`, `…:queue`) would land in other slots. Those names get
/// `{prefix}{#}{name}#` instead: tag `#`, and unlike any [`lease_key`], it does
/// not end in `}`, so no two names share a key.
///
/// A single server keeps [`lease_key`] for every name (slots do not matter
/// there), so its keys are the same as they always were.
pub(crate) fn cluster_lease_key(prefix: &str, name: &str) -> String {
    let key = lease_key(prefix, name);
    if hash_tag(&key).is_some() {
        return key;
    }
    [prefix, "{#}", name, "#"].concat()
}

/// The part of `key` Redis Cluster hashes for its slot when that is not the
/// whole key: what lies between the first `{` and the first `}` after it, if
/// not empty.
pub(crate) fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let after = &key[open + 1..];
    let close = after.find('}')?;
    (close > 0).then(|| &after[..close])
}

/// The `SCAN MATCH` globs that find the lease keys of the names matching
/// `pattern` (a glob over names): `{prefix}{pattern}` with the prefix's glob
/// characters escaped, and on a cluster also the `{#}` form of
/// [`cluster_lease_key`]. No other key of a lock ends as these do (the
/// derived keys end in their suffix).
pub(crate) fn lease_key_patterns(prefix: &str, pattern: &str, cluster: bool) -> Vec<String> {
    let mut escaped = String::with_capacity(prefix.len());
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    let mut patterns = vec![[escaped.as_str(), "{", pattern, "}"].concat()];
    if cluster {
        patterns.push([escaped.as_str(), "{#}", pattern, "#"].concat());
    }
    patterns
}

/// The lock name a lease key (as [`lease_key`] or [`cluster_lease_key`] make
/// them) stands for; `None` for another key.
pub(crate) fn name_of_key<'a>(prefix: &str, key: &'a str) -> Option<&'a str> {
    let rest = key.strip_prefix(prefix)?;
    if let Some(name) = rest
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
    {
        return Some(name).filter(|name| !name.is_empty());
    }
    rest.strip_prefix("{#}")?
        .strip_suffix('#')
        .filter(|name| name.starts_with('}'))
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
    fn lease_keys_map_back_to_their_names() {
        for name in ["invoice:42", "}", "}x", "a}b", "#}x#", "{", "ü"] {
            for key in [lease_key("lock:", name), cluster_lease_key("lock:", name)] {
                assert_eq!(name_of_key("lock:", &key), Some(name), "{key}");
            }
        }
        assert_eq!(name_of_key("lock:", "lock:{a}:fence"), None);
        assert_eq!(name_of_key("lock:", "lock:{a}:queue"), None);
        assert_eq!(name_of_key("lock:", "other:{a}"), None);
        assert_eq!(
            lease_key_patterns("app*[1]:", "inv*", true),
            ["app\\*\\[1\\]:{inv*}", "app\\*\\[1\\]:{#}inv*#"]
        );
        assert_eq!(lease_key_patterns("lock:", "*", false), ["lock:{*}"]);
    }

    #[test]
    fn the_name_is_the_hash_tag() {
        assert_eq!(lease_key("lock:", "invoice:42"), "lock:{invoice:42}");
        assert_eq!(hash_tag("lock:{invoice:42}"), Some("invoice:42"));
        assert_eq!(hash_tag("lock:{a}b}"), Some("a"));
        assert_eq!(hash_tag("lock:{}}"), None);
        assert_eq!(hash_tag("lock:"), None);
        assert_eq!(hash_tag("lock:{open"), None);
    }

    /// On a cluster, every lock's keys share one slot: the lease key has a
    /// non-empty hash tag, and the derived keys (its name plus a suffix) keep it.
    #[test]
    fn on_a_cluster_every_name_has_a_hash_tag_and_no_two_names_share_a_key() {
        let names = [
            "invoice:42",
            "}",
            "}}",
            "{}",
            "a}b",
            "}x",
            "#}x",
            "{#}x#",
            "#",
            "{",
            "}{",
        ];
        let mut keys = std::collections::HashSet::new();
        for name in names {
            let key = cluster_lease_key("lock:", name);
            let tag = hash_tag(&key);
            assert!(tag.is_some(), "{name:?} -> {key:?} has no hash tag");
            assert_eq!(hash_tag(&format!("{key}:fence")), tag, "{name:?}");
            assert!(keys.insert(key), "{name:?} shares a key");
        }
        // Names with a tag keep the single-server key.
        assert_eq!(cluster_lease_key("lock:", "a}b"), lease_key("lock:", "a}b"));
        assert_eq!(cluster_lease_key("lock:", "}"), "lock:{#}}#");
    }
}
