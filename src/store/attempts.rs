//! The embedded [`AttemptLimiter`]: the MFA failure lock-out kept in the store, beside the
//! devices, as durable and as shared as the record of accepted steps.
//!
//! Each failure record is a row of `mfa_attempt` (consecutive failures, the lock in force),
//! keyed by the device and, for an unassigned hardware token, the caller. Every change is a
//! write job of the single writer, so it commits with the writer's group commit (one fsync for
//! many requests), inside an IMMEDIATE transaction: a restart sees what was counted, and a
//! second process on the data dir, whose own writer's transactions SQLite serialises with
//! these, counts on the same rows. [`begin`] reads, checks and counts in one job, so concurrent
//! attempts, in this process or another, cannot together pass more than the free failures.
//!
//! The store settles the other transitions in its own writes: a write that accepts a code
//! (`ops::record_accepted_step`, `enable_device`, `resync_device`) clears the device's records
//! in the same transaction, deactivating a device clears them, and deleting it deletes them
//! (a foreign key). So a success costs no commit of its own, and [`StoreLimiter`]'s `succeed`
//! and `forget` have nothing left to do. Rows exist only for registered devices (the insert is
//! conditional on the device), so what is kept is bounded by the devices (times the users, for
//! unassigned hardware tokens), never by what a client sends.

use rusqlite::{OptionalExtension as _, params};

use super::error::StoreError;
use super::writer::{RequiredLine, WriteCtx};
use super::{Store, ops};
use crate::mfa::guard::{AttemptKey, AttemptLimiter, Claim, GuardError, GuardFuture, Locked};
use crate::mfa::throttle::{FailureRecord, ThrottlePolicy};
use crate::mfa::totp::TotpStep;
use crate::time::UnixTime;

/// The `caller` column of a device's own record.
const DEVICE_WIDE: &str = "";

/// The lock-out in the store, with the configured policy.
#[derive(Debug)]
pub(crate) struct StoreLimiter {
    store: Store,
    policy: ThrottlePolicy,
}

impl StoreLimiter {
    /// The lock-out of `store`'s devices under `policy`.
    pub(crate) fn new(store: Store, policy: ThrottlePolicy) -> Self {
        Self { store, policy }
    }
}

/// An owned key, for a write job.
fn owned(key: AttemptKey<'_>) -> (String, String) {
    (
        key.device.to_owned(),
        key.caller.unwrap_or(DEVICE_WIDE).to_owned(),
    )
}

impl StoreLimiter {
    /// A whole GetSessionToken attempt at an assigned device, when this lock-out and the
    /// store's record of accepted steps are the only MFA state (no injected or shared guard):
    /// one write job, so one commit and one round trip to the writer instead of two. Inside
    /// it, the lock is checked; the first of `candidates` (in order of preference) later than
    /// the step the store holds is recorded and the device's failures are cleared, or else the
    /// attempt is counted as a failure. `line` is made durable before the answer only when a
    /// step is claimed.
    ///
    /// It decides what [`AttemptLimiter::claim`] followed by the store's
    /// `record_accepted_step` decide, in one transaction: the failure is counted in the same
    /// commit that judges the code, and nothing is answered before that commit, so a crash
    /// in between reveals nothing and loses no count. The store's conditional update is the
    /// replay authority, as in the two-step path (`docs/mfa.md#replay`).
    pub(crate) async fn claim_and_record(
        &self,
        serial: &str,
        now: UnixTime,
        candidates: Vec<TotpStep>,
        line: RequiredLine,
    ) -> Result<Claim, StoreError> {
        let serial = serial.to_owned();
        let policy = self.policy;
        self.store
            .write_audited(
                move |w| claim_and_record(w, &serial, now, &policy, &candidates),
                move |claim| matches!(claim, Claim::Claimed { .. }).then_some(line),
            )
            .await
    }
}

fn backend(e: StoreError) -> GuardError {
    GuardError::Backend(e.to_string())
}

impl AttemptLimiter for StoreLimiter {
    fn begin<'a>(
        &'a self,
        key: AttemptKey<'a>,
        now: UnixTime,
    ) -> GuardFuture<'a, Result<(), Locked>> {
        let (serial, caller) = owned(key);
        let policy = self.policy;
        Box::pin(async move {
            self.store
                .write(None, move |w| begin(w, &serial, &caller, now, &policy))
                .await
                .map_err(backend)
        })
    }

    fn succeed<'a>(&'a self, _key: AttemptKey<'a>) -> GuardFuture<'a, ()> {
        // The write that accepted the code cleared the records (module docs).
        Box::pin(std::future::ready(Ok(())))
    }

    fn cancel<'a>(&'a self, key: AttemptKey<'a>) -> GuardFuture<'a, ()> {
        let (serial, caller) = owned(key);
        let policy = self.policy;
        Box::pin(async move {
            self.store
                .write(None, move |w| cancel(w, &serial, &caller, &policy))
                .await
                .map_err(backend)
        })
    }

    fn forget<'a>(&'a self, _device: &'a str) -> GuardFuture<'a, ()> {
        // Deleting the device deleted its records (module docs).
        Box::pin(std::future::ready(Ok(())))
    }
}

fn read(
    ctx: &WriteCtx<'_>,
    serial: &str,
    caller: &str,
) -> Result<Option<FailureRecord>, StoreError> {
    Ok(ctx
        .conn()
        .prepare_cached(
            "SELECT failures, locked_until FROM mfa_attempt WHERE serial = ?1 AND caller = ?2",
        )?
        .query_row([serial, caller], |r| {
            Ok(FailureRecord {
                failures: u32::try_from(r.get::<_, i64>(0)?).unwrap_or(u32::MAX),
                locked_until: r.get::<_, Option<i64>>(1)?.map(UnixTime::from_secs),
            })
        })
        .optional()?)
}

fn write(
    ctx: &WriteCtx<'_>,
    serial: &str,
    caller: &str,
    record: &FailureRecord,
) -> Result<(), StoreError> {
    if record.is_clear() {
        ctx.conn()
            .prepare_cached("DELETE FROM mfa_attempt WHERE serial = ?1 AND caller = ?2")?
            .execute([serial, caller])?;
        return Ok(());
    }
    // Only for a device that exists: one deleted since the caller looked it up gets no row.
    ctx.conn()
        .prepare_cached(
            "INSERT INTO mfa_attempt(serial, caller, failures, locked_until)
             SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM mfa_device WHERE serial = ?1)
             ON CONFLICT(serial, caller)
             DO UPDATE SET failures = excluded.failures, locked_until = excluded.locked_until",
        )?
        .execute(params![
            serial,
            caller,
            i64::from(record.failures),
            record.locked_until.map(UnixTime::secs)
        ])?;
    Ok(())
}

/// Starts an attempt: refused while locked (nothing written), otherwise counted at once.
pub(crate) fn begin(
    ctx: &mut WriteCtx<'_>,
    serial: &str,
    caller: &str,
    now: UnixTime,
    policy: &ThrottlePolicy,
) -> Result<Result<(), Locked>, StoreError> {
    let mut record = read(ctx, serial, caller)?.unwrap_or_default();
    if let Err(locked) = record.begin(policy, now) {
        return Ok(Err(locked));
    }
    write(ctx, serial, caller, &record)?;
    Ok(Ok(()))
}

/// [`StoreLimiter::claim_and_record`] inside the writer's transaction.
fn claim_and_record(
    ctx: &mut WriteCtx<'_>,
    serial: &str,
    now: UnixTime,
    policy: &ThrottlePolicy,
    candidates: &[TotpStep],
) -> Result<Claim, StoreError> {
    let before = read(ctx, serial, DEVICE_WIDE)?;
    let mut record = before.unwrap_or_default();
    if let Err(locked) = record.begin(policy, now) {
        return Ok(Claim::Locked(locked));
    }
    for &step in candidates {
        if ops::record_step(ctx, serial, step)? {
            // An assigned device has only its own record: enabling it cleared every
            // caller's (`ops::enable_device`), and callers are counted apart only at
            // unassigned tokens. So there is nothing to clear when there was no record.
            if before.is_some() {
                forget_device(ctx, serial)?;
            }
            return Ok(Claim::Claimed {
                step,
                settled: true,
            });
        }
    }
    write(ctx, serial, DEVICE_WIDE, &record)?;
    Ok(if candidates.is_empty() {
        Claim::WrongCode
    } else {
        Claim::Replayed
    })
}

/// Takes back an attempt whose code was never judged.
pub(crate) fn cancel(
    ctx: &mut WriteCtx<'_>,
    serial: &str,
    caller: &str,
    policy: &ThrottlePolicy,
) -> Result<(), StoreError> {
    if let Some(mut record) = read(ctx, serial, caller)? {
        record.cancel(policy);
        write(ctx, serial, caller, &record)?;
    }
    Ok(())
}

/// Clears every record of a device (a code was accepted, or it changed hands).
pub(crate) fn forget_device(ctx: &mut WriteCtx<'_>, serial: &str) -> Result<(), StoreError> {
    ctx.conn()
        .prepare_cached("DELETE FROM mfa_attempt WHERE serial = ?1")?
        .execute([serial])?;
    Ok(())
}

/// Clears a deleted user's records at unassigned hardware tokens.
pub(crate) fn forget_caller(ctx: &mut WriteCtx<'_>, user_id: &str) -> Result<(), StoreError> {
    ctx.conn()
        .execute("DELETE FROM mfa_attempt WHERE caller = ?1", [user_id])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::audit::{AuditLog, AuditTarget};
    use crate::clock::ManualClock;
    use crate::model::Owner;
    use crate::store::{StoreOptions, ops};

    const T0: UnixTime = UnixTime::from_secs(1_700_000_000);
    const SERIAL: &str = "GAHT12345678";

    fn scratch(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("sts-attempts-{tag}-{}", crate::ids::request_id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn open(dir: &Path) -> Store {
        Store::open(
            dir,
            StoreOptions {
                load_index: false,
                audit: AuditLog::open(&AuditTarget::Off).unwrap(),
                poll: Duration::from_millis(20),
                clock: Arc::new(ManualClock::new(T0.secs())),
            },
        )
        .unwrap()
        .0
    }

    fn block<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn records(store: &Store) -> i64 {
        store
            .read_blocking(|conn, _| {
                Ok(conn.query_row("SELECT COUNT(*) FROM mfa_attempt", [], |r| r.get(0))?)
            })
            .unwrap()
    }

    fn import(store: &Store, serial: &'static str) {
        store
            .write_blocking(move |w| {
                ops::import_hardware_device(w, serial, b"12345678901234567890", None)
            })
            .unwrap();
    }

    #[test]
    fn two_stores_on_one_data_dir_count_on_the_same_records() {
        let dir = scratch("shared");
        let (one, two) = (open(&dir), open(&dir));
        import(&one, SERIAL);
        let policy = ThrottlePolicy::default();
        let (a, b) = (
            StoreLimiter::new(one.clone(), policy),
            StoreLimiter::new(two.clone(), policy),
        );
        let key = AttemptKey::device(SERIAL);
        for n in 0..5 {
            let limiter = if n % 2 == 0 { &a } else { &b };
            assert_eq!(block(limiter.begin(key, T0)), Ok(Ok(())));
        }
        let locked = Ok(Err(Locked {
            until: T0.plus_secs(30),
        }));
        assert_eq!(block(a.begin(key, T0)), locked);
        assert_eq!(block(b.begin(key, T0)), locked);
        // A store opened afresh (a restart) sees the lock too.
        one.close();
        let three = open(&dir);
        let c = StoreLimiter::new(three.clone(), policy);
        assert_eq!(block(c.begin(key, T0.plus_secs(29))), locked);
        // One caller's count at the token is not another's, nor the device's.
        let mallory = AttemptKey::caller_at(SERIAL, "AIDAMALLORY");
        assert_eq!(block(c.begin(mallory, T0)), Ok(Ok(())));
        assert_eq!(records(&three), 2);
        // A cancelled attempt is taken back; the last one leaves no row.
        block(c.cancel(mallory)).unwrap();
        assert_eq!(records(&three), 1);
        two.close();
        three.close();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn one_write_judges_counts_and_claims_with_the_line_only_for_a_claim() {
        let dir = scratch("one-write");
        let log = dir.with_extension("audit.jsonl");
        let _ = std::fs::remove_file(&log);
        let store = Store::open(
            &dir,
            StoreOptions {
                load_index: false,
                audit: AuditLog::open(&AuditTarget::File(log.clone())).unwrap(),
                poll: Duration::from_millis(20),
                clock: Arc::new(ManualClock::new(T0.secs())),
            },
        )
        .unwrap()
        .0;
        store
            .write_blocking(|w| {
                ops::import_hardware_device(w, SERIAL, b"12345678901234567890", None)?;
                // Enabled by the root user (what EnableMFADevice's write leaves).
                w.conn().execute(
                    "UPDATE mfa_device SET assigned_to = ?1 WHERE serial = ?2",
                    [Owner::Root.as_db(), SERIAL],
                )?;
                Ok(())
            })
            .unwrap();
        let limiter = StoreLimiter::new(store.clone(), ThrottlePolicy::default());
        let line = |n: u32| {
            RequiredLine::new(format!("{{\"claim\":{n}}}"), move || {
                format!("{{\"refused\":{n}}}")
            })
        };
        // Steps later than any the import could have recorded.
        const BASE: i64 = T0.secs() / 30 + 1_000;
        let claim = |steps: &[i64], n: u32, now: UnixTime| {
            block(limiter.claim_and_record(
                SERIAL,
                now,
                steps.iter().map(|&s| TotpStep::new(BASE + s)).collect(),
                line(n),
            ))
            .unwrap()
        };
        let failures = || -> i64 {
            store
                .read_blocking(|conn, _| {
                    Ok(conn.query_row(
                        "SELECT COALESCE(SUM(failures), 0) FROM mfa_attempt",
                        [],
                        |r| r.get(0),
                    )?)
                })
                .unwrap()
        };
        // The first candidate later than the stored step is claimed; no failure is left.
        let first = claim(&[100, 99], 1, T0);
        assert_eq!(
            first,
            Claim::Claimed {
                step: TotpStep::new(BASE + 100),
                settled: true
            }
        );
        assert_eq!(failures(), 0);
        // A spent step, then a code that matched nothing: each counted, no line.
        assert_eq!(claim(&[100, 99], 2, T0), Claim::Replayed);
        assert_eq!(claim(&[], 3, T0), Claim::WrongCode);
        assert_eq!(failures(), 2);
        // A later step clears the failures in the same write.
        assert_eq!(
            claim(&[99, 101], 4, T0),
            Claim::Claimed {
                step: TotpStep::new(BASE + 101),
                settled: true
            }
        );
        assert_eq!(failures(), 0);
        // Five failures lock the device; while locked nothing is counted or claimed, not
        // even an unspent step.
        for n in 0..5 {
            assert_eq!(claim(&[], 10 + n, T0), Claim::WrongCode);
        }
        let locked = Claim::Locked(Locked {
            until: T0.plus_secs(30),
        });
        assert_eq!(claim(&[102], 20, T0), locked);
        assert_eq!(failures(), 5);
        // Once the lock ends, a right code is claimed and clears it.
        assert_eq!(
            claim(&[102], 21, T0.plus_secs(30)),
            Claim::Claimed {
                step: TotpStep::new(BASE + 102),
                settled: true
            }
        );
        assert_eq!(failures(), 0);
        store.close();
        let written = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            written.lines().collect::<Vec<_>>(),
            ["{\"claim\":1}", "{\"claim\":4}", "{\"claim\":21}"]
        );
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_file(&log).unwrap();
    }

    #[test]
    fn records_exist_only_for_devices_and_go_with_them() {
        let dir = scratch("bounded");
        let store = open(&dir);
        import(&store, SERIAL);
        let limiter = StoreLimiter::new(store.clone(), ThrottlePolicy::default());
        for n in 0..20 {
            let made_up = format!("GAHT{n:08}");
            assert_eq!(
                block(limiter.begin(AttemptKey::device(&made_up), T0)),
                Ok(Ok(()))
            );
        }
        assert_eq!(
            records(&store),
            0,
            "no record for a serial that is not a device"
        );
        block(limiter.begin(AttemptKey::device(SERIAL), T0))
            .unwrap()
            .unwrap();
        block(limiter.begin(AttemptKey::caller_at(SERIAL, "root"), T0))
            .unwrap()
            .unwrap();
        assert_eq!(records(&store), 2);
        store
            .write_blocking(|w| ops::delete_any_device(w, SERIAL))
            .unwrap();
        assert_eq!(records(&store), 0);
        store.close();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
