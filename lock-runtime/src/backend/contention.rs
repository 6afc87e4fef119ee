//! Which locks this client lately found busy or handed to a waiter: their first
//! attempt skips the plain `SET NX` and goes straight to the script, which queues.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// How long a lock counts as contended after it was last seen so.
const CONTENTION_MEMORY: Duration = Duration::from_secs(1);
/// Bound on the remembered locks (a few hundred KiB at most).
const CONTENTION_CAPACITY: usize = 4096;

/// Lock keys, with when each was last seen contended.
#[derive(Debug, Default)]
pub(crate) struct Contention(Mutex<HashMap<String, Instant>>);

impl Contention {
    fn map(&self) -> MutexGuard<'_, HashMap<String, Instant>> {
        // Each mutation is one step: a poisoned map is still consistent.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn recent(&self, key: &str) -> bool {
        self.map()
            .get(key)
            .is_some_and(|seen| seen.elapsed() < CONTENTION_MEMORY)
    }

    pub(crate) fn mark(&self, key: &str) {
        let mut map = self.map();
        if map.len() >= CONTENTION_CAPACITY && !map.contains_key(key) {
            map.retain(|_, seen| seen.elapsed() < CONTENTION_MEMORY);
            if map.len() >= CONTENTION_CAPACITY {
                map.clear();
            }
        }
        map.insert(key.to_owned(), Instant::now());
    }

    pub(crate) fn forget(&self, key: &str) {
        self.map().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contention_is_remembered_forgotten_and_bounded() {
        let contention = Contention::default();
        assert!(!contention.recent("lock:{a}"));
        contention.mark("lock:{a}");
        assert!(contention.recent("lock:{a}"));
        contention.forget("lock:{a}");
        assert!(!contention.recent("lock:{a}"));
        for index in 0..CONTENTION_CAPACITY + 10 {
            contention.mark(&format!("lock:{{{index}}}"));
        }
        assert!(contention.map().len() <= CONTENTION_CAPACITY);
        assert!(contention.recent(&format!("lock:{{{}}}", CONTENTION_CAPACITY + 9)));
    }
}
