//! DICOM decoding: a length check of the whole element stream first (no declared length may
//! exceed the bytes that follow it, so no parser allocates more than the file holds), then
//! dicom-object and dicom-pixeldata for the pixel data; rescale slope/intercept and the first
//! VOI window are applied, else min-max; MONOCHROME1 is inverted. A plain 8-bit gray JPEG
//! baseline frame (RSNA's files) skips dicom-pixeldata and its f32 samples: zune-jpeg decodes
//! it straight to 8-bit luma, which is stretched the same way.

use std::io::Cursor;

use dicom_pixeldata::{ConvertOptions, ModalityLutOption, PixelDecoder, VoiLutOption};
use image::GrayImage;

use super::decode::{check_expansion, DecodeError, SizeHint, MAX_ALLOC, MAX_SIDE};

/// Bytes before `DICM` in a Part 10 file.
const PREAMBLE: usize = 128;
/// The "undefined length" marker.
const UNDEFINED: u32 = 0xFFFF_FFFF;

/// How a data set is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    ExplicitLe,
    ImplicitLe,
    ExplicitBe,
    /// Inside encapsulated pixel data: items are raw fragments.
    Fragments,
}

/// Explicit-VR value representations with a 2-byte length.
const SHORT_VRS: [&[u8; 2]; 21] = [
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN",
    b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
];
/// Explicit-VR value representations with 2 reserved bytes and a 4-byte length.
const LONG_VRS: [&[u8; 2]; 13] = [
    b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV",
];

/// Whether an explicit VR has a 4-byte length: every VR but the short ones, unknown VRs
/// included (PS3.5 7.1.2; dicom-rs reads an unknown VR as `UN`, so it is walked the same way).
fn long_vr(vr: &[u8]) -> bool {
    !SHORT_VRS.iter().any(|v| v.as_slice() == vr)
}

/// A VR dicom-rs knows; an unknown one is read as `UN`.
fn known_vr(vr: &[u8]) -> bool {
    SHORT_VRS
        .iter()
        .chain(LONG_VRS.iter())
        .any(|v| v.as_slice() == vr)
}

/// Little- or big-endian integers at byte offsets of a DICOM file (callers check bounds).
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u16(&self, at: usize, be: bool) -> u16 {
        let b = [self.0[at], self.0[at + 1]];
        if be {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    }

    fn u32(&self, at: usize, be: bool) -> u32 {
        let b = [self.0[at], self.0[at + 1], self.0[at + 2], self.0[at + 3]];
        if be {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }

    /// Bytes left after `at`.
    fn left(&self, at: usize) -> usize {
        self.0.len().saturating_sub(at)
    }
}

fn corrupt_at(at: usize, what: String) -> DecodeError {
    DecodeError::new("corrupt", format!("DICOM at byte {at}: {what}"))
}

/// Checks, before any DICOM parser runs, that every length the file declares (file meta,
/// data set, nested sequences and items, pixel fragments) fits in the bytes that follow it.
/// A 10 KB file that claims a 4 GB element is `corrupt`, never a 4 GB allocation. Deflated
/// data sets cannot be checked without inflating them and are refused as `unsupported`.
pub fn check_lengths(bytes: &[u8]) -> Result<(), DecodeError> {
    if bytes.len() < PREAMBLE + 4 || &bytes[PREAMBLE..PREAMBLE + 4] != b"DICM" {
        return Err(DecodeError::new(
            "corrupt",
            "no DICM marker after the preamble",
        ));
    }
    let (pos, base) = check_file_meta(&Bytes(bytes))?;
    check_data_set(&Bytes(bytes), pos, base)
}

/// The file meta group (0002, explicit VR little endian): checks its lengths and returns where
/// the data set starts and how it is encoded.
fn check_file_meta(b: &Bytes<'_>) -> Result<(usize, Encoding), DecodeError> {
    let mut pos = PREAMBLE + 4;
    let mut syntax = String::new();
    while b.left(pos) >= 8 && b.u16(pos, false) == 0x0002 {
        let elem = b.u16(pos + 2, false);
        let (len, header) = if long_vr(&b.0[pos + 4..pos + 6]) {
            if b.left(pos) < 12 {
                return Err(corrupt_at(pos, "truncated file meta element".into()));
            }
            (b.u32(pos + 8, false) as usize, 12)
        } else {
            (b.u16(pos + 6, false) as usize, 8)
        };
        let start = pos + header;
        if len > b.left(start) {
            return Err(corrupt_at(
                pos,
                format!("file meta element declares {len} bytes"),
            ));
        }
        if elem == 0x0010 {
            syntax = String::from_utf8_lossy(&b.0[start..start + len])
                .trim_end_matches(['\0', ' '])
                .to_string();
        }
        pos = start + len;
    }
    let base = match syntax.as_str() {
        "1.2.840.10008.1.2" => Encoding::ImplicitLe,
        "1.2.840.10008.1.2.2" => Encoding::ExplicitBe,
        "1.2.840.10008.1.2.1.99" => {
            return Err(DecodeError::new(
                "unsupported",
                "deflated DICOM data sets are not supported",
            ))
        }
        _ => Encoding::ExplicitLe,
    };
    Ok((pos, base))
}

/// Walks the data set from `pos`: every defined length must fit in what follows; sequences
/// (defined or undefined length) are walked into, so nested lengths are checked too.
fn check_data_set(b: &Bytes<'_>, mut pos: usize, base: Encoding) -> Result<(), DecodeError> {
    // Open undefined-length containers (sequences, encapsulated pixel data) and the encoding
    // of their contents; a sequence delimiter closes the innermost one.
    let mut open: Vec<Encoding> = Vec::new();
    while b.left(pos) >= 8 {
        let enc = *open.last().unwrap_or(&base);
        let be = enc == Encoding::ExplicitBe;
        let (group, elem) = (b.u16(pos, be), b.u16(pos + 2, be));
        if group == 0xFFFE {
            pos = check_item(b, pos, elem, enc, &mut open)?;
            continue;
        }
        let (len, header, vr) = match enc {
            Encoding::ImplicitLe | Encoding::Fragments => (b.u32(pos + 4, false), 8, None),
            _ => {
                let vr = [b.0[pos + 4], b.0[pos + 5]];
                if !long_vr(&vr) {
                    (b.u16(pos + 6, be) as u32, 8, Some(vr))
                } else if b.left(pos) < 12 {
                    return Err(corrupt_at(pos, "truncated element header".into()));
                } else {
                    (b.u32(pos + 8, be), 12, Some(vr))
                }
            }
        };
        let start = pos + header;
        if len == UNDEFINED {
            open.push(match (group, elem, vr.as_ref().map(|v| &v[..])) {
                (0x7FE0, 0x0010, _) => Encoding::Fragments,
                // An explicit-VR UN (or unknown VR) of undefined length holds implicit-VR
                // little endian.
                (_, _, Some(v)) if v == b"UN" || !known_vr(v) => Encoding::ImplicitLe,
                _ => enc,
            });
            pos = start;
            continue;
        }
        let len = len as usize;
        if len > b.left(start) {
            let left = b.left(start);
            let what =
                format!("element ({group:04X},{elem:04X}) declares {len} bytes, {left} remain");
            return Err(corrupt_at(pos, what));
        }
        // A sequence of defined length is walked into (its items hold elements too); in
        // implicit VR a sequence is recognised by its first item tag.
        let starts_item = len >= 4 && b.u16(start, be) == 0xFFFE && b.u16(start + 2, be) == 0xE000;
        let sequence = vr.map_or(starts_item, |v| &v == b"SQ");
        // dicom-rs reads a numeric VR as len / size values and consumes only those bytes, so a
        // length that is not a multiple of the size would shift everything after it.
        let read_as = vr.unwrap_or_else(|| implicit_vr(group, elem));
        if let Some(size) = value_size(&read_as).filter(|&k| !sequence && !len.is_multiple_of(k)) {
            let what = format!(
                "element ({group:04X},{elem:04X}) of VR {} has {len} bytes, not a multiple of {size}",
                String::from_utf8_lossy(&read_as)
            );
            return Err(corrupt_at(pos, what));
        }
        pos = if sequence { start } else { start + len };
    }
    Ok(())
}

/// The VR dicom-rs gives an element of an implicit-VR data set: the standard dictionary's,
/// else `UN`.
fn implicit_vr(group: u16, elem: u16) -> [u8; 2] {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
    // Pixel Data and Overlay Data are OW in implicit VR (as dicom-rs reads them).
    if (group, elem) == (0x7FE0, 0x0010) || (group >> 8 == 0x60 && elem == 0x3000) {
        return *b"OW";
    }
    dicom_dictionary_std::StandardDataDictionary
        .by_tag(dicom_core::Tag(group, elem))
        .map(|e| e.vr().relaxed().to_bytes())
        .unwrap_or(*b"UN")
}

/// Bytes per value of the numeric VRs (values are read as whole numbers of these).
fn value_size(vr: &[u8; 2]) -> Option<usize> {
    match vr {
        b"US" | b"OW" | b"SS" => Some(2),
        b"AT" | b"FL" | b"OF" | b"SL" | b"OL" | b"UL" => Some(4),
        b"FD" | b"OD" | b"SV" | b"OV" | b"UV" => Some(8),
        _ => None,
    }
}

/// An item or delimiter at `pos` (tag group FFFE): checks an item's length, skips a pixel
/// fragment, closes a container at a sequence delimiter; returns the next position.
fn check_item(
    b: &Bytes<'_>,
    pos: usize,
    elem: u16,
    enc: Encoding,
    open: &mut Vec<Encoding>,
) -> Result<usize, DecodeError> {
    let len = b.u32(pos + 4, enc == Encoding::ExplicitBe);
    let next = pos + 8;
    match elem {
        0xE000 if len == UNDEFINED => Ok(next),
        0xE000 => {
            let len = len as usize;
            if len > b.left(next) {
                return Err(corrupt_at(pos, format!("item declares {len} bytes")));
            }
            // A fragment of encapsulated pixel data is skipped; an item of a sequence holds
            // elements and is walked into.
            Ok(if enc == Encoding::Fragments {
                next + len
            } else {
                next
            })
        }
        0xE0DD => {
            open.pop();
            Ok(next)
        }
        0xE00D => Ok(next),
        other => Err(corrupt_at(
            pos,
            format!("unknown item tag (FFFE,{other:04X})"),
        )),
    }
}

/// Raw stored pixel values of a DICOM's first frame (no rescale, no window), row-major, with
/// width and height: what pydicom's `pixel_array` holds, for comparisons.
pub fn dicom_raw_values(bytes: &[u8]) -> Result<(u32, u32, Vec<f64>), DecodeError> {
    let obj = open_dicom(bytes)?;
    let px = obj
        .decode_pixel_data_frame(0)
        .map_err(|e| dicom_decode_error(&obj, e))?;
    let opts = ConvertOptions::new().with_modality_lut(ModalityLutOption::None);
    let v: Vec<f64> = px
        .to_vec_frame_with_options(0, &opts)
        .map_err(|e| DecodeError::new("corrupt", e.to_string()))?;
    Ok((px.columns(), px.rows(), v))
}

type DicomFile = dicom_object::FileDicomObject<dicom_object::InMemDicomObject>;

fn open_dicom(bytes: &[u8]) -> Result<DicomFile, DecodeError> {
    check_lengths(bytes)?;
    let obj = dicom_object::OpenFileOptions::new()
        .from_reader(Cursor::new(&bytes[PREAMBLE..]))
        .map_err(|e| DecodeError::new("corrupt", format!("DICOM: {e}")))?;
    let dim = |tag| -> Option<u32> { obj.element(tag).ok().and_then(|e| e.to_int::<u32>().ok()) };
    use dicom_dictionary_std::tags;
    let (rows, cols) = (dim(tags::ROWS), dim(tags::COLUMNS));
    let (Some(rows), Some(cols)) = (rows, cols) else {
        return Err(DecodeError::new(
            "corrupt",
            "DICOM without Rows/Columns (no image)",
        ));
    };
    if rows == 0 || cols == 0 {
        return Err(DecodeError::new(
            "corrupt",
            format!("DICOM image of {cols}x{rows} pixels (Rows and Columns must be positive)"),
        ));
    }
    let frames = dim(tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1) as u64;
    let spp = dim(tags::SAMPLES_PER_PIXEL).unwrap_or(1).max(1) as u64;
    let bits = dim(tags::BITS_ALLOCATED).unwrap_or(16).max(8) as u64;
    let alloc = rows as u64 * cols as u64 * frames * spp * bits.div_ceil(8);
    if rows > MAX_SIDE || cols > MAX_SIDE || alloc > MAX_ALLOC {
        return Err(DecodeError::new(
            "too-large",
            format!("{cols}x{rows}x{frames} frames would need {alloc} bytes"),
        ));
    }
    // Pixel data decodes to f32 values first: bound that by what the file can encode.
    check_expansion(
        alloc.max(rows as u64 * cols as u64 * frames * spp * 4),
        bytes.len(),
        cols,
        rows,
    )?;
    check_jpeg_frame(&obj, (cols, rows, spp as u32, bits as u32))?;
    Ok(obj)
}

/// A JPEG frame's (width, height, components, precision) from its SOF marker.
pub(crate) fn jpeg_sof(b: &[u8]) -> Option<(u32, u32, u32, u32)> {
    if !b.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut i = 2;
    while i + 4 <= b.len() {
        if b[i] != 0xFF {
            return None;
        }
        let marker = b[i + 1];
        if marker == 0xFF {
            i += 1;
            continue;
        }
        let len = u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
        let sof = (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if sof {
            let f = b.get(i + 4..i + 10)?;
            let h = u16::from_be_bytes([f[1], f[2]]) as u32;
            let w = u16::from_be_bytes([f[3], f[4]]) as u32;
            return Some((w, h, f[5] as u32, f[0] as u32));
        }
        i += 2 + len;
    }
    None
}

/// The first JPEG frame of encapsulated pixel data must match the data set's Columns, Rows and
/// Samples per Pixel, and fit its Bits Allocated: dicom-pixeldata's JPEG adapter copies the
/// decoded frame into a buffer sized by the data set and panics when it is larger (found by the
/// `decode_image` fuzz target).
fn check_jpeg_frame(
    obj: &DicomFile,
    (cols, rows, spp, bits): (u32, u32, u32, u32),
) -> Result<(), DecodeError> {
    use dicom_dictionary_std::tags;
    let Ok(e) = obj.element(tags::PIXEL_DATA) else {
        return Ok(());
    };
    let Some(first) = e
        .value()
        .fragments()
        .and_then(|f| f.iter().find(|f| !f.is_empty()))
    else {
        return Ok(());
    };
    let Some((w, h, n, precision)) = jpeg_sof(first) else {
        return Ok(());
    };
    if (w, h, n) != (cols, rows, spp) || (precision > 8 && bits < 16) {
        return Err(DecodeError::new(
            "corrupt",
            format!(
                "the JPEG frame is {w}x{h} with {n} components of {precision} bits, the data set \
                 says {cols}x{rows} with {spp} samples of {bits} bits allocated"
            ),
        ));
    }
    Ok(())
}

fn dicom_decode_error(obj: &DicomFile, e: dicom_pixeldata::Error) -> DecodeError {
    let ts = obj
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_string();
    use dicom_transfer_syntax_registry::TransferSyntaxIndex;
    let name = dicom_transfer_syntax_registry::TransferSyntaxRegistry
        .get(&ts)
        .map(|t| t.name().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    let msg = e.to_string();
    if msg.to_ascii_lowercase().contains("unsupported") {
        DecodeError::new(
            "unsupported",
            format!("transfer syntax {ts} ({name}) is not supported: {msg}"),
        )
    } else {
        DecodeError::new("corrupt", format!("DICOM pixel data ({ts}, {name}): {msg}"))
    }
}

#[cfg(test)]
pub(super) fn decode_dicom(bytes: &[u8]) -> Result<GrayImage, DecodeError> {
    decode_general(&open_dicom(bytes)?)
}

/// Decodes a DICOM file into `out` (see [`super::decode::decode_into`]); returns the width,
/// the height and whether the image is smaller than the data set's Rows x Columns (a JPEG
/// frame decoded with DCT scaling per `hint`).
pub(super) fn decode_dicom_into(
    bytes: &[u8],
    hint: Option<SizeHint>,
    out: &mut Vec<u8>,
) -> Result<(u32, u32, bool), DecodeError> {
    let obj = open_dicom(bytes)?;
    if let Some(done) = decode_gray_jpeg(&obj, hint, out) {
        return Ok(done);
    }
    let img = decode_general(&obj)?;
    let (w, h) = img.dimensions();
    *out = img.into_raw();
    Ok((w, h, false))
}

/// JPEG baseline and extended (process 2 and 4) transfer syntaxes.
const JPEG_8BIT: [&str; 2] = ["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"];

/// The fast path of most of COVIDx (RSNA's files): a single-frame, one-sample, 8-bit
/// MONOCHROME1/2 JPEG baseline image with no modality rescale and no VOI window. Its JPEG
/// frame goes straight to our JPEG decoder (zune-jpeg, see [`SizeHint`]), then the same
/// min-max stretch ([`stretch`]) and MONOCHROME1 inversion as [`decode_general`], as a
/// 256-entry table (the values are the 8-bit samples). `None` for any other
/// data set, or when the frame does not decode (the general path then reports why).
fn decode_gray_jpeg(
    obj: &DicomFile,
    hint: Option<SizeHint>,
    out: &mut Vec<u8>,
) -> Option<(u32, u32, bool)> {
    use dicom_dictionary_std::tags;
    if !JPEG_8BIT.contains(&obj.meta().transfer_syntax().trim_end_matches('\0')) {
        return None;
    }
    let int = |tag| -> Option<u32> { obj.element(tag).ok()?.to_int::<u32>().ok() };
    let present = |tag| obj.element(tag).is_ok();
    let photometric = obj
        .element(tags::PHOTOMETRIC_INTERPRETATION)
        .ok()?
        .to_str()
        .ok()?
        .trim()
        .to_string();
    let invert = match photometric.as_str() {
        "MONOCHROME2" => false,
        "MONOCHROME1" => true,
        _ => return None,
    };
    let float = |tag| -> Option<f64> { obj.element(tag).ok()?.to_float64().ok() };
    let plain = int(tags::SAMPLES_PER_PIXEL).unwrap_or(1) == 1
        && int(tags::BITS_ALLOCATED) == Some(8)
        && int(tags::BITS_STORED).unwrap_or(8) == 8
        && int(tags::PIXEL_REPRESENTATION).unwrap_or(0) == 0
        && int(tags::NUMBER_OF_FRAMES).unwrap_or(1) <= 1
        && float(tags::RESCALE_SLOPE).unwrap_or(1.0) == 1.0
        && float(tags::RESCALE_INTERCEPT).unwrap_or(0.0) == 0.0
        && ![
            tags::WINDOW_CENTER,
            tags::WINDOW_WIDTH,
            tags::VOILUT_SEQUENCE,
            tags::MODALITY_LUT_SEQUENCE,
            tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE,
            tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
        ]
        .into_iter()
        .any(present);
    if !plain {
        return None;
    }
    let (cols, rows) = (int(tags::COLUMNS)?, int(tags::ROWS)?);
    let pixel_data = obj.element(tags::PIXEL_DATA).ok()?;
    let fragments = pixel_data.value().fragments()?;
    let joined;
    let frame: &[u8] = match fragments.iter().filter(|f| !f.is_empty()).count() {
        0 => return None,
        1 => fragments.iter().find(|f| !f.is_empty())?,
        _ => {
            joined = fragments.concat();
            &joined
        }
    };
    if jpeg_sof(frame)? != (cols, rows, 1, 8) {
        return None;
    }
    let (w, h) = match super::decode::decode_jpeg(frame, hint, out) {
        Ok(dims) if out.len() == dims.0 as usize * dims.1 as usize => dims,
        _ => return None,
    };
    let (lo, hi) = min_max(out);
    let (lo, scale) = stretch_of(lo as f32, hi as f32);
    let lut: [u8; 256] = std::array::from_fn(|x| {
        let v = stretch(x as f32, lo, scale);
        if invert {
            255 - v
        } else {
            v
        }
    });
    // A frame that already spans 0..=255 (most real ones) needs no pass through the table.
    if lut.iter().enumerate().any(|(x, &v)| v as usize != x) {
        for v in out.iter_mut() {
            *v = lut[*v as usize];
        }
    }
    Some((w, h, (w, h) != (cols, rows)))
}

/// The min-max stretch of values in `lo..=hi` onto 0..=255: its offset and scale (a flat
/// image, `hi - lo < 1`, is not amplified).
fn stretch_of(lo: f32, hi: f32) -> (f32, f32) {
    (lo, 255.0 / (hi - lo).max(1.0))
}

/// One value through the stretch of [`stretch_of`], rounded to 8 bits.
fn stretch(x: f32, lo: f32, scale: f32) -> u8 {
    ((x - lo) * scale).round().clamp(0.0, 255.0) as u8
}

/// The smallest and largest value of `px` ((255, 0) when empty), in 32 independent lanes so
/// that the compiler vectorises it (a fold over one (min, max) pair does not).
fn min_max(px: &[u8]) -> (u8, u8) {
    const LANES: usize = 32;
    let (mut lo, mut hi) = ([u8::MAX; LANES], [u8::MIN; LANES]);
    let mut chunks = px.chunks_exact(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            lo[i] = lo[i].min(c[i]);
            hi[i] = hi[i].max(c[i]);
        }
    }
    let rest = chunks.remainder();
    let lo = lo.iter().chain(rest).copied().min().unwrap_or(u8::MAX);
    let hi = hi.iter().chain(rest).copied().max().unwrap_or(u8::MIN);
    (lo, hi)
}

/// Any DICOM dicom-pixeldata decodes: modality LUT, first VOI window or min-max, inversion.
fn decode_general(obj: &DicomFile) -> Result<GrayImage, DecodeError> {
    let px = obj
        .decode_pixel_data_frame(0)
        .map_err(|e| dicom_decode_error(obj, e))?;
    let (w, h) = (px.columns(), px.rows());
    let spp = px.samples_per_pixel() as usize;
    // Modality LUT (rescale slope/intercept) applied, VOI left to us.
    let opts = ConvertOptions::new().with_voi_lut(VoiLutOption::Identity);
    let values: Vec<f32> = px
        .to_vec_frame_with_options(0, &opts)
        .map_err(|e| DecodeError::new("corrupt", e.to_string()))?;
    let n = w as usize * h as usize;
    if values.len() < n * spp {
        return Err(DecodeError::new(
            "corrupt",
            format!("{} samples for {w}x{h}x{spp}", values.len()),
        ));
    }
    let gray: Vec<f32> = if spp >= 3 {
        values
            .chunks_exact(spp)
            .map(|c| 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2])
            .collect()
    } else {
        values[..n].to_vec()
    };
    let window = px
        .window()
        .ok()
        .flatten()
        .and_then(|w| w.first().copied())
        .filter(|w| w.width > 1.0 && spp == 1);
    let mut out: Vec<u8> = match window {
        // DICOM PS3.3 C.11.2.1.2.1, linear function.
        Some(wl) => {
            let (c, wd) = (wl.center as f32, wl.width as f32);
            gray.iter()
                .map(|&x| {
                    let y = ((x - (c - 0.5)) / (wd - 1.0) + 0.5) * 255.0;
                    y.round().clamp(0.0, 255.0) as u8
                })
                .collect()
        }
        None => {
            let (lo, hi) = gray
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
                    (a.min(x), b.max(x))
                });
            let (lo, scale) = stretch_of(lo, hi);
            gray.iter().map(|&x| stretch(x, lo, scale)).collect()
        }
    };
    if px.photometric_interpretation().as_str() == "MONOCHROME1" {
        for v in &mut out {
            *v = 255 - *v;
        }
    }
    GrayImage::from_raw(w, h, out)
        .ok_or_else(|| DecodeError::new("corrupt", "pixel buffer size mismatch"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::{dicom, DicomEncoding};

    #[test]
    fn min_max_covers_every_lane_and_the_remainder() {
        assert_eq!(min_max(&[]), (255, 0));
        for n in [1usize, 31, 32, 33, 64, 100] {
            for at in [0, n / 2, n - 1] {
                let mut px = vec![100u8; n];
                px[at] = 3;
                px[n - 1 - at] = 200;
                let want = (*px.iter().min().unwrap(), *px.iter().max().unwrap());
                assert_eq!(min_max(&px), want, "n {n}, at {at}");
            }
        }
    }

    /// A 1024x1024 radiograph-like image (the demo's, enlarged, with fine texture), stored as
    /// RSNA stores its files (8-bit MONOCHROME2 JPEG baseline).
    fn rsna_like(photometric_inverted: bool) -> Vec<u8> {
        let small = crate::demo::synthetic_xray(11);
        let img = image::GrayImage::from_fn(1024, 1024, |x, y| {
            let base = small.get_pixel(x * 96 / 1024, y * 96 / 1024)[0] as i32;
            let texture = ((x * 7 + y * 13) % 17) as i32 - 8;
            image::Luma([(base + texture).clamp(0, 255) as u8])
        });
        let mut bytes =
            crate::demo::dicom_of(&img, 7, "p", "PA", DicomEncoding::JpegBaseline, 90).unwrap();
        if photometric_inverted {
            let at = bytes.windows(11).position(|w| w == b"MONOCHROME2").unwrap();
            bytes[at + 10] = b'1';
        }
        bytes
    }

    /// Mean absolute difference of two equally sized images, and the largest difference.
    fn difference(a: &[u8], b: &[u8]) -> (f64, u8) {
        assert_eq!(a.len(), b.len());
        let sum: u64 = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y) as u64).sum();
        let most = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap();
        (sum as f64 / a.len() as f64, most)
    }

    /// The JPEG fast path agrees with dicom-pixeldata's decode (another JPEG decoder, the
    /// general f32 path) nearly pixel for pixel, for MONOCHROME2 and MONOCHROME1, with or
    /// without a size hint (zune-jpeg decodes the frame at full size).
    #[test]
    fn the_jpeg_fast_path_matches_the_general_decode() {
        let mut upright = Vec::new();
        for inverted in [false, true] {
            let bytes = rsna_like(inverted);
            let general = decode_general(&open_dicom(&bytes).unwrap()).unwrap();
            let hint = SizeHint {
                crop_top: 0.08,
                min_side: 448,
            };
            for hint in [None, Some(hint)] {
                let mut full = Vec::new();
                let (w, h, reduced) = decode_dicom_into(&bytes, hint, &mut full).unwrap();
                assert_eq!((w, h, reduced), (1024, 1024, false));
                let (mean, most) = difference(&full, general.as_raw());
                assert!(
                    mean < 0.5 && most <= 8,
                    "inverted {inverted}: mean {mean}, largest {most}"
                );
                if inverted {
                    let flipped: Vec<u8> = upright.iter().map(|v| 255 - v).collect();
                    assert!(full == flipped, "MONOCHROME1 is MONOCHROME2 inverted");
                } else {
                    upright = full;
                }
            }
        }
    }

    /// A data set the fast path does not cover (a VOI window) still decodes, through the
    /// general path, with its window applied.
    #[test]
    fn a_windowed_jpeg_dicom_takes_the_general_path() {
        let bytes = rsna_like(false);
        let mut obj = open_dicom(&bytes).unwrap();
        use dicom_core::{DataElement, PrimitiveValue, VR};
        use dicom_dictionary_std::tags;
        obj.put(DataElement::new(
            tags::WINDOW_CENTER,
            VR::DS,
            PrimitiveValue::from("64"),
        ));
        obj.put(DataElement::new(
            tags::WINDOW_WIDTH,
            VR::DS,
            PrimitiveValue::from("64"),
        ));
        let mut windowed = Vec::new();
        obj.write_all(&mut windowed).unwrap();
        let mut out = Vec::new();
        let (w, h, reduced) = decode_dicom_into(&windowed, None, &mut out).unwrap();
        assert_eq!((w, h, reduced), (1024, 1024, false));
        let general = decode_general(&open_dicom(&windowed).unwrap()).unwrap();
        assert_eq!(&out, general.as_raw(), "the general path's bytes");
        // The window (32..96 to 0..255) saturates most of the body: not a min-max stretch.
        assert!(out.iter().filter(|&&v| v == 255).count() > out.len() / 4);
    }

    /// The byte offset of the element with tag (group, elem), explicit VR little endian.
    fn find(bytes: &[u8], group: u16, elem: u16) -> usize {
        let tag = [group.to_le_bytes(), elem.to_le_bytes()].concat();
        bytes
            .windows(4)
            .rposition(|w| w == tag.as_slice())
            .expect("tag present")
    }

    #[test]
    fn zero_rows_or_columns_are_corrupt_not_a_panic() {
        for (group, elem) in [(0x0028, 0x0010), (0x0028, 0x0011)] {
            let mut bytes = dicom(1, "p", "PA", DicomEncoding::ExplicitLittle).unwrap();
            let at = find(&bytes, group, elem);
            assert_eq!(&bytes[at + 4..at + 6], b"US");
            bytes[at + 8..at + 10].copy_from_slice(&0u16.to_le_bytes());
            let e = decode_dicom(&bytes).unwrap_err();
            assert_eq!(e.reason, "corrupt", "{e}");
            assert!(e.detail.contains("must be positive"), "{e}");
        }
    }

    #[test]
    fn an_absurd_element_length_is_corrupt_before_any_allocation() {
        for enc in [DicomEncoding::ExplicitLittle, DicomEncoding::JpegBaseline] {
            let good = dicom(2, "p", "PA", enc).unwrap();
            check_lengths(&good).unwrap();
            // The patient id's length (2 bytes, explicit VR) and the pixel data's (4 bytes).
            let mut bytes = good.clone();
            let at = find(&bytes, 0x0010, 0x0020);
            bytes[at + 6..at + 8].copy_from_slice(&0xFFF0u16.to_le_bytes());
            let e = decode_dicom(&bytes).unwrap_err();
            assert_eq!(e.reason, "corrupt", "{e}");
            assert!(e.detail.contains("(0010,0020) declares 65520 bytes"), "{e}");
            let mut bytes = good.clone();
            let at = find(&bytes, 0x7FE0, 0x0010);
            if enc == DicomEncoding::ExplicitLittle {
                bytes[at + 8..at + 12].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
            } else {
                // The first fragment item after the (empty) offset table.
                let item = at + 12 + 8;
                assert_eq!(&bytes[item..item + 4], &[0xFE, 0xFF, 0x00, 0xE0]);
                bytes[item + 4..item + 8].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
            }
            let e = decode_dicom(&bytes).unwrap_err();
            assert_eq!(e.reason, "corrupt", "{e}");
            assert!(e.detail.contains("4294967280 bytes"), "{e}");
        }
    }

    /// Found by the `decode_image` fuzz target: an unknown VR is read (as dicom-rs does) with a
    /// 4-byte length taken from the bytes after it, here 2 GB.
    #[test]
    fn an_unknown_vr_takes_a_four_byte_length() {
        let mut bytes = dicom(4, "p", "PA", DicomEncoding::ExplicitLittle).unwrap();
        let at = find(&bytes, 0x0028, 0x0103);
        assert_eq!(&bytes[at + 4..at + 10], b"US\x02\x00\x00\x00");
        assert_eq!(&bytes[at + 10..at + 14], &[0xE0, 0x7F, 0x10, 0x00]);
        bytes[at + 4..at + 6].copy_from_slice(b"ZZ");
        let e = decode_dicom(&bytes).unwrap_err();
        assert_eq!(e.reason, "corrupt", "{e}");
        assert!(
            e.detail.contains("(0028,0103) declares 2145386496 bytes"),
            "{e}"
        );
    }

    /// Found by the `decode_image` fuzz target: Rows/Columns smaller than the JPEG frame made
    /// dicom-pixeldata's JPEG adapter panic (slice out of range).
    #[test]
    fn a_jpeg_frame_larger_than_the_data_set_says_is_corrupt_not_a_panic() {
        let mut bytes = dicom(5, "p", "PA", DicomEncoding::JpegBaseline).unwrap();
        let at = find(&bytes, 0x0028, 0x0010);
        let rows = u16::from_le_bytes([bytes[at + 8], bytes[at + 9]]);
        bytes[at + 8..at + 10].copy_from_slice(&(rows - 8).to_le_bytes());
        let e = decode_dicom(&bytes).unwrap_err();
        assert_eq!(e.reason, "corrupt", "{e}");
        assert!(e.detail.contains("the JPEG frame is"), "{e}");
    }

    /// Found by the `decode_image` fuzz target: a 2-byte SL value is read by dicom-rs as zero
    /// values without consuming its bytes, which shifted the rest of the file into a header
    /// claiming 2 GB.
    #[test]
    fn a_numeric_value_of_a_partial_length_is_corrupt() {
        let mut bytes = dicom(6, "p", "PA", DicomEncoding::ExplicitLittle).unwrap();
        let at = find(&bytes, 0x0028, 0x0102);
        assert_eq!(&bytes[at + 4..at + 8], b"US\x02\x00");
        bytes[at + 4..at + 6].copy_from_slice(b"SL");
        let e = decode_dicom(&bytes).unwrap_err();
        assert_eq!(e.reason, "corrupt", "{e}");
        assert!(e.detail.contains("(0028,0102) of VR SL has 2 bytes"), "{e}");
        // The same in an implicit-VR file, where the VR comes from the dictionary.
        let mut bytes = dicom(6, "p", "PA", DicomEncoding::Implicit16).unwrap();
        let at = find(&bytes, 0x0028, 0x0010);
        bytes[at + 4..at + 8].copy_from_slice(&3u32.to_le_bytes());
        let e = decode_dicom(&bytes).unwrap_err();
        assert!(e.detail.contains("(0028,0010) of VR US has 3 bytes"), "{e}");
    }

    #[test]
    fn every_demo_encoding_passes_the_length_check() {
        for enc in [
            DicomEncoding::ExplicitLittle,
            DicomEncoding::Implicit16,
            DicomEncoding::JpegBaseline,
        ] {
            check_lengths(&dicom(3, "p", "AP", enc).unwrap()).unwrap();
        }
    }

    #[test]
    fn raw_values_of_short_input_are_an_error_not_a_panic() {
        for bytes in [&b""[..], &[0u8; 100][..], &[0u8; 131][..]] {
            assert_eq!(dicom_raw_values(bytes).unwrap_err().reason, "corrupt");
        }
    }
}
