//! The credentials file `sts-broker admin bench-provision` writes, and the record of which TOTP
//! steps the generator has already sent, so that no code ever reaches the broker twice.

use std::path::{Path, PathBuf};

/// One provisioned user.
pub(crate) struct User {
    pub(crate) access_key_id: String,
    pub(crate) secret: String,
    pub(crate) serial: String,
    pub(crate) seed: Vec<u8>,
    /// The step the broker consumed when it enabled the device.
    pub(crate) enabled_step: i64,
}

/// Reads `user,access_key_id,secret_access_key,mfa_serial,mfa_seed_base32,last_step` rows.
pub(crate) fn load(path: &Path) -> Result<Vec<User>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut users = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') || line.starts_with("user,") {
            continue;
        }
        let bad = |what: &str| format!("{}:{}: {what}", path.display(), n + 1);
        let fields: Vec<&str> = line.split(',').collect();
        let [_, akid, secret, serial, seed, step] = fields.as_slice() else {
            return Err(bad("expected 6 comma-separated fields"));
        };
        users.push(User {
            access_key_id: (*akid).to_owned(),
            secret: (*secret).to_owned(),
            serial: (*serial).to_owned(),
            seed: data_encoding::BASE32_NOPAD
                .decode(seed.as_bytes())
                .map_err(|e| bad(&format!("seed: {e}")))?,
            enabled_step: step.parse().map_err(|_| bad("last_step is not a number"))?,
        });
    }
    if users.is_empty() {
        return Err(format!("{}: no users", path.display()));
    }
    Ok(users)
}

/// The highest TOTP step sent so far for each user's device, kept in a file next to the
/// credentials (8 bytes per user, little-endian).
pub(crate) struct Spent {
    path: PathBuf,
    steps: Vec<i64>,
}

impl Spent {
    /// Loads `path` (a missing or mismatched file counts as nothing sent since provisioning).
    pub(crate) fn load(path: PathBuf, users: &[User]) -> Self {
        let mut steps: Vec<i64> = users.iter().map(|u| u.enabled_step).collect();
        if let Ok(bytes) = std::fs::read(&path)
            && bytes.len() == steps.len() * 8
        {
            for (s, chunk) in steps.iter_mut().zip(bytes.chunks_exact(8)) {
                let mut b = [0u8; 8];
                b.copy_from_slice(chunk);
                *s = (*s).max(i64::from_le_bytes(b));
            }
        }
        Self { path, steps }
    }

    /// The highest step sent for user `i`.
    pub(crate) fn get(&self, i: usize) -> i64 {
        self.steps.get(i).copied().unwrap_or(i64::MAX)
    }

    /// Records that step `step` of user `i` was (or may have been) sent.
    pub(crate) fn mark(&mut self, i: usize, step: i64) {
        if let Some(s) = self.steps.get_mut(i) {
            *s = (*s).max(step);
        }
    }

    /// A copy, to roll back to after a run sent less than it planned.
    pub(crate) fn snapshot(&self) -> Vec<i64> {
        self.steps.clone()
    }

    /// Restores a snapshot.
    pub(crate) fn restore(&mut self, steps: Vec<i64>) {
        self.steps = steps;
    }

    /// Writes the record atomically (a temporary file renamed over the old one).
    pub(crate) fn save(&self) -> Result<(), String> {
        let tmp = self.path.with_extension("spent.tmp");
        let bytes: Vec<u8> = self.steps.iter().flat_map(|s| s.to_le_bytes()).collect();
        std::fs::write(&tmp, bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| format!("{}: {e}", self.path.display()))
    }
}

/// RFC 6238 TOTP with SHA-1, 30-second steps and six digits, written from the RFC rather than
/// taken from the broker, so that the generator is an independent client.
pub(crate) mod totp {
    use hmac::{Hmac, KeyInit as _, Mac as _};

    /// Seconds per step.
    pub(crate) const STEP_SECONDS: i64 = 30;

    /// The step of a Unix time.
    pub(crate) fn step_at(unix_secs: i64) -> i64 {
        unix_secs.div_euclid(STEP_SECONDS)
    }

    /// The six-digit code of `step` (RFC 4226 §5.3 dynamic truncation).
    pub(crate) fn code(seed: &[u8], step: i64) -> u32 {
        let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(seed) else {
            return 0;
        };
        mac.update(&step.to_be_bytes());
        let digest = mac.finalize().into_bytes();
        let offset = usize::from(digest.last().copied().unwrap_or(0) & 0x0f);
        let word = digest
            .iter()
            .skip(offset)
            .take(4)
            .fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
        (word & 0x7fff_ffff) % 1_000_000
    }

    #[cfg(test)]
    mod tests {
        /// RFC 6238 appendix B, SHA-1 rows, truncated to six digits.
        #[test]
        fn rfc6238_vectors() {
            let seed = b"12345678901234567890";
            for (time, code) in [
                (59, 287_082),
                (1_111_111_109, 81_804),
                (1_234_567_890, 5_924),
                (2_000_000_000, 279_037),
            ] {
                assert_eq!(super::code(seed, super::step_at(time)), code);
            }
        }
    }
}
