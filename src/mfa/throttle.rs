//! Per-device soft lock against guessing TOTP codes.
//!
//! With a window of ±1 step, each guess has about a 3-in-10^6 chance, so an unthrottled
//! attacker holding a user's access keys gets in after a few hundred thousand requests.
//! NIST SP 800-63B §5.2.2 ("Rate Limiting (Throttling)") requires verifiers to limit
//! consecutive failed attempts on an authenticator and suggests exponentially increasing
//! waits between attempts. Following kanidm's credential soft-lock, a device that failed
//! `free_failures` times in a row is locked for a back-off that doubles with every further
//! failure, up to a cap. While locked, every attempt is refused *before* the code is looked
//! at, a correct one included, so a lock cannot be used as an oracle. A success resets the
//! device.
//!
//! ```text
//!                                  failure, n + 1 < free: n += 1
//!   +-------+  failure: n = 1   +-------------+ <--+
//!   | Clear | ----------------> | Counting(n) | ---+
//!   +-------+                   +-------------+
//!     ^   ^      success              |  failure, n + 1 = free:
//!     |   +---------------------------+  n += 1, until = now + backoff(n)
//!     |                                  v
//!     |                         +------------------+  check: Err(Locked { until })
//!     |                         | Locked(n, until) |  record_failure: ignored
//!     |                         +------------------+
//!     |                                  | now >= until
//!     |                                  v
//!     |         success         +------------------+  check: Ok (one attempt)
//!     +------------------------ |    Expired(n)    |
//!                               +------------------+
//!                                        | failure: n += 1, until = now + backoff(n)
//!                                        +----------> Locked(n, until)
//!
//!   backoff(n) = min(base_backoff * 2^(n - free_failures), max_backoff)
//! ```
//!
//! With the defaults (5 free failures, 30 s base, 15 min cap) the locks last 30 s, 1, 2, 4
//! and 8 minutes, then 15 minutes per attempt: fewer than 100 guesses a day.
//!
//! Time is injected (`now` is Unix seconds); nothing here reads a clock. Failures reported
//! while a lock is in force are ignored, so a caller that forgets to call
//! [`Throttle::check`] first cannot let an attacker stretch the lock. Entries exist only for
//! devices with failures in progress and are removed on success; callers must only pass
//! serials of registered devices, never unverified request input, so memory stays bounded.

use dashmap::DashMap;

use super::guard::{AttemptLimiter, GuardFuture, Locked};
use crate::time::UnixTime;

/// How many failures are free and how long locks last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Consecutive failures allowed without waiting; the last of them starts the first lock.
    /// Zero is treated as one.
    pub free_failures: u32,
    /// Length of the first lock, in seconds; each further failure doubles it.
    pub base_backoff_secs: i64,
    /// Upper bound on any lock, in seconds.
    pub max_backoff_secs: i64,
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
    pub fn backoff_secs(&self, failures: u32) -> Option<i64> {
        let excess = failures.checked_sub(self.free_failures.max(1))?;
        let max = self.max_backoff_secs.max(0);
        let backoff = 2i64.checked_pow(excess).map_or(max, |factor| {
            self.base_backoff_secs.max(0).saturating_mul(factor)
        });
        Some(backoff.min(max))
    }
}

/// What is remembered about a device with failures in progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct DeviceState {
    consecutive_failures: u32,
    locked_until: Option<UnixTime>,
}

impl DeviceState {
    fn lock_at(&self, now: UnixTime) -> Option<Locked> {
        self.locked_until
            .filter(|&until| now < until)
            .map(|until| Locked { until })
    }
}

/// Per-device failure counters and locks.
#[derive(Debug, Default)]
pub struct Throttle {
    policy: ThrottlePolicy,
    states: DashMap<String, DeviceState>,
}

impl Throttle {
    /// A throttle with no failures recorded.
    pub fn new(policy: ThrottlePolicy) -> Throttle {
        Throttle {
            policy,
            states: DashMap::new(),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> ThrottlePolicy {
        self.policy
    }

    /// Refuses any attempt on `device` while it is locked; call before looking at the code.
    pub fn check(&self, device: &str, now: UnixTime) -> Result<(), Locked> {
        // Copy the state out so the shard lock is released at the end of this statement.
        let state = self.states.get(device).map(|state| *state);
        match state.and_then(|state| state.lock_at(now)) {
            Some(locked) => Err(locked),
            None => Ok(()),
        }
    }

    /// Counts a failed attempt on `device` at `now`, locking it once failures stop being
    /// free. Ignored while a lock is in force.
    pub fn record_failure(&self, device: &str, now: UnixTime) {
        let mut state = self.states.entry(device.to_owned()).or_default();
        if state.lock_at(now).is_some() {
            return;
        }
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        if let Some(backoff) = self.policy.backoff_secs(state.consecutive_failures) {
            state.locked_until = Some(now.plus_secs(backoff));
        }
    }

    /// Starts an attempt on `device` at `now`: refused while locked, as [`Throttle::check`];
    /// otherwise the attempt is counted as a failure at once, in the same step as the check.
    ///
    /// Checking first and counting after the code was judged leaves a gap in which concurrent
    /// attempts all pass the check, so more than the free failures get their codes looked at
    /// before the lock; counting in advance closes it. A right code then calls
    /// [`Throttle::record_success`]; a wrong one needs nothing more; an attempt that ended
    /// before its code was judged calls [`Throttle::cancel_attempt`].
    pub fn begin_attempt(&self, device: &str, now: UnixTime) -> Result<(), Locked> {
        let mut state = self.states.entry(device.to_owned()).or_default();
        if let Some(locked) = state.lock_at(now) {
            return Err(locked);
        }
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        if let Some(backoff) = self.policy.backoff_secs(state.consecutive_failures) {
            state.locked_until = Some(now.plus_secs(backoff));
        }
        Ok(())
    }

    /// Takes back the failure [`Throttle::begin_attempt`] counted for an attempt whose code
    /// was never judged. A lock stays unless the remaining failures are all free ones.
    pub fn cancel_attempt(&self, device: &str) {
        if let Some(mut state) = self.states.get_mut(device) {
            state.consecutive_failures = state.consecutive_failures.saturating_sub(1);
            if self
                .policy
                .backoff_secs(state.consecutive_failures)
                .is_none()
            {
                state.locked_until = None;
            }
        }
        self.states.remove_if(device, |_, s| {
            s.consecutive_failures == 0 && s.locked_until.is_none()
        });
    }

    /// Resets `device` after a successful attempt.
    pub fn record_success(&self, device: &str) {
        self.states.remove(device);
    }

    /// Drops everything known about `device` (device deactivated or deleted).
    pub fn forget(&self, device: &str) {
        self.states.remove(device);
    }

    /// Number of devices with failures in progress.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// True if no device has failures in progress.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }
}

impl AttemptLimiter for Throttle {
    fn begin<'a>(&'a self, device: &'a str, now: UnixTime) -> GuardFuture<'a, Result<(), Locked>> {
        Box::pin(std::future::ready(Ok(self.begin_attempt(device, now))))
    }

    fn succeed<'a>(&'a self, device: &'a str) -> GuardFuture<'a, ()> {
        self.record_success(device);
        Box::pin(std::future::ready(Ok(())))
    }

    fn cancel<'a>(&'a self, device: &'a str) -> GuardFuture<'a, ()> {
        self.cancel_attempt(device);
        Box::pin(std::future::ready(Ok(())))
    }

    fn forget<'a>(&'a self, device: &'a str) -> GuardFuture<'a, ()> {
        self.states.remove(device);
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::super::guard::ReplayGuard as _;
    use super::super::replay::InMemoryReplayGuard;
    use super::super::totp::{TokenCode, TotpKey, TotpStep};
    use super::*;

    const DEVICE: &str = "arn:aws:iam::123456789012:mfa/alice";
    const T0: UnixTime = UnixTime::from_secs(1_700_000_000);

    /// The request path's order of operations, as the STS handler applies it.
    fn attempt(
        throttle: &Throttle,
        replay: &InMemoryReplayGuard,
        key: &TotpKey,
        code: TokenCode,
        now: UnixTime,
    ) -> Result<bool, Locked> {
        throttle.check(DEVICE, now)?;
        let candidates = key.matching_steps(code, TotpStep::at(now), 1);
        let accepted = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(replay.try_accept(DEVICE, &candidates, TotpStep::BEFORE_ALL))
            .unwrap()
            .is_some();
        if accepted {
            throttle.record_success(DEVICE);
        } else {
            throttle.record_failure(DEVICE, now);
        }
        Ok(accepted)
    }

    fn fail_times(throttle: &Throttle, times: u32, now: UnixTime) {
        for _ in 0..times {
            throttle.record_failure(DEVICE, now);
        }
    }

    #[test]
    fn five_failures_are_free_then_the_device_locks() {
        let throttle = Throttle::default();
        for _ in 0..4 {
            throttle.record_failure(DEVICE, T0);
            assert_eq!(throttle.check(DEVICE, T0), Ok(()));
        }
        throttle.record_failure(DEVICE, T0);
        assert_eq!(
            throttle.check(DEVICE, T0),
            Err(Locked {
                until: T0.plus_secs(30)
            })
        );
        assert_eq!(
            throttle.check(DEVICE, T0.plus_secs(29)),
            Err(Locked {
                until: T0.plus_secs(30)
            })
        );
        assert_eq!(
            Locked {
                until: T0.plus_secs(30)
            }
            .retry_after_secs(T0.plus_secs(10)),
            20
        );
    }

    #[test]
    fn a_correct_code_is_refused_while_locked() {
        let throttle = Throttle::default();
        let replay = InMemoryReplayGuard::new();
        let key = TotpKey::new(b"12345678901234567890").unwrap();
        let right = key.code(TotpStep::at(T0));
        let wrong = TokenCode::parse(if right.to_digits() == "000000" {
            "000001"
        } else {
            "000000"
        })
        .unwrap();
        for _ in 0..5 {
            assert_eq!(attempt(&throttle, &replay, &key, wrong, T0), Ok(false));
        }
        assert_eq!(
            attempt(&throttle, &replay, &key, right, T0.plus_secs(1)),
            Err(Locked {
                until: T0.plus_secs(30)
            })
        );
        // The refused attempt did not consume the step: after the lock, a fresh code works.
        let later = T0.plus_secs(30);
        let fresh = key.code(TotpStep::at(later));
        assert_eq!(attempt(&throttle, &replay, &key, fresh, later), Ok(true));
        assert!(throttle.is_empty());
    }

    #[test]
    fn unlocks_when_the_backoff_expires() {
        let throttle = Throttle::default();
        fail_times(&throttle, 5, T0);
        assert!(throttle.check(DEVICE, T0.plus_secs(29)).is_err());
        assert_eq!(throttle.check(DEVICE, T0.plus_secs(30)), Ok(()));
    }

    #[test]
    fn backoff_doubles_per_further_failure_and_is_capped_at_fifteen_minutes() {
        let throttle = Throttle::default();
        fail_times(&throttle, 5, T0);
        let mut now = T0;
        let mut locks = Vec::new();
        for _ in 0..8 {
            let Err(Locked { until }) = throttle.check(DEVICE, now) else {
                panic!("device should be locked at {now}");
            };
            locks.push(until.secs_since(now));
            // Wait the lock out, then fail once more.
            now = until;
            assert_eq!(throttle.check(DEVICE, now), Ok(()));
            throttle.record_failure(DEVICE, now);
        }
        assert_eq!(locks, [30, 60, 120, 240, 480, 900, 900, 900]);
    }

    #[test]
    fn failures_during_a_lock_do_not_extend_it() {
        let throttle = Throttle::default();
        fail_times(&throttle, 5, T0);
        fail_times(&throttle, 50, T0.plus_secs(10));
        assert_eq!(
            throttle.check(DEVICE, T0.plus_secs(10)),
            Err(Locked {
                until: T0.plus_secs(30)
            })
        );
        // The next real failure after expiry is the sixth, not the fifty-sixth.
        throttle.record_failure(DEVICE, T0.plus_secs(30));
        assert_eq!(
            throttle.check(DEVICE, T0.plus_secs(30)),
            Err(Locked {
                until: T0.plus_secs(90)
            })
        );
    }

    #[test]
    fn begin_attempt_counts_in_advance_and_cancel_takes_it_back() {
        let throttle = Throttle::default();
        for _ in 0..4 {
            assert_eq!(throttle.begin_attempt(DEVICE, T0), Ok(()));
        }
        // The fifth attempt is let in and locks at once: a concurrent sixth is refused.
        assert_eq!(throttle.begin_attempt(DEVICE, T0), Ok(()));
        assert_eq!(
            throttle.begin_attempt(DEVICE, T0),
            Err(Locked {
                until: T0.plus_secs(30)
            })
        );
        // The fifth turned out not to be judged: back to four free failures, unlocked.
        throttle.cancel_attempt(DEVICE);
        assert_eq!(throttle.check(DEVICE, T0), Ok(()));
        // A right code clears everything.
        assert_eq!(throttle.begin_attempt(DEVICE, T0), Ok(()));
        throttle.record_success(DEVICE);
        assert!(throttle.is_empty());
        // Cancelling the only attempt leaves no entry behind.
        assert_eq!(throttle.begin_attempt(DEVICE, T0), Ok(()));
        throttle.cancel_attempt(DEVICE);
        assert!(throttle.is_empty());
        // Past the free failures, a cancelled attempt keeps the lock in force.
        fail_times(&throttle, 5, T0);
        assert_eq!(throttle.begin_attempt(DEVICE, T0.plus_secs(30)), Ok(()));
        throttle.cancel_attempt(DEVICE);
        assert_eq!(
            throttle.check(DEVICE, T0.plus_secs(30)),
            Err(Locked {
                until: T0.plus_secs(90)
            })
        );
    }

    #[test]
    fn begin_attempt_backs_off_like_record_failure() {
        let throttle = Throttle::default();
        let mut now = T0;
        let mut locks = Vec::new();
        for _ in 0..5 {
            assert_eq!(throttle.begin_attempt(DEVICE, now), Ok(()));
        }
        for _ in 0..7 {
            let Err(Locked { until }) = throttle.begin_attempt(DEVICE, now) else {
                panic!("device should be locked at {now}");
            };
            locks.push(until.secs_since(now));
            now = until;
            assert_eq!(throttle.begin_attempt(DEVICE, now), Ok(()));
        }
        assert_eq!(locks, [30, 60, 120, 240, 480, 900, 900]);
    }

    #[test]
    fn success_resets_the_count() {
        let throttle = Throttle::default();
        fail_times(&throttle, 4, T0);
        throttle.record_success(DEVICE);
        assert!(throttle.is_empty());
        fail_times(&throttle, 4, T0);
        assert_eq!(throttle.check(DEVICE, T0), Ok(()));
        // A success after a lock expired also starts over from five free failures.
        fail_times(&throttle, 1, T0);
        assert!(throttle.check(DEVICE, T0).is_err());
        throttle.record_success(DEVICE);
        fail_times(&throttle, 4, T0.plus_secs(100));
        assert_eq!(throttle.check(DEVICE, T0.plus_secs(100)), Ok(()));
    }

    #[test]
    fn devices_are_independent_and_forget_clears() {
        let throttle = Throttle::default();
        fail_times(&throttle, 5, T0);
        assert!(throttle.check(DEVICE, T0).is_err());
        assert_eq!(throttle.check("GAHT12345678", T0), Ok(()));
        assert_eq!(throttle.len(), 1);
        throttle.forget(DEVICE);
        assert_eq!(throttle.check(DEVICE, T0), Ok(()));
        assert!(throttle.is_empty());
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
        let throttle = Throttle::new(huge);
        throttle.record_failure(DEVICE, UnixTime::from_secs(i64::MAX - 5));
        assert_eq!(
            throttle.check(DEVICE, UnixTime::from_secs(i64::MAX - 1)),
            Err(Locked {
                until: UnixTime::from_secs(i64::MAX)
            })
        );
        assert_eq!(throttle.policy(), huge);
    }
}
