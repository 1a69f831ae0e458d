//! Domain §5: a professional reading more distinct patients' records in an hour than
//! `[consent] professional_patients_per_hour` is slowed down (429) and flagged.
//!
//! Counted per server process, in memory: a window of the patients each practitioner read in
//! the last hour. The audit trail (its own issue) will keep the durable record and turn the
//! flag below into an AuditEvent.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

/// One hour, in milliseconds: whole seconds would forget a patient read late in a second up to
/// a second early.
const WINDOW: i64 = 3_600_000;

/// The patients each professional read in the last hour.
#[derive(Debug)]
pub struct PatientsPerHour {
    limit: usize,
    /// The window's clock. Monotonic: a step of the system clock neither shortens anyone's
    /// hour nor, stepped back, holds entries recorded "later" in front of the queue below,
    /// which would keep everyone's reads counted until the clock caught up.
    started: Instant,
    window: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    /// Practitioner id → patient id → when it was first read in the window (milliseconds on
    /// the limiter's clock): a patient counts for the hour after it was read.
    seen: HashMap<String, HashMap<String, i64>>,
    /// Every entry of `seen`, once, in the order recorded (so oldest first): what leaves the
    /// window next. Forgetting from its front costs what is forgotten, where a sweep of
    /// `seen` on every read cost every professional's hour of reading, under the one lock
    /// all their reads take.
    recorded: VecDeque<(i64, String, String)>,
}

impl Window {
    /// Forgets the entries recorded an hour or more before `now`, in the order they were
    /// recorded.
    fn forget_before(&mut self, now: i64) {
        while let Some((at, _, _)) = self.recorded.front() {
            if now - *at < WINDOW {
                break;
            }
            let (_, practitioner, patient) = self.recorded.pop_front().expect("a front entry");
            if let Some(patients) = self.seen.get_mut(&practitioner) {
                patients.remove(&patient);
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
            started: Instant::now(),
            window: Mutex::new(Window::default()),
        }
    }

    /// Records that `practitioner` reads `patients` now, unless it would take them over the
    /// limit: then nothing is recorded and the read must not be answered.
    pub fn touch<'a>(
        &self,
        practitioner: &str,
        patients: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), Slowed> {
        let patients: Vec<&str> = patients.into_iter().collect();
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        // Read under the lock, so that entries are queued in time order.
        let now = self.started.elapsed().as_millis() as i64;
        self.touch_at(&mut window, practitioner, &patients, now)
    }

    /// [`PatientsPerHour::touch`] at `now`, in milliseconds on a clock that never goes back,
    /// no earlier than any entry of `window`.
    fn touch_at(
        &self,
        window: &mut Window,
        practitioner: &str,
        patients: &[&str],
        now: i64,
    ) -> Result<(), Slowed> {
        window.forget_before(now);
        // Looked up, not entered: a professional is held only while they have patients.
        let known = window.seen.get(practitioner);
        let known_count = known.map_or(0, HashMap::len);
        let mut new: Vec<&str> = patients
            .iter()
            .copied()
            .filter(|p| !known.is_some_and(|known| known.contains_key(*p)))
            .collect();
        new.sort_unstable();
        new.dedup();
        // Nothing found is answered like a new patient once the limit is reached: otherwise a
        // 404 would tell a missing record from an existing one the limit holds back.
        let empty_at_limit = new.is_empty() && known_count >= self.limit && patients.is_empty();
        if known_count + new.len() > self.limit || empty_at_limit {
            let oldest = known.and_then(|known| known.values().min().copied());
            let retry_after = ((oldest.unwrap_or(now) + WINDOW - now + 999) / 1000).max(1) as u64;
            tracing::warn!(
                target: "carnet::consent",
                practitioner,
                patients = known_count + new.len(),
                limit = self.limit,
                "a professional read more patients' records this hour than allowed: slowed down"
            );
            return Err(Slowed { retry_after });
        }
        if new.is_empty() {
            return Ok(());
        }
        let Window { seen, recorded } = window;
        let known = seen.entry(practitioner.to_owned()).or_default();
        for patient in new {
            known.insert(patient.to_owned(), now);
            recorded.push_back((now, practitioner.to_owned(), patient.to_owned()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::time::Duration;

    impl PatientsPerHour {
        /// `touch` at `seconds` on the limiter's clock.
        fn at<'a>(
            &self,
            practitioner: &str,
            patients: impl IntoIterator<Item = &'a str>,
            seconds: i64,
        ) -> Result<(), Slowed> {
            let patients: Vec<&str> = patients.into_iter().collect();
            let mut window = self.window.lock().unwrap();
            self.touch_at(&mut window, practitioner, &patients, seconds * 1000)
        }
    }

    #[test]
    fn distinct_patients_are_counted_over_a_sliding_hour() {
        let limiter = PatientsPerHour::new(2);
        assert_eq!(limiter.at("dr", ["a", "a"], 0), Ok(()));
        assert_eq!(limiter.at("dr", ["a", "b"], 10), Ok(()));
        // A third patient within the hour: refused until `a` leaves the window.
        assert_eq!(
            limiter.at("dr", ["c"], 100),
            Err(Slowed { retry_after: 3500 })
        );
        // Patients already read stay readable.
        assert_eq!(limiter.at("dr", ["b", "a"], 200), Ok(()));
        // Another professional has their own count.
        assert_eq!(limiter.at("other", ["c", "d"], 200), Ok(()));
        // An hour after `a` was first read, it leaves the window; `b` ten seconds later.
        assert_eq!(limiter.at("dr", ["c"], 3600), Ok(()));
        assert!(limiter.at("dr", ["d"], 3601).is_err());
        assert_eq!(limiter.at("dr", ["d"], 3610), Ok(()));
        assert!(limiter.at("dr", ["e"], 3611).is_err());
    }

    #[test]
    fn at_the_limit_nothing_found_is_answered_like_a_new_patient() {
        let limiter = PatientsPerHour::new(1);
        assert_eq!(limiter.at("dr", std::iter::empty(), 0), Ok(()));
        assert_eq!(limiter.at("dr", ["a"], 1), Ok(()));
        assert!(limiter.at("dr", std::iter::empty(), 2).is_err());
        assert_eq!(limiter.at("dr", ["a"], 3), Ok(()));
    }

    #[test]
    fn a_refused_read_records_nothing() {
        let limiter = PatientsPerHour::new(1);
        assert!(limiter.at("dr", ["a", "b"], 0).is_err());
        assert_eq!(limiter.at("dr", ["b"], 1), Ok(()));
    }

    #[test]
    fn a_patient_read_again_after_its_hour_counts_from_the_new_read() {
        let limiter = PatientsPerHour::new(1);
        assert_eq!(limiter.at("dr", ["a"], 0), Ok(()));
        assert_eq!(limiter.at("dr", ["a"], 3600), Ok(()));
        assert_eq!(
            limiter.at("dr", ["b"], 3700),
            Err(Slowed { retry_after: 3500 })
        );
        assert_eq!(limiter.at("dr", ["b"], 7200), Ok(()));
    }

    #[test]
    fn touch_counts_milliseconds_since_the_limiter_was_made() {
        // Made ten seconds ago: `touch` records at about 10,000 ms on the limiter's clock (not
        // the system's, not in seconds).
        let limiter = PatientsPerHour {
            started: Instant::now()
                .checked_sub(Duration::from_secs(10))
                .expect("the monotonic clock is past 10 s"),
            ..PatientsPerHour::new(1)
        };
        assert_eq!(limiter.touch("dr", ["a"]), Ok(()));
        let at = limiter.window.lock().unwrap().recorded[0].0;
        assert!((10_000..70_000).contains(&at), "{at}");
        // Within the hour of `a`: refused until it leaves the window, an hour after it was read.
        let Err(Slowed { retry_after }) = limiter.touch("dr", ["b"]) else {
            panic!("a second patient within the hour is refused");
        };
        assert!((3540..=3600).contains(&retry_after), "{retry_after}");
    }

    #[test]
    fn a_patient_is_counted_a_whole_hour_to_the_millisecond() {
        let limiter = PatientsPerHour::new(1);
        let mut window = limiter.window.lock().unwrap();
        assert_eq!(limiter.touch_at(&mut window, "dr", &["a"], 999), Ok(()));
        assert_eq!(
            limiter.touch_at(&mut window, "dr", &["b"], 3_600_998),
            Err(Slowed { retry_after: 1 })
        );
        assert_eq!(
            limiter.touch_at(&mut window, "dr", &["b"], 3_600_999),
            Ok(())
        );
        // Retry-After rounds up: 3,599,999 ms left is 3,600 s, not 3,599.
        assert_eq!(
            limiter.touch_at(&mut window, "dr", &["c"], 3_601_000),
            Err(Slowed { retry_after: 3600 })
        );
    }

    /// The limiter as it was first written (in milliseconds, Retry-After rounded up): every
    /// read sweeps every professional's window. Plain enough to be the reference the queue
    /// is held to.
    fn swept(
        seen: &mut HashMap<String, HashMap<String, i64>>,
        limit: usize,
        practitioner: &str,
        patients: &[&str],
        now: i64,
    ) -> Result<(), Slowed> {
        seen.retain(|_, patients| {
            patients.retain(|_, at| now - *at < WINDOW);
            !patients.is_empty()
        });
        let known = seen.entry(practitioner.to_owned()).or_default();
        let new: BTreeSet<&str> = patients
            .iter()
            .copied()
            .filter(|p| !known.contains_key(*p))
            .collect();
        let empty_at_limit = new.is_empty() && known.len() >= limit && patients.is_empty();
        if known.len() + new.len() > limit || empty_at_limit {
            let oldest = known.values().min().copied().unwrap_or(now);
            return Err(Slowed {
                retry_after: ((oldest + WINDOW - now + 999) / 1000).max(1) as u64,
            });
        }
        for patient in new {
            known.insert(patient.to_owned(), now);
        }
        Ok(())
    }

    #[test]
    fn the_queue_answers_as_a_sweep_of_the_whole_window_would() {
        let mut state = 0x5eed_0f11_u64;
        let mut next = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        const PATIENTS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];
        // Milliseconds: the hour's boundary, and either side of it.
        const STEPS: [i64; 9] = [
            0, 0, 1, 999, 100_000, 1_800_000, 3_599_999, 3_600_000, 3_600_001,
        ];
        for _ in 0..200 {
            let limit = 1 + next(4) as usize;
            let limiter = PatientsPerHour::new(limit as u32);
            let mut reference = HashMap::new();
            let mut now = 0;
            for _ in 0..300 {
                now += STEPS[next(STEPS.len() as u64) as usize];
                let practitioner = ["x", "y", "z"][next(3) as usize];
                let patients: Vec<&str> = (0..next(4))
                    .map(|_| PATIENTS[next(PATIENTS.len() as u64) as usize])
                    .collect();
                let mut window = limiter.window.lock().unwrap();
                assert_eq!(
                    limiter.touch_at(&mut window, practitioner, &patients, now),
                    swept(&mut reference, limit, practitioner, &patients, now),
                    "{practitioner} reads {patients:?} at {now} ms, limit {limit}"
                );
                let held: usize = window.seen.values().map(HashMap::len).sum();
                assert_eq!(window.recorded.len(), held, "each entry queued once");
            }
        }
    }

    #[test]
    fn professionals_who_stopped_reading_are_forgotten_after_the_hour() {
        let limiter = PatientsPerHour::new(10);
        for (i, practitioner) in ["x", "y", "z"].iter().enumerate() {
            let at = i as i64 * 100;
            assert_eq!(limiter.at(practitioner, ["a", "b"], at), Ok(()));
        }
        // An hour after x's and y's reads, someone else's read forgets them (and only them).
        assert_eq!(limiter.at("w", ["c"], 3700), Ok(()));
        let window = limiter.window.lock().unwrap();
        let practitioners: BTreeSet<&str> = window.seen.keys().map(String::as_str).collect();
        assert_eq!(practitioners, BTreeSet::from(["w", "z"]));
        assert_eq!(window.recorded.len(), 3);
        // Nothing found records no professional.
        drop(window);
        assert_eq!(limiter.at("v", std::iter::empty(), 3701), Ok(()));
        assert!(!limiter.window.lock().unwrap().seen.contains_key("v"));
    }
}
