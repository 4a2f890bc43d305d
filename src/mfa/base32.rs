//! RFC 4648 §6 base32, the alphabet TOTP seeds travel in.
//!
//! The encoder is strict (uppercase, no padding), which is what authenticator apps, the
//! Key Uri Format and AWS's `Base32StringSeed` use. The decoder is lenient in the ways
//! humans and vendor seed files differ (any letter case, spaces between groups, trailing
//! `=` padding) and strict about everything else, so that one seed has exactly one meaning:
//! an impossible length or non-zero leftover bits are errors rather than silently dropped.
//!
//! Errors give positions, never the offending text: the input is a secret.

use data_encoding::{BASE32_NOPAD, Character, DecodeKind};
use thiserror::Error;
use zeroize::Zeroizing;

/// Why a base32 text was refused. Positions count characters from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub(crate) enum Base32Error {
    /// A character outside `A-Z`, `a-z`, `2-7`, space and `=`.
    #[error("invalid base32 character at position {position}")]
    InvalidCharacter {
        /// Index of the character in the input.
        position: usize,
    },
    /// A base32 symbol after `=` padding had started.
    #[error("base32 data after padding at position {position}")]
    DataAfterPadding {
        /// Index of the character in the input.
        position: usize,
    },
    /// A symbol count that no byte string encodes to (1, 3 or 6 modulo 8).
    #[error("invalid base32 length: {symbols} symbols")]
    InvalidLength {
        /// Number of base32 symbols, spaces and padding excluded.
        symbols: usize,
    },
    /// The last symbol carries bits beyond the final byte that are not zero.
    #[error("non-canonical base32: trailing bits are not zero")]
    NonZeroTrailingBits,
}

/// Encodes `bytes` as uppercase base32 without padding.
pub(crate) fn encode(bytes: &[u8]) -> String {
    BASE32_NOPAD.encode(bytes)
}

/// Decodes base32 in any letter case, ignoring spaces and trailing `=` padding.
///
/// The leniency is ours and the bit work is `data-encoding`'s: this pass only checks each
/// character (so errors can name its position among characters, not bytes, and tell data after
/// padding from garbage) and copies the symbols, uppercased, into a buffer that is wiped after
/// use. The strict decoder then refuses impossible lengths and non-zero trailing bits.
pub(crate) fn decode(text: &str) -> Result<Vec<u8>, Base32Error> {
    let mut symbols = Zeroizing::new(Vec::with_capacity(text.len()));
    let mut in_padding = false;
    for (position, ch) in text.chars().enumerate() {
        match ch {
            ' ' => {}
            '=' => in_padding = true,
            _ => {
                let symbol = u8::try_from(ch.to_ascii_uppercase())
                    .ok()
                    .filter(|&b| matches!(BASE32_NOPAD.interpret_byte(b), Character::Symbol { .. }))
                    .ok_or(Base32Error::InvalidCharacter { position })?;
                if in_padding {
                    return Err(Base32Error::DataAfterPadding { position });
                }
                symbols.push(symbol);
            }
        }
    }
    BASE32_NOPAD
        .decode(&symbols)
        .map_err(|error| match error.kind {
            DecodeKind::Trailing => Base32Error::NonZeroTrailingBits,
            // Only symbols reach the decoder, so the length is all that is left to be wrong.
            DecodeKind::Length | DecodeKind::Symbol | DecodeKind::Padding => {
                Base32Error::InvalidLength {
                    symbols: symbols.len(),
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4648 §10 test vectors, with the padding the encoder omits removed.
    const RFC4648_VECTORS: [(&str, &str); 7] = [
        ("", ""),
        ("f", "MY======"),
        ("fo", "MZXQ===="),
        ("foo", "MZXW6==="),
        ("foob", "MZXW6YQ="),
        ("fooba", "MZXW6YTB"),
        ("foobar", "MZXW6YTBOI======"),
    ];

    #[test]
    fn encodes_rfc4648_vectors_unpadded() {
        for (plain, padded) in RFC4648_VECTORS {
            assert_eq!(
                encode(plain.as_bytes()),
                padded.trim_end_matches('='),
                "{plain:?}"
            );
        }
    }

    #[test]
    fn decodes_rfc4648_vectors_padded_and_unpadded() {
        for (plain, padded) in RFC4648_VECTORS {
            assert_eq!(decode(padded).unwrap(), plain.as_bytes(), "{padded:?}");
            let unpadded = padded.trim_end_matches('=');
            assert_eq!(decode(unpadded).unwrap(), plain.as_bytes(), "{unpadded:?}");
        }
    }

    #[test]
    fn decode_is_lenient_about_case_and_spaces() {
        assert_eq!(decode("mzxw 6ytb oi").unwrap(), b"foobar");
        assert_eq!(decode("MzXw6YtBoI======").unwrap(), b"foobar");
        assert_eq!(decode("  MZXW6YTB  ").unwrap(), b"fooba");
    }

    #[test]
    fn decode_refuses_other_characters() {
        assert_eq!(
            decode("MZXW1YTB"),
            Err(Base32Error::InvalidCharacter { position: 4 })
        );
        assert_eq!(
            decode("MZXW-YTB"),
            Err(Base32Error::InvalidCharacter { position: 4 })
        );
        assert_eq!(
            decode("MZXW\tYTB"),
            Err(Base32Error::InvalidCharacter { position: 4 })
        );
        assert_eq!(
            decode("MZXWÉYTB"),
            Err(Base32Error::InvalidCharacter { position: 4 })
        );
        assert_eq!(
            decode("MZ=XW6YTB"),
            Err(Base32Error::DataAfterPadding { position: 3 })
        );
    }

    #[test]
    fn decode_refuses_impossible_lengths_and_stray_bits() {
        assert_eq!(decode("M"), Err(Base32Error::InvalidLength { symbols: 1 }));
        assert_eq!(
            decode("MZX"),
            Err(Base32Error::InvalidLength { symbols: 3 })
        );
        assert_eq!(
            decode("MZXW6Y"),
            Err(Base32Error::InvalidLength { symbols: 6 })
        );
        // "MY" is "f"; "MZ" sets a bit past the end of that byte.
        assert_eq!(decode("MZ"), Err(Base32Error::NonZeroTrailingBits));
    }

    #[test]
    fn round_trips_every_length_and_byte() {
        let data: Vec<u8> = (0..=255u8).collect();
        for len in 0..=data.len() {
            let slice = &data[..len];
            assert_eq!(decode(&encode(slice)).unwrap(), slice);
        }
        let aws_sized_seed = [0xa5u8; 40];
        assert_eq!(encode(&aws_sized_seed).len(), 64);
    }

    #[test]
    fn errors_follow_scan_order_then_length_then_bits() {
        // An invalid character wins over the impossible length it also causes.
        assert_eq!(
            decode("M1X"),
            Err(Base32Error::InvalidCharacter { position: 1 })
        );
        assert_eq!(
            decode("MZX=W1"),
            Err(Base32Error::DataAfterPadding { position: 4 })
        );
        assert_eq!(
            decode("MZX=1W"),
            Err(Base32Error::InvalidCharacter { position: 4 })
        );
        assert_eq!(
            decode("MZX= "),
            Err(Base32Error::InvalidLength { symbols: 3 })
        );
        assert_eq!(decode("MZ=="), Err(Base32Error::NonZeroTrailingBits));
        // Positions count characters, not bytes.
        assert_eq!(
            decode("éé1"),
            Err(Base32Error::InvalidCharacter { position: 0 })
        );
        assert_eq!(
            decode("MY=é"),
            Err(Base32Error::InvalidCharacter { position: 3 })
        );
        // Padding is not counted, and spaces may sit anywhere.
        assert_eq!(decode("MY = = ="), Ok(b"f".to_vec()));
        assert_eq!(decode("MY="), Ok(b"f".to_vec()));
        assert_eq!(decode("="), Ok(Vec::new()));
        assert_eq!(decode("   "), Ok(Vec::new()));
    }
}
