//! Provisioning a virtual MFA device: the `otpauth://` URI and its QR code as a PNG.
//!
//! `CreateVirtualMFADevice` returns the seed both as base32 text and as a QR code that an
//! authenticator app scans. The URI follows Google Authenticator's Key Uri Format
//! (`otpauth://totp/ISSUER:ACCOUNT?secret=…&issuer=…`), spelling out the parameters
//! we use (SHA1, 6 digits, 30 s) rather than relying on app defaults. The QR code is drawn
//! with `qrcodegen` and encoded by the `png` crate as a compressed 1-bit grayscale image.

use qrcodegen::{QrCode, QrCodeEcc};
use thiserror::Error;

use super::totp::{CODE_DIGITS, STEP_SECONDS};
use crate::percent;

/// Light modules around the code on each side, as ISO/IEC 18004 requires.
pub(crate) const QUIET_ZONE_MODULES: u32 = 4;

/// Image pixels per QR module along each axis: big enough for phone cameras to read off a
/// screen, small enough that the PNG of a 64-character seed's URI stays near 1 KB.
pub(crate) const PIXELS_PER_MODULE: u32 = 4;

/// Why a QR code image could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub(crate) enum QrError {
    /// The text does not fit in the largest QR code (version 40) at medium error correction.
    #[error("text too long for a QR code")]
    TooLong,
    /// The PNG encoder refused the image; unreachable for any QR version at the fixed scale,
    /// since the image is written to memory.
    #[error("QR code image too large")]
    ImageTooLarge,
}

/// The Key Uri Format URI that provisions a TOTP authenticator.
///
/// `issuer` and `account_label` are percent-encoded (RFC 3986: everything but unreserved
/// characters), so spaces, `@`, `:` and non-ASCII text survive and the label's one literal
/// `:` separates issuer from account. An empty `issuer` is left out of both the label and
/// the query.
pub(crate) fn otpauth_uri(issuer: &str, account_label: &str, base32_secret: &str) -> String {
    let label = if issuer.is_empty() {
        percent::encode_str(account_label)
    } else {
        format!(
            "{}:{}",
            percent::encode_str(issuer),
            percent::encode_str(account_label)
        )
    };
    let mut uri = format!(
        "otpauth://totp/{label}?secret={}",
        percent::encode_str(base32_secret)
    );
    if !issuer.is_empty() {
        uri.push_str("&issuer=");
        uri.push_str(&percent::encode_str(issuer));
    }
    uri.push_str(&format!(
        "&algorithm=SHA1&digits={CODE_DIGITS}&period={STEP_SECONDS}"
    ));
    uri
}

/// A PNG image of `text` as a QR code: error correction at least medium (`qrcodegen` raises
/// it when that costs no extra size), a [`QUIET_ZONE_MODULES`] light border, and
/// [`PIXELS_PER_MODULE`] pixels per module, in 1-bit grayscale.
pub(crate) fn qr_png(text: &str) -> Result<Vec<u8>, QrError> {
    let qr = QrCode::encode_text(text, QrCodeEcc::Medium).map_err(|_| QrError::TooLong)?;
    let modules = u32::try_from(qr.size())
        .ok()
        .and_then(|size| size.checked_add(2 * QUIET_ZONE_MODULES))
        .ok_or(QrError::ImageTooLarge)?;
    let side = modules
        .checked_mul(PIXELS_PER_MODULE)
        .ok_or(QrError::ImageTooLarge)?;
    // Pixel to module coordinate; the quiet zone maps outside the code, which
    // `get_module` reports as light.
    let module_at = |pixel: u32| {
        let module = i64::from(pixel / PIXELS_PER_MODULE) - i64::from(QUIET_ZONE_MODULES);
        i32::try_from(module).unwrap_or(-1)
    };
    let dark = |x: u32, y: u32| qr.get_module(module_at(x), module_at(y));
    let pixels = pack_rows(side, dark);
    let mut png = Vec::new();
    let mut encoder = png::Encoder::new(&mut png, side, side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::One);
    let mut writer = encoder.write_header().map_err(|_| QrError::ImageTooLarge)?;
    writer
        .write_image_data(&pixels)
        .map_err(|_| QrError::ImageTooLarge)?;
    writer.finish().map_err(|_| QrError::ImageTooLarge)?;
    Ok(png)
}

/// Rows of a 1-bit grayscale image, eight pixels to a byte, most significant bit first,
/// 1 = white; a row's padding bits are white.
fn pack_rows(side: u32, dark: impl Fn(u32, u32) -> bool) -> Vec<u8> {
    let bytes = u64::from(side.div_ceil(8)) * u64::from(side);
    let mut data = Vec::with_capacity(usize::try_from(bytes).unwrap_or(0));
    for y in 0..side {
        for first_x in (0..side).step_by(8) {
            let mut byte = 0u8;
            for bit in 0..8u32 {
                let x = first_x.saturating_add(bit);
                let white = x >= side || !dark(x, y);
                byte |= u8::from(white) << (7 - bit);
            }
            data.push(byte);
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "JBSWY3DPEHPK3PXP";

    /// Decodes a PNG (checking CRCs and Adler-32) and reads the QR code in it with `rqrr`.
    fn read_qr(png_bytes: &[u8]) -> String {
        let mut options = png::DecodeOptions::default();
        options.set_ignore_adler32(false);
        let mut decoder = png::Decoder::new_with_options(std::io::Cursor::new(png_bytes), options);
        decoder.set_transformations(png::Transformations::EXPAND);
        let mut reader = decoder.read_info().unwrap();
        let mut buffer = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buffer).unwrap();
        assert_eq!(info.color_type, png::ColorType::Grayscale);
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        let (width, height) = (info.width as usize, info.height as usize);
        let mut image = rqrr::PreparedImage::prepare_from_greyscale(width, height, |x, y| {
            buffer[y * info.line_size + x]
        });
        let grids = image.detect_grids();
        assert_eq!(grids.len(), 1, "expected exactly one QR code");
        let (_meta, content) = grids[0].decode().unwrap();
        content
    }

    #[test]
    fn uri_has_the_key_uri_format_shape() {
        assert_eq!(
            otpauth_uri("sts-broker", "alice", SECRET),
            "otpauth://totp/sts-broker:alice?secret=JBSWY3DPEHPK3PXP&issuer=sts-broker\
             &algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn uri_escapes_spaces_at_signs_colons_and_unicode() {
        assert_eq!(
            otpauth_uri("Acme Corp: Prod", "mfa device@123456789012", SECRET),
            "otpauth://totp/Acme%20Corp%3A%20Prod:mfa%20device%40123456789012\
             ?secret=JBSWY3DPEHPK3PXP&issuer=Acme%20Corp%3A%20Prod\
             &algorithm=SHA1&digits=6&period=30"
        );
        assert_eq!(
            percent::encode_str("Zoë+/?&=#%"),
            "Zo%C3%AB%2B%2F%3F%26%3D%23%25"
        );
        assert_eq!(percent::encode_str("AZaz09-._~"), "AZaz09-._~");
    }

    #[test]
    fn uri_without_issuer_has_a_bare_label() {
        assert_eq!(
            otpauth_uri("", "alice@123456789012", SECRET),
            "otpauth://totp/alice%40123456789012?secret=JBSWY3DPEHPK3PXP\
             &algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn qr_png_decodes_back_to_the_uri() {
        let uri = otpauth_uri(
            "sts-broker",
            "ci deploy@123456789012",
            "U3IWOL56SOM7RQPCFTR5BFXKPVHLYGXCVABEAFSQOIHRIEUIAV3OCKNLVIOSBWIX",
        );
        let png_bytes = qr_png(&uri).unwrap();
        assert_eq!(read_qr(&png_bytes), uri);
    }

    #[test]
    fn qr_png_has_a_quiet_zone_and_the_expected_size() {
        let text = "otpauth://totp/x?secret=GEZDGNBV";
        let qr = QrCode::encode_text(text, QrCodeEcc::Medium).unwrap();
        let side = (qr.size() as u32 + 2 * QUIET_ZONE_MODULES) * PIXELS_PER_MODULE;
        let png_bytes = qr_png(text).unwrap();
        let mut decoder = png::Decoder::new(std::io::Cursor::new(&png_bytes[..]));
        decoder.set_transformations(png::Transformations::EXPAND);
        let mut reader = decoder.read_info().unwrap();
        assert_eq!(reader.info().bit_depth, png::BitDepth::One);
        let mut buffer = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buffer).unwrap();
        assert_eq!((info.width, info.height), (side, side));
        let border = (QUIET_ZONE_MODULES * PIXELS_PER_MODULE) as usize;
        let side = side as usize;
        for y in 0..side {
            for x in 0..side {
                let in_border =
                    x < border || y < border || x >= side - border || y >= side - border;
                if in_border {
                    assert_eq!(buffer[y * info.line_size + x], 255, "pixel ({x}, {y})");
                }
            }
        }
        // The top-left finder pattern starts right inside the quiet zone.
        assert_eq!(buffer[border * info.line_size + border], 0);
        assert_eq!(read_qr(&png_bytes), text);
    }

    #[test]
    fn qr_png_refuses_text_beyond_version_40() {
        let text = "x".repeat(3000);
        assert_eq!(qr_png(&text), Err(QrError::TooLong));
    }
}
