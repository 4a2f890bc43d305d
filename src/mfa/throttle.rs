//! The soft lock against guessing TOTP codes: its policy and the state machine of one failure
//! record. Where the records live is the limiter's business (the embedded one keeps them in
//! the store, `store::attempts`); the rules are here, pure and tested on their own.
//!
//! With a window of ±1 step, each guess has about a 3-in-10^6 chance, so an unthrottled
//! attacker holding a user's access keys gets in after a few hundred thousand requests.
//! NIST SP 800-63B §5.2.2 ("Rate Limiting (Throttling)") requires verifiers to limit
//! consecutive failed attempts on an authenticator and suggests exponentially increasing
//! waits between attempts. Following kanidm's credential soft-lock, a record that failed
//! `free_failures` times in a row is locked for a back-off that doubles with every further
//! failure, up to a cap. While locked, every attempt is refused *before* the code is looked
//! at, a correct one included, so a lock cannot be used as an oracle. A success removes the
//! record.
//!
//! An attempt is counted as a failure when it begins, in the same atomic step as the lock
//! check: checking first and counting after the code was judged leaves a gap in which
//! concurrent attempts all pass the check, so more than the free failures would get their
//! codes looked at. A right code then removes the record; a wrong one needs nothing more; an
//! attempt that ended before its code was judged is taken back with [`FailureRecord::cancel`].
//!
//! ```text
//!                                  begin, n + 1 < free: n += 1
//!   +-------+  begin: n = 1     +-------------+ <--+
//!   | Clear | ----------------> | Counting(n) | ---+
//!   +-------+                   +-------------+
//!     ^   ^      success              |  begin, n + 1 = free:
//!     |   +---------------------------+  n += 1, until = now + backoff(n)
//!     |                                  v
//!     |                         +------------------+  begin: Err(Locked { until }),
//!     |                         | Locked(n, until) |  nothing counted
//!     |                         +------------------+
//!     |                                  | now >= until
//!     |                                  v
//!     |         success         +------------------+
//!     +------------------------ |    Expired(n)    |
//!                               +------------------+
//!                                        | begin: n += 1, until = now + backoff(n)
//!                                        +----------> Locked(n, until)
//!
//!   backoff(n) = min(base_backoff * 2^(n - free_failures), max_backoff)
//! ```
//!
//! With the defaults (5 free failures, 30 s base, 15 min cap) the locks last 30 s, 1, 2, 4
//! and 8 minutes, then 15 minutes per attempt: fewer than 100 guesses a day.
//!
//! Time is injected (`now` is Unix seconds); nothing here reads a clock. Attempts refused
//! while a lock is in force are not counted, so hammering a locked device cannot stretch the
//! lock.

use super::guard::Locked;
use crate::time::UnixTime;

/// How many failures are free and how long locks last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ThrottlePolicy {
    /// Consecutive failures allowed without waiting; the last of them starts the first lock.
    /// Zero is treated as one.
    pub(crate) free_failures: u32,
    /// Length of the first lock, in seconds; each further failure doubles it.
    pub(crate) base_backoff_secs: i64,
    /// Upper bound on any lock, in seconds.
    pub(crate) max_backoff_secs: i64,
}

impl Default for ThrottlePolicy {
    fn default() -> ThrottlePolicy {
        ThrottlePolicy {
            free_failures: 5,
            base_backoff_secs: 30,
            max_backoff_secs: 15 * 60,
        }
    }
}

impl ThrottlePolicy {
    /// Lock length after `failures` consecutive failures, or `None` while failures are free.
    pub(crate) fn backoff_secs(&self, failures: u32) -> Option<i64> {
        let excess = failures.checked_sub(self.free_failures.max(1))?;
        let max = self.max_backoff_secs.max(0);
        let backoff = 2i64.checked_pow(excess).map_or(max, |factor| {
            self.base_backoff_secs.max(0).saturating_mul(factor)
        });
        Some(backoff.min(max))
    }
}

/// What is remembered of consecutive failures at one device (or, for an unassigned hardware
/// token, of one caller's failures at it). The default is the clear state, kept by no one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FailureRecord {
    /// Consecutive failures, the attempts in progress included.
    pub(crate) failures: u32,
    /// When the lock in force (if any) ends.
    pub(crate) locked_until: Option<UnixTime>,
}

impl FailureRecord {
    /// The lock in force at `now`, if any.
    pub(crate) fn lock_at(&self, now: UnixTime) -> Option<Locked> {
        self.locked_until
            .filter(|&until| now < until)
            .map(|until| Locked { until })
    }

    /// Starts an attempt at `now`: refused while locked (nothing counted); otherwise counted
    /// as a failure at once, locking when failures stop being free.
    pub(crate) fn begin(&mut self, policy: &ThrottlePolicy, now: UnixTime) -> Result<(), Locked> {
        if let Some(locked) = self.lock_at(now) {
            return Err(locked);
        }
        self.failures = self.failures.saturating_add(1);
        if let Some(backoff) = policy.backoff_secs(self.failures) {
            self.locked_until = Some(now.plus_secs(backoff));
        }
        Ok(())
    }

    /// Takes back the failure [`FailureRecord::begin`] counted for an attempt whose code was
    /// never judged. A lock stays unless the remaining failures are all free ones.
    pub(crate) fn cancel(&mut self, policy: &ThrottlePolicy) {
        self.failures = self.failures.saturating_sub(1);
        if policy.backoff_secs(self.failures).is_none() {
            self.locked_until = None;
        }
    }

    /// Whether nothing is left to remember (the record can be dropped).
    pub(crate) fn is_clear(&self) -> bool {
        self.failures == 0 && self.locked_until.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: UnixTime = UnixTime::from_secs(1_700_000_000);

    fn failed(times: u32, now: UnixTime) -> FailureRecord {
        let mut record = FailureRecord::default();
        for _ in 0..times {
            record.begin(&ThrottlePolicy::default(), now).unwrap();
        }
        record
    }

    #[test]
    fn five_failures_are_free_then_the_record_locks() {
        let policy = ThrottlePolicy::default();
        let mut record = FailureRecord::default();
        for _ in 0..4 {
            assert_eq!(record.begin(&policy, T0), Ok(()));
            assert_eq!(record.lock_at(T0), None);
        }
        // The fifth attempt is let in and locks at once: a concurrent sixth is refused.
        assert_eq!(record.begin(&policy, T0), Ok(()));
        let locked = Locked {
            until: T0.plus_secs(30),
        };
        assert_eq!(record.begin(&policy, T0), Err(locked));
        assert_eq!(record.begin(&policy, T0.plus_secs(29)), Err(locked));
        assert_eq!(locked.retry_after_secs(T0.plus_secs(10)), 20);
        // Refused attempts were not counted.
        assert_eq!(record.failures, 5);
    }

    #[test]
    fn backoff_doubles_per_further_failure_and_is_capped_at_fifteen_minutes() {
        let policy = ThrottlePolicy::default();
        let mut record = failed(5, T0);
        let mut now = T0;
        let mut locks = Vec::new();
        for _ in 0..8 {
            let Err(Locked { until }) = record.begin(&policy, now) else {
                panic!("the record should be locked at {now}");
            };
            locks.push(until.secs_since(now));
            // Wait the lock out, then fail once more.
            now = until;
            assert_eq!(record.begin(&policy, now), Ok(()));
        }
        assert_eq!(locks, [30, 60, 120, 240, 480, 900, 900, 900]);
    }

    #[test]
    fn attempts_during_a_lock_do_not_extend_it() {
        let policy = ThrottlePolicy::default();
        let mut record = failed(5, T0);
        for _ in 0..50 {
            assert!(record.begin(&policy, T0.plus_secs(10)).is_err());
        }
        assert_eq!(
            record.lock_at(T0.plus_secs(10)),
            Some(Locked {
                until: T0.plus_secs(30)
            })
        );
        // The next failure after expiry is the sixth, not the fifty-sixth.
        assert_eq!(record.begin(&policy, T0.plus_secs(30)), Ok(()));
        assert_eq!(
            record.lock_at(T0.plus_secs(30)),
            Some(Locked {
                until: T0.plus_secs(90)
            })
        );
    }

    #[test]
    fn cancel_takes_an_attempt_back() {
        let policy = ThrottlePolicy::default();
        // The fifth attempt locked; it turned out not to be judged: four free failures left,
        // unlocked.
        let mut record = failed(5, T0);
        record.cancel(&policy);
        assert_eq!(record.lock_at(T0), None);
        assert_eq!(record.failures, 4);
        // Cancelling the only attempt leaves nothing to remember.
        let mut record = failed(1, T0);
        assert!(!record.is_clear());
        record.cancel(&policy);
        assert!(record.is_clear());
        // Past the free failures, a cancelled attempt keeps the lock in force.
        let mut record = failed(5, T0);
        assert_eq!(record.begin(&policy, T0.plus_secs(30)), Ok(()));
        record.cancel(&policy);
        assert_eq!(
            record.lock_at(T0.plus_secs(30)),
            Some(Locked {
                until: T0.plus_secs(90)
            })
        );
        // Cancelling more than was begun stays at zero.
        let mut record = FailureRecord::default();
        record.cancel(&policy);
        assert!(record.is_clear());
    }

    #[test]
    fn unlocks_when_the_backoff_expires() {
        let record = failed(5, T0);
        assert!(record.lock_at(T0.plus_secs(29)).is_some());
        assert_eq!(record.lock_at(T0.plus_secs(30)), None);
    }

    #[test]
    fn policy_arithmetic_is_total() {
        let policy = ThrottlePolicy::default();
        assert_eq!(policy.backoff_secs(0), None);
        assert_eq!(policy.backoff_secs(4), None);
        assert_eq!(policy.backoff_secs(5), Some(30));
        assert_eq!(policy.backoff_secs(9), Some(480));
        assert_eq!(policy.backoff_secs(10), Some(900));
        assert_eq!(policy.backoff_secs(u32::MAX), Some(900));
        let huge = ThrottlePolicy {
            free_failures: 0,
            base_backoff_secs: i64::MAX,
            max_backoff_secs: i64::MAX,
        };
        // Zero free failures means the first failure locks.
        assert_eq!(huge.backoff_secs(0), None);
        assert_eq!(huge.backoff_secs(1), Some(i64::MAX));
        assert_eq!(huge.backoff_secs(70), Some(i64::MAX));
        let mut record = FailureRecord::default();
        record
            .begin(&huge, UnixTime::from_secs(i64::MAX - 5))
            .unwrap();
        assert_eq!(
            record.lock_at(UnixTime::from_secs(i64::MAX - 1)),
            Some(Locked {
                until: UnixTime::from_secs(i64::MAX)
            })
        );
        let mut saturated = FailureRecord {
            failures: u32::MAX,
            locked_until: None,
        };
        assert_eq!(saturated.begin(&policy, T0), Ok(()));
        assert_eq!(saturated.failures, u32::MAX);
    }
}
