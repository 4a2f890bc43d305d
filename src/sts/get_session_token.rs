//! GetSessionToken: session credentials for a long-term key, carrying the MFA context when a
//! SerialNumber/TokenCode pair is verified.
//!
//! The MFA check, in order (each refusal is audited, none reveals more than AWS's texts):
//! 1. a FIDO serial (registered, or of the `u2f` ARN form) is refused before any code is looked at;
//! 2. the serial must name an enabled TOTP device of the caller;
//! 3. the device must not be locked out by earlier failures (the attempt counts as one until
//!    the code proves right);
//! 4. the code must match a step in the window around now plus the device's drift, later than
//!    the last accepted step;
//! 5. that step is claimed atomically in memory (one winner among racing requests), then made
//!    durable — together with the audit line — before the credentials leave the broker.

use std::sync::Arc;

use crate::app::RequestCtx;
use crate::audit::{AuditEvent, Outcome};
use crate::auth::Principal;
use crate::mfa::is_u2f_arn;
use crate::mfa::totp::{TokenCode, step_at};
use crate::protocol::Service;
use crate::protocol::error::{
    ApiError, MFA_FIDO_NOT_ALLOWED, MFA_INVALID_CODE, MFA_UNABLE_TO_VALIDATE,
    SESSION_CANNOT_GET_SESSION_TOKEN,
};
use crate::protocol::params::Params;
use crate::protocol::validate::{Checks, is_serial_char, parse_int};
use crate::protocol::xml::{XmlWriter, success_body};
use crate::session::{MfaContext, SessionCredentials};
use crate::store::model::{Device, DeviceKind};
use crate::store::ops;
use crate::time::UnixTime;

/// Shortest session, seconds.
const MIN_DURATION: i64 = 900;
/// Longest session for IAM users, seconds.
const MAX_DURATION: i64 = 129_600;
/// Default session for IAM users, seconds.
const DEFAULT_DURATION: i64 = 43_200;
/// Longest (and default) session for the account root user, seconds.
const ROOT_MAX_DURATION: i64 = 3_600;

/// The validated request.
struct Parsed<'a> {
    duration: Option<i64>,
    serial: Option<&'a str>,
    code: Option<TokenCode>,
}

fn parse(params: &Params) -> Result<Parsed<'_>, ApiError> {
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
    Ok(Parsed {
        duration,
        serial,
        // Six ASCII digits passed both checks above, so this parse succeeds.
        code: code_text.and_then(TokenCode::parse),
    })
}

/// Handles GetSessionToken.
pub async fn handle(ctx: &RequestCtx<'_>) -> Result<String, ApiError> {
    // Every GetSessionToken is audited, malformed ones included (without the values sent: a
    // malformed TokenCode may still hold a real code).
    let parsed = parse(ctx.params).inspect_err(|e| {
        let mut event = event(ctx, Outcome::Failure, None, Some("validation_error"));
        event.error_code = Some(e.code());
        ctx.state.store.audit(event.to_line());
    })?;
    if ctx.caller.session.is_some() {
        return Err(refuse(
            ctx,
            parsed.serial,
            "session_credentials",
            SESSION_CANNOT_GET_SESSION_TOKEN,
        ));
    }
    let is_root = matches!(ctx.caller.principal, Principal::Root);
    let duration = match (parsed.duration, is_root) {
        (Some(d), true) => d.min(ROOT_MAX_DURATION),
        (None, true) => ROOT_MAX_DURATION,
        (Some(d), false) => d,
        (None, false) => DEFAULT_DURATION,
    };
    // A FIDO serial is refused before anything else, with or without a code: no code is ever
    // looked at for it, and the caller learns why (seed: FIDO keys cannot be used on STS).
    let device = match parsed.serial {
        Some(serial) => ctx.state.index()?.device(serial),
        None => None,
    };
    if let Some(serial) = parsed.serial
        && (is_u2f_arn(serial) || device.as_ref().is_some_and(|d| d.kind == DeviceKind::Fido))
    {
        return Err(refuse(ctx, Some(serial), "fido_key", MFA_FIDO_NOT_ALLOWED));
    }
    match (parsed.serial, parsed.code) {
        (None, None) => {
            let creds = mint(ctx, duration, None)?;
            let mut event = event(ctx, Outcome::Success, None, None);
            event.mfa_authenticated = Some(false);
            event.expiration = Some(UnixTime::from_secs(creds.expiration).iso8601());
            ctx.state.store.audit_and_wait(event.to_line()).await?;
            Ok(render(ctx, &creds))
        }
        (Some(serial), Some(code)) => with_mfa(ctx, duration, serial, device, code).await,
        (serial, _) => Err(refuse(
            ctx,
            serial,
            "incomplete_mfa",
            MFA_UNABLE_TO_VALIDATE,
        )),
    }
}

async fn with_mfa(
    ctx: &RequestCtx<'_>,
    duration: i64,
    serial: &str,
    device: Option<Arc<Device>>,
    code: TokenCode,
) -> Result<String, ApiError> {
    let owner = ctx.caller.owner();
    // FIDO keys were refused by the caller; only TOTP devices get here.
    let device =
        device.filter(|d| d.kind != DeviceKind::Fido && d.assigned_to.as_ref() == Some(&owner));
    let Some(device) = device else {
        return Err(refuse(
            ctx,
            Some(serial),
            "unknown_device",
            MFA_UNABLE_TO_VALIDATE,
        ));
    };
    let Some(key) = device.totp.as_ref() else {
        return Err(refuse(
            ctx,
            Some(serial),
            "unknown_device",
            MFA_UNABLE_TO_VALIDATE,
        ));
    };
    let throttle = &ctx.state.throttle;
    // Counted as a failure from here on unless the code proves right: concurrent attempts see
    // each other, so no more than the free failures are ever judged before a lock.
    if throttle.begin_attempt(serial, ctx.now).is_err() {
        return Err(refuse(ctx, Some(serial), "throttled", MFA_INVALID_CODE));
    }
    let replay = ctx.state.store.replay();
    let center = step_at(ctx.now).saturating_add(device.drift);
    let window = ctx.state.config.mfa_window;
    let last = replay.last_accepted(serial);
    let Some(step) = key.find_step_after(code, center, window, last) else {
        let reason = if key.find_step(code, center, window).is_some() {
            "replayed"
        } else {
            "wrong_code"
        };
        return Err(refuse(ctx, Some(serial), reason, MFA_INVALID_CODE));
    };
    if !replay.try_advance(serial, step) {
        return Err(refuse(ctx, Some(serial), "replayed", MFA_INVALID_CODE));
    }
    throttle.record_success(serial);
    let mfa = MfaContext {
        serial: serial.to_owned(),
        auth_time: ctx.now,
    };
    let creds = mint(ctx, duration, Some(mfa))?;
    let mut event = event(ctx, Outcome::Success, Some(serial), None);
    event.mfa_authenticated = Some(true);
    event.expiration = Some(UnixTime::from_secs(creds.expiration).iso8601());
    let line = event.to_line();
    let serial_owned = serial.to_owned();
    // The accepted step is durable before the credentials are returned (group commit).
    let recorded = ctx
        .state
        .store
        .write(Some(line), move |w| {
            ops::record_accepted_step(w, &serial_owned, step)
        })
        .await?;
    if !recorded {
        // Another broker process sharing the store accepted this step first.
        return Err(refuse(ctx, Some(serial), "replayed", MFA_INVALID_CODE));
    }
    Ok(render(ctx, &creds))
}

fn mint(
    ctx: &RequestCtx<'_>,
    duration: i64,
    mfa: Option<MfaContext>,
) -> Result<SessionCredentials, ApiError> {
    ctx.state
        .keys
        .mint(
            &ctx.caller.owner(),
            ctx.account(),
            &ctx.caller.access_key_id,
            ctx.now,
            duration,
            mfa,
        )
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
    let mut e = AuditEvent::new(
        ctx.now,
        ctx.request_id,
        ctx.account(),
        "GetSessionToken",
        outcome,
    );
    e.principal = Some(&ctx.caller_arn);
    e.access_key_id = Some(&ctx.caller.access_key_id);
    e.serial = serial;
    e.reason = reason;
    e.source_ip = Some(ctx.source_ip);
    e
}

/// Audits a refusal and returns its AccessDenied.
fn refuse(
    ctx: &RequestCtx<'_>,
    serial: Option<&str>,
    reason: &str,
    message: &'static str,
) -> ApiError {
    let mut e = event(ctx, Outcome::Failure, serial, Some(reason));
    e.error_code = Some("AccessDenied");
    ctx.state.store.audit(e.to_line());
    ApiError::access_denied(message)
}

fn render(ctx: &RequestCtx<'_>, creds: &SessionCredentials) -> String {
    let expiration = UnixTime::from_secs(creds.expiration).iso8601();
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

    #[test]
    fn duration_bounds_use_the_contract_text() {
        let e = parse(&params("DurationSeconds=899")).err().unwrap();
        assert_eq!(
            e.to_string(),
            "1 validation error detected: Value '899' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to 900"
        );
        let e = parse(&params("DurationSeconds=129601")).err().unwrap();
        assert!(
            e.to_string()
                .ends_with("Member must have value less than or equal to 129600")
        );
        assert!(parse(&params("DurationSeconds=900")).is_ok());
        assert!(parse(&params("DurationSeconds=129600")).is_ok());
        assert!(matches!(
            parse(&params("DurationSeconds=abc")),
            Err(ApiError::MalformedInput(_))
        ));
    }

    #[test]
    fn serial_and_code_shapes() {
        let e = parse(&params("SerialNumber=GAHT1234")).err().unwrap();
        assert!(
            e.to_string()
                .contains("Member must have length greater than or equal to 9")
        );
        let e = parse(&params("SerialNumber=GAHT1234+5678")).err().unwrap();
        assert!(
            e.to_string()
                .contains("regular expression pattern: [\\w+=/:,.@-]*")
        );
        let e = parse(&params("TokenCode=12345")).err().unwrap();
        assert!(e.to_string().contains("at 'tokenCode'"));
        let e = parse(&params("TokenCode=12a456")).err().unwrap();
        assert!(e.to_string().contains("pattern: [\\d]*"));
        let p = params("SerialNumber=GAHT12345678&TokenCode=012345");
        let ok = parse(&p).ok().unwrap();
        assert!(ok.code.is_some());
    }
}
