//! GetSessionToken: session credentials for a long-term key, carrying the MFA context when a
//! SerialNumber/TokenCode pair is verified.
//!
//! The MFA check, in order (each refusal is audited, none reveals more than AWS's texts):
//! 1. a FIDO serial (registered, or of the `u2f` ARN form) is refused before any code is looked
//!    at;
//! 2. the serial must name an enabled TOTP device of the caller;
//! 3. the device must not be locked out by earlier failures (the attempt counts as one until
//!    the code proves right, in the store's lock-out, which every process on the data dir
//!    shares and a restart keeps);
//! 4. the code must match a step in the window around now plus the device's drift, later than
//!    the last accepted step, claimed atomically by the replay guard (one winner among racing
//!    requests);
//! 5. that step is made durable, together with the audit line and the clearing of the
//!    device's failures, in one write before the credentials leave the broker; the store
//!    refuses it if another process sharing it accepted it first, and the attempt then stays
//!    a failure, audited as a replay only.
//!
//! When the store keeps all the MFA state (the embedded lock-out and no injected or shared
//! guard), steps 3 to 5 are one write, one commit: the lock checked, the step claimed and the
//! failures cleared, or the failure counted, in one transaction, with the audit line durable
//! before the answer (`with_mfa_in_one_write`).
//!
//! Credentials are returned only once their audit line is durable; when it cannot be written
//! the answer is `InternalFailure`, nothing is issued, and a line recording the refusal is held
//! until the log works again (README.md, audit log). A code verified in such an attempt stays
//! spent: its step is committed with the batch. Refusals are audited without waiting: they
//! issue nothing, and their lines are held the same way when the log fails.

use std::net::IpAddr;

use crate::api::RequestCtx;
use crate::audit::{AuditEvent, Outcome};
use crate::mfa::guard::{AttemptKey, Claim, MfaRefusal};
use crate::mfa::is_u2f_arn;
use crate::mfa::totp::{TokenCode, TotpStep};
use crate::model::TotpDevice;
use crate::protocol::Service;
use crate::protocol::error::{ApiError, SESSION_CANNOT_GET_SESSION_TOKEN};
use crate::protocol::params::Params;
use crate::protocol::validate::{Checks, is_serial_char, parse_int};
use crate::protocol::xml::{XmlWriter, success_body};
use crate::session::{MfaContext, SessionCredentials, SessionGrant};
use crate::store::{RequiredLine, StoreError, StoreLimiter};
use crate::time::UnixTime;

/// Shortest session, seconds.
const MIN_DURATION: i64 = 900;
/// Longest session for IAM users, seconds.
const MAX_DURATION: i64 = 129_600;
/// Default session for IAM users, seconds.
const DEFAULT_DURATION: i64 = 43_200;
/// Longest (and default) session for the account root user, seconds.
const ROOT_MAX_DURATION: i64 = 3_600;

/// What the caller offers as MFA.
enum MfaInput {
    /// Neither SerialNumber nor TokenCode.
    None,
    /// Both.
    Code { serial: String, code: TokenCode },
    /// One without the other.
    Incomplete { serial: Option<String> },
}

/// The validated parameters.
struct Input {
    /// `DurationSeconds`, within 900–129600 when given.
    duration_secs: Option<i64>,
    mfa: MfaInput,
}

impl Input {
    fn parse(params: &Params) -> Result<Self, ApiError> {
        let duration = params.get("DurationSeconds").map(parse_int).transpose()?;
        let serial = params.get("SerialNumber");
        let code_text = params.get("TokenCode");
        let mut checks = Checks::new();
        if let Some(d) = duration {
            checks.range("durationSeconds", d, MIN_DURATION, MAX_DURATION);
        }
        if let Some(s) = serial {
            checks.length("serialNumber", s, 9, 256);
            checks.pattern("serialNumber", s, "[\\w+=/:,.@-]*", is_serial_char);
        }
        if let Some(c) = code_text {
            checks.length("tokenCode", c, 6, 6);
            checks.pattern("tokenCode", c, "[\\d]*", |ch| ch.is_ascii_digit());
        }
        checks.finish()?;
        // Six ASCII digits passed both checks above, so a given code parses.
        let code = code_text.and_then(TokenCode::parse);
        let mfa = match (serial, code) {
            (None, None) if code_text.is_none() => MfaInput::None,
            (Some(serial), Some(code)) => MfaInput::Code {
                serial: serial.to_owned(),
                code,
            },
            (serial, _) => MfaInput::Incomplete {
                serial: serial.map(str::to_owned),
            },
        };
        Ok(Self {
            duration_secs: duration,
            mfa,
        })
    }

    /// The serial named, if any.
    fn serial(&self) -> Option<&str> {
        match &self.mfa {
            MfaInput::None => None,
            MfaInput::Code { serial, .. } => Some(serial),
            MfaInput::Incomplete { serial } => serial.as_deref(),
        }
    }
}

/// Handles GetSessionToken.
pub(super) async fn handle(ctx: &RequestCtx<'_>) -> Result<String, ApiError> {
    // Every GetSessionToken is audited, malformed ones included (without the values sent: a
    // malformed TokenCode may still hold a real code).
    let input = Input::parse(ctx.params).inspect_err(|e| {
        let mut event = event(ctx, Outcome::Failure, None, Some("validation_error"));
        event.error_code = Some(e.code());
        ctx.api.store.audit(event.to_line());
    })?;
    let serial = input.serial();
    if ctx.caller.session.is_some() {
        return Err(refuse(
            ctx,
            serial,
            "session_credentials",
            ApiError::access_denied(SESSION_CANNOT_GET_SESSION_TOKEN),
        ));
    }
    let duration = match (input.duration_secs, ctx.caller.principal.is_root()) {
        (Some(d), true) => d.min(ROOT_MAX_DURATION),
        (None, true) => ROOT_MAX_DURATION,
        (Some(d), false) => d,
        (None, false) => DEFAULT_DURATION,
    };
    // A FIDO serial is refused before anything else, with or without a code: no code is ever
    // looked at for it, and the caller learns why (FIDO keys cannot be used on STS,
    // docs/mfa.md#fido-keys-and-sts).
    let device = serial.and_then(|s| ctx.index().device(s));
    if let Some(serial) = serial
        && (is_u2f_arn(serial) || device.as_ref().is_some_and(|d| d.is_fido()))
    {
        return Err(refuse_mfa(ctx, serial, MfaRefusal::FidoKey));
    }
    match &input.mfa {
        MfaInput::None => {
            let creds = mint(ctx, duration, None)?;
            let mut event = event(ctx, Outcome::Success, None, None);
            event.mfa_authenticated = Some(false);
            event.expiration = Some(creds.expiration.iso8601());
            let required = RequiredLine::new(event.to_line(), unrecorded(ctx, None, false));
            ctx.api
                .store
                .audit_and_wait(required)
                .await
                .map_err(|e| issue_failed(ctx, None, e))?;
            Ok(render(ctx, &creds))
        }
        MfaInput::Code { serial, code } => {
            // FIDO keys were refused above; only TOTP devices of the caller get further.
            let owner = ctx.caller.principal.owner();
            let totp = device
                .as_ref()
                .filter(|d| d.assigned_to.as_ref() == Some(&owner))
                .and_then(|d| d.totp());
            let Some(totp) = totp else {
                return Err(refuse_mfa(ctx, serial, MfaRefusal::UnknownDevice));
            };
            with_mfa(ctx, duration, serial, totp, *code).await
        }
        MfaInput::Incomplete { serial } => Err(match serial {
            Some(serial) => refuse_mfa(ctx, serial, MfaRefusal::Incomplete),
            None => refuse(
                ctx,
                None,
                MfaRefusal::Incomplete.reason(),
                ApiError::sts_mfa_refusal(MfaRefusal::Incomplete),
            ),
        }),
    }
}

async fn with_mfa(
    ctx: &RequestCtx<'_>,
    duration: i64,
    serial: &str,
    totp: &TotpDevice,
    code: TokenCode,
) -> Result<String, ApiError> {
    let center = TotpStep::at(ctx.now) + totp.drift;
    let window = ctx.api.config.mfa_window;
    let limiter = ctx.api.limiter.as_ref();
    let key = AttemptKey::device(serial);
    // The steps are computed before the lock is looked at, because a shared backend decides
    // the lock, the count and the claim in one step; a locked device refuses whatever they
    // are, with the same answer, so they tell nothing.
    let candidates = totp.key.matching_steps(code, center, window);
    if let Some(embedded) = &ctx.api.embedded_mfa
        && !candidates.is_empty()
    {
        return with_mfa_in_one_write(ctx, embedded, duration, serial, candidates).await;
    }
    let claimed = limiter
        .claim(
            key,
            ctx.now,
            ctx.api.replay.as_ref(),
            &candidates,
            totp.last_step,
        )
        .await;
    let (step, settled) = match claimed {
        Ok(claim) => claimed_step(claim).map_err(|r| refuse_mfa(ctx, serial, r))?,
        Err(e) => return Err(refuse(ctx, Some(serial), "mfa_backend_failure", e.into())),
    };
    let outcome = issue(ctx, duration, serial, step).await;
    // Settles the attempt: a success clears the failures (unless the claim did), a replay the
    // store refused stays a failure (counted again if the claim had cleared it), and an
    // attempt that ended unjudged is given back.
    let settled_ok = match (&outcome, settled) {
        (Ok(_), false) => limiter.succeed(key).await,
        (Ok(_), true) => Ok(()),
        (Err(Unjudged::Replayed), true) => limiter.begin(key, ctx.now).await.map(|_| ()),
        (Err(Unjudged::Replayed), false) => Ok(()),
        (Err(_), false) => limiter.cancel(key).await,
        (Err(_), true) => Ok(()),
    };
    match outcome {
        Ok(creds) => {
            settled_ok.map_err(|e| refuse(ctx, Some(serial), "mfa_backend_failure", e.into()))?;
            Ok(render(ctx, &creds))
        }
        Err(Unjudged::Replayed) => Err(refuse_mfa(ctx, serial, MfaRefusal::Replayed)),
        Err(Unjudged::Mint(e)) => Err(refuse(ctx, Some(serial), "internal_failure", e)),
        Err(Unjudged::Store(e)) => Err(issue_failed(ctx, Some(serial), e)),
    }
}

/// [`with_mfa`] when the store keeps all the MFA state and the code matched a step: the
/// credentials are minted first (discarded unless the step is claimed), and one write
/// checks the lock, claims the step, clears the failures or counts one, and makes the audit
/// line durable with the step (`StoreLimiter::claim_and_record`). A code that matched no
/// step takes the general path: it only counts a failure, and mints nothing.
async fn with_mfa_in_one_write(
    ctx: &RequestCtx<'_>,
    limiter: &StoreLimiter,
    duration: i64,
    serial: &str,
    candidates: Vec<TotpStep>,
) -> Result<String, ApiError> {
    let creds = mint(ctx, duration, Some(verified_now(ctx, serial)))
        .map_err(|e| refuse(ctx, Some(serial), "internal_failure", e))?;
    let required = success_line(ctx, serial, &creds);
    match limiter
        .claim_and_record(serial, ctx.now, candidates, required)
        .await
    {
        Ok(claim) => claimed_step(claim)
            .map(|_| render(ctx, &creds))
            .map_err(|r| refuse_mfa(ctx, serial, r)),
        Err(e) => Err(issue_failed(ctx, Some(serial), e)),
    }
}

/// The step a claim took (and whether it settled the attempt), or the refusal it stands for.
fn claimed_step(claim: Claim) -> Result<(TotpStep, bool), MfaRefusal> {
    match claim {
        Claim::Claimed { step, settled } => Ok((step, settled)),
        Claim::Locked(locked) => Err(MfaRefusal::Locked {
            until: locked.until,
        }),
        Claim::WrongCode => Err(MfaRefusal::WrongCode),
        Claim::Replayed => Err(MfaRefusal::Replayed),
    }
}

/// The audit line of credentials issued after an MFA check, and what to hold instead.
fn success_line(ctx: &RequestCtx<'_>, serial: &str, creds: &SessionCredentials) -> RequiredLine {
    let mut event = event(ctx, Outcome::Success, Some(serial), None);
    event.mfa_authenticated = Some(true);
    event.expiration = Some(creds.expiration.iso8601());
    RequiredLine::new(event.to_line(), unrecorded(ctx, Some(serial), true))
}

/// Mints the credentials for a claimed step and makes the step durable with their audit line,
/// before they are returned. The store refuses a step another broker process or node recorded
/// first (its conditional update is the authority), and then no success line is written.
async fn issue(
    ctx: &RequestCtx<'_>,
    duration: i64,
    serial: &str,
    step: TotpStep,
) -> Result<SessionCredentials, Unjudged> {
    let creds = mint(ctx, duration, Some(verified_now(ctx, serial))).map_err(Unjudged::Mint)?;
    let required = success_line(ctx, serial, &creds);
    match ctx
        .api
        .store
        .record_accepted_step(serial.to_owned(), step, required)
        .await
    {
        Ok(()) => Ok(creds),
        Err(StoreError::InvalidCodes) => Err(Unjudged::Replayed),
        Err(e) => Err(Unjudged::Store(e)),
    }
}

/// Why a claimed step was not issued.
enum Unjudged {
    /// The store holds that step or a later one already: a replay.
    Replayed,
    /// The credentials could not be minted.
    Mint(ApiError),
    /// The store could not record the step or its audit line.
    Store(StoreError),
}

/// The MFA context of credentials minted for a code of `serial` verified by this request.
fn verified_now(ctx: &RequestCtx<'_>, serial: &str) -> MfaContext {
    MfaContext {
        serial: serial.to_owned(),
        auth_time: ctx.now,
    }
}

fn mint(
    ctx: &RequestCtx<'_>,
    duration: i64,
    mfa: Option<MfaContext>,
) -> Result<SessionCredentials, ApiError> {
    ctx.api
        .keys
        .mint(SessionGrant {
            owner: &ctx.caller.principal.owner(),
            account_id: ctx.account(),
            parent_key: &ctx.caller.parent_access_key_id,
            now: ctx.now,
            duration_secs: duration,
            mfa,
        })
        .map_err(|e| {
            tracing::error!(error = %e, "minting session credentials failed");
            ApiError::InternalFailure
        })
}

fn event<'a>(
    ctx: &'a RequestCtx<'_>,
    outcome: Outcome,
    serial: Option<&'a str>,
    reason: Option<&'a str>,
) -> AuditEvent<'a> {
    Who::of(ctx).event(outcome, serial, reason)
}

/// Who a GetSessionToken line is about.
struct Who<S> {
    now: UnixTime,
    request_id: S,
    account: S,
    arn: S,
    access_key_id: S,
    source_ip: IpAddr,
}

impl Who<String> {
    fn borrowed(&self) -> Who<&str> {
        Who {
            now: self.now,
            request_id: &self.request_id,
            account: &self.account,
            arn: &self.arn,
            access_key_id: &self.access_key_id,
            source_ip: self.source_ip,
        }
    }
}

impl<'a> Who<&'a str> {
    /// The caller of `ctx`.
    fn of(ctx: &'a RequestCtx<'_>) -> Self {
        Who {
            now: ctx.now,
            request_id: ctx.request_id,
            account: ctx.account(),
            arn: &ctx.caller.arn,
            access_key_id: &ctx.caller.access_key_id,
            source_ip: ctx.source_ip,
        }
    }

    /// A copy that borrows nothing, for a line built later.
    fn owned(&self) -> Who<String> {
        Who {
            now: self.now,
            request_id: self.request_id.to_owned(),
            account: self.account.to_owned(),
            arn: self.arn.to_owned(),
            access_key_id: self.access_key_id.to_owned(),
            source_ip: self.source_ip,
        }
    }

    fn event(
        self,
        outcome: Outcome,
        serial: Option<&'a str>,
        reason: Option<&'a str>,
    ) -> AuditEvent<'a> {
        let mut e = AuditEvent::new(
            self.now,
            self.request_id,
            self.account,
            "GetSessionToken",
            outcome,
        );
        e.principal = Some(self.arn);
        e.access_key_id = Some(self.access_key_id);
        e.serial = serial;
        e.reason = reason;
        e.source_ip = Some(self.source_ip);
        e
    }
}

/// Builds, only if it is needed, the line recorded instead of a success whose own line could
/// not be made durable: the request was answered `InternalFailure` and nothing was issued.
fn unrecorded(
    ctx: &RequestCtx<'_>,
    serial: Option<&str>,
    mfa_verified: bool,
) -> impl FnOnce() -> String + Send + 'static {
    let who = Who::of(ctx).owned();
    let serial = serial.map(str::to_owned);
    move || {
        let mut e = who.borrowed().event(
            Outcome::Failure,
            serial.as_deref(),
            Some("audit_log_unavailable"),
        );
        e.error_code = Some(ApiError::InternalFailure.code());
        e.mfa_authenticated = Some(mfa_verified);
        e.to_line()
    }
}

/// The answer when the store could not make an issuance durable. The writer has recorded an
/// audit log failure itself (the line of [`unrecorded`]); any other failure is audited here.
fn issue_failed(ctx: &RequestCtx<'_>, serial: Option<&str>, e: StoreError) -> ApiError {
    match e {
        StoreError::AuditUnavailable => ApiError::from(e),
        e => refuse(ctx, serial, "store_failure", ApiError::from(e)),
    }
}

/// Audits a refusal and returns its error.
fn refuse(ctx: &RequestCtx<'_>, serial: Option<&str>, reason: &str, error: ApiError) -> ApiError {
    let mut e = event(ctx, Outcome::Failure, serial, Some(reason));
    e.error_code = Some(error.code());
    ctx.api.store.audit(e.to_line());
    error
}

/// Audits a refused MFA check and returns its AccessDenied.
fn refuse_mfa(ctx: &RequestCtx<'_>, serial: &str, refusal: MfaRefusal) -> ApiError {
    refuse(
        ctx,
        Some(serial),
        refusal.reason(),
        ApiError::sts_mfa_refusal(refusal),
    )
}

fn render(ctx: &RequestCtx<'_>, creds: &SessionCredentials) -> String {
    let expiration = creds.expiration.iso8601();
    success_body(
        "GetSessionToken",
        Service::Sts.namespace(),
        ctx.request_id,
        Some(&|w: &mut XmlWriter| {
            w.open("Credentials")
                .leaf("AccessKeyId", &creds.access_key_id)
                .leaf("SecretAccessKey", &creds.secret_access_key)
                .leaf("SessionToken", &creds.session_token)
                .leaf("Expiration", &expiration)
                .close("Credentials");
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(s: &str) -> Params {
        let mut p = Params::default();
        p.extend_from_form(s.as_bytes()).unwrap();
        p
    }

    /// The texts of `docs/sts-wire-contract.md#validation-errors`.
    #[test]
    fn duration_bounds_use_the_contract_text() {
        let e = Input::parse(&params("DurationSeconds=899")).err().unwrap();
        assert_eq!(
            e.to_string(),
            "1 validation error detected: Value '899' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to 900"
        );
        let e = Input::parse(&params("DurationSeconds=129601"))
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .ends_with("Member must have value less than or equal to 129600")
        );
        assert!(Input::parse(&params("DurationSeconds=900")).is_ok());
        assert!(Input::parse(&params("DurationSeconds=129600")).is_ok());
        assert!(matches!(
            Input::parse(&params("DurationSeconds=abc")),
            Err(ApiError::MalformedInput(_))
        ));
    }

    #[test]
    fn serial_and_code_shapes() {
        let e = Input::parse(&params("SerialNumber=GAHT1234"))
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .contains("Member must have length greater than or equal to 9")
        );
        let e = Input::parse(&params("SerialNumber=GAHT1234+5678"))
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .contains("regular expression pattern: [\\w+=/:,.@-]*")
        );
        let e = Input::parse(&params("TokenCode=12345")).err().unwrap();
        assert!(e.to_string().contains("at 'tokenCode'"));
        let e = Input::parse(&params("TokenCode=12a456")).err().unwrap();
        assert!(e.to_string().contains("pattern: [\\d]*"));
        let ok = Input::parse(&params("SerialNumber=GAHT12345678&TokenCode=012345")).unwrap();
        assert!(matches!(ok.mfa, MfaInput::Code { .. }));
        let half = Input::parse(&params("TokenCode=012345")).unwrap();
        assert!(matches!(half.mfa, MfaInput::Incomplete { serial: None }));
        let none = Input::parse(&params("DurationSeconds=900")).unwrap();
        assert!(matches!(none.mfa, MfaInput::None));
    }
}
