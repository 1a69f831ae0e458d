//! Domain §5: a professional reading more distinct patients' records in an hour than
//! `[consent] professional_patients_per_hour` is slowed down (429) and flagged.
//!
//! Counted per server process, in memory: a window of the patients each practitioner read in
//! the last hour. The audit trail (its own issue) will keep the durable record and turn the
//! flag below into an AuditEvent.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// One hour, in seconds.
const WINDOW: i64 = 3600;

/// The patients each professional read in the last hour.
#[derive(Debug)]
pub struct PatientsPerHour {
    limit: usize,
    window: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    /// Practitioner id → patient id → when it was first read in the window (seconds since the
    /// epoch): a patient counts for the hour after it was read.
    seen: HashMap<String, HashMap<String, i64>>,
    /// Every entry of `seen` as it was recorded, oldest first: what leaves the window next.
    /// Forgetting from its front costs what is forgotten, where a sweep of `seen` on every
    /// read cost every professional's hour of reading, under the one lock all their reads
    /// take.
    recorded: VecDeque<(i64, String, String)>,
    /// The latest time seen: a clock stepped back does not reorder `recorded` (see `touch`).
    latest: i64,
}

impl Window {
    /// Forgets the entries recorded an hour or more before `now`, in the order they were
    /// recorded.
    fn forget_before(&mut self, now: i64) {
        while let Some((at, _, _)) = self.recorded.front() {
            if now - *at < WINDOW {
                break;
            }
            let (at, practitioner, patient) = self.recorded.pop_front().expect("a front entry");
            if let Some(patients) = self.seen.get_mut(&practitioner) {
                // A later entry for the same patient (after this one left the window) stays.
                if patients.get(&patient) == Some(&at) {
                    patients.remove(&patient);
                }
                if patients.is_empty() {
                    self.seen.remove(&practitioner);
                }
            }
        }
    }
}

/// Over the limit: retry after this many seconds, when the oldest patient leaves the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slowed {
    pub retry_after: u64,
}

impl PatientsPerHour {
    pub fn new(limit: u32) -> PatientsPerHour {
        PatientsPerHour {
            limit: limit.max(1) as usize,
            window: Mutex::new(Window::default()),
        }
    }

    /// Records that `practitioner` reads `patients` at `now`, unless it would take them over
    /// the limit: then nothing is recorded and the read must not be answered.
    pub fn touch<'a>(
        &self,
        practitioner: &str,
        patients: impl IntoIterator<Item = &'a str>,
        now: i64,
    ) -> Result<(), Slowed> {
        let patients: Vec<&str> = patients.into_iter().collect();
        let answered_known = !patients.is_empty();
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        // Were the clock stepped back, entries would be recorded out of order and could
        // outlive their hour unseen: time here never goes back, so a step back only keeps
        // patients counted that much longer.
        let now = now.max(window.latest);
        window.latest = now;
        window.forget_before(now);
        let Window { seen, recorded, .. } = &mut *window;
        let known = seen.entry(practitioner.to_owned()).or_default();
        let mut new: Vec<&str> = patients
            .into_iter()
            .filter(|p| !known.contains_key(*p))
            .collect();
        new.sort_unstable();
        new.dedup();
        // Nothing found is answered like a new patient once the limit is reached: otherwise a
        // 404 would tell a missing record from an existing one the limit holds back.
        let empty_at_limit = new.is_empty() && known.len() >= self.limit && !answered_known;
        if known.len() + new.len() > self.limit || empty_at_limit {
            let oldest = known.values().min().copied().unwrap_or(now);
            let retry_after = (oldest + WINDOW - now).max(1) as u64;
            tracing::warn!(
                target: "carnet::consent",
                practitioner,
                patients = known.len() + new.len(),
                limit = self.limit,
                "a professional read more patients' records this hour than allowed: slowed down"
            );
            if known.is_empty() {
                seen.remove(practitioner);
            }
            return Err(Slowed { retry_after });
        }
        for patient in new {
            known.insert(patient.to_owned(), now);
            recorded.push_back((now, practitioner.to_owned(), patient.to_owned()));
        }
        if known.is_empty() {
            seen.remove(practitioner);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn distinct_patients_are_counted_over_a_sliding_hour() {
        let limiter = PatientsPerHour::new(2);
        assert_eq!(limiter.touch("dr", ["a", "a"], 0), Ok(()));
        assert_eq!(limiter.touch("dr", ["a", "b"], 10), Ok(()));
        // A third patient within the hour: refused until `a` leaves the window.
        assert_eq!(
            limiter.touch("dr", ["c"], 100),
            Err(Slowed { retry_after: 3500 })
        );
        // Patients already read stay readable.
        assert_eq!(limiter.touch("dr", ["b", "a"], 200), Ok(()));
        // Another professional has their own count.
        assert_eq!(limiter.touch("other", ["c", "d"], 200), Ok(()));
        // An hour after `a` was first read, it leaves the window; `b` ten seconds later.
        assert_eq!(limiter.touch("dr", ["c"], 3600), Ok(()));
        assert!(limiter.touch("dr", ["d"], 3601).is_err());
        assert_eq!(limiter.touch("dr", ["d"], 3610), Ok(()));
        assert!(limiter.touch("dr", ["e"], 3611).is_err());
    }

    #[test]
    fn at_the_limit_nothing_found_is_answered_like_a_new_patient() {
        let limiter = PatientsPerHour::new(1);
        assert_eq!(limiter.touch("dr", std::iter::empty(), 0), Ok(()));
        assert_eq!(limiter.touch("dr", ["a"], 1), Ok(()));
        assert!(limiter.touch("dr", std::iter::empty(), 2).is_err());
        assert_eq!(limiter.touch("dr", ["a"], 3), Ok(()));
    }

    #[test]
    fn a_refused_read_records_nothing() {
        let limiter = PatientsPerHour::new(1);
        assert!(limiter.touch("dr", ["a", "b"], 0).is_err());
        assert_eq!(limiter.touch("dr", ["b"], 1), Ok(()));
    }

    #[test]
    fn a_patient_read_again_after_its_hour_counts_from_the_new_read() {
        let limiter = PatientsPerHour::new(1);
        assert_eq!(limiter.touch("dr", ["a"], 0), Ok(()));
        assert_eq!(limiter.touch("dr", ["a"], 3600), Ok(()));
        assert_eq!(
            limiter.touch("dr", ["b"], 3700),
            Err(Slowed { retry_after: 3500 })
        );
        assert_eq!(limiter.touch("dr", ["b"], 7200), Ok(()));
    }

    #[test]
    fn a_clock_stepped_back_keeps_patients_counted() {
        let limiter = PatientsPerHour::new(1);
        assert_eq!(limiter.touch("dr", ["a"], 1000), Ok(()));
        // The clock steps back 500 s: `a` still counts, for its hour from the latest time.
        assert_eq!(
            limiter.touch("dr", ["b"], 500),
            Err(Slowed { retry_after: 3600 })
        );
        // Back on time an hour after `a` was read, it is forgotten, and `b` recorded then.
        assert_eq!(limiter.touch("dr", ["b"], 4600), Ok(()));
        assert!(limiter.touch("dr", ["c"], 4601).is_err());
    }

    #[test]
    fn professionals_who_stopped_reading_are_forgotten_after_the_hour() {
        let limiter = PatientsPerHour::new(10);
        for (i, practitioner) in ["x", "y", "z"].iter().enumerate() {
            let at = i as i64 * 100;
            assert_eq!(limiter.touch(practitioner, ["a", "b"], at), Ok(()));
        }
        // An hour after x's and y's reads, someone else's read forgets them (and only them).
        assert_eq!(limiter.touch("w", ["c"], 3700), Ok(()));
        let window = limiter.window.lock().unwrap();
        let practitioners: BTreeSet<&str> = window.seen.keys().map(String::as_str).collect();
        assert_eq!(practitioners, BTreeSet::from(["w", "z"]));
        assert_eq!(window.recorded.len(), 3);
        // Nothing found records no professional.
        drop(window);
        assert_eq!(limiter.touch("v", std::iter::empty(), 3701), Ok(()));
        assert!(!limiter.window.lock().unwrap().seen.contains_key("v"));
    }
}
