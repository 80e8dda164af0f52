//! The aggregates a store keeps between commands, so a command's cost does not grow with its
//! aggregate's history. A kept copy is only a starting point: the executor checks it by the
//! stored sequence when it appends (see the parent module).

use std::collections::HashMap;
use std::sync::Mutex;

/// Most aggregates one store keeps loaded; past it, the cache starts again empty.
pub const MAX_LOADED: usize = 10_000;

/// Aggregates as the last command on them left them: state and last stored sequence.
pub struct Loaded<A> {
    aggregates: Mutex<HashMap<String, (A, usize)>>,
    capacity: usize,
}

impl<A: Clone> Loaded<A> {
    pub(super) fn new(capacity: usize) -> Self {
        Loaded {
            aggregates: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    pub(super) fn get(&self, id: &str) -> Option<(A, usize)> {
        self.lock().get(id).cloned()
    }

    /// Keeps `state` at `sequence`, unless a newer copy is kept already.
    pub(super) fn keep(&self, id: &str, state: A, sequence: usize) {
        let mut aggregates = self.lock();
        if aggregates
            .get(id)
            .is_some_and(|(_, kept)| *kept >= sequence)
        {
            return;
        }
        if aggregates.len() >= self.capacity && !aggregates.contains_key(id) {
            aggregates.clear();
        }
        aggregates.insert(id.to_owned(), (state, sequence));
    }

    pub(super) fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (A, usize)>> {
        // A panic while holding the lock leaves only a cache behind: keep using it.
        self.aggregates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_copy_is_never_replaced_by_an_older_one() {
        let loaded = Loaded::new(10);
        loaded.keep("p", "at 5", 5);
        loaded.keep("p", "at 3", 3);
        assert_eq!(loaded.get("p"), Some(("at 5", 5)));
        loaded.keep("p", "at 6", 6);
        assert_eq!(loaded.get("p"), Some(("at 6", 6)));
    }

    #[test]
    fn a_full_cache_starts_again_rather_than_grow() {
        let loaded = Loaded::new(2);
        loaded.keep("a", 1, 1);
        loaded.keep("b", 1, 1);
        loaded.keep("a", 2, 2);
        assert_eq!(loaded.lock().len(), 2, "updating a kept id does not evict");
        loaded.keep("c", 1, 1);
        assert_eq!(loaded.lock().len(), 1);
        assert_eq!(loaded.get("c"), Some((1, 1)));
    }

    #[test]
    fn a_forgotten_copy_is_loaded_again() {
        let loaded = Loaded::new(2);
        loaded.keep("a", 1, 1);
        loaded.forget("a");
        assert_eq!(loaded.get("a"), None);
    }
}
