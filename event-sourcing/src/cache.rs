//! Recently written aggregate states, so that the next command on an aggregate need not
//! read it back. A cached state is only ever a guess: an append based on it still carries
//! the expected version, so a stale guess ends in a conflict and a fresh read, and a
//! rejection decided on it is confirmed against a fresh read before it is returned.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

struct Entry {
    version: u64,
    state: Arc<dyn Any + Send + Sync>,
}

pub(crate) struct StateCache {
    capacity: usize,
    entries: Mutex<HashMap<Uuid, Entry>>,
}

impl StateCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn get<A: Clone + 'static>(&self, id: Uuid) -> Option<(A, u64)> {
        let entries = self.entries.lock().ok()?;
        let entry = entries.get(&id)?;
        entry
            .state
            .downcast_ref::<A>()
            .map(|state| (state.clone(), entry.version))
    }

    pub(crate) fn put<A: Send + Sync + 'static>(&self, id: Uuid, state: A, version: u64) {
        if self.capacity == 0 {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= self.capacity && !entries.contains_key(&id) {
                // Crude but bounded: the cache only saves reads, so forgetting is safe.
                entries.clear();
            }
            entries.insert(
                id,
                Entry {
                    version,
                    state: Arc::new(state),
                },
            );
        }
    }

    pub(crate) fn forget(&self, id: Uuid) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(&id);
        }
    }
}
