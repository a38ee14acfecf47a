//! What the audit needs to know of one image, computed once from its decoded pixels: the file's
//! SHA-256 and the pixels' BLAKE3 hash, the perceptual hashes ([`super::phash`]), a 32x32 thumbnail, and
//! intensity statistics. The image stage records them for every record it decodes (the
//! `shard-NNNNN.images.parquet` beside each shard); the audit computes the same for records the
//! stage did not decode, with the same code, so both agree bit for bit.

use std::path::Path;

use anyhow::{bail, Result};
use image::GrayImage;
use polars::prelude::*;

use super::decode::{sniff, Format};
use super::phash;

/// Side of the thumbnail kept per image (the audit's shortcut probe reads it).
pub const THUMB: usize = 32;

/// Bins of the intensity histogram kept per image (8 grey levels each).
pub const BINS: usize = 32;

/// `covidx.format` of an image-facts table.
pub const TABLE_FORMAT: &str = "covidx-image-facts";

/// `covidx.version` of an image-facts table.
pub const TABLE_VERSION: &str = "2.0";

/// The facts of one decoded image.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageFacts {
    /// SHA-256 of the file's bytes (hex).
    pub file_sha256: String,
    /// Size of the file in bytes.
    pub file_size: u64,
    /// `png`, `jpeg` or `dicom`.
    pub format: String,
    /// Bits per sample the file stores (PNG bit depth, JPEG precision, DICOM Bits Stored; 0 when
    /// the header does not say).
    pub bit_depth: u32,
    /// Width of the decoded image.
    pub width: u32,
    /// Height of the decoded image.
    pub height: u32,
    /// BLAKE3 (hex) of the decoded 8-bit grayscale image: width and height as little-endian
    /// u32, then the pixels row by row. Equal for a re-encoded copy with the same pixels.
    /// (BLAKE3, not SHA-256: it hashes every decoded pixel, about 3.5x faster here.)
    pub pixel_blake3: String,
    /// dHash of the decoded image.
    pub dhash: u64,
    /// pHash of the decoded image.
    pub phash: u64,
    /// Mean grey level.
    pub mean: f64,
    /// Standard deviation of the grey level.
    pub std: f64,
    /// Pixels per bin of 8 grey levels.
    pub histogram: [u64; BINS],
    /// The image area-resized to 32x32 (row-major, rounded).
    pub thumbnail: Vec<u8>,
}

/// Computes the facts of a decoded image; `bytes` are the file it was decoded from, and
/// `file_sha256` its SHA-256 (hex) when the caller has taken it already (else it is computed).
///
/// The pixels are read row by row: each row, while it is in cache, feeds the histogram and
/// both perceptual-hash resizes (9x8 and 32x32). The pixel hash takes the whole buffer in one
/// call, which lets BLAKE3 hash many chunks at once (row-sized updates are ~7x slower).
pub fn of_decoded(bytes: &[u8], file_sha256: Option<String>, img: &GrayImage) -> ImageFacts {
    let (w, h) = img.dimensions();
    let (wu, hu) = (w as usize, h as usize);
    let mut hasher = blake3::Hasher::new();
    hasher.update(&w.to_le_bytes());
    hasher.update(&h.to_le_bytes());
    hasher.update(img.as_raw());
    let mut counts = Histogram::default();
    let mut small = phash::RowReducer::new(wu, THUMB, hu);
    let mut tiny = phash::RowReducer::new(wu, 9, hu);
    for row in img.as_raw().chunks_exact(wu) {
        counts.add(row);
        small.push(row);
        tiny.push(row);
    }
    let grey = counts.total();
    let n = (w as f64 * h as f64).max(1.0);
    let mean = grey
        .iter()
        .enumerate()
        .map(|(v, &c)| v as f64 * c as f64)
        .sum::<f64>()
        / n;
    let var = grey
        .iter()
        .enumerate()
        .map(|(v, &c)| (v as f64 - mean).powi(2) * c as f64)
        .sum::<f64>()
        / n;
    let mut histogram = [0u64; BINS];
    for (v, &c) in grey.iter().enumerate() {
        histogram[v * BINS / 256] += c;
    }
    let (format, bit_depth) = header(bytes);
    // One 32x32 resize serves the pHash and the thumbnail.
    let small = small.finish(THUMB);
    ImageFacts {
        file_sha256: file_sha256.unwrap_or_else(|| crate::fsutil::sha256_hex(bytes)),
        file_size: bytes.len() as u64,
        format: format.to_string(),
        bit_depth,
        width: w,
        height: h,
        pixel_blake3: hasher.finalize().to_hex().to_string(),
        dhash: phash::dhash_of_small(&tiny.finish(8)),
        phash: phash::phash_of_small(&small),
        mean,
        std: var.sqrt(),
        histogram,
        thumbnail: small
            .into_iter()
            .map(|v| v.round().clamp(0.0, 255.0) as u8)
            .collect(),
    }
}

/// Counts of the 256 grey levels, in four interleaved tables so that runs of one level do not
/// serialise on one counter.
struct Histogram([[u64; 256]; 4]);

impl Default for Histogram {
    fn default() -> Self {
        Histogram([[0; 256]; 4])
    }
}

impl Histogram {
    fn add(&mut self, px: &[u8]) {
        let [a, b, c, d] = &mut self.0;
        let mut quads = px.chunks_exact(4);
        for q in &mut quads {
            a[q[0] as usize] += 1;
            b[q[1] as usize] += 1;
            c[q[2] as usize] += 1;
            d[q[3] as usize] += 1;
        }
        for &v in quads.remainder() {
            a[v as usize] += 1;
        }
    }

    fn total(&self) -> [u64; 256] {
        std::array::from_fn(|v| self.0.iter().map(|t| t[v]).sum())
    }
}

/// The format of an image file and the bits per sample its header declares (0 when unknown).
/// A cheap look at the header only, for statistics; decoding does its own full checks.
pub fn header(bytes: &[u8]) -> (&'static str, u32) {
    match sniff(bytes) {
        Some(Format::Png) => ("png", bytes.get(24).map_or(0, |&d| d as u32)),
        Some(Format::Jpeg) => ("jpeg", super::dicom::jpeg_sof(bytes).map_or(0, |f| f.3)),
        Some(Format::Dicom) => ("dicom", dicom_bits_stored(bytes).unwrap_or(0)),
        None => ("unknown", 0),
    }
}

/// Bits Stored (0028,0101) of a little-endian DICOM file, explicit or implicit VR, looked for
/// before the pixel data element only.
fn dicom_bits_stored(bytes: &[u8]) -> Option<u32> {
    let end = memchr::memmem::find(bytes, &[0xE0, 0x7F, 0x10, 0x00]).unwrap_or(bytes.len());
    let head = &bytes[..end];
    let at = memchr::memmem::find(head, &[0x28, 0x00, 0x01, 0x01])?;
    // Explicit VR: "US" and a 2-byte length; implicit VR: a 4-byte length. Either way the
    // value starts 8 bytes after the tag.
    let value = head.get(at + 8..at + 10)?;
    Some(u16::from_le_bytes([value[0], value[1]]) as u32)
}

/// The bytes of an image-facts table (Parquet): one row per record, in the order given, with
/// columns `record`, `file_sha256`, `file_size`, `format`, `bit_depth`, `width`, `height`,
/// `pixel_blake3`, `dhash`, `phash`, `mean`, `std`, `hist_00`..`hist_31`, `thumbnail`.
pub fn table_bytes(rows: &[(u64, ImageFacts)]) -> Result<Vec<u8>> {
    let col = |name: &str, v: Series| v.with_name(name.into()).into_column();
    let u64s = |f: fn(&ImageFacts) -> u64| -> Series {
        Series::new(
            "".into(),
            rows.iter().map(|(_, x)| f(x)).collect::<Vec<_>>(),
        )
    };
    let u32s = |f: fn(&ImageFacts) -> u32| -> Series {
        Series::new(
            "".into(),
            rows.iter().map(|(_, x)| f(x)).collect::<Vec<_>>(),
        )
    };
    let strs = |f: fn(&ImageFacts) -> &str| -> Series {
        Series::new(
            "".into(),
            rows.iter().map(|(_, x)| f(x)).collect::<Vec<_>>(),
        )
    };
    let f64s = |f: fn(&ImageFacts) -> f64| -> Series {
        Series::new(
            "".into(),
            rows.iter().map(|(_, x)| f(x)).collect::<Vec<_>>(),
        )
    };
    let mut columns = vec![
        col(
            "record",
            Series::new("".into(), rows.iter().map(|r| r.0).collect::<Vec<_>>()),
        ),
        col("file_sha256", strs(|x| &x.file_sha256)),
        col("file_size", u64s(|x| x.file_size)),
        col("format", strs(|x| &x.format)),
        col("bit_depth", u32s(|x| x.bit_depth)),
        col("width", u32s(|x| x.width)),
        col("height", u32s(|x| x.height)),
        col("pixel_blake3", strs(|x| &x.pixel_blake3)),
        col("dhash", u64s(|x| x.dhash)),
        col("phash", u64s(|x| x.phash)),
        col("mean", f64s(|x| x.mean)),
        col("std", f64s(|x| x.std)),
    ];
    for b in 0..BINS {
        let v: Vec<u64> = rows.iter().map(|(_, x)| x.histogram[b]).collect();
        columns.push(col(&format!("hist_{b:02}"), Series::new("".into(), v)));
    }
    let thumbs: Vec<&[u8]> = rows.iter().map(|(_, x)| x.thumbnail.as_slice()).collect();
    columns.push(col("thumbnail", Series::new("".into(), thumbs)));
    let df = DataFrame::new(rows.len(), columns)?;
    crate::manifest::parquet_bytes(&df, TABLE_FORMAT, TABLE_VERSION)
}

/// Reads an image-facts table written by [`table_bytes`]; errors name the file and column.
pub fn read_table(path: &Path) -> Result<Vec<(u64, ImageFacts)>> {
    let df = crate::manifest::read_table(path, TABLE_FORMAT, TABLE_VERSION)?;
    let file = path.display().to_string();
    let c = crate::manifest::Columns::new(&df, &file);
    let hists: Vec<Vec<u64>> = (0..BINS)
        .map(|b| c.u64s(&format!("hist_{b:02}")))
        .collect::<Result<_>>()?;
    let thumbs = c.binaries("thumbnail")?;
    if let Some(t) = thumbs.iter().find(|t| t.len() != THUMB * THUMB) {
        bail!(
            "{file}: a thumbnail of {} bytes, not {}",
            t.len(),
            THUMB * THUMB
        );
    }
    let (record, file_sha, size, format) = (
        c.u64s("record")?,
        c.strings("file_sha256")?,
        c.u64s("file_size")?,
        c.strings("format")?,
    );
    let (bits, width, height, pixel) = (
        c.u32s("bit_depth")?,
        c.u32s("width")?,
        c.u32s("height")?,
        c.strings("pixel_blake3")?,
    );
    let (dh, ph, mean, std) = (
        c.u64s("dhash")?,
        c.u64s("phash")?,
        c.f64s("mean")?,
        c.f64s("std")?,
    );
    Ok((0..c.height())
        .map(|i| {
            (
                record[i],
                ImageFacts {
                    file_sha256: file_sha[i].clone(),
                    file_size: size[i],
                    format: format[i].clone(),
                    bit_depth: bits[i],
                    width: width[i],
                    height: height[i],
                    pixel_blake3: pixel[i].clone(),
                    dhash: dh[i],
                    phash: ph[i],
                    mean: mean[i],
                    std: std[i],
                    histogram: std::array::from_fn(|b| hists[b][i]),
                    thumbnail: thumbs[i].clone(),
                },
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_of_a_small_image() {
        let img = GrayImage::from_fn(64, 48, |x, y| image::Luma([((x + y) * 2) as u8]));
        let mut png = Vec::new();
        image::DynamicImage::ImageLuma8(img.clone())
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let f = of_decoded(&png, None, &img);
        assert_eq!((f.format.as_str(), f.bit_depth), ("png", 8));
        assert_eq!((f.width, f.height, f.file_size), (64, 48, png.len() as u64));
        assert_eq!(f.histogram.iter().sum::<u64>(), 64 * 48);

        // Mean of 2(x + y) over the grid: 2 * (31.5 + 23.5).
        assert!((f.mean - 110.0).abs() < 1e-9, "{}", f.mean);
        assert_eq!(f.thumbnail.len(), THUMB * THUMB);
        // The same pixels in other bytes: the pixel hash is equal, the file hash is not.
        let g = of_decoded(b"other bytes", None, &img);
        assert_eq!(g.pixel_blake3, f.pixel_blake3);
        assert_ne!(g.file_sha256, f.file_sha256);
        // The pixel hash covers the shape: the same bytes in another shape differ.
        let flat = GrayImage::from_raw(48, 64, img.as_raw().clone()).unwrap();
        assert_ne!(of_decoded(&png, None, &flat).pixel_blake3, f.pixel_blake3);
        // The table keeps every field.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.parquet");
        std::fs::write(&p, table_bytes(&[(7, f.clone()), (9, g.clone())]).unwrap()).unwrap();
        assert_eq!(read_table(&p).unwrap(), vec![(7, f), (9, g)]);
    }

    #[test]
    fn one_pass_scan_agrees_with_the_reference_pieces() {
        // imageproc's histogram, and the standalone resizes and hashes; odd sizes exercise the
        // histogram's remainder and partial resize spans.
        for (w, h) in [(64u32, 48u32), (37, 23), (3, 1), (300, 7)] {
            let img = GrayImage::from_fn(w, h, |x, y| {
                image::Luma([((x * 7 + y * 13 + x * y) % 251) as u8])
            });
            let f = of_decoded(b"x", None, &img);
            let reference = imageproc::stats::histogram(&img).channels[0];
            let mut bins = [0u64; BINS];
            for (v, &c) in reference.iter().enumerate() {
                bins[v * BINS / 256] += c as u64;
            }
            assert_eq!(f.histogram, bins, "{w}x{h}");
            let (wu, hu) = (w as usize, h as usize);
            assert_eq!(f.dhash, phash::dhash(img.as_raw(), wu, hu), "{w}x{h}");
            assert_eq!(f.phash, phash::phash(img.as_raw(), wu, hu), "{w}x{h}");
            let thumb: Vec<u8> = phash::area_resize(img.as_raw(), wu, hu, THUMB, THUMB)
                .into_iter()
                .map(|v| v.round().clamp(0.0, 255.0) as u8)
                .collect();
            assert_eq!(f.thumbnail, thumb, "{w}x{h}");
            let mut whole = Vec::from(w.to_le_bytes());
            whole.extend(h.to_le_bytes());
            whole.extend(img.as_raw());
            assert_eq!(
                f.pixel_blake3,
                blake3::hash(&whole).to_hex().as_str(),
                "{w}x{h}"
            );
        }
    }

    #[test]
    fn dicom_bits_stored_is_read_from_the_header() {
        use crate::demo::{dicom, DicomEncoding::*};
        for (enc, want) in [(ExplicitLittle, 8), (Implicit16, 12), (JpegBaseline, 8)] {
            let bytes = dicom(3, "p", "AP", enc).unwrap();
            assert_eq!(header(&bytes), ("dicom", want), "{enc:?}");
        }
    }
}
