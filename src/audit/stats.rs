//! Per-source image statistics: formats, bit depths, sizes, file sizes and intensities, so a
//! reviewer sees at a glance whether the sources (and with them the classes) differ in ways a
//! model can read off an image without looking at the lungs.

use std::collections::BTreeMap;

use serde::Serialize;

use super::duplicates::Item;
use crate::imaging::facts::BINS;

/// Minimum, median and maximum of a quantity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    /// Smallest.
    pub min: f64,
    /// Median (the mean of the middle two for an even count).
    pub median: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `v` (all zero when empty).
    pub fn of(mut v: Vec<f64>) -> Spread {
        if v.is_empty() {
            return Spread {
                min: 0.0,
                median: 0.0,
                max: 0.0,
            };
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        Spread {
            min: v[0],
            median: (v[(n - 1) / 2] + v[n / 2]) / 2.0,
            max: v[n - 1],
        }
    }
}

/// The images of one source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceStats {
    /// Source name.
    pub source: String,
    /// Images with facts.
    pub images: u64,
    /// Images per file format.
    pub formats: BTreeMap<String, u64>,
    /// Images per stored bit depth.
    pub bit_depths: BTreeMap<u32, u64>,
    /// Width in pixels.
    pub width: Spread,
    /// Height in pixels.
    pub height: Spread,
    /// File size in bytes.
    pub file_size: Spread,
    /// Per-image mean grey level.
    pub mean: Spread,
    /// Per-image standard deviation of the grey level.
    pub std: Spread,
    /// Share of all the source's pixels per bin of 8 grey levels.
    pub histogram: Vec<f64>,
}

/// Statistics per source, in source-name order.
pub fn audit(items: &[Item<'_>]) -> Vec<SourceStats> {
    let mut by: BTreeMap<&str, Vec<&Item<'_>>> = BTreeMap::new();
    for it in items {
        by.entry(it.source).or_default().push(it);
    }
    by.into_iter()
        .map(|(source, its)| {
            let spread =
                |f: &dyn Fn(&Item<'_>) -> f64| Spread::of(its.iter().map(|i| f(i)).collect());
            let mut formats = BTreeMap::new();
            let mut bit_depths = BTreeMap::new();
            let mut hist = [0u64; BINS];
            for it in &its {
                *formats.entry(it.facts.format.clone()).or_default() += 1;
                *bit_depths.entry(it.facts.bit_depth).or_default() += 1;
                for (h, c) in hist.iter_mut().zip(&it.facts.histogram) {
                    *h += c;
                }
            }
            let total = hist.iter().sum::<u64>().max(1) as f64;
            SourceStats {
                source: source.to_string(),
                images: its.len() as u64,
                formats,
                bit_depths,
                width: spread(&|i| i.facts.width as f64),
                height: spread(&|i| i.facts.height as f64),
                file_size: spread(&|i| i.facts.file_size as f64),
                mean: spread(&|i| i.facts.mean),
                std: spread(&|i| i.facts.std),
                histogram: hist.iter().map(|&c| c as f64 / total).collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_take_the_middle() {
        let s = Spread::of(vec![5.0, 1.0, 3.0, 9.0]);
        assert_eq!((s.min, s.median, s.max), (1.0, 4.0, 9.0));
        assert_eq!(Spread::of(vec![2.0, 7.0, 1.0]).median, 2.0);
    }
}
