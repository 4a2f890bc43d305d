//! A minimal PNG writer for black-and-white images (1-bit grayscale), enough for QR codes.
//!
//! A QR code needs none of what a PNG library brings (filters, real compression, colour
//! handling), and the broker only ever writes this one kind of image, so the format is
//! written out here directly from the PNG specification (W3C PNG, 3rd ed.): the signature,
//! an `IHDR`, one `IDAT` holding a zlib stream (RFC 1950) of stored, i.e. uncompressed,
//! deflate blocks (RFC 1951 §3.2.4) with its Adler-32, and `IEND`; each chunk carries its
//! CRC-32. Images stay small (a version-10 QR code at 4 px per module is about 10 KB), and
//! a stored stream is trivially correct.

/// The eight bytes every PNG file starts with.
const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

/// Largest chunk data length the format allows (2^31 - 1).
const MAX_CHUNK_LEN: usize = 0x7fff_ffff;

/// Largest payload of one stored deflate block.
const MAX_STORED_BLOCK: usize = 0xffff;

/// zlib header: deflate with a 32 KiB window (0x78), no dictionary, "fastest" level, and
/// the check bits that make the 16-bit header a multiple of 31.
const ZLIB_HEADER: [u8; 2] = [0x78, 0x01];

/// Encodes a `width` x `height` image whose pixel (x, y) is black when `is_black(x, y)`.
///
/// Returns `None` for an empty image or one too large for a single PNG chunk.
pub(super) fn encode(
    width: u32,
    height: u32,
    is_black: impl Fn(u32, u32) -> bool,
) -> Option<Vec<u8>> {
    if width == 0 || height == 0 {
        return None;
    }
    let scanlines = scanlines(width, height, is_black)?;
    let zlib = zlib_stored(&scanlines)?;

    let mut header = Vec::with_capacity(13);
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    // Bit depth 1, colour type 0 (grayscale), deflate, adaptive filtering, no interlace.
    header.extend_from_slice(&[1, 0, 0, 0, 0]);

    let mut png = Vec::with_capacity(SIGNATURE.len() + zlib.len() + 64);
    png.extend_from_slice(&SIGNATURE);
    write_chunk(&mut png, b"IHDR", &header)?;
    write_chunk(&mut png, b"IDAT", &zlib)?;
    write_chunk(&mut png, b"IEND", &[])?;
    Some(png)
}

/// The filtered image data: per row a filter-type byte (0, none) and the pixels packed
/// eight to a byte, most significant bit first, 1 = white. Padding bits are white.
fn scanlines(width: u32, height: u32, is_black: impl Fn(u32, u32) -> bool) -> Option<Vec<u8>> {
    let row_bytes = usize::try_from(width.div_ceil(8)).ok()?.checked_add(1)?;
    let total = row_bytes.checked_mul(usize::try_from(height).ok()?)?;
    let mut data = Vec::with_capacity(total);
    for y in 0..height {
        data.push(0);
        for first_x in (0..width).step_by(8) {
            let mut byte = 0u8;
            for bit in 0..8u32 {
                let x = first_x.saturating_add(bit);
                let white = x >= width || !is_black(x, y);
                byte |= u8::from(white) << (7 - bit);
            }
            data.push(byte);
        }
    }
    Some(data)
}

/// `data` as a zlib stream of stored deflate blocks.
fn zlib_stored(data: &[u8]) -> Option<Vec<u8>> {
    let blocks = data.len().div_ceil(MAX_STORED_BLOCK).max(1);
    let mut out = Vec::with_capacity(data.len() + blocks * 5 + ZLIB_HEADER.len() + 4);
    out.extend_from_slice(&ZLIB_HEADER);
    let mut chunks = data.chunks(MAX_STORED_BLOCK).peekable();
    if chunks.peek().is_none() {
        // A deflate stream has at least one block; an empty final stored block will do.
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = chunks.next() {
        let is_final = chunks.peek().is_none();
        // Block header: BFINAL bit, BTYPE 00 (stored), the rest of the byte is padding.
        out.push(u8::from(is_final));
        let len = u16::try_from(block.len()).ok()?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
    Some(out)
}

/// Appends a chunk: length, type, data, CRC-32 of type and data.
fn write_chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) -> Option<()> {
    if data.len() > MAX_CHUNK_LEN {
        return None;
    }
    let len = u32::try_from(data.len()).ok()?;
    png.extend_from_slice(&len.to_be_bytes());
    png.extend_from_slice(kind);
    png.extend_from_slice(data);
    let crc = !crc32_update(crc32_update(!0, kind), data);
    png.extend_from_slice(&crc.to_be_bytes());
    Some(())
}

/// Feeds `bytes` into a running CRC-32 (ISO 3309 / ITU-T V.42, reflected polynomial
/// 0xEDB88320), bit by bit: images are written once per device, so a table is not worth it.
fn crc32_update(mut crc: u32, bytes: &[u8]) -> u32 {
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xedb8_8320 & mask);
        }
    }
    crc
}

/// Adler-32 (RFC 1950 §8.2) of `bytes`.
fn adler32(bytes: &[u8]) -> u32 {
    const MODULUS: u32 = 65_521;
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in bytes {
        a = (a + u32::from(byte)) % MODULUS;
        b = (b + a) % MODULUS;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crc32(bytes: &[u8]) -> u32 {
        !crc32_update(!0, bytes)
    }

    /// Decodes with the `png` crate, checking CRCs and the Adler-32, into rows of bools
    /// (true = black).
    fn decode(png_bytes: &[u8]) -> (u32, u32, Vec<Vec<bool>>) {
        let mut options = png::DecodeOptions::default();
        options.set_ignore_adler32(false);
        options.set_ignore_crc(false);
        let decoder = png::Decoder::new_with_options(std::io::Cursor::new(png_bytes), options);
        let mut reader = decoder.read_info().unwrap();
        let mut buffer = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buffer).unwrap();
        assert_eq!(info.bit_depth, png::BitDepth::One);
        assert_eq!(info.color_type, png::ColorType::Grayscale);
        let rows = buffer
            .chunks(info.line_size)
            .take(info.height as usize)
            .map(|line| {
                (0..info.width as usize)
                    .map(|x| line[x / 8] & (0x80 >> (x % 8)) == 0)
                    .collect()
            })
            .collect();
        (info.width, info.height, rows)
    }

    #[test]
    fn checksums_match_known_values() {
        // The CRC-32 "check" value for "123456789" and the Adler-32 example from Wikipedia.
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(adler32(b"Wikipedia"), 0x11e6_0398);
        assert_eq!(adler32(b""), 1);
        // The fixed IEND chunk every PNG ends with.
        assert_eq!(crc32(b"IEND"), 0xae42_6082);
    }

    #[test]
    fn small_image_round_trips_through_the_png_crate() {
        let pattern = |x: u32, y: u32| (x * 7 + y * 3).is_multiple_of(5);
        let bytes = encode(13, 5, pattern).unwrap();
        assert_eq!(&bytes[..8], &SIGNATURE);
        assert_eq!(&bytes[bytes.len() - 12..], b"\0\0\0\0IEND\xaeB`\x82");
        let (width, height, rows) = decode(&bytes);
        assert_eq!((width, height), (13, 5));
        for (y, row) in rows.iter().enumerate() {
            for (x, &black) in row.iter().enumerate() {
                assert_eq!(black, pattern(x as u32, y as u32), "pixel ({x}, {y})");
            }
        }
    }

    #[test]
    fn large_image_spans_several_stored_blocks() {
        // 1 + 150 bytes per row, 1000 rows: about 151 KB, three stored blocks.
        let pattern = |x: u32, y: u32| (x / 3 + y / 2) % 2 == 1;
        let bytes = encode(1200, 1000, pattern).unwrap();
        let (width, height, rows) = decode(&bytes);
        assert_eq!((width, height), (1200, 1000));
        for (y, row) in rows.iter().enumerate() {
            for (x, &black) in row.iter().enumerate() {
                assert_eq!(black, pattern(x as u32, y as u32), "pixel ({x}, {y})");
            }
        }
    }

    #[test]
    fn empty_images_are_refused() {
        assert!(encode(0, 10, |_, _| true).is_none());
        assert!(encode(10, 0, |_, _| true).is_none());
    }

    #[test]
    fn empty_zlib_payload_is_one_final_stored_block() {
        let stream = zlib_stored(&[]).unwrap();
        assert_eq!(stream, [0x78, 0x01, 1, 0, 0, 0xff, 0xff, 0, 0, 0, 1]);
    }
}
