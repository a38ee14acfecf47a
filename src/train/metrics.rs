//! Classification metrics of one pass over a split: accuracy, confusion matrix, per-class
//! sensitivity (recall) and PPV (precision), one-vs-rest AUROC and their macro mean, and
//! accuracy per source (does the model only know the hospital?).

use std::collections::BTreeMap;

use serde::Serialize;

/// Metrics of predictions against the truth.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    /// Samples scored.
    pub samples: u64,
    /// Fraction predicted right.
    pub accuracy: f64,
    /// `confusion[truth][predicted]`.
    pub confusion: Vec<Vec<u64>>,
    /// Per class: right predictions over samples of the class (`None` without any).
    pub sensitivity: Vec<Option<f64>>,
    /// Per class: right predictions over predictions of the class (`None` without any).
    pub ppv: Vec<Option<f64>>,
    /// Per class: one-vs-rest AUROC of its probability (`None` when the class or the rest is
    /// absent).
    pub auroc: Vec<Option<f64>>,
    /// Mean of the defined per-class AUROCs.
    pub macro_auroc: Option<f64>,
    /// Per source: (samples, accuracy).
    pub per_source: BTreeMap<String, (u64, f64)>,
}

/// Area under the ROC curve of `scores` for `positive` (Mann-Whitney U, ties counted half).
pub fn auroc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let pos = positive.iter().filter(|&&p| p).count();
    let neg = positive.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Sum of the positives' ranks, tied scores sharing their mean rank.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let mean_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += mean_rank * order[i..=j].iter().filter(|&&k| positive[k]).count() as f64;
        i = j + 1;
    }
    let u = rank_sum - (pos * (pos + 1)) as f64 / 2.0;
    Some(u / (pos as f64 * neg as f64))
}

impl Metrics {
    /// Metrics of `probs` (one row of `k` class probabilities per sample) against `truth`,
    /// with each sample's `source`.
    pub fn compute(probs: &[Vec<f64>], truth: &[usize], sources: &[&str], k: usize) -> Metrics {
        let n = truth.len();
        let pred: Vec<usize> = probs
            .iter()
            .map(|p| (0..k).fold(0, |b, c| if p[c] > p[b] { c } else { b }))
            .collect();
        let mut confusion = vec![vec![0u64; k]; k];
        for (&t, &p) in truth.iter().zip(&pred) {
            confusion[t][p] += 1;
        }
        let right: u64 = (0..k).map(|c| confusion[c][c]).sum();
        let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
        let sensitivity = (0..k)
            .map(|c| ratio(confusion[c][c], confusion[c].iter().sum()))
            .collect();
        let ppv = (0..k)
            .map(|c| ratio(confusion[c][c], (0..k).map(|t| confusion[t][c]).sum()))
            .collect();
        let auroc: Vec<Option<f64>> = (0..k)
            .map(|c| {
                let s: Vec<f64> = probs.iter().map(|p| p[c]).collect();
                let pos: Vec<bool> = truth.iter().map(|&t| t == c).collect();
                auroc(&s, &pos)
            })
            .collect();
        let defined: Vec<f64> = auroc.iter().flatten().copied().collect();
        let macro_auroc =
            (!defined.is_empty()).then(|| defined.iter().sum::<f64>() / defined.len() as f64);
        let mut tally: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for i in 0..n {
            let e = tally.entry(sources[i].to_string()).or_default();
            e.0 += 1;
            e.1 += (pred[i] == truth[i]) as u64;
        }
        Metrics {
            samples: n as u64,
            accuracy: ratio(right, n as u64).unwrap_or(0.0),
            confusion,
            sensitivity,
            ppv,
            auroc,
            macro_auroc,
            per_source: tally
                .into_iter()
                .map(|(s, (m, r))| (s, (m, r as f64 / m as f64)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auroc_by_hand() {
        // Perfect, reversed, all tied, and one inversion out of 2x2 pairs.
        let pos = [false, false, true, true];
        assert_eq!(auroc(&[0.1, 0.2, 0.8, 0.9], &pos), Some(1.0));
        assert_eq!(auroc(&[0.9, 0.8, 0.2, 0.1], &pos), Some(0.0));
        assert_eq!(auroc(&[0.5; 4], &pos), Some(0.5));
        assert_eq!(auroc(&[0.1, 0.85, 0.8, 0.9], &pos), Some(0.75));
        assert_eq!(auroc(&[0.1, 0.2], &[true, true]), None);
    }

    #[test]
    fn confusion_sensitivity_ppv_and_sources() {
        let probs = vec![
            vec![0.7, 0.2, 0.1], // truth 0, predicted 0
            vec![0.2, 0.7, 0.1], // truth 0, predicted 1
            vec![0.1, 0.8, 0.1], // truth 1, predicted 1
            vec![0.1, 0.1, 0.8], // truth 2, predicted 2
        ];
        let m = Metrics::compute(&probs, &[0, 0, 1, 2], &["a", "a", "b", "b"], 3);
        assert_eq!(
            m.confusion,
            vec![vec![1, 1, 0], vec![0, 1, 0], vec![0, 0, 1]]
        );
        assert_eq!(m.accuracy, 0.75);
        assert_eq!(m.sensitivity, vec![Some(0.5), Some(1.0), Some(1.0)]);
        assert_eq!(m.ppv, vec![Some(1.0), Some(0.5), Some(1.0)]);
        assert_eq!(m.per_source["a"], (2, 0.5));
        assert_eq!(m.per_source["b"], (2, 1.0));
        assert_eq!(m.auroc[2], Some(1.0));
        assert!(m.macro_auroc.unwrap() > 0.5);
    }
}
