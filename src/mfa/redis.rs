//! The replay guard and the failure lock-out shared by several broker nodes, in Redis (or
//! Valkey): each decision is one Lua script run atomically by the server (EVALSHA, loaded
//! again after a NOSCRIPT), so a lock-out started on one node holds on all of them, and
//! GetSessionToken's whole attempt (locked? counted, judged, advanced) is one round trip
//! ([`AttemptLimiter::claim`]). `docs/multinode.md` describes the keys.
//!
//! Redis is the fast path, not the authority: the store's conditional update of the last
//! accepted step decides (`docs/multinode.md#who-decides`), so a Redis that lost its data, or a
//! replica that was promoted behind, can only forget failures, never make a spent code valid.
//! Every call has a timeout; an error or a timeout is a [`GuardError`], and the attempt is
//! refused: nothing falls back to per-node memory.

use std::future::Future;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{Client, Script};

use super::guard::{
    AttemptKey, AttemptLimiter, Claim, GuardError, GuardFuture, Locked, ReplayGuard,
};
use super::throttle::ThrottlePolicy;
use super::totp::TotpStep;
use crate::time::UnixTime;

/// How long a device's last accepted step is kept: past it, the store's record (the floor
/// every attempt passes) refuses the old codes on its own.
const LAST_STEP_TTL_SECS: i64 = 24 * 3600;

/// Shared by the scripts: the failure record of `caller` in the hash `fail`.
const RECORD: &str = r"
local function record(fail, caller)
  local r = redis.call('HMGET', fail, 'n:' .. caller, 'u:' .. caller)
  return tonumber(r[1]) or 0, tonumber(r[2])
end
local function store(fail, caller, n, locked_until, ttl)
  if n <= 0 and not locked_until then
    redis.call('HDEL', fail, 'n:' .. caller, 'u:' .. caller)
    return
  end
  redis.call('HSET', fail, 'n:' .. caller, n)
  if locked_until then
    redis.call('HSET', fail, 'u:' .. caller, locked_until)
  else
    redis.call('HDEL', fail, 'u:' .. caller)
  end
  redis.call('EXPIRE', fail, ttl)
end
local function backoff(n, free, base, max)
  if n < free then return nil end
  local b = base * (2 ^ (n - free))
  if b > max then b = max end
  return b
end
";

/// GetSessionToken's attempt. KEYS: last, fail. ARGV: caller, now, floor, free, base, max,
/// ttl, last_ttl, then the candidate steps in order of preference.
/// Answers `{0, until}` locked; `{1}` wrong code; `{2}` replayed; `{3, step}` claimed.
const CLAIM: &str = r"
local caller, now = ARGV[1], tonumber(ARGV[2])
local free, base, max, ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local n, locked_until = record(KEYS[2], caller)
if locked_until and now < locked_until then return {0, locked_until} end
local last = tonumber(redis.call('GET', KEYS[1]))
local floor = tonumber(ARGV[3])
if not last or last < floor then last = floor end
for i = 9, #ARGV do
  if tonumber(ARGV[i]) > last then
    redis.call('SET', KEYS[1], ARGV[i], 'EX', tonumber(ARGV[8]))
    redis.call('DEL', KEYS[2])
    return {3, ARGV[i]}
  end
end
n = n + 1
local b = backoff(n, free, base, max)
if b then locked_until = now + b end
store(KEYS[2], caller, n, locked_until, ttl)
if #ARGV < 9 then return {1} end
return {2}
";

/// `AttemptLimiter::begin`. KEYS: fail. ARGV: caller, now, free, base, max, ttl.
/// Answers `{0, until}` locked, `{1}` counted.
const BEGIN: &str = r"
local caller, now = ARGV[1], tonumber(ARGV[2])
local n, locked_until = record(KEYS[1], caller)
if locked_until and now < locked_until then return {0, locked_until} end
n = n + 1
local b = backoff(n, tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]))
if b then locked_until = now + b end
store(KEYS[1], caller, n, locked_until, tonumber(ARGV[6]))
return {1}
";

/// `AttemptLimiter::cancel`. KEYS: fail. ARGV: caller, free, base, max, ttl.
const CANCEL: &str = r"
local caller = ARGV[1]
local n, locked_until = record(KEYS[1], caller)
n = n - 1
if n < 0 then n = 0 end
if not backoff(n, tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])) then locked_until = nil end
store(KEYS[1], caller, n, locked_until, tonumber(ARGV[5]))
return 1
";

/// `ReplayGuard::try_accept`. KEYS: last. ARGV: floor, last_ttl, candidates.
/// Answers the accepted step, or false.
const ACCEPT: &str = r"
local last = tonumber(redis.call('GET', KEYS[1]))
local floor = tonumber(ARGV[1])
if not last or last < floor then last = floor end
for i = 3, #ARGV do
  if tonumber(ARGV[i]) > last then
    redis.call('SET', KEYS[1], ARGV[i], 'EX', tonumber(ARGV[2]))
    return ARGV[i]
  end
end
return false
";

/// The replay guard and lock-out in Redis.
pub(crate) struct RedisMfa {
    client: Client,
    connection: tokio::sync::OnceCell<ConnectionManager>,
    policy: ThrottlePolicy,
    timeout: Duration,
    claim: Script,
    begin: Script,
    cancel: Script,
    accept: Script,
}

impl std::fmt::Debug for RedisMfa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisMfa")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// `{serial}` is a hash tag: a device's keys live on one shard of a cluster.
fn last_key(serial: &str) -> String {
    format!("sts-broker:{{{serial}}}:last")
}

fn fail_key(serial: &str) -> String {
    format!("sts-broker:{{{serial}}}:fail")
}

fn caller_of(key: AttemptKey<'_>) -> &str {
    key.caller.unwrap_or("")
}

fn backend(e: redis::RedisError) -> GuardError {
    GuardError::Backend(format!("Redis: {e}"))
}

impl RedisMfa {
    /// A guard on the Redis at `url` (`redis://` or `rediss://` for TLS, with rustls), with
    /// `timeout` on every call. It connects on first use and reconnects by itself.
    pub(crate) fn new(
        url: &str,
        policy: ThrottlePolicy,
        timeout: Duration,
    ) -> Result<Self, String> {
        let url = url
            .strip_prefix("valkeys://")
            .map(|rest| format!("rediss://{rest}"))
            .or_else(|| {
                url.strip_prefix("valkey://")
                    .map(|rest| format!("redis://{rest}"))
            })
            .unwrap_or_else(|| url.to_owned());
        let client = Client::open(url.as_str()).map_err(|e| format!("replay_url: {e}"))?;
        Ok(Self {
            client,
            connection: tokio::sync::OnceCell::new(),
            policy,
            timeout,
            claim: Script::new(&format!("{RECORD}{CLAIM}")),
            begin: Script::new(&format!("{RECORD}{BEGIN}")),
            cancel: Script::new(&format!("{RECORD}{CANCEL}")),
            accept: Script::new(ACCEPT),
        })
    }

    /// Failure records outlive the longest lock, so a lock is never forgotten early.
    fn record_ttl(&self) -> i64 {
        self.policy.max_backoff_secs.max(60).saturating_mul(4)
    }

    async fn connection(&self) -> Result<ConnectionManager, GuardError> {
        let manager = self
            .connection
            .get_or_try_init(|| async {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(self.timeout);
                ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            })
            .await
            .map_err(backend)?;
        Ok(manager.clone())
    }

    /// Runs `work` on the connection within the timeout. A connection found broken (Redis
    /// restarted, failed over) is tried once more, on the connection the manager makes
    /// anew, within the same time: a decision that may have run before the break can only
    /// be refused by the second try (a spent step, one more failure), never accepted twice.
    async fn timed<T, F, Fut>(&self, mut work: F) -> Result<T, GuardError>
    where
        F: FnMut(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, redis::RedisError>>,
    {
        let attempt = async {
            match work(self.connection().await?).await {
                Err(e)
                    if e.is_connection_dropped()
                        || e.is_io_error()
                        || e.is_connection_refusal() =>
                {
                    work(self.connection().await?).await.map_err(backend)
                }
                other => other.map_err(backend),
            }
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(GuardError::Timeout),
        }
    }

    /// Runs a prepared script invocation.
    async fn script<T: redis::FromRedisValue>(
        &self,
        call: &redis::ScriptInvocation<'_>,
    ) -> Result<T, GuardError> {
        self.timed(|mut c| async move { call.invoke_async(&mut c).await })
            .await
    }

    /// `DEL` of `keys`.
    async fn delete(&self, keys: &[String]) -> Result<(), GuardError> {
        self.timed(
            |mut c| async move { redis::cmd("DEL").arg(keys).query_async::<i64>(&mut c).await },
        )
        .await
        .map(|_| ())
    }

    /// Whether Redis answers (the readiness probe).
    pub(crate) async fn ping(&self) -> Result<(), GuardError> {
        self.timed(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await
            .map(|_| ())
    }

    fn policy_args(&self) -> [i64; 3] {
        [
            i64::from(self.policy.free_failures.max(1)),
            self.policy.base_backoff_secs.max(0),
            self.policy.max_backoff_secs.max(0),
        ]
    }
}

/// Reads a `{code, value}` answer.
fn answer(v: &[redis::Value]) -> Result<(i64, Option<i64>), GuardError> {
    let int = |v: &redis::Value| match v {
        redis::Value::Int(n) => Some(*n),
        redis::Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        redis::Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    };
    let code = v
        .first()
        .and_then(int)
        .ok_or_else(|| GuardError::Backend("Redis: unexpected script answer".into()))?;
    Ok((code, v.get(1).and_then(int)))
}

impl ReplayGuard for RedisMfa {
    fn try_accept<'a>(
        &'a self,
        device: &'a str,
        candidates: &'a [TotpStep],
        floor: TotpStep,
    ) -> GuardFuture<'a, Option<TotpStep>> {
        Box::pin(async move {
            let mut call = self.accept.key(last_key(device));
            call.arg(floor.get()).arg(LAST_STEP_TTL_SECS);
            for s in candidates {
                call.arg(s.get());
            }
            let step: Option<i64> = self.script(&call).await?;
            Ok(step.map(TotpStep::new))
        })
    }

    fn forget<'a>(&'a self, device: &'a str) -> GuardFuture<'a, ()> {
        Box::pin(async move { self.delete(&[last_key(device), fail_key(device)]).await })
    }
}

impl AttemptLimiter for RedisMfa {
    fn begin<'a>(
        &'a self,
        key: AttemptKey<'a>,
        now: UnixTime,
    ) -> GuardFuture<'a, Result<(), Locked>> {
        Box::pin(async move {
            let [free, base, max] = self.policy_args();
            let mut call = self.begin.key(fail_key(key.device));
            call.arg(caller_of(key))
                .arg(now.secs())
                .arg(free)
                .arg(base)
                .arg(max)
                .arg(self.record_ttl());
            let v: Vec<redis::Value> = self.script(&call).await?;
            match answer(&v)? {
                (0, Some(until)) => Ok(Err(Locked {
                    until: UnixTime::from_secs(until),
                })),
                (1, _) => Ok(Ok(())),
                _ => Err(GuardError::Backend(
                    "Redis: unexpected script answer".into(),
                )),
            }
        })
    }

    fn succeed<'a>(&'a self, key: AttemptKey<'a>) -> GuardFuture<'a, ()> {
        // Every caller's records of the device go: a right code proves who holds it.
        Box::pin(async move { self.delete(&[fail_key(key.device)]).await })
    }

    fn cancel<'a>(&'a self, key: AttemptKey<'a>) -> GuardFuture<'a, ()> {
        Box::pin(async move {
            let [free, base, max] = self.policy_args();
            let mut call = self.cancel.key(fail_key(key.device));
            call.arg(caller_of(key))
                .arg(free)
                .arg(base)
                .arg(max)
                .arg(self.record_ttl());
            self.script::<i64>(&call).await.map(|_| ())
        })
    }

    fn forget<'a>(&'a self, device: &'a str) -> GuardFuture<'a, ()> {
        ReplayGuard::forget(self, device)
    }

    /// One round trip: the lock check, the replay claim against this guard's own record of
    /// the last step (the broker pairs this limiter with itself as the replay guard, so
    /// `_replay` is this object), and the failure count, in one script.
    fn claim<'a>(
        &'a self,
        key: AttemptKey<'a>,
        now: UnixTime,
        _replay: &'a dyn ReplayGuard,
        candidates: &'a [TotpStep],
        floor: TotpStep,
    ) -> GuardFuture<'a, Claim> {
        Box::pin(async move {
            let [free, base, max] = self.policy_args();
            let mut call = self.claim.key(last_key(key.device));
            call.key(fail_key(key.device))
                .arg(caller_of(key))
                .arg(now.secs())
                .arg(floor.get())
                .arg(free)
                .arg(base)
                .arg(max)
                .arg(self.record_ttl())
                .arg(LAST_STEP_TTL_SECS);
            for s in candidates {
                call.arg(s.get());
            }
            let v: Vec<redis::Value> = self.script(&call).await?;
            match answer(&v)? {
                (0, Some(until)) => Ok(Claim::Locked(Locked {
                    until: UnixTime::from_secs(until),
                })),
                (1, _) => Ok(Claim::WrongCode),
                (2, _) => Ok(Claim::Replayed),
                (3, Some(step)) => Ok(Claim::Claimed {
                    step: TotpStep::new(step),
                    settled: true,
                }),
                _ => Err(GuardError::Backend(
                    "Redis: unexpected script answer".into(),
                )),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_a_device_on_one_shard() {
        assert_eq!(last_key("GAHT12345678"), "sts-broker:{GAHT12345678}:last");
        assert_eq!(fail_key("GAHT12345678"), "sts-broker:{GAHT12345678}:fail");
    }

    #[test]
    fn a_bad_url_is_refused_without_connecting() {
        let policy = ThrottlePolicy::default();
        assert!(RedisMfa::new("redis://", policy, Duration::from_millis(100)).is_err());
        assert!(RedisMfa::new("valkey://127.0.0.1:1", policy, Duration::from_millis(100)).is_ok());
    }
}
