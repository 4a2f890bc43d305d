//! Constant-time comparisons of secrets and of values derived from them (a signature, a
//! session token): their time depends on the lengths only.

/// Whether `a` and `b` are the same bytes, in time that depends on their lengths only: the
/// difference is folded a word at a time (subtle's slice comparison goes byte by byte behind
/// an optimisation barrier each, ~15 times slower on a 1 KB token) and only the folded word is
/// compared, with subtle.
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let word = |chunk: &[u8]| <[u8; 8]>::try_from(chunk).map_or(0, u64::from_ne_bytes);
    let (a_words, b_words) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail = a_words
        .remainder()
        .iter()
        .zip(b_words.remainder())
        .fold(0_u64, |diff, (x, y)| diff | u64::from(x ^ y));
    let diff = a_words
        .zip(b_words)
        .fold(tail, |diff, (x, y)| diff | (word(x) ^ word(y)));
    bool::from(subtle::ConstantTimeEq::ct_eq(&diff, &0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_bytes_compares_every_byte_and_the_length() {
        let a: Vec<u8> = (0..=255).cycle().take(1_003).collect();
        assert!(same_bytes(&a, &a.clone()));
        assert!(same_bytes(b"", b""));
        for i in [0, 7, 8, 500, 1_000, 1_002] {
            let mut b = a.clone();
            b[i] ^= 0x40;
            assert!(!same_bytes(&a, &b), "{i}");
        }
        assert!(!same_bytes(&a, &a[..1_002]));
        assert!(!same_bytes(b"abc", b"abd"));
    }
}
