//! Deterministic augmentation: parameters drawn from (seed, record, copy) only, and one fused
//! bilinear warp (rotation, zoom, translation, flip) from the source level straight to S×S,
//! then multiplicative brightness and additive intensity shift.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Augmentation ranges (COVID-Net's Keras ImageDataGenerator settings by default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    /// Rotation range, degrees (uniform in ±rotation).
    pub rotation: f32,
    /// Horizontal translation range, fraction of the side.
    pub shift_x: f32,
    /// Vertical translation range, fraction of the side.
    pub shift_y: f32,
    /// Horizontal zoom range [min, max].
    pub zoom_x: [f32; 2],
    /// Vertical zoom range [min, max].
    pub zoom_y: [f32; 2],
    /// Probability of a horizontal flip.
    pub flip: f32,
    /// Multiplicative brightness range [min, max].
    pub brightness: [f32; 2],
    /// Additive intensity shift range, in fractions of 255 (uniform in ±shift).
    pub intensity_shift: f32,
    /// Fill outside the source: `constant` (with `fill_value`) or `edge` (nearest border pixel).
    pub fill: Fill,
    /// Value of the constant fill.
    pub fill_value: u8,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            rotation: 10.0,
            shift_x: 0.1,
            shift_y: 0.1,
            zoom_x: [0.85, 1.15],
            zoom_y: [0.85, 1.15],
            flip: 0.5,
            brightness: [0.9, 1.1],
            intensity_shift: 0.0,
            fill: Fill::Constant,
            fill_value: 0,
        }
    }
}

/// How pixels mapped from outside the source are filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fill {
    /// A constant value.
    Constant,
    /// The nearest edge pixel.
    Edge,
}

/// The parameters of one augmented copy (written to `augment.parquet`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Rotation, degrees, counter-clockwise as displayed.
    pub angle: f32,
    /// Translation, fraction of the side (positive: right).
    pub tx: f32,
    /// Translation, fraction of the side (positive: down).
    pub ty: f32,
    /// Horizontal zoom (>1 enlarges).
    pub zx: f32,
    /// Vertical zoom.
    pub zy: f32,
    /// Horizontal flip.
    pub flip: bool,
    /// Brightness gain.
    pub gain: f32,
    /// Additive shift, in grey levels.
    pub shift: f32,
}

impl Params {
    /// The identity (copy 0, test records).
    pub const IDENTITY: Params = Params {
        angle: 0.0,
        tx: 0.0,
        ty: 0.0,
        zx: 1.0,
        zy: 1.0,
        flip: false,
        gain: 1.0,
        shift: 0.0,
    };
}

/// SplitMix64 seeded from SHA-256 of (seed, record key, copy): the only source of randomness.
pub struct Rng(u64);

impl Rng {
    /// A generator for one (seed, record, copy).
    pub fn new(seed: u64, record: &str, copy: u32) -> Rng {
        let mut h = Sha256::new();
        h.update(seed.to_le_bytes());
        h.update((record.len() as u64).to_le_bytes());
        h.update(record.as_bytes());
        h.update(copy.to_le_bytes());
        let d = h.finalize();
        Rng(u64::from_le_bytes(d[..8].try_into().unwrap()))
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }
}

/// Draws the parameters of `copy` (≥ 1) of `record`.
pub fn sample(cfg: &AugmentConfig, seed: u64, record: &str, copy: u32) -> Params {
    let mut r = Rng::new(seed, record, copy);
    Params {
        angle: r.uniform(-cfg.rotation, cfg.rotation),
        tx: r.uniform(-cfg.shift_x, cfg.shift_x),
        ty: r.uniform(-cfg.shift_y, cfg.shift_y),
        zx: r.uniform(cfg.zoom_x[0], cfg.zoom_x[1]),
        zy: r.uniform(cfg.zoom_y[0], cfg.zoom_y[1]),
        flip: r.uniform(0.0, 1.0) < cfg.flip,
        gain: r.uniform(cfg.brightness[0], cfg.brightness[1]),
        shift: r.uniform(-cfg.intensity_shift, cfg.intensity_shift) * 255.0,
    }
}

/// One interior bilinear sample at fixed-point source position (`x`, `y`), 16 fractional bits,
/// with gain (already divided by 2^16) and shift (+ 0.5 for rounding) applied.
///
/// # Safety
/// `0 <= x, y < (n - 1) << 16` and `src.len() == n * n`.
#[inline(always)]
unsafe fn blend(src: &[u8], n: usize, x: i64, y: i64, gain: f32, shift: f32) -> u8 {
    let (x0, y0) = ((x >> 16) as usize, (y >> 16) as usize);
    let (fx, fy) = (((x >> 8) & 255) as u32, ((y >> 8) & 255) as u32);
    let i = y0 * n + x0;
    debug_assert!(x0 + 1 < n && y0 + 1 < n);
    // SAFETY: x0, y0 < n - 1 (caller), so i + n + 1 < n * n = src.len().
    let (a, b, c, d) = unsafe {
        (
            *src.get_unchecked(i) as u32,
            *src.get_unchecked(i + 1) as u32,
            *src.get_unchecked(i + n) as u32,
            *src.get_unchecked(i + n + 1) as u32,
        )
    };
    let top = a * (256 - fx) + b * fx;
    let bottom = c * (256 - fx) + d * fx;
    let value = top * (256 - fy) + bottom * fy;
    (value as f32 * gain + shift).clamp(0.0, 255.0) as u8
}

/// Interior columns `lo..hi` of one output row, eight at a time with AVX2 gathers; the same
/// integer blend and f32 gain/shift as [`blend`] (no FMA), so the bytes are identical. Returns
/// the first column left to the scalar loop (fewer than eight remain).
///
/// # Safety
/// AVX2 must be available; `src.len() == n * n`, `n >= 3`, and every column in `lo..hi` maps
/// to an interior position (`0 <= x, y < (n - 1) << 16`, so coordinates fit in i32).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn interior_avx2(
    src: &[u8],
    n: usize,
    row: &mut [u8],
    lo: usize,
    hi: usize,
    [bx, ax, by, ay]: [i64; 4],
    gain: f32,
    shift: f32,
) -> usize {
    use std::arch::x86_64::*;
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let (vax, vay) = (
        _mm256_mullo_epi32(lanes, _mm256_set1_epi32(ax as i32)),
        _mm256_mullo_epi32(lanes, _mm256_set1_epi32(ay as i32)),
    );
    let (vn, byte, full) = (
        _mm256_set1_epi32(n as i32),
        _mm256_set1_epi32(255),
        _mm256_set1_epi32(256),
    );
    let (vgain, vshift, zero, max) = (
        _mm256_set1_ps(gain),
        _mm256_set1_ps(shift),
        _mm256_setzero_ps(),
        _mm256_set1_ps(255.0),
    );
    let base = src.as_ptr() as *const i32;
    // The gathers read 4 bytes at i and at i + n: safe while y0 <= n - 3.
    let safe_row = (n as i64 - 3) << 16 | 0xFFFF;
    let mut u = lo;
    while u + 8 <= hi {
        let (x, y) = (bx + ax * u as i64, by + ay * u as i64);
        let y7 = y + 7 * ay;
        if y.max(y7) > safe_row {
            for (k, px) in row.iter_mut().enumerate().skip(u).take(8) {
                // SAFETY: interior column (caller).
                *px = unsafe { blend(src, n, bx + ax * k as i64, by + ay * k as i64, gain, shift) };
            }
            u += 8;
            continue;
        }
        let xs = _mm256_add_epi32(_mm256_set1_epi32(x as i32), vax);
        let ys = _mm256_add_epi32(_mm256_set1_epi32(y as i32), vay);
        let (x0, y0) = (_mm256_srai_epi32(xs, 16), _mm256_srai_epi32(ys, 16));
        let fx = _mm256_and_si256(_mm256_srai_epi32(xs, 8), byte);
        let fy = _mm256_and_si256(_mm256_srai_epi32(ys, 8), byte);
        let i = _mm256_add_epi32(_mm256_mullo_epi32(y0, vn), x0);
        // SAFETY: i + n + 3 < n * n while y0 <= n - 3 and x0 < n - 1.
        let top = unsafe { _mm256_i32gather_epi32::<1>(base, i) };
        let bot = unsafe { _mm256_i32gather_epi32::<1>(base, _mm256_add_epi32(i, vn)) };
        let (a, b) = (
            _mm256_and_si256(top, byte),
            _mm256_and_si256(_mm256_srli_epi32(top, 8), byte),
        );
        let (c, d) = (
            _mm256_and_si256(bot, byte),
            _mm256_and_si256(_mm256_srli_epi32(bot, 8), byte),
        );
        let gx = _mm256_sub_epi32(full, fx);
        let t = _mm256_add_epi32(_mm256_mullo_epi32(a, gx), _mm256_mullo_epi32(b, fx));
        let bt = _mm256_add_epi32(_mm256_mullo_epi32(c, gx), _mm256_mullo_epi32(d, fx));
        let v = _mm256_add_epi32(
            _mm256_mullo_epi32(t, _mm256_sub_epi32(full, fy)),
            _mm256_mullo_epi32(bt, fy),
        );
        let f = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(v), vgain), vshift);
        let q = _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(f, zero), max));
        let mut out = [0i32; 8];
        // SAFETY: `out` holds eight i32.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, q) };
        for (px, v) in row[u..u + 8].iter_mut().zip(out) {
            *px = v as u8;
        }
        u += 8;
    }
    u
}

/// The columns `u` in `0..o` with `0 <= b + a * u < limit`, as a range `lo..hi` (empty when
/// `lo >= hi`).
fn span(b: i64, a: i64, limit: i64, o: usize) -> (usize, usize) {
    let o = o as i64;
    let (lo, hi) = match a.signum() {
        0 => {
            if (0..limit).contains(&b) {
                (0, o)
            } else {
                (0, 0)
            }
        }
        // u >= ceil(-b / a) and u < ceil((limit - b) / a).
        1 => (
            (-b).div_euclid(a) + i64::from((-b).rem_euclid(a) != 0),
            (limit - b).div_euclid(a) + i64::from((limit - b).rem_euclid(a) != 0),
        ),
        // u <= floor(b / -a) and u > floor((b - limit) / -a).
        _ => ((b - limit).div_euclid(-a) + 1, b.div_euclid(-a) + 1),
    };
    (lo.clamp(0, o) as usize, hi.clamp(0, o) as usize)
}

/// Warps a `src_side`² source level to `out`² in one bilinear pass: output pixel centres are
/// mapped through the inverse of (scale to output, zoom, rotate about the centre, translate,
/// flip) into the source, then brightness and shift are applied.
pub fn warp(
    src: &[u8],
    src_side: u32,
    out: u32,
    p: &Params,
    fill: Fill,
    fill_value: u8,
) -> Vec<u8> {
    let mut dst = vec![0u8; out as usize * out as usize];
    warp_into(src, src_side, out, p, fill, fill_value, &mut dst);
    dst
}

/// [`warp`] into `dst` (`out * out` bytes, every one written).
pub fn warp_into(
    src: &[u8],
    src_side: u32,
    out: u32,
    p: &Params,
    fill: Fill,
    fill_value: u8,
    dst: &mut [u8],
) {
    warp_with(src, src_side, out, p, fill, fill_value, true, dst)
}

/// [`warp_into`], with the AVX2 path for interior pixels allowed or not (both give the same
/// bytes).
#[allow(clippy::too_many_arguments)]
fn warp_with(
    src: &[u8],
    src_side: u32,
    out: u32,
    p: &Params,
    fill: Fill,
    fill_value: u8,
    simd: bool,
    dst: &mut [u8],
) {
    let n = src_side as usize;
    assert_eq!(src.len(), n * n);
    let o = out as usize;
    assert_eq!(dst.len(), o * o);
    let map = RowMap::new(src_side, out, p);
    let (inner, gain, shift) = (map.inner, map.gain, map.shift);
    for (v, row) in dst.chunks_exact_mut(o).enumerate() {
        let [bx, ax, by, ay] = map.row(v);
        // Columns whose 2x2 neighbourhood lies inside the source: no bounds checks there.
        let (xl, xh) = span(bx, ax, inner, o);
        let (yl, yh) = span(by, ay, inner, o);
        let (lo, hi) = (xl.max(yl), xh.min(yh).max(xl.max(yl)));
        let mut u = lo;
        #[cfg(target_arch = "x86_64")]
        if simd && n >= 3 && std::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present; every column in lo..hi is interior (see `span`).
            u = unsafe { interior_avx2(src, n, row, lo, hi, [bx, ax, by, ay], gain, shift) };
        }
        for (u, px) in row.iter_mut().enumerate().take(hi).skip(u) {
            // SAFETY: `span` keeps columns in lo..hi interior.
            *px = unsafe { blend(src, n, bx + ax * u as i64, by + ay * u as i64, gain, shift) };
        }
        for u in (0..lo).chain(hi..o) {
            let (x, y) = (bx + ax * u as i64, by + ay * u as i64);
            row[u] = map.border(src, n, x, y, fill, fill_value);
        }
    }
}

/// Where output pixels come from in the source level: per output row, the fixed-point
/// (16 fractional bits) source position of column 0 and its step per column.
struct RowMap {
    a: [f32; 4],
    /// Output centre, output side, source/output scale, translation in output pixels.
    c: f32,
    o: usize,
    scale: f32,
    t: (f32, f32),
    flip: bool,
    /// `(n - 1) << 16`: positions below it have a 2x2 neighbourhood inside the source.
    inner: i64,
    /// Gain over 2^16 and shift + 0.5 (truncation then rounds half up).
    gain: f32,
    shift: f32,
}

impl RowMap {
    fn new(src_side: u32, out: u32, p: &Params) -> RowMap {
        let s = out as f32;
        let scale = src_side as f32 / s;
        let (sin, cos) = p.angle.to_radians().sin_cos();
        // dst = R Z (src - c) + c + t  (image coordinates, y down, positive angle
        // counter-clockwise as displayed, R = [[cos, sin], [-sin, cos]])
        // => src = Z^-1 R^T (dst - c - t) + c, then scaled to the source level. Source
        // coordinates are affine in the output column.
        RowMap {
            a: [
                cos / p.zx * scale,
                -sin / p.zx * scale,
                sin / p.zy * scale,
                cos / p.zy * scale,
            ],
            c: s / 2.0,
            o: out as usize,
            scale,
            t: (p.tx * s, p.ty * s),
            flip: p.flip,
            inner: (src_side as i64 - 1) << 16,
            gain: p.gain / 65536.0,
            shift: p.shift + 0.5,
        }
    }

    /// `[bx, ax, by, ay]`: column u of row `v` samples (bx + ax u, by + ay u).
    fn row(&self, v: usize) -> [i64; 4] {
        const ONE: f32 = 65536.0;
        let [a00, a01, a10, a11] = self.a;
        let (c, (tx, ty)) = (self.c, self.t);
        let dy = v as f32 + 0.5 - c - ty;
        // Column u samples output column uu = u (or o-1-u when flipped): sx = bx + ax * uu.
        let mut bx = a00 * (0.5 - c - tx) + a01 * dy + c * self.scale - 0.5;
        let mut by = a10 * (0.5 - c - tx) + a11 * dy + c * self.scale - 0.5;
        let (mut ax, mut ay) = (a00, a10);
        if self.flip {
            bx += ax * (self.o - 1) as f32;
            by += ay * (self.o - 1) as f32;
            ax = -ax;
            ay = -ay;
        }
        [bx, ax, by, ay].map(|v| (v * ONE).round() as i64)
    }

    /// A sample at or past the border: within half a pixel of it the edge is clamped (edge
    /// behaviour); beyond it, `fill`.
    fn border(&self, src: &[u8], n: usize, x: i64, y: i64, fill: Fill, fill_value: u8) -> u8 {
        let (inner, half) = (self.inner, 1i64 << 15);
        let outside = x < -half || y < -half || x > inner + half || y > inner + half;
        if outside && fill == Fill::Constant {
            return fill_value;
        }
        let cx = x.clamp(0, inner);
        let cy = y.clamp(0, inner);
        let (x0, y0) = ((cx >> 16) as usize, (cy >> 16) as usize);
        let (x1, y1) = ((x0 + 1).min(n - 1), (y0 + 1).min(n - 1));
        let (fx, fy) = (((cx >> 8) & 255) as u32, ((cy >> 8) & 255) as u32);
        let at = |xx: usize, yy: usize| src[yy * n + xx] as u32;
        let top = at(x0, y0) * (256 - fx) + at(x1, y0) * fx;
        let bottom = at(x0, y1) * (256 - fx) + at(x1, y1) * fx;
        let value = top * (256 - fy) + bottom * fy;
        (value as f32 * self.gain + self.shift).clamp(0.0, 255.0) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(n: u32) -> Vec<u8> {
        (0..n * n)
            .map(|i| ((i % n) * 3 + (i / n) * 5 % 200) as u8)
            .collect()
    }

    /// The straightforward per-pixel warp that [`warp`] must equal byte for byte: every pixel
    /// tests whether it is interior and reads its neighbours with bounds checks (no spans, no
    /// SIMD).
    fn warp_reference(
        src: &[u8],
        src_side: u32,
        out: u32,
        p: &Params,
        fill: Fill,
        fill_value: u8,
    ) -> Vec<u8> {
        let (n, o) = (src_side as usize, out as usize);
        let map = RowMap::new(src_side, out, p);
        let mut dst = vec![0u8; o * o];
        for (v, row) in dst.chunks_exact_mut(o).enumerate() {
            let [bx, ax, by, ay] = map.row(v);
            for (u, px) in row.iter_mut().enumerate() {
                let (x, y) = (bx + ax * u as i64, by + ay * u as i64);
                *px = if x >= 0 && y >= 0 && x < map.inner && y < map.inner {
                    let (x0, y0) = ((x >> 16) as usize, (y >> 16) as usize);
                    let (fx, fy) = (((x >> 8) & 255) as u32, ((y >> 8) & 255) as u32);
                    let at = |xx: usize, yy: usize| src[yy * n + xx] as u32;
                    let top = at(x0, y0) * (256 - fx) + at(x0 + 1, y0) * fx;
                    let bottom = at(x0, y0 + 1) * (256 - fx) + at(x0 + 1, y0 + 1) * fx;
                    let value = top * (256 - fy) + bottom * fy;
                    (value as f32 * map.gain + map.shift).clamp(0.0, 255.0) as u8
                } else {
                    map.border(src, n, x, y, fill, fill_value)
                };
            }
        }
        dst
    }

    proptest::proptest! {
        #[test]
        fn warp_equals_the_per_pixel_reference(
            angle in -180.0f32..180.0,
            tx in -1.2f32..1.2,
            ty in -1.2f32..1.2,
            zx in 0.3f32..3.0,
            zy in 0.3f32..3.0,
            flip: bool,
            edge: bool,
            gain in 0.5f32..1.5,
            shift in -20.0f32..20.0,
            side in 2u32..70,
            out in 1u32..70,
        ) {
            let src: Vec<u8> = (0..side * side).map(|i| (i * 37 % 251) as u8).collect();
            let p = Params { angle, tx, ty, zx, zy, flip, gain, shift };
            let fill = if edge { Fill::Edge } else { Fill::Constant };
            let reference = warp_reference(&src, side, out, &p, fill, 3);
            for simd in [false, true] {
                // Stale bytes in `dst` must not show through.
                let mut dst = vec![0xA5; (out * out) as usize];
                warp_with(&src, side, out, &p, fill, 3, simd, &mut dst);
                proptest::prop_assert_eq!(&dst, &reference);
            }
        }
    }

    #[test]
    fn identity_warp_is_exact_and_flip_twice_is_identity() {
        let img = ramp(32);
        assert_eq!(
            warp(&img, 32, 32, &Params::IDENTITY, Fill::Constant, 0),
            img
        );
        let flip = Params {
            flip: true,
            ..Params::IDENTITY
        };
        let once = warp(&img, 32, 32, &flip, Fill::Constant, 0);
        assert_ne!(once, img);
        assert_eq!(warp(&once, 32, 32, &flip, Fill::Constant, 0), img);
    }

    #[test]
    fn translation_moves_a_bright_dot_by_the_expected_pixels() {
        let mut img = vec![0u8; 64 * 64];
        img[20 * 64 + 10] = 255;
        let p = Params {
            tx: 5.0 / 64.0,
            ty: -3.0 / 64.0,
            ..Params::IDENTITY
        };
        let out = warp(&img, 64, 64, &p, Fill::Constant, 0);
        let at = out.iter().position(|&v| v == 255).unwrap();
        assert_eq!((at % 64, at / 64), (15, 17));
    }

    #[test]
    fn rotation_there_and_back_restores_the_interior() {
        let img: Vec<u8> = (0..64 * 64)
            .map(|i| {
                (128.0 + 60.0 * ((i % 64) as f32 / 9.0).sin() * ((i / 64) as f32 / 7.0).cos()) as u8
            })
            .collect();
        let p = Params {
            angle: 8.0,
            ..Params::IDENTITY
        };
        let back = Params {
            angle: -8.0,
            ..Params::IDENTITY
        };
        let once = warp(&img, 64, 64, &p, Fill::Constant, 0);
        let twice = warp(&once, 64, 64, &back, Fill::Constant, 0);
        let mut worst = 0i32;
        for y in 16..48 {
            for x in 16..48 {
                worst = worst.max((twice[y * 64 + x] as i32 - img[y * 64 + x] as i32).abs());
            }
        }
        assert!(worst <= 12, "max error {worst}");
    }

    #[test]
    fn rotation_turns_counter_clockwise_and_scales_with_the_level() {
        // A dot right of centre moves up (y down) for a positive angle.
        let mut img = vec![0u8; 64 * 64];
        img[32 * 64 + 48] = 255;
        let p = Params {
            angle: 90.0,
            ..Params::IDENTITY
        };
        let out = warp(&img, 64, 64, &p, Fill::Constant, 0);
        let at = out.iter().enumerate().max_by_key(|(_, v)| **v).unwrap().0;
        assert_eq!((at % 64, at / 64), (32, 15));
        // From a 2x source level to 32 px: the dot lands at half the coordinates.
        let half = warp(&img, 64, 32, &Params::IDENTITY, Fill::Constant, 0);
        let at = half.iter().enumerate().max_by_key(|(_, v)| **v).unwrap().0;
        assert_eq!((at % 32, at / 32), (24, 16));
    }

    #[test]
    fn parameters_depend_only_on_seed_record_and_copy() {
        let cfg = AugmentConfig::default();
        assert_eq!(
            sample(&cfg, 1, "cohen:1:a.png", 1),
            sample(&cfg, 1, "cohen:1:a.png", 1)
        );
        assert_ne!(
            sample(&cfg, 1, "cohen:1:a.png", 1),
            sample(&cfg, 1, "cohen:1:a.png", 2)
        );
        assert_ne!(
            sample(&cfg, 1, "cohen:1:a.png", 1),
            sample(&cfg, 2, "cohen:1:a.png", 1)
        );
        let p = sample(&cfg, 9, "x", 3);
        assert!(
            p.angle.abs() <= 10.0 && (0.85..=1.15).contains(&p.zx) && (0.9..=1.1).contains(&p.gain)
        );
    }
}
