//! Where resources are filed, remembered (see [`super::Filed`]). A resource's record never
//! changes — the patient id is the distribution key, never updated, a deletion keeps it, and an
//! id is never given to another resource — so the id lookup that starts a read by id need not
//! be asked again for a resource already found: one statement (one round trip on PostgreSQL)
//! less per read. Only what committed reads found is kept, never what a unit of work saw (it
//! may roll back), and never an absence (the resource may be created next). This says where
//! to look, never whether the caller may see what is there: that stays in each read's SQL.

use std::collections::HashMap;
use std::sync::Mutex;

/// Filings kept per generation: when the newer is full it becomes the older and the older is
/// dropped, so at most twice this many are kept (a few MB), the most used among them.
const GENERATION: usize = 16_384;

type Key = (String, String);

#[derive(Default)]
pub(super) struct Filings {
    generations: Mutex<Generations>,
}

#[derive(Default)]
struct Generations {
    newer: HashMap<Key, String>,
    older: HashMap<Key, String>,
}

impl Filings {
    /// The record key `resource_type/id` was found filed in, if remembered.
    pub(super) fn get(&self, resource_type: &str, id: &str) -> Option<String> {
        let mut generations = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        let key = (resource_type.to_owned(), id.to_owned());
        if let Some(record) = generations.newer.get(&key) {
            return Some(record.clone());
        }
        let record = generations.older.remove(&key)?;
        generations.keep(key, record.clone());
        Some(record)
    }

    /// Remembers that a committed read found `resource_type/id` filed in `record`.
    pub(super) fn found(&self, resource_type: &str, id: &str, record: &str) {
        let mut generations = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        generations.keep((resource_type.to_owned(), id.to_owned()), record.to_owned());
    }
}

impl Generations {
    fn keep(&mut self, key: Key, record: String) {
        if self.newer.len() >= GENERATION {
            self.older = std::mem::take(&mut self.newer);
        }
        self.newer.insert(key, record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_recently_used_filings_are_kept_and_no_more_than_two_generations() {
        let filings = Filings::default();
        assert_eq!(filings.get("DocumentReference", "d1"), None);
        filings.found("DocumentReference", "d1", "p1");
        assert_eq!(
            filings.get("DocumentReference", "d1").as_deref(),
            Some("p1")
        );
        assert_eq!(filings.get("Binary", "d1"), None, "keyed by type and id");
        for i in 0..GENERATION {
            filings.found("Binary", &format!("b{i}"), "p2");
        }
        // d1 went to the older generation; using it brings it back to the newer one.
        assert_eq!(
            filings.get("DocumentReference", "d1").as_deref(),
            Some("p1")
        );
        for i in 0..GENERATION {
            filings.found("Binary", &format!("c{i}"), "p3");
        }
        assert_eq!(
            filings.get("DocumentReference", "d1").as_deref(),
            Some("p1")
        );
        assert_eq!(
            filings.get("Binary", "b0"),
            None,
            "dropped with its generation"
        );
        let generations = filings.generations.lock().unwrap();
        assert!(generations.newer.len() + generations.older.len() <= 2 * GENERATION);
    }
}
