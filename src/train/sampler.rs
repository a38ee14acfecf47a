//! The training sampler: which samples make each batch of an epoch, as a pure function of
//! (seed, epoch), so a resumed run sees exactly the batches an uninterrupted one would.
//!
//! COVID-balanced batches as COVID-Net's `BalanceCovidDataGenerator` makes them: an epoch is
//! `ceil(N_other / batch)` batches of the shuffled non-COVID samples; in each batch
//! `max(floor(len * covid_percent), 1)` slots (`len` is the batch's size, smaller for the last
//! one) at random positions are replaced by COVID-19 samples drawn without replacement within
//! the batch. With `covid_percent` 0 every sample is shuffled into `ceil(N / batch)` batches,
//! no balancing. Randomness comes from [`Rng`] seeded by (seed, "covidx-sampler", epoch).

use anyhow::{bail, Result};

use crate::imaging::augment::Rng;

/// The batches of every epoch of one training split.
#[derive(Debug, Clone)]
pub struct Sampler {
    /// Sample indices of the non-COVID samples (all samples when not balancing).
    others: Vec<usize>,
    /// Sample indices of the COVID-19 samples (empty when not balancing).
    covid: Vec<usize>,
    batch: usize,
    covid_percent: f64,
    seed: u64,
}

/// A uniform draw in `0..n` (multiply-shift, no modulo bias worth a thought at these sizes).
fn below(rng: &mut Rng, n: usize) -> usize {
    ((rng.next_u64() as u128 * n as u128) >> 64) as usize
}

/// Shuffles `v` in place (Fisher-Yates).
fn shuffle(rng: &mut Rng, v: &mut [usize]) {
    for i in (1..v.len()).rev() {
        v.swap(i, below(rng, i + 1));
    }
}

/// `k` distinct values of `0..n` (a partial Fisher-Yates), in draw order.
fn choose(rng: &mut Rng, n: usize, k: usize) -> Vec<usize> {
    let mut all: Vec<usize> = (0..n).collect();
    for i in 0..k.min(n) {
        all.swap(i, i + below(rng, n - i));
    }
    all.truncate(k.min(n));
    all
}

/// Index of the COVID-19 class in `classes` (any case), the class balancing fills.
pub fn covid_class(classes: &[String]) -> Option<usize> {
    classes
        .iter()
        .position(|c| c.eq_ignore_ascii_case("COVID-19"))
}

impl Sampler {
    /// A sampler over samples with class `labels[i]`; `covid` is the COVID-19 class index.
    /// Balancing needs at least one COVID-19 sample; `covid_percent` must be in [0, 1).
    pub fn new(
        labels: &[usize],
        covid: Option<usize>,
        batch: usize,
        covid_percent: f64,
        seed: u64,
    ) -> Result<Sampler> {
        if batch == 0 {
            bail!("the batch size must be at least 1");
        }
        if !(0.0..1.0).contains(&covid_percent) {
            bail!("covid_percent {covid_percent} must be in [0, 1)");
        }
        let (others, covid) = if covid_percent > 0.0 {
            let Some(c) = covid else {
                bail!("COVID-balanced batches need a COVID-19 class; use --covid-percent 0");
            };
            let (cv, ot): (Vec<usize>, Vec<usize>) =
                (0..labels.len()).partition(|&i| labels[i] == c);
            if cv.is_empty() {
                bail!("COVID-balanced batches: the training split has no COVID-19 sample; use --covid-percent 0");
            }
            if ot.is_empty() {
                bail!("COVID-balanced batches: the training split has only COVID-19 samples; use --covid-percent 0");
            }
            (ot, cv)
        } else {
            ((0..labels.len()).collect(), Vec::new())
        };
        Ok(Sampler {
            others,
            covid,
            batch,
            covid_percent,
            seed,
        })
    }

    /// Batches per epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.others.len().div_ceil(self.batch)
    }

    /// COVID-19 slots of a batch of `len` samples (0 when not balancing).
    pub fn quota(&self, len: usize) -> usize {
        if self.covid.is_empty() {
            return 0;
        }
        (((len as f64) * self.covid_percent).floor() as usize)
            .max(1)
            .min(len)
            .min(self.covid.len())
    }

    /// The batches of epoch `epoch` (sample indices).
    pub fn epoch(&self, epoch: u64) -> Vec<Vec<usize>> {
        let mut rng = Rng::new(self.seed, "covidx-sampler", epoch as u32);
        let mut order = self.others.clone();
        shuffle(&mut rng, &mut order);
        order
            .chunks(self.batch)
            .map(|chunk| {
                let mut b = chunk.to_vec();
                let k = self.quota(b.len());
                let slots = choose(&mut rng, b.len(), k);
                let picks = choose(&mut rng, self.covid.len(), k);
                for (s, p) in slots.into_iter().zip(picks) {
                    b[s] = self.covid[p];
                }
                b
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<usize> {
        // 70 normal, 50 pneumonia, 9 COVID-19 (class 2).
        (0..129)
            .map(|i| match i {
                0..70 => 0,
                70..120 => 1,
                _ => 2,
            })
            .collect()
    }

    #[test]
    fn every_batch_holds_its_covid_quota_and_no_repeat() {
        let l = labels();
        let s = Sampler::new(&l, Some(2), 32, 0.3, 7).unwrap();
        // 120 non-COVID samples: ceil(120 / 32) = 4 batches of 32, 32, 32, 24.
        assert_eq!(s.batches_per_epoch(), 4);
        for e in 0..5 {
            let batches = s.epoch(e);
            assert_eq!(batches.len(), 4);
            assert_eq!(
                batches.iter().map(Vec::len).collect::<Vec<_>>(),
                [32, 32, 32, 24]
            );
            for b in &batches {
                let covid = b.iter().filter(|&&i| l[i] == 2).count();
                assert_eq!(covid, s.quota(b.len()), "epoch {e}");
                let mut u = b.clone();
                u.sort_unstable();
                u.dedup();
                assert_eq!(u.len(), b.len(), "a sample twice in one batch");
            }
            // floor(32 * 0.3) = 9 for full batches, floor(24 * 0.3) = 7 for the last.
            assert_eq!(s.quota(32), 9);
            assert_eq!(s.quota(24), 7);
        }
    }

    #[test]
    fn epochs_are_a_pure_function_of_seed_and_epoch() {
        let l = labels();
        let a = Sampler::new(&l, Some(2), 16, 0.3, 7).unwrap();
        let b = Sampler::new(&l, Some(2), 16, 0.3, 7).unwrap();
        assert_eq!(a.epoch(3), b.epoch(3));
        assert_ne!(a.epoch(3), a.epoch(4));
        let c = Sampler::new(&l, Some(2), 16, 0.3, 8).unwrap();
        assert_ne!(a.epoch(3), c.epoch(3));
    }

    #[test]
    fn without_balancing_each_sample_once_per_epoch() {
        let l = labels();
        let s = Sampler::new(&l, Some(2), 32, 0.0, 1).unwrap();
        assert_eq!(s.batches_per_epoch(), 129usize.div_ceil(32));
        let mut all: Vec<usize> = s.epoch(0).into_iter().flatten().collect();
        all.sort_unstable();
        assert_eq!(all, (0..129).collect::<Vec<_>>());
        assert_eq!(s.quota(32), 0);
    }

    #[test]
    fn impossible_balancing_is_refused() {
        assert!(Sampler::new(&[0, 1, 0], Some(2), 2, 0.3, 0).is_err());
        assert!(Sampler::new(&[0, 1, 0], None, 2, 0.3, 0).is_err());
        assert!(Sampler::new(&[2, 2], Some(2), 2, 0.3, 0).is_err());
        assert!(Sampler::new(&[0, 2], Some(2), 0, 0.3, 0).is_err());
        assert!(Sampler::new(&[0, 2], Some(2), 2, 1.0, 0).is_err());
        assert!(Sampler::new(&[0, 1], None, 2, 0.0, 0).is_ok());
    }
}
