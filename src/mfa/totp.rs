//! HOTP (RFC 4226) and TOTP (RFC 6238) with HMAC-SHA1, written on `hmac` + `sha1`.
//!
//! We do not use a TOTP crate because the broker needs what those crates hide: the step a
//! code matched (for replay protection), searches around a drifted centre (for resync), two
//! consecutive codes (for `EnableMFADevice`/`ResyncMFADevice`), and a search that costs the
//! same whether or not, and wherever, a code matches.
//!
//! A [`TotpKey`] holds the seed itself, zero-padded to one SHA-1 block (64 bytes, wiped on
//! drop), not a keyed HMAC state: a keyed `Hmac<Sha1>` is several times larger and costs two
//! SHA-1 compressions to build, which at a million devices was ~200 MB of the index and a
//! measurable share of start-up (BENCHMARKS.md, "Scale: 1,000,000 users"). Each check keys
//! the HMAC once (two compressions) and clones that state for every step of its window, so
//! verifying against a window costs one SHA-1 compression pair per step plus one pair.

use core::fmt;
use core::ops::{Add, Sub};

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq, ConstantTimeLess};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::time::UnixTime;

/// Length of one TOTP time step (RFC 6238 X), in seconds.
pub(crate) const STEP_SECONDS: i64 = 30;

/// Number of digits in a token code.
pub(crate) const CODE_DIGITS: u32 = 6;

/// Shortest seed accepted, in bytes. RFC 4226 §4 asks for 128 bits and recommends 160, but
/// hardware tokens in the field ship 80-bit (10-byte) seeds, and the broker must accept them.
/// Seeds the broker mints itself should be 20 bytes or more (AWS uses 40:
/// `docs/mfa.md#totp-algorithm`).
pub(crate) const MIN_SEED_BYTES: usize = 10;

/// Longest seed accepted, in bytes: one SHA-1 block. HMAC hashes longer keys down to 20
/// bytes first, so they add nothing but a way to store garbage.
pub(crate) const MAX_SEED_BYTES: usize = 64;

/// Modulus for six-digit codes.
const CODE_MODULUS: u32 = 1_000_000;

/// A TOTP time step (RFC 6238's `T`): whole 30-second periods since the epoch. A code is
/// identified by the step it matched, and steps only move forward, so the last accepted step
/// is all a device's replay record needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TotpStep(i64);

impl TotpStep {
    /// Earlier than every step: the record of a device that never accepted a code.
    pub const BEFORE_ALL: TotpStep = TotpStep(i64::MIN);

    /// Step number `n`.
    pub const fn new(n: i64) -> TotpStep {
        TotpStep(n)
    }

    /// The step number.
    pub const fn get(self) -> i64 {
        self.0
    }

    /// The step containing `time` (floor division, so times before 1970 round down).
    pub fn at(time: UnixTime) -> TotpStep {
        TotpStep(time.secs().div_euclid(STEP_SECONDS))
    }

    /// Steps from `earlier` to `self`, saturating.
    pub fn steps_since(self, earlier: TotpStep) -> i64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// `steps` later, saturating at the ends of time.
impl Add<i64> for TotpStep {
    type Output = TotpStep;

    fn add(self, steps: i64) -> TotpStep {
        TotpStep(self.0.saturating_add(steps))
    }
}

/// `steps` earlier, saturating at the ends of time.
impl Sub<i64> for TotpStep {
    type Output = TotpStep;

    fn sub(self, steps: i64) -> TotpStep {
        TotpStep(self.0.saturating_sub(steps))
    }
}

/// A six-digit one-time code, as typed by the user or computed from a key.
///
/// Only [`TokenCode::parse`] and [`TotpKey::code`] make one, so the value is always below
/// 1,000,000. Equality is constant-time. `Debug` is redacted and there is no `Display`: codes
/// are secrets while they are valid, and must not reach logs.
#[derive(Clone, Copy)]
pub(crate) struct TokenCode(u32);

impl TokenCode {
    /// Parses exactly six ASCII digits: no sign, no whitespace, no other Unicode digits.
    pub(crate) fn parse(text: &str) -> Option<TokenCode> {
        let bytes = text.as_bytes();
        if bytes.len() != CODE_DIGITS as usize || !bytes.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let value = bytes
            .iter()
            .fold(0u32, |acc, &digit| acc * 10 + u32::from(digit - b'0'));
        Some(TokenCode(value))
    }

    /// The code as the six digits a device would show, leading zeros included.
    ///
    /// This is the secret itself: for sending it (tests, clients), never for logging.
    #[cfg(test)]
    pub(crate) fn to_digits(self) -> String {
        format!("{:06}", self.0)
    }
}

impl ConstantTimeEq for TokenCode {
    fn ct_eq(&self, other: &Self) -> Choice {
        self.0.ct_eq(&other.0)
    }
}

impl PartialEq for TokenCode {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for TokenCode {}

impl fmt::Debug for TokenCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenCode(******)")
    }
}

/// Why a seed could not become a [`TotpKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub(crate) enum TotpError {
    /// The seed has no bytes.
    #[error("TOTP seed is empty")]
    EmptySeed,
    /// The seed is shorter than [`MIN_SEED_BYTES`].
    #[error("TOTP seed is {len} bytes; at least {MIN_SEED_BYTES} are required")]
    SeedTooShort {
        /// Length of the refused seed.
        len: usize,
    },
    /// The seed is longer than [`MAX_SEED_BYTES`].
    #[error("TOTP seed is {len} bytes; at most {MAX_SEED_BYTES} are accepted")]
    SeedTooLong {
        /// Length of the refused seed.
        len: usize,
    },
    /// The HMAC implementation refused the key. HMAC accepts keys of any length, so this is
    /// unreachable; it exists so that key setup has no panic path.
    #[error("HMAC-SHA1 refused the TOTP key")]
    KeyRejected,
}

/// A device's TOTP secret, ready to compute and check codes.
///
/// Holds the seed zero-padded to SHA-1's 64-byte block: HMAC (RFC 2104 §2) pads a key shorter
/// than a block with zeros, so keying with the padded block is keying with the seed, and that
/// keying cannot fail. The block is wiped on drop, `Debug` is redacted, and the HMAC states
/// made from it are wiped too (the `hmac` and `sha1` crates are built with `zeroize`).
#[derive(Clone)]
pub(crate) struct TotpKey {
    padded_seed: Zeroizing<[u8; MAX_SEED_BYTES]>,
}

impl TotpKey {
    /// Keys an HMAC-SHA1 with `seed`, which must be 10 to 64 bytes long.
    pub(crate) fn new(seed: &[u8]) -> Result<TotpKey, TotpError> {
        match seed.len() {
            0 => Err(TotpError::EmptySeed),
            len if len < MIN_SEED_BYTES => Err(TotpError::SeedTooShort { len }),
            len if len > MAX_SEED_BYTES => Err(TotpError::SeedTooLong { len }),
            len => {
                let mut padded_seed = Zeroizing::new([0u8; MAX_SEED_BYTES]);
                padded_seed
                    .get_mut(..len)
                    .ok_or(TotpError::KeyRejected)?
                    .copy_from_slice(seed);
                Ok(TotpKey { padded_seed })
            }
        }
    }

    /// An HMAC-SHA1 keyed with the seed: two SHA-1 compressions, once per check.
    fn keyed_mac(&self) -> Hmac<Sha1> {
        let block: &[u8; MAX_SEED_BYTES] = &self.padded_seed;
        <Hmac<Sha1> as KeyInit>::new(block.into())
    }

    /// The RFC 4226 HOTP value for `counter`, reduced to `digits` decimal digits.
    ///
    /// `digits` of 10 or more return the whole 31-bit truncated value, which is already below
    /// 10^10.
    #[cfg(test)]
    fn hotp(&self, counter: u64, digits: u32) -> u32 {
        let truncated = dynamic_truncation(&self.keyed_mac(), counter);
        match 10u32.checked_pow(digits) {
            Some(modulus) => truncated % modulus,
            None => truncated,
        }
    }

    /// The six-digit TOTP code of time step `step`.
    ///
    /// Steps before 1970 (negative) are reinterpreted as two's-complement counters; a real
    /// clock never produces them, but the function stays total.
    pub(crate) fn code(&self, step: TotpStep) -> TokenCode {
        code_of(&self.keyed_mac(), step)
    }

    /// The steps of `center - window ..= center + window` whose code is `code`, in order of
    /// preference: closest to the centre first and, at equal distance, earlier first (devices
    /// lag more often than they run ahead, and the earlier choice leaves later steps usable).
    /// Two steps share a code with probability about 10^-6 per pair, so there is almost always
    /// one step or none.
    ///
    /// Every step of the window is computed and compared in constant time, with no early exit,
    /// so timing reveals neither whether nor where the code matched, only (as the answer will)
    /// whether it did. The replay guard then decides which of them, if any, is still unused.
    pub(crate) fn matching_steps(
        &self,
        code: TokenCode,
        center: TotpStep,
        window: u32,
    ) -> Vec<TotpStep> {
        let (low, high) = window_bounds(center.0, window);
        let mac = self.keyed_mac();
        let mut matches = Vec::new();
        for step in low..=high {
            // Steps are public; whether the code matches them is the secret.
            if bool::from(code_of(&mac, TotpStep(step)).ct_eq(&code)) {
                matches.push(TotpStep(step));
            }
        }
        matches.sort_by_key(|step| (step.0.abs_diff(center.0), step.0));
        matches
    }

    /// The step `s` of `first` such that `second` is the code of `s + 1`, with `s` in
    /// `center_step - window ..= center_step + window`.
    ///
    /// For `EnableMFADevice` and `ResyncMFADevice`, which take two consecutive codes and a
    /// wide window to learn how far the device's clock has drifted. The caller records
    /// `s + 1` as the last accepted step and `s - center_step` as the drift. Every step is
    /// computed and compared in constant time; among several matches the one closest to the
    /// centre wins, the earlier on equal distance, as in
    /// [`matching_steps`](Self::matching_steps).
    pub(crate) fn find_consecutive(
        &self,
        first: TokenCode,
        second: TokenCode,
        center_step: TotpStep,
        window: u32,
    ) -> Option<TotpStep> {
        let mut best = Best::new();
        let mut previous: Option<(i64, Choice)> = None;
        let (low, high) = window_bounds(center_step.0, window);
        let mac = self.keyed_mac();
        // One step past the window, so the last candidate's successor is computed too.
        for step in low..=high.saturating_add(1) {
            let code = code_of(&mac, TotpStep(step));
            if let Some((prev_step, prev_matches_first)) = previous {
                best.offer(
                    prev_step,
                    center_step.0,
                    prev_matches_first & code.ct_eq(&second),
                );
            }
            previous = Some((step, code.ct_eq(&first)));
        }
        best.into_option().map(TotpStep)
    }
}

/// The six-digit code of `step` under `keyed` (an HMAC already keyed with the seed).
fn code_of(keyed: &Hmac<Sha1>, step: TotpStep) -> TokenCode {
    TokenCode(dynamic_truncation(keyed, step.0.cast_unsigned()) % CODE_MODULUS)
}

/// RFC 4226 §5.3: HMAC-SHA1 of the big-endian counter, dynamic truncation to 31 bits.
fn dynamic_truncation(keyed: &Hmac<Sha1>, counter: u64) -> u32 {
    let mut mac = keyed.clone();
    mac.update(&counter.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = digest.last().map_or(0, |last| usize::from(last & 0x0f));
    // SHA-1 output is 20 bytes and `offset` is at most 15, so four bytes always follow.
    let word = digest
        .iter()
        .skip(offset)
        .take(4)
        .fold(0u32, |acc, &byte| (acc << 8) | u32::from(byte));
    word & 0x7fff_ffff
}

impl fmt::Debug for TotpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TotpKey").finish_non_exhaustive()
    }
}

/// First and last step of `center - window ..= center + window`, clipped to `i64`.
fn window_bounds(center: i64, window: u32) -> (i64, i64) {
    let reach = i64::from(window);
    (center.saturating_sub(reach), center.saturating_add(reach))
}

/// Constant-time "closest match to the centre, earlier on ties" selection.
///
/// Candidates are offered in increasing step order; a match replaces the current best only
/// if it is strictly closer, so on equal distance the earlier step stays.
struct Best {
    found: Choice,
    step: i64,
    distance: u64,
}

impl Best {
    fn new() -> Best {
        Best {
            found: Choice::from(0),
            step: 0,
            distance: u64::MAX,
        }
    }

    fn offer(&mut self, step: i64, center: i64, matches: Choice) {
        let distance = step.abs_diff(center);
        let take = matches & distance.ct_lt(&self.distance);
        self.step.conditional_assign(&step, take);
        self.distance.conditional_assign(&distance, take);
        self.found |= matches;
    }

    fn into_option(self) -> Option<i64> {
        bool::from(self.found).then_some(self.step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// The seed of RFC 4226 Appendix D and RFC 6238 Appendix B (SHA-1).
    const RFC_SEED: &[u8] = b"12345678901234567890";

    fn rfc_key() -> TotpKey {
        TotpKey::new(RFC_SEED).unwrap()
    }

    fn code(text: &str) -> TokenCode {
        TokenCode::parse(text).unwrap()
    }

    fn step_at(unix: i64) -> TotpStep {
        TotpStep::at(UnixTime::from_secs(unix))
    }

    fn step(n: i64) -> TotpStep {
        TotpStep::new(n)
    }

    /// The preferred step of `code` in the window, as the replay guard would see it first.
    fn find(key: &TotpKey, code: TokenCode, center: TotpStep, window: u32) -> Option<TotpStep> {
        key.matching_steps(code, center, window).first().copied()
    }

    #[test]
    fn hotp_matches_rfc4226_appendix_d() {
        // (counter, truncated 31-bit value, 6-digit HOTP), RFC 4226 Appendix D.
        let vectors: [(u64, u32, u32); 10] = [
            (0, 1_284_755_224, 755_224),
            (1, 1_094_287_082, 287_082),
            (2, 137_359_152, 359_152),
            (3, 1_726_969_429, 969_429),
            (4, 1_640_338_314, 338_314),
            (5, 868_254_676, 254_676),
            (6, 1_918_287_922, 287_922),
            (7, 82_162_583, 162_583),
            (8, 673_399_871, 399_871),
            (9, 645_520_489, 520_489),
        ];
        let key = rfc_key();
        for (counter, truncated, hotp) in vectors {
            assert_eq!(key.hotp(counter, 6), hotp, "counter {counter}");
            assert_eq!(key.hotp(counter, 10), truncated, "counter {counter}");
            assert_eq!(
                key.code(step(counter as i64)).to_digits(),
                format!("{hotp:06}")
            );
        }
    }

    #[test]
    fn totp_matches_rfc6238_appendix_b_sha1() {
        // (Unix time, 8-digit TOTP), RFC 6238 Appendix B, SHA-1 rows.
        let vectors: [(i64, u32); 6] = [
            (59, 94_287_082),
            (1_111_111_109, 7_081_804),
            (1_111_111_111, 14_050_471),
            (1_234_567_890, 89_005_924),
            (2_000_000_000, 69_279_037),
            (20_000_000_000, 65_353_130),
        ];
        let key = rfc_key();
        for (time, totp) in vectors {
            let step = step_at(time);
            assert_eq!(key.hotp(step.get() as u64, 8), totp, "time {time}");
            assert_eq!(key.code(step), TokenCode(totp % 1_000_000), "time {time}");
        }
        // The appendix's T column for the first and last rows.
        assert_eq!(step_at(59), step(1));
        assert_eq!(step_at(20_000_000_000), step(0x27BC_86AA));
    }

    #[test]
    fn padded_seed_keys_as_the_seed_itself() {
        // The key keeps the seed zero-padded to a block; every accepted length must give the
        // codes of an HMAC keyed with the unpadded seed (RFC 2104 §2).
        for len in MIN_SEED_BYTES..=MAX_SEED_BYTES {
            let seed: Vec<u8> = (0..len)
                .map(|i| (i as u8).wrapping_mul(37) ^ 0xa5)
                .collect();
            let key = TotpKey::new(&seed).unwrap();
            let reference = <Hmac<Sha1> as KeyInit>::new_from_slice(&seed).unwrap();
            for counter in [0u64, 1, 59, 1_234_567] {
                assert_eq!(
                    key.hotp(counter, 10),
                    dynamic_truncation(&reference, counter),
                    "seed of {len} bytes, counter {counter}"
                );
            }
        }
    }

    #[test]
    fn step_at_floors_including_before_the_epoch() {
        assert_eq!(step_at(0), step(0));
        assert_eq!(step_at(29), step(0));
        assert_eq!(step_at(30), step(1));
        assert_eq!(step_at(-1), step(-1));
        assert_eq!(step_at(-30), step(-1));
        assert_eq!(step_at(-31), step(-2));
        assert_eq!(step_at(i64::MIN), step(i64::MIN / 30 - 1));
    }

    #[test]
    fn token_code_parses_exactly_six_ascii_digits() {
        assert_eq!(code("000000").to_digits(), "000000");
        assert_eq!(code("012345").to_digits(), "012345");
        assert_eq!(code("999999").to_digits(), "999999");
        for bad in [
            "",
            "12345",
            "1234567",
            "12a456",
            " 12345",
            "12345 ",
            " 123456",
            "+12345",
            "-12345",
            "１２３４５６",
            "12３456",
            "٠١٢٣٤٥",
            "0x1234",
        ] {
            assert!(TokenCode::parse(bad).is_none(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        assert_eq!(format!("{:?}", code("123456")), "TokenCode(******)");
        let key_debug = format!("{:?}", rfc_key());
        assert_eq!(key_debug, "TotpKey { .. }");
    }

    #[test]
    fn key_state_is_small_enough_for_a_million_devices() {
        // Two SHA-1 states plus a block buffer (128 bytes on x86-64); one per device in the
        // in-memory index.
        let size = std::mem::size_of::<TotpKey>();
        assert!(size <= 256, "{size} bytes");
    }

    #[test]
    fn seed_lengths_are_enforced() {
        assert_eq!(TotpKey::new(b"").unwrap_err(), TotpError::EmptySeed);
        assert_eq!(
            TotpKey::new(&[7; 9]).unwrap_err(),
            TotpError::SeedTooShort { len: 9 }
        );
        assert_eq!(
            TotpKey::new(&[7; 65]).unwrap_err(),
            TotpError::SeedTooLong { len: 65 }
        );
        for len in [10, 16, 20, 40, 64] {
            assert!(TotpKey::new(&vec![7; len]).is_ok(), "{len} bytes");
        }
    }

    #[test]
    fn window_one_accepts_adjacent_steps_only() {
        let key = rfc_key();
        let center = step_at(1_700_000_000);
        assert_eq!(find(&key, key.code(center), center, 1), Some(center));
        assert_eq!(
            find(&key, key.code(center - 1), center, 1),
            Some(center - 1)
        );
        assert_eq!(
            find(&key, key.code(center + 1), center, 1),
            Some(center + 1)
        );
        assert_eq!(find(&key, key.code(center - 2), center, 1), None);
        assert_eq!(find(&key, key.code(center + 2), center, 1), None);
    }

    #[test]
    fn window_zero_is_exact_and_window_two_reaches_two_steps() {
        let key = rfc_key();
        let center = step_at(1_700_000_000);
        assert_eq!(find(&key, key.code(center), center, 0), Some(center));
        assert_eq!(find(&key, key.code(center - 1), center, 0), None);
        assert_eq!(find(&key, key.code(center + 1), center, 0), None);
        assert_eq!(
            find(&key, key.code(center - 2), center, 2),
            Some(center - 2)
        );
        assert_eq!(
            find(&key, key.code(center + 2), center, 2),
            Some(center + 2)
        );
        assert_eq!(find(&key, key.code(center + 3), center, 2), None);
        assert_eq!(find(&key, key.code(center - 3), center, 2), None);
    }

    #[test]
    fn wrong_code_and_other_key_do_not_match() {
        let key = rfc_key();
        let other = TotpKey::new(b"another seed, twenty").unwrap();
        let center = step(1000);
        let right = key.code(center);
        assert_eq!(find(&other, right, center, 1), None);
        let wrong = TokenCode((right.0 + 1) % 1_000_000);
        assert_eq!(find(&key, wrong, center, 0), None);
    }

    #[test]
    fn windows_at_the_ends_of_time_do_not_overflow() {
        let key = rfc_key();
        assert_eq!(
            find(&key, key.code(step(i64::MAX)), step(i64::MAX), 3),
            Some(step(i64::MAX))
        );
        assert_eq!(
            find(&key, key.code(step(i64::MIN)), step(i64::MIN), 3),
            Some(step(i64::MIN))
        );
        let first = key.code(step(i64::MAX - 1));
        let second = key.code(step(i64::MAX));
        assert_eq!(
            key.find_consecutive(first, second, step(i64::MAX), 2),
            Some(step(i64::MAX - 1))
        );
    }

    /// Two steps of the RFC key that share a code, nearest together among the first 20,000.
    fn colliding_steps(key: &TotpKey) -> (TotpStep, TotpStep) {
        let mut seen: HashMap<u32, i64> = HashMap::new();
        let mut best: Option<(i64, i64)> = None;
        for n in 0..20_000 {
            let value = key.code(step(n)).0;
            if let Some(earlier) = seen.insert(value, n)
                && best.is_none_or(|(a, b)| n - earlier < b - a)
            {
                best = Some((earlier, n));
            }
        }
        let (early, late) = best.expect("20,000 six-digit codes contain a collision");
        (step(early), step(late))
    }

    #[test]
    fn several_matches_pick_the_closest_then_the_earlier() {
        let key = rfc_key();
        let (early, late) = colliding_steps(&key);
        let shared = key.code(early);
        let gap = u32::try_from(late.steps_since(early)).unwrap();
        // Centre nearer the later step.
        assert_eq!(find(&key, shared, late - 1, gap), Some(late));
        // Centre nearer the earlier step.
        assert_eq!(find(&key, shared, early + 1, gap), Some(early));
        // Equal distance: the earlier step wins.
        if late.steps_since(early) % 2 == 0 {
            let mid = early + late.steps_since(early) / 2;
            assert_eq!(find(&key, shared, mid, gap), Some(early));
        }
        // Both are offered, so the replay guard can take the fresh one when the other is spent.
        assert_eq!(
            key.matching_steps(shared, early + 1, gap),
            vec![early, late]
        );
    }

    #[test]
    fn consecutive_codes_are_found_in_sync_and_drifted() {
        let key = rfc_key();
        let center = step_at(1_700_000_000);
        // In sync: the device shows the current step and then the next.
        let (first, second) = (key.code(center), key.code(center + 1));
        assert_eq!(key.find_consecutive(first, second, center, 1), Some(center));
        // A device 40 steps (20 minutes) slow or fast, found with a wide window.
        for drift in [-40, 40] {
            let s = center + drift;
            let (first, second) = (key.code(s), key.code(s + 1));
            assert_eq!(key.find_consecutive(first, second, center, 40), Some(s));
            assert_eq!(key.find_consecutive(first, second, center, 39), None);
        }
        // The second code may come from one step past the window's edge.
        let edge = center + 5;
        assert_eq!(
            key.find_consecutive(key.code(edge), key.code(edge + 1), center, 5),
            Some(edge)
        );
    }

    #[test]
    fn consecutive_codes_must_be_in_order_and_adjacent() {
        let key = rfc_key();
        let center = step(9000);
        let (a, b, c) = (key.code(center), key.code(center + 1), key.code(center + 2));
        assert_eq!(key.find_consecutive(b, a, center, 10), None);
        assert_eq!(key.find_consecutive(a, c, center, 10), None);
        assert_eq!(key.find_consecutive(a, a, center, 10), None);
        assert_eq!(key.find_consecutive(b, c, center, 10), Some(center + 1));
    }
}
