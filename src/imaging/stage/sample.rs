//! Sample generation: one record's image decoded into per-thread buffers and turned into its
//! clean copy and its augmented copies, every random choice drawn from (seed, record, copy).

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::config::ImagesConfig;
use crate::imaging::augment::{self, Params};
use image::GrayImage;

use crate::imaging::decode::{
    decode_scaled_into, fit, read_image, release_if_large, DecodeError, SizeHint,
};
use crate::imaging::facts::ImageFacts;
use crate::imaging::preprocess::{crop_square, resize_region_into, Square};
use crate::record::Record;

/// One output sample: its record, copy and augmentation parameters.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Manifest row.
    pub record: usize,
    /// Copy index (0 = clean).
    pub copy: u32,
    /// Parameters used.
    pub params: Params,
}

/// Key that names a record for random draws: stable across manifest order.
pub fn record_key(r: &Record) -> String {
    format!("{}:{}", r.source, r.path)
}

/// A seeded rank of (record key, copy), for the shuffles of the shard plan.
pub(crate) fn rank(seed: u64, key: &str, copy: u32) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"shuffle");
    h.update(seed.to_le_bytes());
    h.update(key.as_bytes());
    h.update(copy.to_le_bytes());
    h.finalize().into()
}

/// The parameters of copy `copy` of the record with key `key` (identity for copy 0).
pub fn params_of(cfg: &ImagesConfig, seed: u64, key: &str, copy: u32) -> Params {
    if copy == 0 {
        Params::IDENTITY
    } else {
        augment::sample(&cfg.augment, seed, key, copy)
    }
}

/// Every sample of one record: (copy, parameters, `S*S` pixels).
pub type Outputs = Vec<(u32, Params, Vec<u8>)>;

/// Reads and decodes the image at `path` and produces its clean copy and `copies` augmented
/// copies (a convenience over [`process_bytes`], used to regenerate a listed sample).
pub fn process(
    path: &Path,
    cfg: &ImagesConfig,
    seed: u64,
    key: &str,
    copies: u32,
) -> Result<Outputs, DecodeError> {
    let bytes = read_image(path)?;
    let mut out = Vec::with_capacity(1 + copies as usize);
    let draw = Draw { seed, key, copies };
    process_bytes(&bytes, path, cfg, draw, Facts::Skip, &mut |c, p, px| {
        out.push((c, p, px.to_vec()))
    })?;
    Ok(out)
}

/// Whether [`process_bytes`] also computes the image's [`ImageFacts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Facts<'a> {
    /// No facts.
    Skip,
    /// Facts, with the file's SHA-256 (hex) when the caller has taken it already.
    Compute(Option<&'a str>),
}

/// The random draws of one record: the pipeline seed, the record's key and its copy count.
#[derive(Debug, Clone, Copy)]
pub struct Draw<'a> {
    /// Pipeline seed.
    pub seed: u64,
    /// Record key ([`record_key`]).
    pub key: &'a str,
    /// Augmented copies.
    pub copies: u32,
}

/// Decodes `bytes` (the image file at `path`) and hands each sample (copy, parameters, `S*S`
/// pixels) to `emit` from per-thread buffers, so no buffer is allocated or cleared per image.
/// Samples are emitted only once the image has decoded: an error means none was. With
/// [`Facts::Compute`], also returns the image's [`ImageFacts`] from the same decode (`None` when the
/// decode was reduced in size, whose pixels are not the full image's).
pub fn process_bytes(
    bytes: &[u8],
    path: &Path,
    cfg: &ImagesConfig,
    draw: Draw<'_>,
    facts: Facts<'_>,
    emit: &mut dyn FnMut(u32, Params, &[u8]),
) -> Result<Option<ImageFacts>, DecodeError> {
    SCRATCH.with_borrow_mut(|scratch| {
        let result = scratch.samples(bytes, path, cfg, draw, facts, emit);
        for buf in [
            &mut scratch.decoded,
            &mut scratch.level,
            &mut scratch.sample,
        ] {
            release_if_large(buf);
        }
        result
    })
}

/// Per-thread image buffers, reused across records.
#[derive(Default)]
struct Scratch {
    decoded: Vec<u8>,
    level: Vec<u8>,
    sample: Vec<u8>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// A borrowed grayscale image.
type View<'a> = image::ImageBuffer<image::Luma<u8>, &'a [u8]>;

impl Scratch {
    /// Decodes `bytes` and emits the clean copy and the augmented copies of (seed, key,
    /// copies) (see [`process_bytes`]).
    fn samples(
        &mut self,
        bytes: &[u8],
        path: &Path,
        cfg: &ImagesConfig,
        Draw { seed, key, copies }: Draw<'_>,
        facts: Facts<'_>,
        emit: &mut dyn FnMut(u32, Params, &[u8]),
    ) -> Result<Option<ImageFacts>, DecodeError> {
        // The clean copy needs S pixels across the crop, augmented copies a level of up to 2S.
        let hint = SizeHint {
            crop_top: cfg.crop_top,
            min_side: if copies > 0 { 2 * cfg.size } else { cfg.size },
        };
        let d = decode_scaled_into(bytes, path, Some(hint), &mut self.decoded)?;
        let (w, h) = (d.width, d.height);
        // Image facts describe the full-size image: a reduced decode leaves them to the audit.
        let known_sha = match facts {
            Facts::Compute(sha) if !d.reduced => Some(sha),
            _ => None,
        };
        let facts = known_sha.map(|sha| {
            let img =
                GrayImage::from_raw(w, h, std::mem::take(&mut self.decoded)).expect("decoded size");
            let f = crate::imaging::facts::of_decoded(bytes, sha.map(str::to_string), &img);
            self.decoded = img.into_raw();
            f
        });
        let img = View::from_raw(w, h, &self.decoded[..]).expect("decoded size");
        let mut resizer = fast_image_resize::Resizer::new();
        let square = crop_square(w, h, cfg.crop_top);
        let s = cfg.size;
        let sample = &mut self.sample;
        fit(sample, s as usize * s as usize);
        if copies == 0 {
            resize_region_into(&mut resizer, &img, square, s, sample);
            emit(0, Params::IDENTITY, sample);
            return Ok(facts);
        }
        // One prefiltered level of at most 2S: the clean copy is resized from it, and every
        // augmented copy is one warp from it straight to S (never a full-size warp).
        let side = square.side.min(2 * s);
        let level = &mut self.level;
        fit(level, side as usize * side as usize);
        resize_region_into(&mut resizer, &img, square, side, level);
        if side == s {
            emit(0, Params::IDENTITY, level);
        } else {
            let level_img = View::from_raw(side, side, &level[..]).expect("square level");
            let whole = Square { x: 0, y: 0, side };
            resize_region_into(&mut resizer, &level_img, whole, s, sample);
            emit(0, Params::IDENTITY, sample);
        }
        let a = &cfg.augment;
        for c in 1..=copies {
            let p = augment::sample(a, seed, key, c);
            augment::warp_into(level, side, s, &p, a.fill, a.fill_value, sample);
            emit(c, p, sample);
        }
        Ok(facts)
    }
}
