//! The shortcut probe: how well cheap image features predict the source and the class.
//!
//! Features come from each image's 32x32 thumbnail (see [`crate::imaging::facts`]), averaged
//! to 16x16 and scaled to [0, 1]: `thumbnail` (all 256 cells), `border` (the outer 3 cells on
//! every side, the centre masked: 156 cells) and `centre` (the inner 10x10, 100 cells). A
//! multinomial logistic regression (standardised features, L2 weight 1e-4, Nesterov-accelerated
//! gradient descent with step 1/L for 150 iterations, L from a power iteration) is trained and
//! tested with 5-fold cross-validation grouped by patient (a patient's images are all in one
//! fold; folds by a hash rank of the patient key), at most 2,000 training images per fold (the
//! first by a hash rank). Every step is deterministic. Reported: balanced accuracy (mean
//! per-class recall) and accuracy, next to the majority-class baseline of each fold.
//!
//! A class predicted far above the baseline from the border alone means the dataset rewards a
//! shortcut: a model can tell the classes apart without looking at the lungs.

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Finding, Severity};
use crate::imaging::facts::THUMB;

/// Folds of the cross-validation.
pub const FOLDS: usize = 5;
/// Training images per fold at most.
pub const MAX_TRAIN: usize = 2000;
const ITERATIONS: usize = 150;
const L2: f64 = 1e-4;
const SIDE: usize = 16;
const RING: usize = 3;

/// One image for the probe.
#[derive(Debug, Clone, Copy)]
pub struct ProbeItem<'a> {
    /// Patient key (the grouping of the folds).
    pub patient: &'a str,
    /// Source.
    pub source: &'a str,
    /// Class.
    pub class: &'a str,
    /// 32x32 thumbnail.
    pub thumb: &'a [u8],
}

/// One (target, feature set) result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeResult {
    /// `source` or `class`.
    pub target: String,
    /// `thumbnail`, `border` or `centre`.
    pub features: String,
    /// Values the target takes.
    pub values: u64,
    /// Mean per-value recall on held-out folds.
    pub balanced_accuracy: f64,
    /// Accuracy on held-out folds.
    pub accuracy: f64,
    /// The majority baseline's balanced accuracy.
    pub baseline_balanced_accuracy: f64,
    /// The majority baseline's accuracy.
    pub baseline_accuracy: f64,
}

/// The probe's results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeAudit {
    /// Images used.
    pub images: u64,
    /// Patients (groups of the folds).
    pub patients: u64,
    /// Results per target and feature set (empty when skipped).
    pub results: Vec<ProbeResult>,
    /// Why the probe did not run, when it did not.
    pub skipped: Option<String>,
}

/// Which 16x16 cells each feature set uses.
fn feature_sets() -> [(&'static str, Vec<usize>); 3] {
    let ring = |c: usize| {
        let (x, y) = (c % SIDE, c / SIDE);
        x.min(y).min(SIDE - 1 - x).min(SIDE - 1 - y) < RING
    };
    let all: Vec<usize> = (0..SIDE * SIDE).collect();
    [
        ("thumbnail", all.clone()),
        ("border", all.iter().copied().filter(|&c| ring(c)).collect()),
        ("centre", all.into_iter().filter(|&c| !ring(c)).collect()),
    ]
}

/// The 16x16 cells of a 32x32 thumbnail, in [0, 1].
fn cells(thumb: &[u8]) -> Vec<f64> {
    let k = THUMB / SIDE;
    (0..SIDE * SIDE)
        .map(|c| {
            let (x, y) = (c % SIDE * k, c / SIDE * k);
            let mut s = 0u32;
            for dy in 0..k {
                for dx in 0..k {
                    s += thumb[(y + dy) * THUMB + x + dx] as u32;
                }
            }
            s as f64 / (k * k) as f64 / 255.0
        })
        .collect()
}

fn rank(tag: &str, key: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(tag.as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    h.finalize().into()
}

/// A trained multinomial logistic regression over standardised features.
struct Model {
    mean: Vec<f64>,
    scale: Vec<f64>,
    /// `(d + 1) x k`, the bias last.
    w: Vec<f64>,
    k: usize,
}

/// Class scores of one standardised row (with the bias).
fn scores(w: &[f64], x: &[f64], k: usize, out: &mut [f64]) {
    out.iter_mut().for_each(|o| *o = 0.0);
    for (xi, row) in x.iter().zip(w.chunks_exact(k)) {
        for (o, wv) in out.iter_mut().zip(row) {
            *o += xi * wv;
        }
    }
    let bias = &w[x.len() * k..];
    for (o, b) in out.iter_mut().zip(bias) {
        *o += b;
    }
}

/// The mean cross-entropy gradient (plus L2) at `w` over standardised rows `xs`.
fn gradient(w: &[f64], xs: &[Vec<f64>], ys: &[usize], k: usize, g: &mut [f64]) {
    let d = xs[0].len();
    g.iter_mut().for_each(|v| *v = 0.0);
    let mut p = vec![0.0; k];
    for (x, &y) in xs.iter().zip(ys) {
        scores(w, x, k, &mut p);
        let m = p.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mut z = 0.0;
        for v in p.iter_mut() {
            *v = (*v - m).exp();
            z += *v;
        }
        for (c, v) in p.iter_mut().enumerate() {
            *v = *v / z - if c == y { 1.0 } else { 0.0 };
        }
        for (xi, grow) in x.iter().zip(g.chunks_exact_mut(k)) {
            for (gv, pv) in grow.iter_mut().zip(&p) {
                *gv += xi * pv;
            }
        }
        for (gv, pv) in g[d * k..].iter_mut().zip(&p) {
            *gv += pv;
        }
    }
    let n = xs.len() as f64;
    for (i, gv) in g.iter_mut().enumerate() {
        *gv /= n;
        if i < d * k {
            *gv += L2 * w[i];
        }
    }
}

/// The largest eigenvalue of `X^T X / n` (bias column included), by power iteration.
fn top_eigenvalue(xs: &[Vec<f64>]) -> f64 {
    let d = xs[0].len() + 1;
    let mut v = vec![1.0 / (d as f64).sqrt(); d];
    let mut lambda = 1.0;
    for _ in 0..30 {
        let mut u = vec![0.0; d];
        for x in xs {
            let dot: f64 = x.iter().zip(&v).map(|(a, b)| a * b).sum::<f64>() + v[d - 1];
            for (ui, xi) in u.iter_mut().zip(x) {
                *ui += dot * xi;
            }
            u[d - 1] += dot;
        }
        let norm = u.iter().map(|a| a * a).sum::<f64>().sqrt() / xs.len() as f64;
        lambda = norm;
        if norm == 0.0 {
            break;
        }
        let len = u.iter().map(|a| a * a).sum::<f64>().sqrt();
        v = u.into_iter().map(|a| a / len).collect();
    }
    lambda
}

impl Model {
    fn fit(rows: &[&[f64]], ys: &[usize], k: usize) -> Model {
        let d = rows[0].len();
        let n = rows.len() as f64;
        let mean: Vec<f64> = (0..d)
            .map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / n)
            .collect();
        let scale: Vec<f64> = (0..d)
            .map(|j| {
                let var = rows.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / n;
                1.0 / var.sqrt().max(1e-6)
            })
            .collect();
        let xs: Vec<Vec<f64>> = rows
            .iter()
            .map(|r| (0..d).map(|j| (r[j] - mean[j]) * scale[j]).collect())
            .collect();
        let step = 1.0 / (0.5 * top_eigenvalue(&xs) + L2);
        let len = (d + 1) * k;
        let (mut w, mut prev) = (vec![0.0; len], vec![0.0; len]);
        let (mut look, mut g) = (vec![0.0; len], vec![0.0; len]);
        for t in 0..ITERATIONS {
            let momentum = t as f64 / (t as f64 + 3.0);
            for i in 0..len {
                look[i] = w[i] + momentum * (w[i] - prev[i]);
            }
            gradient(&look, &xs, ys, k, &mut g);
            prev.copy_from_slice(&w);
            for i in 0..len {
                w[i] = look[i] - step * g[i];
            }
        }
        Model { mean, scale, w, k }
    }

    fn predict(&self, row: &[f64]) -> usize {
        let x: Vec<f64> = row
            .iter()
            .zip(self.mean.iter().zip(&self.scale))
            .map(|(v, (m, s))| (v - m) * s)
            .collect();
        let mut p = vec![0.0; self.k];
        scores(&self.w, &x, self.k, &mut p);
        (0..self.k).fold(0, |best, c| if p[c] > p[best] { c } else { best })
    }
}

/// Balanced accuracy and accuracy of `pred` against `truth`.
fn metrics(truth: &[usize], pred: &[usize], k: usize) -> (f64, f64) {
    let mut hit = vec![0u64; k];
    let mut all = vec![0u64; k];
    for (&t, &p) in truth.iter().zip(pred) {
        all[t] += 1;
        hit[t] += (t == p) as u64;
    }
    let present: Vec<usize> = (0..k).filter(|&c| all[c] > 0).collect();
    let balanced = present
        .iter()
        .map(|&c| hit[c] as f64 / all[c] as f64)
        .sum::<f64>()
        / present.len().max(1) as f64;
    let acc = hit.iter().sum::<u64>() as f64 / truth.len().max(1) as f64;
    (balanced, acc)
}

/// Cross-validated predictions of one target from one feature set, and the baseline's.
fn cross_validate(
    feats: &[Vec<f64>],
    ys: &[usize],
    k: usize,
    fold: &[usize],
    order: &[usize],
) -> (Vec<usize>, Vec<usize>) {
    let mut pred = vec![0; ys.len()];
    let mut base = vec![0; ys.len()];
    let fits: Vec<(usize, Model, usize)> = (0..FOLDS)
        .into_par_iter()
        .filter_map(|f| {
            let train: Vec<usize> = order
                .iter()
                .copied()
                .filter(|&i| fold[i] != f)
                .take(MAX_TRAIN)
                .collect();
            if train.is_empty() || !fold.contains(&f) {
                return None;
            }
            let rows: Vec<&[f64]> = train.iter().map(|&i| feats[i].as_slice()).collect();
            let tys: Vec<usize> = train.iter().map(|&i| ys[i]).collect();
            let mut counts = vec![0u64; k];
            tys.iter().for_each(|&y| counts[y] += 1);
            let majority = (0..k).fold(0, |b, c| if counts[c] > counts[b] { c } else { b });
            Some((f, Model::fit(&rows, &tys, k), majority))
        })
        .collect();
    for (f, model, majority) in &fits {
        for i in (0..ys.len()).filter(|&i| fold[i] == *f) {
            pred[i] = model.predict(&feats[i]);
            base[i] = *majority;
        }
    }
    (pred, base)
}

/// Runs the probe over `items` (images in a split, with a class).
pub fn audit<'a>(items: &[ProbeItem<'a>]) -> ProbeAudit {
    let mut patients: Vec<&str> = items.iter().map(|i| i.patient).collect();
    patients.sort_unstable();
    patients.dedup();
    let mut result = ProbeAudit {
        images: items.len() as u64,
        patients: patients.len() as u64,
        results: Vec::new(),
        skipped: None,
    };
    if patients.len() < FOLDS || items.len() < 2 * FOLDS {
        result.skipped = Some(format!(
            "{} images of {} patients: too few for {FOLDS}-fold cross-validation",
            items.len(),
            patients.len()
        ));
        return result;
    }
    let mut ranked: Vec<(&str, [u8; 32])> =
        patients.iter().map(|p| (*p, rank("fold", p))).collect();
    ranked.sort_by_key(|&(p, r)| (r, p));
    let fold_of: BTreeMap<&str, usize> = ranked
        .iter()
        .enumerate()
        .map(|(n, &(p, _))| (p, n % FOLDS))
        .collect();
    let fold: Vec<usize> = items.iter().map(|i| fold_of[i.patient]).collect();
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_cached_key(|&i| (rank("train", &format!("{}#{i}", items[i].patient)), i));
    let all_cells: Vec<Vec<f64>> = items.iter().map(|i| cells(i.thumb)).collect();
    type Value<'a> = fn(&ProbeItem<'a>) -> &'a str;
    let targets: [(&str, Value<'a>); 2] = [("source", |i| i.source), ("class", |i| i.class)];
    for (target, value) in targets {
        let mut values: Vec<&str> = items.iter().map(value).collect();
        values.sort_unstable();
        values.dedup();
        if values.len() < 2 {
            continue;
        }
        let ys: Vec<usize> = items
            .iter()
            .map(|i| values.binary_search(&value(i)).expect("a known value"))
            .collect();
        for (name, use_cells) in feature_sets() {
            let feats: Vec<Vec<f64>> = all_cells
                .iter()
                .map(|c| use_cells.iter().map(|&j| c[j]).collect())
                .collect();
            let (pred, base) = cross_validate(&feats, &ys, values.len(), &fold, &order);
            let (balanced_accuracy, accuracy) = metrics(&ys, &pred, values.len());
            let (bb, ba) = metrics(&ys, &base, values.len());
            result.results.push(ProbeResult {
                target: target.to_string(),
                features: name.to_string(),
                values: values.len() as u64,
                balanced_accuracy,
                accuracy,
                baseline_balanced_accuracy: bb,
                baseline_accuracy: ba,
            });
        }
    }
    result
}

impl ProbeAudit {
    /// A warning (`source-confounding`) when the class is predicted from the border alone with
    /// a balanced accuracy at least 0.2 above the baseline; an info line when the source is
    /// (from the whole thumbnail).
    pub fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let get = |t: &str, f: &str| {
            self.results
                .iter()
                .find(|r| r.target == t && r.features == f)
        };
        if let Some(r) = get("class", "border") {
            if r.balanced_accuracy >= r.baseline_balanced_accuracy + 0.2 {
                out.push(Finding {
                    check: "source-confounding",
                    severity: Severity::Warning,
                    message: format!(
                        "the class is predictable from the image border alone (centre masked): \
                         balanced accuracy {:.3} against {:.3} for the majority baseline; the \
                         dataset rewards shortcuts",
                        r.balanced_accuracy, r.baseline_balanced_accuracy
                    ),
                });
            }
        }
        if let Some(r) = get("source", "thumbnail")
            .filter(|r| r.balanced_accuracy >= r.baseline_balanced_accuracy + 0.2)
        {
            out.push(Finding {
                check: "shortcut-probe",
                severity: Severity::Info,
                message: format!(
                    "the source is predictable from a 16x16 thumbnail: balanced accuracy \
                     {:.3} (baseline {:.3})",
                    r.balanced_accuracy, r.baseline_balanced_accuracy
                ),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bright_border_is_found_and_noise_is_not() {
        // Class "b" images carry a bright frame; the centre is noise for both classes.
        let thumb = |i: usize, framed: bool| -> Vec<u8> {
            (0..THUMB * THUMB)
                .map(|p| {
                    let (x, y) = (p % THUMB, p / THUMB);
                    let edge = x.min(y).min(THUMB - 1 - x).min(THUMB - 1 - y) < 4;
                    if framed && edge {
                        230
                    } else {
                        ((p * 7919 + i * 104_729) % 97) as u8 + 60
                    }
                })
                .collect()
        };
        let patients: Vec<String> = (0..60).map(|i| format!("p{i}")).collect();
        let thumbs: Vec<Vec<u8>> = (0..120).map(|i| thumb(i, i % 2 == 1)).collect();
        let items: Vec<ProbeItem<'_>> = (0..120)
            .map(|i| ProbeItem {
                patient: &patients[i / 2],
                source: if i % 2 == 1 { "s2" } else { "s1" },
                class: if i % 2 == 1 { "b" } else { "a" },
                thumb: &thumbs[i],
            })
            .collect();
        let a = audit(&items);
        let get = |t: &str, f: &str| {
            a.results
                .iter()
                .find(|r| r.target == t && r.features == f)
                .unwrap()
                .clone()
        };
        assert!(get("class", "border").balanced_accuracy > 0.95, "{a:?}");
        assert!(get("class", "centre").balanced_accuracy < 0.75, "{a:?}");
        assert!((get("class", "border").baseline_balanced_accuracy - 0.5).abs() < 1e-9);
        assert!(a.findings().iter().any(|f| f.check == "source-confounding"));
        // Deterministic: the same numbers again.
        assert_eq!(audit(&items), a);
    }
}
