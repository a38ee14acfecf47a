//! 64-bit perceptual hashes of a grayscale image, computed by our own small code so that their
//! values (and the Hamming thresholds tuned on them) never move with a crate upgrade.
//!
//! Both start from an area-average resize (every output pixel is the mean of the source pixels
//! under it, partial pixels weighted by their overlap), computed in `f64`:
//! - **dHash**: resize to 9x8; bit `8y + x` is set when pixel (x+1, y) is brighter than pixel
//!   (x, y).
//! - **pHash**: resize to 32x32; 2-D DCT-II (unnormalised, rows then columns); of the 8x8 lowest
//!   frequencies (DC included), bit `8v + u` is set when coefficient (u, v) is above their
//!   median (the mean of the 32nd and 33rd values) by more than 1e-9 of the largest of them
//!   (so rounding noise never decides a bit).
//!
//! Bit `i` is stored at `1 << (63 - i)`, so the hex form reads in row order like imagehash's.
//! Two images are near copies when the Hamming distance of their hashes is small (see
//! [`hamming`]).

/// The source pixels under one output pixel along an axis: a partial pixel at `first` (weight
/// `w_first`), whole pixels `first + 1 .. last`, a partial pixel at `last` (weight `w_last`,
/// zero when the span ends on a pixel edge), and the span's length.
#[derive(Debug, Clone, Copy)]
struct Span {
    first: usize,
    last: usize,
    w_first: f64,
    w_last: f64,
    len: f64,
}

/// The spans of `on` output pixels over `n` source pixels.
fn spans(n: usize, on: usize) -> Vec<Span> {
    (0..on)
        .map(|o| {
            let a = o as f64 * n as f64 / on as f64;
            let b = (o + 1) as f64 * n as f64 / on as f64;
            let (first, last) = (a.floor() as usize, (b.floor() as usize).min(n));
            if first == last {
                // The whole span lies inside one source pixel.
                return Span {
                    first,
                    last: first + 1,
                    w_first: b - a,
                    w_last: 0.0,
                    len: b - a,
                };
            }
            Span {
                first,
                last,
                w_first: (first + 1) as f64 - a,
                w_last: if last < n { b - last as f64 } else { 0.0 },
                len: b - a,
            }
        })
        .collect()
}

/// Area-average resize of a `w`x`h` grayscale image to `ow`x`oh`: every output pixel is the
/// mean of the source pixels under it, partial pixels weighted by their overlap, in `f64`.
/// Whole pixels are summed as integers, so the cost is one add per source pixel.
pub fn area_resize(px: &[u8], w: usize, h: usize, ow: usize, oh: usize) -> Vec<f64> {
    assert_eq!(px.len(), w * h, "image buffer size");
    assert!(w > 0 && h > 0 && ow > 0 && oh > 0, "empty image");
    let mut rows = RowReducer::new(w, ow, h);
    px.chunks_exact(w).for_each(|row| rows.push(row));
    rows.finish(oh)
}

/// The two steps of [`area_resize`], for callers that read an image once for several
/// purposes (see `imaging::facts`): [`RowReducer::push`] reduces each source row to `ow`
/// values, [`RowReducer::finish`] averages those over the output rows. Columns first, then
/// rows, in this exact order of `f64` operations: results equal [`area_resize`]'s bit for bit.
pub struct RowReducer {
    xs: Vec<Span>,
    ow: usize,
    rows: Vec<f64>,
}

impl RowReducer {
    /// A reducer of `h` rows of `w` pixels to `ow` columns.
    pub fn new(w: usize, ow: usize, h: usize) -> RowReducer {
        assert!(w > 0 && ow > 0, "empty image");
        RowReducer {
            xs: spans(w, ow),
            ow,
            rows: Vec::with_capacity(h * ow),
        }
    }

    /// Reduces the next source row.
    pub fn push(&mut self, src: &[u8]) {
        for s in &self.xs {
            let whole = sum_u8(&src[(s.first + 1).min(s.last)..s.last]);
            let edge = if s.w_last > 0.0 {
                src[s.last] as f64 * s.w_last
            } else {
                0.0
            };
            self.rows
                .push((src[s.first] as f64 * s.w_first + whole as f64 + edge) / s.len);
        }
    }

    /// The `ow` x `oh` resize of the rows pushed.
    pub fn finish(&self, oh: usize) -> Vec<f64> {
        let ow = self.ow;
        let h = self.rows.len() / ow;
        assert!(h > 0 && oh > 0, "empty image");
        let ys = spans(h, oh);
        let row = |y: usize| &self.rows[y * ow..(y + 1) * ow];
        let mut out = vec![0.0f64; ow * oh];
        for (orow, s) in out.chunks_exact_mut(ow).zip(&ys) {
            for (ox, o) in orow.iter_mut().enumerate() {
                let mut sum = row(s.first)[ox] * s.w_first;
                for y in (s.first + 1).min(s.last)..s.last {
                    sum += row(y)[ox];
                }
                if s.w_last > 0.0 {
                    sum += row(s.last)[ox] * s.w_last;
                }
                *o = sum / s.len;
            }
        }
        out
    }
}

/// The sum of a short run of pixels (a span is 30-200 pixels): in fixed blocks of 16 and 8,
/// which the compiler vectorises, where a plain sum of a slice this short runs mostly in its
/// scalar tail (2-3x slower). Integer sums: the order does not change the result.
fn sum_u8(px: &[u8]) -> u32 {
    let block = |b: &[u8]| b.iter().map(|&v| v as u32).sum::<u32>();
    let mut sixteens = px.chunks_exact(16);
    let mut total: u32 = (&mut sixteens)
        .map(|c| block(<&[u8; 16]>::try_from(c).expect("16 bytes")))
        .sum();
    let mut rest = sixteens.remainder();
    if rest.len() >= 8 {
        total += block(<&[u8; 8]>::try_from(&rest[..8]).expect("8 bytes"));
        rest = &rest[8..];
    }
    total + block(rest)
}

/// The (dHash, pHash) of a `w`x`h` grayscale image, from one read of its pixels (each row
/// feeds both resizes); equal to [`dhash`] and [`phash`].
pub fn hashes(px: &[u8], w: usize, h: usize) -> (u64, u64) {
    assert_eq!(px.len(), w * h, "image buffer size");
    let (mut tiny, mut small) = (RowReducer::new(w, 9, h), RowReducer::new(w, 32, h));
    for row in px.chunks_exact(w) {
        tiny.push(row);
        small.push(row);
    }
    (
        dhash_of_small(&tiny.finish(8)),
        phash_of_small(&small.finish(32)),
    )
}

/// Packs 64 booleans (bit 0 first) into a hash (bit `i` at `1 << (63 - i)`).
fn pack(bits: impl Iterator<Item = bool>) -> u64 {
    bits.take(64)
        .enumerate()
        .fold(0u64, |h, (i, b)| if b { h | 1 << (63 - i) } else { h })
}

/// The dHash of a `w`x`h` grayscale image.
pub fn dhash(px: &[u8], w: usize, h: usize) -> u64 {
    dhash_of_small(&area_resize(px, w, h, 9, 8))
}

/// The dHash from an image's 9x8 area-average resize (as [`area_resize`] gives it).
pub fn dhash_of_small(small: &[f64]) -> u64 {
    assert_eq!(small.len(), 72, "a 9x8 resize");
    pack((0..64).map(|i| {
        let (x, y) = (i % 8, i / 8);
        small[y * 9 + x + 1] > small[y * 9 + x]
    }))
}

/// The unnormalised DCT-II of `n` values: `X[k] = 2 * sum_i x[i] cos(pi k (2i + 1) / 2n)`
/// (scipy.fftpack's `dct(type=2)`).
fn dct(input: &[f64], cos: &[f64], n: usize, out: &mut [f64]) {
    for k in 0..n {
        out[k] = 2.0 * (0..n).map(|i| input[i] * cos[k * n + i]).sum::<f64>();
    }
}

/// The pHash of a `w`x`h` grayscale image.
pub fn phash(px: &[u8], w: usize, h: usize) -> u64 {
    phash_of_small(&area_resize(px, w, h, 32, 32))
}

/// The pHash from an image's 32x32 area-average resize (as [`area_resize`] gives it).
pub fn phash_of_small(small: &[f64]) -> u64 {
    const N: usize = 32;
    assert_eq!(small.len(), N * N, "a 32x32 resize");
    let cos: Vec<f64> = (0..N * N)
        .map(|ki| {
            let (k, i) = (ki / N, ki % N);
            (std::f64::consts::PI * k as f64 * (2 * i + 1) as f64 / (2 * N) as f64).cos()
        })
        .collect();
    // Rows, then columns.
    let mut rows = vec![0.0; N * N];
    for y in 0..N {
        dct(
            &small[y * N..(y + 1) * N],
            &cos,
            N,
            &mut rows[y * N..(y + 1) * N],
        );
    }
    let mut coef = vec![0.0; N * N];
    let (mut col, mut out) = (vec![0.0; N], vec![0.0; N]);
    for x in 0..N {
        for y in 0..N {
            col[y] = rows[y * N + x];
        }
        dct(&col, &cos, N, &mut out);
        for v in 0..N {
            coef[v * N + x] = out[v];
        }
    }
    let low: Vec<f64> = (0..64).map(|i| coef[(i / 8) * N + i % 8]).collect();
    let mut sorted = low.clone();
    sorted.sort_by(f64::total_cmp);
    let median = (sorted[31] + sorted[32]) / 2.0;
    // Rounding noise of the DCT (a flat image's zero coefficients come out as +-1e-13) must
    // not decide a bit: a coefficient counts as above the median only by a relative margin.
    let margin = 1e-9 * low.iter().fold(0.0f64, |m, c| m.max(c.abs()));
    pack(low.iter().map(|&c| c > median + margin))
}

/// Number of differing bits.
pub fn hamming(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_u8_equals_a_plain_sum_at_every_length() {
        let px: Vec<u8> = (0..300u32).map(|i| (i * 37 % 256) as u8).collect();
        for start in [0, 1, 7] {
            for len in 0..px.len() - start {
                let s = &px[start..start + len];
                let want: u32 = s.iter().map(|&v| v as u32).sum();
                assert_eq!(sum_u8(s), want, "start {start}, len {len}");
            }
        }
    }

    /// Seeded blobs on a gradient: structurally different images for different seeds.
    fn blobs(seed: u64, w: usize, h: usize) -> Vec<u8> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % 1000) as f64 / 1000.0
        };
        let spots: Vec<(f64, f64, f64, f64)> = (0..5)
            .map(|_| (next(), next(), 0.05 + 0.2 * next(), 60.0 + 100.0 * next()))
            .collect();
        let (ax, ay) = (next() - 0.5, next() - 0.5);
        let mut px = vec![0u8; w * h];
        for y in 0..h {
            for x in 0..w {
                let (fx, fy) = (x as f64 / w as f64, y as f64 / h as f64);
                let mut v = 128.0 + 80.0 * (ax * fx + ay * fy);
                for &(cx, cy, r, a) in &spots {
                    let d = ((fx - cx).powi(2) + (fy - cy).powi(2)).sqrt() / r;
                    if d < 1.0 {
                        v += a * (1.0 - d) - 50.0;
                    }
                }
                px[y * w + x] = v.clamp(0.0, 255.0) as u8;
            }
        }
        px
    }

    /// `px` shifted right and down by `d` pixels (edge replicated), with ±3 grey of noise.
    fn shifted_noisy(px: &[u8], w: usize, h: usize, d: usize) -> Vec<u8> {
        (0..w * h)
            .map(|i| {
                let (x, y) = (i % w, i / w);
                let v = px[y.saturating_sub(d) * w + x.saturating_sub(d)] as i32;
                let noise = ((x * 7919 + y * 104729) % 7) as i32 - 3;
                (v + noise).clamp(0, 255) as u8
            })
            .collect()
    }

    #[test]
    fn area_resize_averages_exactly() {
        // 4x2 -> 2x1: the means of the 2x2 blocks; 3x1 -> 2x1: 1.5-pixel spans.
        let r = area_resize(&[0, 10, 20, 30, 40, 50, 60, 70], 4, 2, 2, 1);
        assert_eq!(r, vec![25.0, 45.0]);
        let r = area_resize(&[0, 30, 90], 3, 1, 2, 1);
        assert_eq!(r, vec![10.0, 70.0]);
    }

    #[test]
    fn hand_checked_hashes() {
        // Brighter to the right: every dHash bit set; darker: none.
        let right: Vec<u8> = (0..64 * 64).map(|i| (i % 64 * 4) as u8).collect();
        assert_eq!(dhash(&right, 64, 64), u64::MAX);
        let left: Vec<u8> = right.iter().map(|v| 255 - v).collect();
        assert_eq!(dhash(&left, 64, 64), 0);
        // A flat image: only the DC coefficient is above the median (zero).
        assert_eq!(phash(&[77; 50 * 40], 50, 40), 1 << 63);
        assert_eq!(hamming(0b1011, 0b0110), 3);
    }

    #[test]
    fn golden_values_stay_fixed() {
        // Values of this code on generated images; a change here changes every threshold.
        let golden = [
            (1, 0x0002_2250_9090_6001_u64, 0xd8e5_cbd0_aa17_a8f0_u64),
            (2, 0x0008_2406_0b0b_0505, 0xf6d5_5643_936c_8c92),
            (3, 0xe349_59c9_f7fd_fdfd, 0xb2d3_4d6d_6ca8_9295),
        ];
        for (seed, d, p) in golden {
            let px = blobs(seed, 120, 100);
            assert_eq!(
                hashes(&px, 120, 100),
                (d, p),
                "one-pass hashes, seed {seed}"
            );
            assert_eq!(
                (dhash(&px, 120, 100), phash(&px, 120, 100)),
                (d, p),
                "seed {seed}: {:#018x} {:#018x}",
                dhash(&px, 120, 100),
                phash(&px, 120, 100)
            );
        }
    }

    #[test]
    fn near_copies_are_close_and_unrelated_images_far() {
        let (w, h) = (256, 256);
        for seed in 1..6 {
            let px = blobs(seed, w, h);
            for d in [1, 2] {
                let near = shifted_noisy(&px, w, h, d);
                let (dd, pd) = (
                    hamming(dhash(&px, w, h), dhash(&near, w, h)),
                    hamming(phash(&px, w, h), phash(&near, w, h)),
                );
                assert!(
                    dd <= 6 && pd <= 6,
                    "seed {seed} shift {d}: dhash {dd}, phash {pd}"
                );
            }
            let other = blobs(seed + 100, w, h);
            let (dd, pd) = (
                hamming(dhash(&px, w, h), dhash(&other, w, h)),
                hamming(phash(&px, w, h), phash(&other, w, h)),
            );
            assert!(
                dd >= 12 && pd >= 12,
                "seed {seed} vs unrelated: dhash {dd}, phash {pd}"
            );
        }
    }
}
