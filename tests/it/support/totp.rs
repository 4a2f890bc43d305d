//! An oracle for the codes a device shows, independent of the broker's own TOTP code: TOTP as
//! RFC 6238 defines it, with HMAC-SHA1, six digits and 30-second steps, which is what AWS virtual
//! MFA devices run (https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_mfa_enable_virtual.html),
//! and the base32 of the seeds `Base32StringSeed` and the QR code carry
//! (https://docs.aws.amazon.com/IAM/latest/APIReference/API_VirtualMFADevice.html).

use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha1::Sha1;

/// Seconds per TOTP step.
pub(crate) const STEP_SECS: i64 = 30;

/// The step `unix` falls in.
pub(crate) fn step_at(unix: i64) -> i64 {
    unix.div_euclid(STEP_SECS)
}

/// Base32 without padding, uppercase (as `Base32StringSeed` carries it).
pub(crate) fn base32_encode(bytes: &[u8]) -> String {
    BASE32_NOPAD.encode(bytes)
}

/// Base32 in any letter case, trailing `=` padding allowed; `None` when it is not base32.
pub(crate) fn base32_decode(text: &str) -> Option<Vec<u8>> {
    BASE32_NOPAD
        .decode(text.trim_end_matches('=').to_ascii_uppercase().as_bytes())
        .ok()
}

/// A TOTP key: the seed an authenticator holds.
#[derive(Clone, Debug)]
pub(crate) struct Totp {
    seed: Vec<u8>,
}

impl Totp {
    pub(crate) fn new(seed: &[u8]) -> Self {
        Self {
            seed: seed.to_vec(),
        }
    }

    /// The key of a base32 seed; `None` when it is not base32.
    pub(crate) fn from_base32(text: &str) -> Option<Self> {
        base32_decode(text).map(|seed| Self::new(&seed))
    }

    /// The six-digit code of `step` (RFC 4226 §5.3 dynamic truncation of HMAC-SHA1).
    pub(crate) fn code(&self, step: i64) -> String {
        let mut mac = <Hmac<Sha1>>::new_from_slice(&self.seed).unwrap();
        mac.update(&step.to_be_bytes());
        let digest = mac.finalize().into_bytes();
        let offset = usize::from(digest[19] & 0x0f);
        let word = u32::from_be_bytes([
            digest[offset] & 0x7f,
            digest[offset + 1],
            digest[offset + 2],
            digest[offset + 3],
        ]);
        format!("{:06}", word % 1_000_000)
    }

    /// The code of the step `offset` steps from the one `now` falls in.
    pub(crate) fn code_at(&self, now: i64, offset: i64) -> String {
        self.code(step_at(now) + offset)
    }
}

/// The oracle against the published vectors: RFC 6238 Appendix B (SHA-1, the last six of its
/// eight digits) and RFC 4648 §10.
#[test]
fn totp_oracle_matches_rfc_6238_and_rfc_4648_vectors() {
    let key = Totp::new(b"12345678901234567890");
    for (time, eight_digits) in [
        (59, "94287082"),
        (1_111_111_109, "07081804"),
        (1_111_111_111, "14050471"),
        (1_234_567_890, "89005924"),
        (2_000_000_000, "69279037"),
        (20_000_000_000, "65353130"),
    ] {
        assert_eq!(key.code_at(time, 0), eight_digits[2..], "T={time}");
    }
    for (raw, encoded) in [
        ("", ""),
        ("f", "MY"),
        ("fo", "MZXQ"),
        ("foo", "MZXW6"),
        ("foob", "MZXW6YQ"),
        ("fooba", "MZXW6YTB"),
        ("foobar", "MZXW6YTBOI"),
    ] {
        assert_eq!(base32_encode(raw.as_bytes()), encoded);
        assert_eq!(base32_decode(encoded).unwrap(), raw.as_bytes());
        assert_eq!(
            base32_decode(&format!("{}======", encoded.to_lowercase())).unwrap(),
            raw.as_bytes()
        );
    }
    assert_eq!(base32_decode("not base32!"), None);
}
