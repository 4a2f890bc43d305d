//! The two pieces of MFA state that must be shared by everything that checks codes, behind
//! injected, async and fallible traits, and the one procedure that uses them.
//!
//! - [`ReplayGuard`]: RFC 6238 §5.2's "accept each one-time password once", as the last
//!   accepted step per device.
//! - [`AttemptLimiter`]: the failure lock-out against guessing, per [`AttemptKey`] (a device,
//!   or one caller's attempts at an unassigned hardware token).
//!
//! The embedded implementations are [`InMemoryReplayGuard`](super::replay::InMemoryReplayGuard),
//! a fast path in front of the store's durable record of accepted steps, and the store's own
//! limiter (`store::attempts`), whose records live in the database beside the devices, so a
//! restart or a second process on the data dir sees them. A network store (Redis with atomic
//! scripts, say) implements the same traits. Each method is one atomic decision, so one script
//! per method suffices, and [`verify`] needs no other coordination. The store's durable record
//! of the accepted step stays the authority either way: a guard that lost its state can only
//! refuse less, never accept a spent code.
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

/// What a failure count is kept for.
///
/// Usually a device: its failures lock it for everyone. An unassigned hardware token is
/// different: any user may claim to hold it, so its failures are counted per caller, and a
/// caller who guesses locks only itself out, never the token's real holder
/// (`docs/mfa.md#throttling`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AttemptKey<'a> {
    /// The serial of a registered device, never unchecked request input: implementations keep
    /// a record per key they have seen.
    pub device: &'a str,
    /// Whose attempts, for an unassigned hardware token (the caller's stored owner id, `root`
    /// or a user id); `None` for the device's own count.
    pub caller: Option<&'a str>,
}

impl<'a> AttemptKey<'a> {
    /// The device's own count.
    pub fn device(device: &'a str) -> Self {
        Self {
            device,
            caller: None,
        }
    }

    /// One caller's count at an unassigned hardware token.
    pub fn caller_at(device: &'a str, caller: &'a str) -> Self {
        Self {
            device,
            caller: Some(caller),
        }
    }
}

/// The failure lock-out.
pub trait AttemptLimiter: Send + Sync {
    /// Starts an attempt under `key` at `now`: `Err(Locked)` while it is locked; otherwise the
    /// attempt is counted as a failure at once, in the same atomic step, so that concurrent
    /// attempts (in this process or another) cannot all pass a check made before any of them
    /// failed.
    fn begin<'a>(
        &'a self,
        key: AttemptKey<'a>,
        now: UnixTime,
    ) -> GuardFuture<'a, Result<(), Locked>>;

    /// The attempt begun under `key` proved right, and the write that accepted it has
    /// committed: clears the failures of its device (every caller's, for a token being
    /// enabled). A limiter whose records live in the broker's store is cleared by that write
    /// itself, in the same transaction, and has nothing left to do here.
    fn succeed<'a>(&'a self, key: AttemptKey<'a>) -> GuardFuture<'a, ()>;

    /// The attempt begun under `key` ended before its code was judged: takes back the failure
    /// [`begin`](Self::begin) counted.
    fn cancel<'a>(&'a self, key: AttemptKey<'a>) -> GuardFuture<'a, ()>;

    /// Drops everything known about `device`, every caller's records included (deleted).
    fn forget<'a>(&'a self, device: &'a str) -> GuardFuture<'a, ()>;

    /// A whole TOTP attempt at `key` at `now`, as GetSessionToken makes it: refused while
    /// locked; otherwise counted as a failure, and the first of `candidates` (the steps the
    /// code matched, in order of preference, possibly none) later than both `replay`'s record
    /// of `key.device` and `floor` claimed.
    ///
    /// The default is [`begin`](Self::begin) then
    /// [`ReplayGuard::try_accept`] (two steps, each atomic; the failure counted by the first
    /// stays until [`succeed`](Self::succeed)). A backend that keeps both records may decide
    /// all of it in one atomic step (one round trip) and clear the failures at once; it then
    /// answers `settled: true`, and the caller does not call `succeed`.
    fn claim<'a>(
        &'a self,
        key: AttemptKey<'a>,
        now: UnixTime,
        replay: &'a dyn ReplayGuard,
        candidates: &'a [TotpStep],
        floor: TotpStep,
    ) -> GuardFuture<'a, Claim> {
        Box::pin(async move {
            if let Err(locked) = self.begin(key, now).await? {
                return Ok(Claim::Locked(locked));
            }
            if candidates.is_empty() {
                return Ok(Claim::WrongCode);
            }
            Ok(
                match replay.try_accept(key.device, candidates, floor).await? {
                    Some(step) => Claim::Claimed {
                        step,
                        settled: false,
                    },
                    None => Claim::Replayed,
                },
            )
        })
    }
}

/// What [`AttemptLimiter::claim`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Locked after repeated failures; nothing was counted or claimed.
    Locked(Locked),
    /// The code matched no step: counted as a failure.
    WrongCode,
    /// The code matched only spent steps: counted as a failure.
    Replayed,
    /// This step was claimed; the code's acceptance must now be made durable.
    Claimed {
        /// The step.
        step: TotpStep,
        /// The failures were already cleared (no [`AttemptLimiter::succeed`] to call); when
        /// `false`, the attempt is still counted until `succeed`.
        settled: bool,
    },
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
    /// The code was right and its acceptance is committed (the step, or the enabled device,
    /// is durable): the attempt's failures are cleared.
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

/// One attempt under a lock-out, from [`AttemptLimiter::begin`] to exactly one settlement.
/// Settling takes the attempt by value, so it cannot be settled twice; dropping it unsettled (a
/// wrong code, a request abandoned halfway) leaves it counted as a failure, the safe default.
#[must_use = "an attempt is settled with succeed() or cancel(), or dropped as a failure"]
pub(crate) struct Attempt<'a> {
    limiter: &'a dyn AttemptLimiter,
    key: AttemptKey<'a>,
}

impl<'a> Attempt<'a> {
    /// Begins an attempt; `Err(Locked)` while `key` is locked.
    pub(crate) async fn begin(
        limiter: &'a dyn AttemptLimiter,
        key: AttemptKey<'a>,
        now: UnixTime,
    ) -> Result<Result<Self, Locked>, GuardError> {
        Ok(limiter
            .begin(key, now)
            .await?
            .map(|()| Self { limiter, key }))
    }

    /// The code proved right.
    pub(crate) async fn succeed(self) -> Result<(), GuardError> {
        self.limiter.succeed(self.key).await
    }

    /// The code was never judged.
    pub(crate) async fn cancel(self) -> Result<(), GuardError> {
        self.limiter.cancel(self.key).await
    }
}

/// Runs `judge` as one attempt under `key`'s lock-out: while locked it does not run at all; an
/// accepted verdict clears the failures, a refusal stays counted, and an unjudged end gives the
/// attempt back. GetSessionToken, EnableMFADevice and ResyncMFADevice all check codes through
/// here, and each judge makes its acceptance durable before answering `Accepted` (so that the
/// store's limiter is cleared in that same write, and an acceptance the store then refuses,
/// a replay another process won, stays counted as a failure).
pub(crate) async fn verify<T, E>(
    limiter: &dyn AttemptLimiter,
    key: AttemptKey<'_>,
    now: UnixTime,
    judge: impl AsyncFnOnce() -> Verdict<T, E>,
) -> Result<T, VerifyError<E>> {
    let attempt = match Attempt::begin(limiter, key, now).await {
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
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;
    use crate::mfa::replay::InMemoryReplayGuard;
    use crate::mfa::throttle::{FailureRecord, ThrottlePolicy};
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
        fn begin<'a>(
            &'a self,
            _: AttemptKey<'a>,
            _: UnixTime,
        ) -> GuardFuture<'a, Result<(), Locked>> {
            self.0.lock().unwrap().push("begin");
            let r = self.1.map_or(Ok(()), Err);
            Box::pin(async move { Ok(r) })
        }
        fn succeed<'a>(&'a self, _: AttemptKey<'a>) -> GuardFuture<'a, ()> {
            self.0.lock().unwrap().push("succeed");
            Box::pin(async { Ok(()) })
        }
        fn cancel<'a>(&'a self, _: AttemptKey<'a>) -> GuardFuture<'a, ()> {
            self.0.lock().unwrap().push("cancel");
            Box::pin(async { Ok(()) })
        }
        fn forget<'a>(&'a self, _: &'a str) -> GuardFuture<'a, ()> {
            Box::pin(async { Ok(()) })
        }
    }

    /// The smallest real limiter: failure records in a map.
    #[derive(Default)]
    struct MapLimiter(Mutex<HashMap<(String, Option<String>), FailureRecord>>);

    impl MapLimiter {
        fn with<T>(&self, key: AttemptKey<'_>, f: impl FnOnce(&mut FailureRecord) -> T) -> T {
            let mut map = self.0.lock().unwrap();
            let id = (key.device.to_owned(), key.caller.map(str::to_owned));
            let record = map.entry(id.clone()).or_default();
            let out = f(record);
            if record.is_clear() {
                map.remove(&id);
            }
            out
        }
    }

    impl AttemptLimiter for MapLimiter {
        fn begin<'a>(
            &'a self,
            key: AttemptKey<'a>,
            now: UnixTime,
        ) -> GuardFuture<'a, Result<(), Locked>> {
            let r = self.with(key, |r| r.begin(&ThrottlePolicy::default(), now));
            Box::pin(async move { Ok(r) })
        }
        fn succeed<'a>(&'a self, key: AttemptKey<'a>) -> GuardFuture<'a, ()> {
            self.0.lock().unwrap().retain(|(d, _), _| d != key.device);
            Box::pin(async { Ok(()) })
        }
        fn cancel<'a>(&'a self, key: AttemptKey<'a>) -> GuardFuture<'a, ()> {
            self.with(key, |r| r.cancel(&ThrottlePolicy::default()));
            Box::pin(async { Ok(()) })
        }
        fn forget<'a>(&'a self, device: &'a str) -> GuardFuture<'a, ()> {
            self.0.lock().unwrap().retain(|(d, _), _| d != device);
            Box::pin(async { Ok(()) })
        }
    }

    #[test]
    fn each_verdict_settles_the_attempt_once() {
        let r = Recorder::default();
        let key = AttemptKey::device(DEVICE);
        let ok = block(verify(&r, key, T0, async || Verdict::<_, ()>::Accepted(7)));
        assert_eq!(ok.unwrap(), 7);
        let refused = block(verify(&r, key, T0, async || {
            Verdict::<(), ()>::Refused(MfaRefusal::WrongCode)
        }));
        assert!(matches!(
            refused,
            Err(VerifyError::Refused(MfaRefusal::WrongCode))
        ));
        let unjudged = block(verify(&r, key, T0, async || {
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
        let result = block(verify(
            &r,
            AttemptKey::device(DEVICE),
            T0,
            async || -> Verdict<(), ()> { panic!("judged while locked") },
        ));
        assert!(matches!(
            result,
            Err(VerifyError::Refused(MfaRefusal::Locked { until })) if until == T0.plus_secs(30)
        ));
    }

    #[test]
    fn a_lock_after_the_free_failures_and_replays_refused() {
        let limiter = MapLimiter::default();
        let replay = InMemoryReplayGuard::new();
        let key = TotpKey::new(b"12345678901234567890").unwrap();
        let step = TotpStep::at(T0);
        let attempt = |code: TokenCode| {
            block(verify(
                &limiter,
                AttemptKey::device(DEVICE),
                T0,
                async || {
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
                },
            ))
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
        // Another caller's count at the same device is its own.
        let theirs = AttemptKey::caller_at(DEVICE, "AIDAEXAMPLE");
        let other = block(verify(&limiter, theirs, T0, async || {
            Verdict::<(), ()>::Refused(MfaRefusal::InvalidCodes)
        }));
        assert!(matches!(
            other,
            Err(VerifyError::Refused(MfaRefusal::InvalidCodes))
        ));
    }
}
