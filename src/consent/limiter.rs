//! Domain §5: a professional reading more distinct patients' records in an hour than
//! `[consent] professional_patients_per_hour` is slowed down (429) and flagged.
//!
//! Counted per server process, in memory: a window of the patients each practitioner read in
//! the last hour. The audit trail (its own issue) will keep the durable record and turn the
//! flag below into an AuditEvent.

use std::collections::HashMap;
use std::sync::Mutex;

/// One hour, in seconds.
const WINDOW: i64 = 3600;

/// The patients each professional read in the last hour.
#[derive(Debug)]
pub struct PatientsPerHour {
    limit: usize,
    /// Practitioner id → patient id → when it was first read in the window (seconds since the
    /// epoch): a patient counts for the hour after it was read.
    seen: Mutex<HashMap<String, HashMap<String, i64>>>,
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
            seen: Mutex::new(HashMap::new()),
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
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        // Forget hours that have passed, for everyone: the map stays as large as the last
        // hour's activity.
        seen.retain(|_, patients| {
            patients.retain(|_, at| now - *at < WINDOW);
            !patients.is_empty()
        });
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
            return Err(Slowed { retry_after });
        }
        for patient in new {
            known.insert(patient.to_owned(), now);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
