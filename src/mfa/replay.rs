//! One-time use of TOTP codes (RFC 6238 §5.2): "the verifier MUST NOT accept the second
//! attempt of the OTP after the successful validation has been issued for the first OTP".
//!
//! A code is identified by the time step it matched, and steps only move forward, so the
//! whole state per device is one number: the last accepted step. A step is accepted only if
//! it is strictly later, and the check and the update are one atomic compare-and-set, so
//! when several requests race with the same code exactly one wins. Accepting a step also
//! retires every earlier step of the window, which is what makes "reuse is rejected" hold
//! for codes that were never themselves submitted.
//!
//! This is the embedded [`ReplayGuard`]; a shared implementation (for several broker nodes)
//! replaces it without the request path changing.

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

use super::guard::{GuardFuture, ReplayGuard};
use super::totp::TotpStep;

/// The default [`ReplayGuard`]: a concurrent map from device serial to last accepted step.
///
/// Keys are inserted on a device's first accepted step and removed by
/// [`forget`](ReplayGuard::forget), so callers must only pass serials of registered devices
/// (never raw request input before the device lookup succeeded); memory is then bounded by the
/// number of devices, one small entry each.
#[derive(Debug, Default)]
pub struct InMemoryReplayGuard {
    last_steps: DashMap<String, TotpStep>,
}

impl InMemoryReplayGuard {
    /// An empty guard.
    pub fn new() -> InMemoryReplayGuard {
        InMemoryReplayGuard::default()
    }

    /// Number of devices with a record.
    pub fn len(&self) -> usize {
        self.last_steps.len()
    }

    /// True if no device has a record.
    pub fn is_empty(&self) -> bool {
        self.last_steps.is_empty()
    }

    /// The first of `candidates` later than both the record and `floor`, recorded, under one
    /// shard lock.
    fn accept_first(
        &self,
        device: &str,
        candidates: &[TotpStep],
        floor: TotpStep,
    ) -> Option<TotpStep> {
        let pick = |last: TotpStep| candidates.iter().copied().find(|&s| s > last.max(floor));
        // Known devices take the fast path, without allocating a key; the write guard is
        // dropped at the end of the block, before the map is touched again.
        if let Some(mut last) = self.last_steps.get_mut(device) {
            let step = pick(*last)?;
            *last = step;
            return Some(step);
        }
        match self.last_steps.entry(device.to_owned()) {
            Entry::Occupied(mut occupied) => {
                let step = pick(*occupied.get())?;
                *occupied.get_mut() = step;
                Some(step)
            }
            Entry::Vacant(vacant) => {
                let step = pick(floor)?;
                vacant.insert(step);
                Some(step)
            }
        }
    }
}

impl ReplayGuard for InMemoryReplayGuard {
    fn try_accept<'a>(
        &'a self,
        device: &'a str,
        candidates: &'a [TotpStep],
        floor: TotpStep,
    ) -> GuardFuture<'a, Option<TotpStep>> {
        let accepted = self.accept_first(device, candidates, floor);
        Box::pin(std::future::ready(Ok(accepted)))
    }

    fn forget<'a>(&'a self, device: &'a str) -> GuardFuture<'a, ()> {
        self.last_steps.remove(device);
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const DEVICE: &str = "arn:aws:iam::123456789012:mfa/alice";
    const NONE: TotpStep = TotpStep::BEFORE_ALL;

    fn s(n: i64) -> TotpStep {
        TotpStep::new(n)
    }

    /// One candidate, no floor: the plain compare-and-set.
    fn advance(guard: &InMemoryReplayGuard, device: &str, step: i64) -> bool {
        guard.accept_first(device, &[s(step)], NONE).is_some()
    }

    fn last(guard: &InMemoryReplayGuard, device: &str) -> Option<TotpStep> {
        guard.last_steps.get(device).map(|l| *l)
    }

    #[test]
    fn same_step_is_accepted_once() {
        let guard = InMemoryReplayGuard::new();
        assert_eq!(last(&guard, DEVICE), None);
        assert!(advance(&guard, DEVICE, 100));
        assert!(!advance(&guard, DEVICE, 100));
        assert!(!advance(&guard, DEVICE, 100));
        assert_eq!(last(&guard, DEVICE), Some(s(100)));
    }

    #[test]
    fn older_steps_are_refused_and_later_ones_accepted() {
        let guard = InMemoryReplayGuard::new();
        assert!(advance(&guard, DEVICE, 100));
        assert!(!advance(&guard, DEVICE, 99));
        assert!(!advance(&guard, DEVICE, -5));
        assert!(advance(&guard, DEVICE, 101));
        assert!(!advance(&guard, DEVICE, 100));
        assert!(advance(&guard, DEVICE, 250));
        assert_eq!(last(&guard, DEVICE), Some(s(250)));
    }

    #[test]
    fn devices_are_independent() {
        let guard = InMemoryReplayGuard::new();
        assert!(advance(&guard, "GAHT12345678", 7));
        assert!(advance(&guard, "GAHT87654321", 7));
        assert!(!advance(&guard, "GAHT12345678", 7));
        assert_eq!(guard.len(), 2);
    }

    #[test]
    fn candidates_above_the_record_and_the_floor_win_and_forget_removes() {
        let guard = InMemoryReplayGuard::new();
        assert!(guard.is_empty());
        // The store's record (the floor) refuses what it holds, even on a fresh guard.
        assert_eq!(guard.accept_first(DEVICE, &[s(500)], s(500)), None);
        assert_eq!(
            guard.accept_first(DEVICE, &[s(500), s(501)], s(500)),
            Some(s(501))
        );
        // A stale floor cannot reopen what the guard accepted.
        assert_eq!(guard.accept_first(DEVICE, &[s(501)], s(300)), None);
        // Preference order is the caller's: the first eligible candidate wins.
        assert_eq!(
            guard.accept_first(DEVICE, &[s(503), s(502)], s(300)),
            Some(s(503))
        );
        assert_eq!(last(&guard, DEVICE), Some(s(503)));
        drop(guard.forget(DEVICE));
        assert_eq!(last(&guard, DEVICE), None);
        assert!(guard.is_empty());
    }

    #[test]
    fn racing_threads_have_exactly_one_winner() {
        const THREADS: usize = 16;
        const ROUNDS: i64 = 300;
        let guard = InMemoryReplayGuard::new();
        let barrier = Barrier::new(THREADS);
        for round in 0..ROUNDS {
            // Half the rounds race a device's very first step (the insertion path), half
            // race an existing one (the fast path).
            let device = if round % 2 == 0 {
                format!("dev-{round}")
            } else {
                DEVICE.to_owned()
            };
            let winners = AtomicUsize::new(0);
            std::thread::scope(|scope| {
                for _ in 0..THREADS {
                    scope.spawn(|| {
                        barrier.wait();
                        if advance(&guard, &device, round) {
                            winners.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                }
            });
            assert_eq!(winners.into_inner(), 1, "round {round}");
            assert_eq!(last(&guard, &device), Some(s(round)));
        }
    }

    #[test]
    fn racing_different_steps_leaves_the_maximum() {
        const THREADS: i64 = 16;
        let guard = InMemoryReplayGuard::new();
        let barrier = Barrier::new(THREADS as usize);
        std::thread::scope(|scope| {
            for step in 0..THREADS {
                let (guard, barrier) = (&guard, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    advance(guard, DEVICE, step);
                });
            }
        });
        assert_eq!(last(&guard, DEVICE), Some(s(THREADS - 1)));
    }
}
