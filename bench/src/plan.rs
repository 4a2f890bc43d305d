//! What each connection sends: the workloads, the single-use TOTP codes of GetSessionToken
//! with MFA, and the signing of every request before the timed window.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::creds::{Spent, User, totp};
use crate::drive::ConnPlan;
use crate::sign::{Signed, Signer, Target, body};

/// The measured request types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Workload {
    /// GetSessionToken with SerialNumber/TokenCode: every request a never-used code.
    GstMfa,
    /// GetSessionToken without MFA.
    Gst,
    /// GetCallerIdentity signed with a long-term key.
    GciKey,
    /// GetCallerIdentity signed with MFA session credentials.
    GciSession,
}

impl Workload {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::GstMfa => "gst-mfa",
            Self::Gst => "gst",
            Self::GciKey => "gci-key",
            Self::GciSession => "gci-session",
        }
    }
}

/// Session credentials to sign with.
#[derive(Clone)]
pub(crate) struct Session {
    pub(crate) access_key_id: String,
    pub(crate) secret: String,
    pub(crate) token: String,
}

/// One request to sign: whose credentials, and the body.
struct Item {
    cred: Cred,
    body: String,
}

#[derive(Clone, Copy)]
enum Cred {
    User(usize),
    Session(usize),
}

/// The requests of a window.
pub(crate) struct Built {
    pub(crate) plans: Vec<ConnPlan>,
    /// Replayed round and round (every workload but GetSessionToken with MFA on a broker).
    pub(crate) cyclic: bool,
    /// Per connection, the (user, step) of each request, in sending order.
    pub(crate) codes: Option<Vec<Vec<(usize, i64)>>>,
    /// Mean request size on the wire.
    pub(crate) request_bytes: usize,
    /// The first request, for `wrk-script`.
    pub(crate) first: Option<Signed>,
}

/// How to build a window.
pub(crate) struct Options<'a> {
    pub(crate) target: &'a Target,
    pub(crate) users: &'a [User],
    pub(crate) sessions: &'a [Session],
    pub(crate) workload: Workload,
    pub(crate) concurrency: usize,
    pub(crate) threads: usize,
    /// Distinct requests replayed by the cyclic workloads.
    pub(crate) pool: usize,
    /// Most single-use requests signed for one window.
    pub(crate) max_requests: usize,
    /// Fewest single-use requests worth a window: with fewer unused codes, wait for the next
    /// TOTP step (twice at most).
    pub(crate) min_requests: usize,
    /// The broker's TOTP window, in steps each side.
    pub(crate) mfa_window: i64,
    /// The target checks nothing (the floor, moto): codes are not single-use.
    pub(crate) unchecked: bool,
}

pub(crate) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Plans and signs the requests of one window. For single-use codes, `spent` is advanced to
/// every planned code before this returns (so that a crash can never lead to a replay); the
/// caller rolls it back to what was really sent.
pub(crate) fn build(opts: &Options<'_>, spent: &mut Spent) -> Result<Built, String> {
    let c = opts.concurrency.max(1);
    if opts.workload == Workload::GstMfa && !opts.unchecked {
        return build_single_use(opts, spent);
    }
    let count = match opts.workload {
        Workload::GciSession => opts.sessions.len(),
        _ => opts.users.len(),
    }
    .min(opts.pool.max(1));
    if count == 0 {
        return Err("no credentials to sign with".into());
    }
    let step = totp::step_at(unix_now() as i64);
    let items: Vec<Item> = (0..count)
        .map(|i| match opts.workload {
            Workload::GstMfa => {
                let u = opts.users.get(i).ok_or("user index")?;
                Ok(Item {
                    cred: Cred::User(i),
                    body: body::get_session_token_mfa(&u.serial, totp::code(&u.seed, step)),
                })
            }
            Workload::Gst => Ok(Item {
                cred: Cred::User(i),
                body: body::get_session_token(),
            }),
            Workload::GciKey => Ok(Item {
                cred: Cred::User(i),
                body: body::get_caller_identity(),
            }),
            Workload::GciSession => Ok(Item {
                cred: Cred::Session(i),
                body: body::get_caller_identity(),
            }),
        })
        .collect::<Result<_, String>>()?;
    let (wire, first) = sign_all(opts, items)?;
    let request_bytes = wire.iter().map(Bytes::len).sum::<usize>() / wire.len().max(1);
    // Connection j replays requests j, j + c, j + 2c… of the pool (wrapping when the pool is
    // smaller than the number of connections).
    let plans = (0..c)
        .map(|j| ConnPlan {
            requests: (j..count.max(c))
                .step_by(c)
                .filter_map(|i| wire.get(i % count).cloned())
                .collect(),
            expires: Vec::new(),
        })
        .collect();
    Ok(Built {
        plans,
        cyclic: true,
        codes: None,
        request_bytes,
        first,
    })
}

/// GetSessionToken with MFA against a checking broker: each request carries a code of a step
/// later than anything sent before for its device, valid when planned (a request whose code
/// has left the broker's window by its turn is skipped, not sent).
///
/// A device's code is valid while its step is within `mfa_window` steps of now, so at any
/// moment a device offers up to `2w + 1` unused codes (3 with the default window), and one more
/// every 30 s; the plan takes those valid at planning time, in passes (every device's first
/// usable step, then every device's next one…), and gives all requests of a device to one
/// connection, in step order, so that they reach the broker in order and never overlap: the
/// replay guard sees every code once, and every code is one it accepts.
fn build_single_use(opts: &Options<'_>, spent: &mut Spent) -> Result<Built, String> {
    let c = opts.concurrency.max(1);
    let w = opts.mfa_window;
    let n = opts.users.len();
    let most = opts
        .max_requests
        .min(n * usize::try_from(2 * w + 1).unwrap_or(3));
    let mut waited = 0;
    let order = loop {
        let now_step = totp::step_at(unix_now() as i64);
        // When not every usable code fits, keep the latest steps, which stay valid longest:
        // collect passes from the newest step down, then send them oldest first.
        let mut passes: Vec<Vec<(usize, i64)>> = Vec::new();
        let mut taken = 0;
        'passes: for step in (now_step - w..=now_step + w).rev() {
            let mut pass = Vec::new();
            for u in 0..n {
                if step > spent.get(u) {
                    if taken >= most {
                        passes.push(pass);
                        break 'passes;
                    }
                    pass.push((u, step));
                    taken += 1;
                }
            }
            passes.push(pass);
        }
        let order: Vec<(usize, i64)> = passes.into_iter().rev().flatten().collect();
        // Each device offers one more code per step: too few now means waiting for the next.
        if order.len() >= opts.min_requests.min(most) || waited >= 2 {
            break order;
        }
        let wait = ((now_step + 1) * totp::STEP_SECONDS) as f64 - unix_now() + 0.2;
        eprintln!(
            "sts-bench: {} unused codes now, fewer than --min-requests {}: waiting {wait:.1} s for the next TOTP step",
            order.len(),
            opts.min_requests,
        );
        std::thread::sleep(Duration::from_secs_f64(wait.max(0.0)));
        waited += 1;
    };
    if order.is_empty() {
        return Err(
            "every device's usable codes are spent: wait for the next 30 s step or provision more users"
                .into(),
        );
    }
    for &(u, step) in &order {
        spent.mark(u, step);
    }
    spent.save()?;
    let mut items: Vec<Item> = Vec::with_capacity(order.len());
    let mut kept: Vec<(usize, i64)> = Vec::with_capacity(order.len());
    for (u, step) in order {
        let user = opts.users.get(u).ok_or("user index")?;
        let code = totp::code(&user.seed, step);
        if repeats_earlier_code(&user.seed, step, code, w) {
            continue;
        }
        items.push(Item {
            cred: Cred::User(u),
            body: body::get_session_token_mfa(&user.serial, code),
        });
        kept.push((u, step));
    }
    let order = kept;
    let (wire, first) = sign_all(opts, items)?;
    let request_bytes = wire.iter().map(Bytes::len).sum::<usize>() / wire.len().max(1);
    // A code leaves the broker's window once now is more than `w` steps past it; the
    // connection skips (and does not send) a request whose code has left it.
    let (now, unix) = (Instant::now(), unix_now());
    let expiry = |step: i64| {
        let at = ((step + w + 1) * totp::STEP_SECONDS) as f64 - 0.5;
        now + Duration::from_secs_f64((at - unix).max(0.0))
    };
    let mut plans: Vec<ConnPlan> = (0..c).map(|_| ConnPlan::default()).collect();
    let mut codes: Vec<Vec<(usize, i64)>> = (0..c).map(|_| Vec::new()).collect();
    for ((u, step), req) in order.into_iter().zip(wire) {
        if let (Some(p), Some(k)) = (plans.get_mut(u % c), codes.get_mut(u % c)) {
            p.requests.push(req);
            p.expires.push(expiry(step));
            k.push((u, step));
        }
    }
    Ok(Built {
        plans,
        cyclic: false,
        codes: Some(codes),
        request_bytes,
        first,
    })
}

/// Signs `items` on `opts.threads` threads; all with the same time.
fn sign_all(opts: &Options<'_>, items: Vec<Item>) -> Result<(Vec<Bytes>, Option<Signed>), String> {
    let time = SystemTime::now();
    let threads = opts.threads.max(1);
    let chunk = items.len().div_ceil(threads).max(1);
    let results: Vec<Result<Vec<Signed>, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|item| {
                            let signer = match item.cred {
                                Cred::User(i) => {
                                    let u = opts.users.get(i).ok_or("user index")?;
                                    Signer {
                                        access_key_id: &u.access_key_id,
                                        secret: &u.secret,
                                        session_token: None,
                                    }
                                }
                                Cred::Session(i) => {
                                    let s = opts.sessions.get(i).ok_or("session index")?;
                                    Signer {
                                        access_key_id: &s.access_key_id,
                                        secret: &s.secret,
                                        session_token: Some(&s.token),
                                    }
                                }
                            };
                            signer.sign(opts.target, item.body.clone(), time)
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a signing thread panicked".into()))
            })
            .collect()
    });
    let mut wire = Vec::with_capacity(items.len());
    let mut first = None;
    for part in results {
        for signed in part? {
            wire.push(signed.to_wire(&opts.target.path));
            if first.is_none() {
                first = Some(signed);
            }
        }
    }
    Ok((wire, first))
}

/// Session credentials shaped like the broker's (lengths of `ASIA…` ids, secrets and tokens),
/// for targets that check nothing.
pub(crate) fn synthetic_sessions(count: usize, token_len: usize) -> Vec<Session> {
    (0..count)
        .map(|i| Session {
            access_key_id: format!("ASIABENCH{i:011}"),
            secret: format!("{:0>40}", format!("benchsecret{i}")),
            token: format!("{:x>token_len$}", format!("benchtoken{i}.")),
        })
        .collect()
}

/// Whether `code`, the code of `step`, is also the code of one of the `2w` steps before it.
/// Six digits repeat (about once in a million steps per device, so a few times a run at
/// 100,000 devices), and a broker that judges the earlier step's code may count it as `step`
/// (within its window it takes the matching step nearest to now): the same digits sent again
/// for `step` are then a replay, and refused as one. Such a step is skipped, not sent.
pub(crate) fn repeats_earlier_code(seed: &[u8], step: i64, code: u32, w: i64) -> bool {
    (step - 2 * w..step).any(|earlier| totp::code(seed, earlier) == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_repeating_one_of_the_window_before_it_is_found() {
        // A device of a benchmark run whose codes for two consecutive steps were both 611396:
        // the broker took the first as the later step and refused the second as a replay.
        let seed = data_encoding::BASE32_NOPAD
            .decode(b"C4ZPQ57PDWFX74A4XTHZNTZP4OFFHOFESI66EE63X7CF7GLHPBVOVHJ5G64RR4L3")
            .unwrap();
        let (early, late) = (59_873_279, 59_873_280);
        assert_eq!(totp::code(&seed, early), 611_396);
        assert_eq!(totp::code(&seed, late), 611_396);
        let repeats = |step| repeats_earlier_code(&seed, step, totp::code(&seed, step), 1);
        assert!(repeats(late));
        assert!(!repeats(early));
        assert!(!repeats(late + 1));
        // The same digits would still be within reach two steps on, not three.
        assert!(repeats_earlier_code(&seed, late + 2, 611_396, 1));
        assert!(!repeats_earlier_code(&seed, late + 3, 611_396, 1));
    }
}
