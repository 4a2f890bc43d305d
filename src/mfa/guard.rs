//! The two pieces of MFA state that must be shared by everything that checks codes, behind
//! injected, async and fallible traits, and the one procedure that uses them.
//!
//! - [`ReplayGuard`]: RFC 6238 §5.2's "accept each one-time password once", as the last
//!   accepted step per device.
//! - [`AttemptLimiter`]: the per-device failure lock-out against guessing.
//!
//! The embedded implementations ([`InMemoryReplayGuard`](super::replay::InMemoryReplayGuard),
//! [`Throttle`](super::throttle::Throttle)) keep the state in this process; a network store
//! (Redis with atomic scripts, say) implements the same traits. Each method is one atomic
//! decision, so one script per method suffices, and [`verify`] needs no other coordination.
//! The store's durable record of the accepted step stays the authority either way: a guard
//! that lost its state can only refuse less, never accept a spent code.
//!
//! Every call may fail ([`GuardError`]); callers then refuse the attempt (fail closed).

use std::future::Future;
use std::pin::Pin;

use super::totp::TotpStep;
use crate::time::UnixTime;

/// A guard's answer, later.
pub type GuardFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, GuardError>> + Send + 'a>>;

/// A replay guard or attempt limiter could not answer (its backend is unreachable, slow or
/// broken). The attempt is refused; nothing is accepted on a guess.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    /// The backend did not answer in time.
    #[error("the MFA state backend timed out")]
    Timeout,
    /// The backend failed.
    #[error("the MFA state backend failed: {0}")]
    Backend(String),
}

/// The refusal of an attempt on a device locked after repeated failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("MFA device is locked after repeated failures until {until}")]
pub struct Locked {
    /// When attempts are allowed again.
    pub until: UnixTime,
}

impl Locked {
    /// Seconds left at `now`, at least 1 (for a `Retry-After`-style hint).
    pub fn retry_after_secs(&self, now: UnixTime) -> i64 {
        self.until.secs_since(now).max(1)
    }
}

/// The per-device record of the last accepted TOTP step.
pub trait ReplayGuard: Send + Sync {
    /// Atomically accepts the first of `candidates` (steps whose code matched, in order of
    /// preference) that is later than both the last step this guard accepted for `device` and
    /// `floor` (the last step the store recorded); `None` when every candidate is spent.
    ///
    /// `device` must be the serial of a registered device, never unchecked request input:
    /// implementations keep a record per device they have seen.
    fn try_accept<'a>(
        &'a self,
        device: &'a str,
        candidates: &'a [TotpStep],
        floor: TotpStep,
    ) -> GuardFuture<'a, Option<TotpStep>>;

    /// Drops the record of `device` (deleted, or deactivated and so no longer checked).
    fn forget<'a>(&'a self, device: &'a str) -> GuardFuture<'a, ()>;
}

/// The per-device failure lock-out.
pub trait AttemptLimiter: Send + Sync {
    /// Starts an attempt on `device` at `now`: `Err(Locked)` while it is locked; otherwise the
    /// attempt is counted as a failure at once, in the same atomic step, so that concurrent
    /// attempts cannot all pass a check made before any of them failed.
    fn begin<'a>(&'a self, device: &'a str, now: UnixTime) -> GuardFuture<'a, Result<(), Locked>>;

    /// The attempt begun on `device` proved right: clears its failures.
    fn succeed<'a>(&'a self, device: &'a str) -> GuardFuture<'a, ()>;

    /// The attempt begun on `device` ended before its code was judged: takes back the failure
    /// [`begin`](Self::begin) counted.
    fn cancel<'a>(&'a self, device: &'a str) -> GuardFuture<'a, ()>;

    /// Drops everything known about `device` (deleted).
    fn forget<'a>(&'a self, device: &'a str) -> GuardFuture<'a, ()>;
}

/// Why an MFA check refused, as the audit log records it; each API words it for the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MfaRefusal {
    /// A FIDO security key was named where only TOTP devices can be checked.
    FidoKey,
    /// The serial names no enabled TOTP device of the caller.
    UnknownDevice,
    /// A serial without a code, or a code without a serial.
    Incomplete,
    /// The device is locked after repeated failures; the code was not looked at.
    Locked {
        /// When attempts are allowed again.
        until: UnixTime,
    },
    /// The code matches no step of the window.
    WrongCode,
    /// The code matches only steps already used.
    Replayed,
    /// EnableMFADevice/ResyncMFADevice: the two codes are not consecutive codes of the device.
    InvalidCodes,
}

impl MfaRefusal {
    /// The audit log's word for it.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::FidoKey => "fido_key",
            Self::UnknownDevice => "unknown_device",
            Self::Incomplete => "incomplete_mfa",
            Self::Locked { .. } => "throttled",
            Self::WrongCode => "wrong_code",
            Self::Replayed => "replayed",
            Self::InvalidCodes => "invalid_codes",
        }
    }
}

/// How a judged attempt ended.
#[derive(Debug)]
pub(crate) enum Verdict<T, E> {
    /// The code was right: the attempt's failure is cleared.
    Accepted(T),
    /// The code was wrong or spent: the attempt stays counted as a failure.
    Refused(MfaRefusal),
    /// The attempt ended before its code was judged (the device was in use, a quota was
    /// reached, a backend failed): the attempt is given back.
    Unjudged(E),
}

/// Why [`verify`] did not accept.
#[derive(Debug)]
pub(crate) enum VerifyError<E> {
    /// The attempt was refused (locked, wrong, spent…).
    Refused(MfaRefusal),
    /// The attempt limiter could not answer.
    Guard(GuardError),
    /// The judge ended without judging.
    Unjudged(E),
}

/// One attempt at a device under its lock-out, from [`AttemptLimiter::begin`] to exactly one
/// settlement. Settling takes the attempt by value, so it cannot be settled twice; dropping it
/// unsettled (a wrong code, a request abandoned halfway) leaves it counted as a failure, the
/// safe default.
#[must_use = "an attempt is settled with succeed() or cancel(), or dropped as a failure"]
pub(crate) struct Attempt<'a> {
    limiter: &'a dyn AttemptLimiter,
    device: &'a str,
}

impl<'a> Attempt<'a> {
    /// Begins an attempt; `Err(Locked)` while the device is locked.
    pub(crate) async fn begin(
        limiter: &'a dyn AttemptLimiter,
        device: &'a str,
        now: UnixTime,
    ) -> Result<Result<Self, Locked>, GuardError> {
        Ok(limiter
            .begin(device, now)
            .await?
            .map(|()| Self { limiter, device }))
    }

    /// The code proved right.
    pub(crate) async fn succeed(self) -> Result<(), GuardError> {
        self.limiter.succeed(self.device).await
    }

    /// The code was never judged.
    pub(crate) async fn cancel(self) -> Result<(), GuardError> {
        self.limiter.cancel(self.device).await
    }
}

/// Runs `judge` as one attempt at `device` under its lock-out: while locked it does not run at
/// all; an accepted verdict clears the device's failures, a refusal stays counted, and an
/// unjudged end gives the attempt back. GetSessionToken, EnableMFADevice and ResyncMFADevice
/// all check codes through here.
pub(crate) async fn verify<T, E>(
    limiter: &dyn AttemptLimiter,
    device: &str,
    now: UnixTime,
    judge: impl AsyncFnOnce() -> Verdict<T, E>,
) -> Result<T, VerifyError<E>> {
    let attempt = match Attempt::begin(limiter, device, now).await {
        Ok(Ok(attempt)) => attempt,
        Ok(Err(locked)) => {
            return Err(VerifyError::Refused(MfaRefusal::Locked {
                until: locked.until,
            }));
        }
        Err(e) => return Err(VerifyError::Guard(e)),
    };
    match judge().await {
        Verdict::Accepted(value) => {
            attempt.succeed().await.map_err(VerifyError::Guard)?;
            Ok(value)
        }
        Verdict::Refused(refusal) => Err(VerifyError::Refused(refusal)),
        Verdict::Unjudged(e) => {
            attempt.cancel().await.map_err(VerifyError::Guard)?;
            Err(VerifyError::Unjudged(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::mfa::replay::InMemoryReplayGuard;
    use crate::mfa::throttle::{Throttle, ThrottlePolicy};
    use crate::mfa::totp::{TokenCode, TotpKey};

    const DEVICE: &str = "arn:aws:iam::123456789012:mfa/alice";
    const T0: UnixTime = UnixTime::from_secs(1_700_000_000);

    fn block<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// A limiter that records the order of calls.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<&'static str>>, Option<Locked>);

    impl AttemptLimiter for Recorder {
        fn begin<'a>(&'a self, _: &'a str, _: UnixTime) -> GuardFuture<'a, Result<(), Locked>> {
            self.0.lock().unwrap().push("begin");
            let r = self.1.map_or(Ok(()), Err);
            Box::pin(async move { Ok(r) })
        }
        fn succeed<'a>(&'a self, _: &'a str) -> GuardFuture<'a, ()> {
            self.0.lock().unwrap().push("succeed");
            Box::pin(async { Ok(()) })
        }
        fn cancel<'a>(&'a self, _: &'a str) -> GuardFuture<'a, ()> {
            self.0.lock().unwrap().push("cancel");
            Box::pin(async { Ok(()) })
        }
        fn forget<'a>(&'a self, _: &'a str) -> GuardFuture<'a, ()> {
            Box::pin(async { Ok(()) })
        }
    }

    #[test]
    fn each_verdict_settles_the_attempt_once() {
        let r = Recorder::default();
        let ok = block(verify(&r, DEVICE, T0, async || {
            Verdict::<_, ()>::Accepted(7)
        }));
        assert_eq!(ok.unwrap(), 7);
        let refused = block(verify(&r, DEVICE, T0, async || {
            Verdict::<(), ()>::Refused(MfaRefusal::WrongCode)
        }));
        assert!(matches!(
            refused,
            Err(VerifyError::Refused(MfaRefusal::WrongCode))
        ));
        let unjudged = block(verify(&r, DEVICE, T0, async || {
            Verdict::<(), _>::Unjudged("quota")
        }));
        assert!(matches!(unjudged, Err(VerifyError::Unjudged("quota"))));
        assert_eq!(
            *r.0.lock().unwrap(),
            ["begin", "succeed", "begin", "begin", "cancel"]
        );
    }

    #[test]
    fn a_locked_device_never_runs_the_judge() {
        let r = Recorder(
            Mutex::default(),
            Some(Locked {
                until: T0.plus_secs(30),
            }),
        );
        let result = block(verify(&r, DEVICE, T0, async || -> Verdict<(), ()> {
            panic!("judged while locked")
        }));
        assert!(matches!(
            result,
            Err(VerifyError::Refused(MfaRefusal::Locked { until })) if until == T0.plus_secs(30)
        ));
    }

    #[test]
    fn the_embedded_guards_lock_after_the_free_failures_and_refuse_replays() {
        let limiter = Throttle::new(ThrottlePolicy::default());
        let replay = InMemoryReplayGuard::new();
        let key = TotpKey::new(b"12345678901234567890").unwrap();
        let step = TotpStep::at(T0);
        let attempt = |code: TokenCode| {
            block(verify(&limiter, DEVICE, T0, async || {
                let candidates = key.matching_steps(code, step, 1);
                if candidates.is_empty() {
                    return Verdict::Refused(MfaRefusal::WrongCode);
                }
                match replay
                    .try_accept(DEVICE, &candidates, TotpStep::BEFORE_ALL)
                    .await
                {
                    Ok(Some(s)) => Verdict::Accepted(s),
                    Ok(None) => Verdict::Refused(MfaRefusal::Replayed),
                    Err(e) => Verdict::Unjudged(e),
                }
            }))
        };
        let right = key.code(step);
        assert_eq!(attempt(right).unwrap(), step);
        assert!(matches!(
            attempt(right),
            Err(VerifyError::Refused(MfaRefusal::Replayed))
        ));
        let wrong = TokenCode::parse(if right.to_digits() == "000000" {
            "000001"
        } else {
            "000000"
        })
        .unwrap();
        for _ in 0..4 {
            assert!(matches!(
                attempt(wrong),
                Err(VerifyError::Refused(MfaRefusal::WrongCode))
            ));
        }
        assert!(matches!(
            attempt(key.code(step + 1)),
            Err(VerifyError::Refused(MfaRefusal::Locked { .. }))
        ));
    }
}
