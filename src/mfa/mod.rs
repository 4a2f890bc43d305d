//! MFA: everything needed to check a TOTP code, and nothing that touches the store or the
//! wire.
//!
//! The broker's promise is that a session credential is only issued after a *real* TOTP code
//! was checked (RFC 6238, HMAC-SHA1, 6 digits, 30 s), that a code is never accepted twice,
//! that guessing is throttled, and that devices are provisioned through an `otpauth://` QR
//! code. The rules are building blocks tested with known-answer vectors and injected time;
//! [`guard::verify`] applies them in one order for every caller:
//!
//! ```text
//! limiter.begin(key, now)?                     // locked: refuse, even a correct code;
//!                                              // else counted as a failure in advance
//! code  = TokenCode::parse(param)?             // exactly six ASCII digits
//! steps = key.matching_steps(code, TotpStep::at(now) + drift, window)
//! step  = replay.try_accept(device, steps, stored last step)?   // one-time use, atomic
//! store: record the step (or enable the device) // durable; clears the failures
//! limiter.succeed(key)                         // a wrong or spent code stays counted
//! ```
//!
//! The key is the device, or for an unassigned hardware token the caller and the device
//! ([`guard::AttemptKey`]).
//!
//! - [`guard`]: the injected, async, fallible [`guard::ReplayGuard`] and
//!   [`guard::AttemptLimiter`], the refusal reasons, and `verify` with its attempt guard.
//! - [`base32`]: RFC 4648 base32 for seeds (strict encoder, lenient decoder).
//! - [`totp`]: HOTP/TOTP written on `hmac` + `sha1` so that the window, the drift and the
//!   matched step are ours to control; constant-time code comparison.
//! - [`replay`]: the embedded replay guard: RFC 6238 §5.2's "accept each OTP once" as a
//!   compare-and-set of the last accepted step per device.
//! - [`throttle`]: the lock-out's policy and the state machine of one failure record (a soft
//!   lock with exponential back-off against guessing); the embedded limiter keeps the records
//!   in the store (`store::attempts`).
//! - [`qr`]: the Key Uri Format `otpauth://` URI and a QR code PNG for it (1-bit grayscale,
//!   encoded by the `png` crate).
//! - [`redis`]: both traits in Redis, for several broker nodes (`docs/multinode.md`).
//!
//! Nothing here reads the system clock or touches the disk, and only [`redis`] the network;
//! the guard traits are async, so that a network store can implement them.

pub(crate) mod base32;
pub(crate) mod guard;
pub(crate) mod qr;
pub(crate) mod redis;
pub(crate) mod replay;
pub(crate) mod throttle;
pub(crate) mod totp;

/// Whether a serial has the ARN form of a FIDO security key (`arn:aws:iam::ACCOUNT:u2f/…`):
/// such a serial is refused on every STS path and by EnableMFADevice, registered or not.
pub(crate) fn is_u2f_arn(serial: &str) -> bool {
    serial.starts_with("arn:") && serial.contains(":u2f/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u2f_arns_are_recognised() {
        assert!(is_u2f_arn(
            "arn:aws:iam::123456789012:u2f/user/alice/key-ABCDEFGH"
        ));
        assert!(!is_u2f_arn("arn:aws:iam::123456789012:mfa/u2f"));
        assert!(!is_u2f_arn("GAHT12345678"));
    }
}
