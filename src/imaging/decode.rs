//! Decoding PNG, JPEG and DICOM to 8-bit grayscale, with limits against decompression bombs.
//!
//! PNG through the png crate (colour turned to gray with integer BT.601 weights); JPEG through
//! zune-jpeg straight to its luma plane, or jpeg-decoder (with DCT scaling) for colour spaces
//! and schemes zune-jpeg lacks. The format is taken from the file's content, and a content that does not match the
//! extension is an error (`wrong-extension`), as is an empty, truncated or corrupt file.
//! DICOM: native (explicit/implicit little endian, big endian), RLE and JPEG
//! (baseline/extended/lossless) transfer syntaxes through dicom-pixeldata; rescale
//! slope/intercept and the first VOI window are applied, else min-max; MONOCHROME1 is inverted.

use std::io::Cursor;
use std::path::Path;

use image::GrayImage;

use super::dicom::decode_dicom_into;

/// Largest accepted width or height, in pixels.
pub const MAX_SIDE: u32 = 16_384;
/// Largest accepted decoded allocation, in bytes.
pub const MAX_ALLOC: u64 = 1 << 30;
/// Most decoded bytes one byte of a compressed file can stand for. Deflate (PNG) stops near
/// 1032:1; a JPEG spends at least one bit on every 8x8 block's DC value (512:1); DICOM RLE
/// 64:1. A file declaring more pixels than this allows is corrupt, and is refused before any
/// buffer for those pixels is allocated.
pub const MAX_EXPANSION: u64 = 2048;
/// Decoded bytes allowed whatever the file size (small headers of small images).
pub const EXPANSION_SLACK: u64 = 16 << 20;

/// Refuses a decoded size (`decoded` bytes for a `w`×`h` image) that a `file_len`-byte file
/// cannot encode, so a tiny file never makes us allocate for a huge image.
pub fn check_expansion(decoded: u64, file_len: usize, w: u32, h: u32) -> Result<(), DecodeError> {
    let most = (file_len as u64)
        .saturating_mul(MAX_EXPANSION)
        .saturating_add(EXPANSION_SLACK);
    if decoded > most {
        return Err(DecodeError::new(
            "corrupt",
            format!(
                "declares {w}x{h} pixels ({decoded} bytes decoded), more than a {file_len}-byte \
                 file can encode"
            ),
        ));
    }
    Ok(())
}

/// Why an image could not be decoded (short code for `quarantine.csv`, plus detail).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct DecodeError {
    /// `missing`, `unreadable`, `changed`, `empty`, `wrong-extension`, `unknown-format`,
    /// `corrupt`, `too-large`, `unsupported`.
    pub reason: &'static str,
    /// Human-readable detail.
    pub detail: String,
}

impl DecodeError {
    /// An error with a reason code and detail.
    pub fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        DecodeError {
            reason,
            detail: detail.into(),
        }
    }
}

/// Image container formats recognised by content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// PNG.
    Png,
    /// JPEG (JFIF/EXIF).
    Jpeg,
    /// DICOM Part 10 file (preamble + `DICM`).
    Dicom,
}

/// Detects the format from the first bytes.
pub fn sniff(bytes: &[u8]) -> Option<Format> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(Format::Png)
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(Format::Jpeg)
    } else if bytes.len() > 132 && &bytes[128..132] == b"DICM" {
        Some(Format::Dicom)
    } else {
        None
    }
}

fn format_of_extension(path: &Path) -> Option<Format> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "png" => Some(Format::Png),
        "jpg" | "jpeg" => Some(Format::Jpeg),
        "dcm" | "dicom" => Some(Format::Dicom),
        _ => None,
    }
}

/// Decodes the bytes of `path` to 8-bit grayscale at full resolution.
pub fn decode_bytes(bytes: &[u8], path: &Path) -> Result<GrayImage, DecodeError> {
    decode_bytes_for(bytes, path, None)
}

/// What the consumer of a decoded image needs: after dropping the top `crop_top` fraction, the
/// centre square must keep at least `min_side` pixels. JPEGs that go through jpeg-decoder (CMYK,
/// YCCK, lossless, 12-bit) are then decoded with DCT scaling (1/2, 1/4 or 1/8 of the size) when
/// that still leaves enough pixels; zune-jpeg's luma path always decodes at full size (on these
/// cores a full zune-jpeg luma decode is about as fast as jpeg-decoder's reduced one: entropy
/// decoding dominates).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SizeHint {
    /// Fraction of rows the consumer drops at the top.
    pub crop_top: f32,
    /// Pixels the centre square must keep.
    pub min_side: u32,
}

/// Decodes the bytes of `path` to 8-bit grayscale, reduced per `hint` where the format allows.
pub fn decode_bytes_for(
    bytes: &[u8],
    path: &Path,
    hint: Option<SizeHint>,
) -> Result<GrayImage, DecodeError> {
    let mut out = Vec::new();
    let (w, h) = decode_into(bytes, path, hint, &mut out)?;
    GrayImage::from_raw(w, h, out).ok_or_else(|| DecodeError::new("corrupt", "size mismatch"))
}

/// Decodes like [`decode_bytes_for`] into `out` (replacing its contents, reusing its
/// allocation) and returns the width and height; `out` then holds exactly `w * h` pixels.
pub fn decode_into(
    bytes: &[u8],
    path: &Path,
    hint: Option<SizeHint>,
    out: &mut Vec<u8>,
) -> Result<(u32, u32), DecodeError> {
    decode_scaled_into(bytes, path, hint, out).map(|d| (d.width, d.height))
}

/// An image decoded by [`decode_scaled_into`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Whether it is smaller than the file's full size (a JPEG, or a DICOM's JPEG frame,
    /// decoded with DCT scaling per the [`SizeHint`]).
    pub reduced: bool,
}

/// Decodes like [`decode_into`], saying whether DCT scaling reduced the image.
pub fn decode_scaled_into(
    bytes: &[u8],
    path: &Path,
    hint: Option<SizeHint>,
    out: &mut Vec<u8>,
) -> Result<Decoded, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::new("empty", "file is empty"));
    }
    let format = sniff(bytes)
        .ok_or_else(|| DecodeError::new("unknown-format", "content is not PNG, JPEG or DICOM"))?;
    if let Some(expected) = format_of_extension(path) {
        if expected != format {
            return Err(DecodeError::new(
                "wrong-extension",
                format!("content is {format:?} but the extension says {expected:?}"),
            ));
        }
    }
    // A panic inside a decoding crate (a bug there, which no input should reach us as) is a
    // corrupt image, never the end of the build.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let (width, height, reduced) = match format {
            Format::Png => decode_png(bytes, out).map(|(w, h)| (w, h, false))?,
            Format::Jpeg => {
                let (w, h) = decode_jpeg(bytes, hint, out)?;
                let full = super::dicom::jpeg_sof(bytes).map(|(fw, fh, _, _)| (fw, fh));
                (w, h, full.is_some_and(|full| full != (w, h)))
            }
            Format::Dicom => decode_dicom_into(bytes, hint, out)?,
        };
        Ok(Decoded {
            width,
            height,
            reduced,
        })
    }));
    decoded.unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("no message");
        out.clear();
        Err(DecodeError::new(
            "corrupt",
            format!("the {format:?} decoder panicked: {msg}"),
        ))
    })
}

/// Moves a decoder's own image into the caller's buffer; returns its width and height.
fn into_out(img: GrayImage, out: &mut Vec<u8>) -> (u32, u32) {
    let dims = img.dimensions();
    *out = img.into_raw();
    dims
}

/// ITU-R BT.601 luma in 8-bit fixed point (the weights OpenCV uses for RGB -> gray).
#[inline]
fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 77 + g as u32 * 150 + b as u32 * 29 + 128) >> 8) as u8
}

/// Turns rows of `line` bytes holding `w` pixels of `channels` samples (gray, gray+alpha,
/// RGB, RGBA) into `w`-wide gray rows in `out`.
fn to_gray(rows: &[u8], line: usize, w: usize, channels: usize, out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is available.
        return unsafe { to_gray_avx2(rows, line, w, channels, out) };
    }
    to_gray_portable(rows, line, w, channels, out)
}

/// [`to_gray`] compiled for AVX2 (the same code: the compiler vectorises the RGB loop, ~4x).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn to_gray_avx2(rows: &[u8], line: usize, w: usize, channels: usize, out: &mut [u8]) {
    to_gray_portable(rows, line, w, channels, out)
}

#[inline(always)]
fn to_gray_portable(rows: &[u8], line: usize, w: usize, channels: usize, out: &mut [u8]) {
    for (row, out) in rows.chunks_exact(line).zip(out.chunks_exact_mut(w)) {
        match channels {
            1 => out.copy_from_slice(&row[..w]),
            2 => out
                .iter_mut()
                .zip(row.chunks_exact(2))
                .for_each(|(o, p)| *o = p[0]),
            3 => out
                .iter_mut()
                .zip(row.chunks_exact(3))
                .for_each(|(o, p)| *o = luma(p[0], p[1], p[2])),
            c => out
                .iter_mut()
                .zip(row.chunks_exact(c))
                .for_each(|(o, p)| *o = luma(p[0], p[1], p[2])),
        }
    }
}

thread_local! {
    /// Per-thread buffer for undecoded PNG rows (colour, alpha or padded), reused across
    /// images so large radiographs do not cost a fresh zeroed allocation each.
    static PNG_ROWS: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Buffers above this size are released after use rather than kept for the next image.
const KEEP_BUFFER: usize = 64 << 20;

/// Releases a per-thread buffer after use when an unusually large image grew it past
/// [`KEEP_BUFFER`], so one huge image does not pin its memory for the rest of the run.
pub fn release_if_large(buf: &mut Vec<u8>) {
    if buf.capacity() > KEEP_BUFFER {
        *buf = Vec::new();
    }
}

/// Sets `buf` to `len` bytes without clearing what it already holds (the decoder overwrites
/// every byte).
pub fn fit(buf: &mut Vec<u8>, len: usize) {
    if buf.len() > len {
        buf.truncate(len);
    } else {
        buf.resize(len, 0);
    }
}

fn decode_png(bytes: &[u8], out: &mut Vec<u8>) -> Result<(u32, u32), DecodeError> {
    use png::{BitDepth, ColorType, Transformations};
    let corrupt = |e: png::DecodingError| match e {
        png::DecodingError::LimitsExceeded => DecodeError::new("too-large", e.to_string()),
        other => DecodeError::new("corrupt", other.to_string()),
    };
    let limits = png::Limits {
        bytes: MAX_ALLOC as usize,
    };
    let mut d = png::Decoder::new_with_limits(Cursor::new(bytes), limits);
    // Palette and low bit depths expand to 8 bits, 16-bit samples keep their high byte.
    d.set_transformations(Transformations::EXPAND | Transformations::STRIP_16);
    let mut reader = d.read_info().map_err(corrupt)?;
    let (w, h) = (reader.info().width, reader.info().height);
    if w > MAX_SIDE || h > MAX_SIDE {
        return Err(DecodeError::new("too-large", format!("{w}x{h}")));
    }
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| DecodeError::new("too-large", format!("{w}x{h}")))?;
    check_expansion(size as u64, bytes.len(), w, h)?;
    let (color, depth) = reader.output_color_type();
    if depth != BitDepth::Eight {
        return Err(DecodeError::new(
            "unsupported",
            format!("PNG output depth {depth:?}"),
        ));
    }
    let channels = match color {
        ColorType::Grayscale => 1,
        ColorType::GrayscaleAlpha => 2,
        ColorType::Rgb => 3,
        ColorType::Rgba => 4,
        ColorType::Indexed => {
            return Err(DecodeError::new(
                "unsupported",
                "palette PNG was not expanded",
            ))
        }
    };
    let (wu, n) = (w as usize, w as usize * h as usize);
    if channels == 1 && size == n {
        // Gray rows without padding: decoded straight into `out`.
        fit(out, n);
        reader.next_frame(out).map_err(corrupt)?;
        return Ok((w, h));
    }
    PNG_ROWS.with_borrow_mut(|buf| {
        fit(buf, size);
        let result = reader.next_frame(buf).map_err(corrupt).and_then(|info| {
            let line = info.line_size;
            if buf.len() < line * h as usize || line < wu * channels {
                return Err(DecodeError::new("corrupt", "truncated PNG data"));
            }
            fit(out, n);
            to_gray(buf, line, wu, channels, out);
            Ok((w, h))
        });
        release_if_large(buf);
        result
    })
}

/// JPEG: zune-jpeg decodes YCbCr and gray JPEGs straight to luma (the Y plane, so chroma is
/// neither transformed nor upsampled), strictly (a truncated or corrupt stream is an error, not
/// a grey-padded image). Other colour spaces (CMYK, YCCK, RGB) and schemes zune-jpeg lacks
/// (lossless, 12-bit, arithmetic) go through jpeg-decoder.
pub(super) fn decode_jpeg(
    bytes: &[u8],
    hint: Option<SizeHint>,
    out: &mut Vec<u8>,
) -> Result<(u32, u32), DecodeError> {
    use zune_core::colorspace::ColorSpace;
    use zune_jpeg::errors::DecodeErrors;
    let opts = zune_core::options::DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(MAX_SIDE as usize)
        .set_max_height(MAX_SIDE as usize)
        .jpeg_set_out_colorspace(ColorSpace::Luma);
    let mut d =
        zune_jpeg::JpegDecoder::new_with_options(zune_core::bytestream::ZCursor::new(bytes), opts);
    let error = |e: DecodeErrors| match e {
        DecodeErrors::LargeDimensions(_) => DecodeError::new("too-large", e.to_string()),
        other => DecodeError::new("corrupt", other.to_string()),
    };
    let general =
        |out: &mut Vec<u8>| decode_jpeg_general(bytes, hint).map(|img| into_out(img, out));
    match d.decode_headers() {
        Err(DecodeErrors::Unsupported(_)) => return general(out),
        other => other.map_err(error)?,
    }
    if !matches!(
        d.input_colorspace(),
        Some(ColorSpace::YCbCr | ColorSpace::Luma)
    ) {
        return general(out);
    }
    let (w, h) = d
        .dimensions()
        .ok_or_else(|| DecodeError::new("corrupt", "no JPEG header"))?;
    let size = d
        .output_buffer_size()
        .ok_or_else(|| DecodeError::new("too-large", format!("{w}x{h}")))?;
    let components = d.info().map_or(3, |i| i.components.max(1) as u64);
    check_expansion(
        w as u64 * h as u64 * components,
        bytes.len(),
        w as u32,
        h as u32,
    )?;
    fit(out, size);
    match d.decode_into(out) {
        Err(DecodeErrors::Unsupported(_)) => return general(out),
        other => other.map_err(error)?,
    }
    Ok((w as u32, h as u32))
}

/// The largest DCT scaling denominator (8, 4 or 2) that still leaves `hint.min_side` pixels
/// across the centre square of a `w`x`h` JPEG; `None` when only the full size does.
fn dct_scale(hint: Option<SizeHint>, w: u32, h: u32) -> Option<u32> {
    let hint = hint?;
    let side = w.min((h as f32 * (1.0 - hint.crop_top)) as u32).max(1);
    [8u32, 4, 2]
        .into_iter()
        .find(|&den| side / den >= hint.min_side)
}

/// JPEG through jpeg-decoder (any colour space it knows, with DCT scaling per `hint`), turned
/// to gray with integer BT.601 weights.
fn decode_jpeg_general(bytes: &[u8], hint: Option<SizeHint>) -> Result<GrayImage, DecodeError> {
    let corrupt = |e: jpeg_decoder::Error| match e {
        jpeg_decoder::Error::Unsupported(u) => DecodeError::new("unsupported", format!("{u:?}")),
        other => DecodeError::new("corrupt", other.to_string()),
    };
    let mut d = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    d.set_max_decoding_buffer_size(MAX_ALLOC as usize);
    d.read_info().map_err(corrupt)?;
    let info = d
        .info()
        .ok_or_else(|| DecodeError::new("corrupt", "no JPEG header"))?;
    let (w, h) = (info.width as u32, info.height as u32);
    if w > MAX_SIDE || h > MAX_SIDE {
        return Err(DecodeError::new("too-large", format!("{w}x{h}")));
    }
    let components = info.pixel_format.pixel_bytes() as u64;
    check_expansion(w as u64 * h as u64 * components, bytes.len(), w, h)?;
    if let Some(den) = dct_scale(hint, w, h) {
        d.scale(w.div_ceil(den) as u16, h.div_ceil(den) as u16)
            .map_err(corrupt)?;
    }
    let px = d.decode().map_err(corrupt)?;
    let info = d
        .info()
        .ok_or_else(|| DecodeError::new("corrupt", "no JPEG header"))?;
    let (w, h) = (info.width as u32, info.height as u32);
    let n = w as usize * h as usize;
    let gray: Vec<u8> = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => px,
        jpeg_decoder::PixelFormat::L16 => px.chunks_exact(2).map(|c| c[0]).collect(),
        jpeg_decoder::PixelFormat::RGB24 => {
            px.chunks_exact(3).map(|c| luma(c[0], c[1], c[2])).collect()
        }
        jpeg_decoder::PixelFormat::CMYK32 => px
            .chunks_exact(4)
            .map(|c| {
                let k = 255 - c[3] as u32;
                let [r, g, b] = [c[0], c[1], c[2]].map(|v| ((255 - v as u32) * k / 255) as u8);
                luma(r, g, b)
            })
            .collect(),
    };
    if gray.len() < n {
        return Err(DecodeError::new("corrupt", "truncated JPEG data"));
    }
    GrayImage::from_raw(w, h, gray).ok_or_else(|| DecodeError::new("corrupt", "size mismatch"))
}

/// Reads an image file; a missing or unreadable file is a [`DecodeError`] (`missing`,
/// `unreadable`).
pub fn read_image(path: &Path) -> Result<Vec<u8>, DecodeError> {
    std::fs::read(path).map_err(|e| {
        let reason = if e.kind() == std::io::ErrorKind::NotFound {
            "missing"
        } else {
            "unreadable"
        };
        DecodeError::new(reason, e.to_string())
    })
}

/// Reads and decodes a file (see [`decode_bytes_for`]).
pub fn decode_file(path: &Path, hint: Option<SizeHint>) -> Result<GrayImage, DecodeError> {
    decode_bytes_for(&read_image(path)?, path, hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg_of(img: image::DynamicImage) -> Vec<u8> {
        let mut b = Cursor::new(Vec::new());
        img.write_to(&mut b, image::ImageFormat::Jpeg).unwrap();
        b.into_inner()
    }

    #[test]
    fn colour_jpeg_luma_agrees_with_rgb_then_gray() {
        // A tinted radiograph (colour JPEGs of X-rays are near-gray; saturated colours would
        // clip in RGB and differ from Y by design).
        let gray = crate::demo::synthetic_xray(5);
        let rgb = image::RgbImage::from_fn(gray.width(), gray.height(), |x, y| {
            let v = gray.get_pixel(x, y)[0].clamp(8, 240);
            image::Rgb([v + 6, v, v - 5])
        });
        let (w, h) = rgb.dimensions();
        let bytes = jpeg_of(rgb.into());
        let ours = decode_bytes(&bytes, Path::new("c.jpg")).unwrap();
        let reference = image::load_from_memory(&bytes).unwrap().to_rgb8();
        assert_eq!(ours.dimensions(), reference.dimensions());
        let mut worst = 0i32;
        let mut total = 0i64;
        for (a, p) in ours.pixels().zip(reference.pixels()) {
            let d = (a[0] as i32 - luma(p[0], p[1], p[2]) as i32).abs();
            worst = worst.max(d);
            total += d as i64;
        }
        assert!(worst <= 3, "largest difference {worst}");
        assert!(total as f64 / ((w * h) as f64) < 1.0, "mean difference");
    }

    #[test]
    fn gray_jpeg_decodes_like_the_reference_decoder() {
        let bytes = jpeg_of(crate::demo::synthetic_xray(3).into());
        let ours = decode_bytes(&bytes, Path::new("g.jpeg")).unwrap();
        let reference = image::load_from_memory(&bytes).unwrap().to_luma8();
        assert_eq!(ours, reference);
    }

    #[test]
    fn truncated_jpeg_is_corrupt_not_padded() {
        let bytes = jpeg_of(crate::demo::synthetic_xray(4).into());
        let e = decode_bytes(&bytes[..bytes.len() * 2 / 3], Path::new("t.jpg")).unwrap_err();
        assert_eq!(e.reason, "corrupt", "{e}");
    }

    #[test]
    fn colour_and_alpha_pngs_turn_to_bt601_gray_exactly() {
        let (w, h) = (37u32, 11u32);
        let rgba = image::RgbaImage::from_fn(w, h, |x, y| {
            image::Rgba([(x * 7) as u8, (y * 23) as u8, (x * y) as u8, (x + y) as u8])
        });
        let expected: Vec<u8> = rgba.pixels().map(|p| luma(p[0], p[1], p[2])).collect();
        let png_of = |img: image::DynamicImage| {
            let mut b = Cursor::new(Vec::new());
            img.write_to(&mut b, image::ImageFormat::Png).unwrap();
            b.into_inner()
        };
        let rgba = image::DynamicImage::ImageRgba8(rgba);
        for img in [rgba.clone(), image::DynamicImage::ImageRgb8(rgba.to_rgb8())] {
            let got = decode_bytes(&png_of(img), Path::new("c.png")).unwrap();
            assert_eq!(got.as_raw(), &expected);
        }
        let la = image::DynamicImage::ImageLumaA8(rgba.to_luma_alpha8());
        let got = decode_bytes(&png_of(la), Path::new("la.png")).unwrap();
        let gray: Vec<u8> = rgba.to_luma_alpha8().pixels().map(|p| p[0]).collect();
        assert_eq!(got.as_raw(), &gray);
    }

    /// A header that declares far more pixels than the file can hold is refused before any
    /// pixel buffer exists (no 256 MB allocation for a small file).
    #[test]
    fn a_huge_image_in_a_tiny_file_is_corrupt_before_allocating() {
        let mut png = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut png, 16_000, 16_000);
            enc.set_color(png::ColorType::Grayscale);
            let _header_only = enc.write_header().unwrap();
        }
        // An empty IDAT chunk (length 0, type, CRC-32 of "IDAT"), so the header reads fully.
        png.truncate(33);
        png.extend_from_slice(&[0, 0, 0, 0, b'I', b'D', b'A', b'T', 0x35, 0xAF, 0x06, 0x1E]);
        let e = decode_bytes(&png, Path::new("h.png")).unwrap_err();
        assert_eq!(e.reason, "corrupt", "{e}");
        assert!(e.detail.contains("16000x16000 pixels"), "{e}");

        let mut jpeg = jpeg_of(crate::demo::synthetic_xray(6).into());
        let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        jpeg[sof + 5..sof + 9].copy_from_slice(&[0x3E, 0x80, 0x3E, 0x80]); // 16000 x 16000
        let e = decode_bytes(&jpeg, Path::new("h.jpg")).unwrap_err();
        assert_eq!(e.reason, "corrupt", "{e}");
        assert!(e.detail.contains("more than a"), "{e}");
        // A real image passes the bound easily.
        check_expansion(4096 * 4096, 200_000, 4096, 4096).unwrap();
    }
}
