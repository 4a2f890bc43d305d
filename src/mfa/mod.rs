//! MFA primitives: everything needed to check a TOTP code, and nothing that does IO.
//!
//! The broker's promise is that a session credential is only issued after a *real* TOTP code
//! was checked (RFC 6238, HMAC-SHA1, 6 digits, 30 s), that a code is never accepted twice,
//! that guessing is throttled, and that devices are provisioned through an `otpauth://` QR
//! code. Those rules live here as pure, synchronous, clock-free building blocks so that they
//! can be tested with known-answer vectors and injected time, and so that the request path
//! decides the order in which they are applied:
//!
//! ```text
//! throttle.begin_attempt(device, now)?              // locked: refuse, even a correct code;
//!                                                   // else counted as a failure in advance
//! code  = TokenCode::parse(param)?                  // exactly six ASCII digits
//! step  = key.find_step_after(code, step_at(now) + drift, 1, replay.last_accepted(device))
//! ok    = step.is_some_and(|s| replay.try_advance(device, s))   // one-time use, atomic
//! if ok { throttle.record_success(device) }         // a wrong code stays counted
//! ```
//!
//! - [`base32`]: RFC 4648 base32 for seeds (strict encoder, lenient decoder).
//! - [`totp`]: HOTP/TOTP written on `hmac` + `sha1` so that the window, the drift and the
//!   matched step are ours to control; constant-time code comparison.
//! - [`replay`]: the RFC 6238 §5.2 "accept each OTP once" rule as a compare-and-set of the
//!   last accepted step per device.
//! - [`throttle`]: a per-device soft lock with exponential back-off against guessing.
//! - [`qr`]: the Key Uri Format `otpauth://` URI and a QR code PNG for it (1-bit grayscale,
//!   encoded by the `png` crate).
//!
//! Nothing here reads the system clock, touches the network or the disk, or is async.

pub mod base32;
pub mod guard;
pub mod qr;
pub mod replay;
pub mod throttle;
// Its single-step search gives way to `guard::matching_steps`; removed with the crypto change.
#[allow(dead_code, clippy::wrong_self_convention)]
pub mod totp;

/// Whether a serial has the ARN form of a FIDO security key (`arn:aws:iam::ACCOUNT:u2f/…`):
/// such a serial is refused on every STS path and by EnableMFADevice, registered or not.
pub fn is_u2f_arn(serial: &str) -> bool {
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
