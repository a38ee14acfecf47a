//! Label versus source and view, over the records in a split: contingency tables with
//! Cramér's V, and how well the source alone predicts the class (predict each source's most
//! common class): its accuracy against the majority-class baseline, and per class the
//! one-vs-rest sensitivity and specificity. COVIDx takes every COVID-19 image from other
//! hospitals than its normal and pneumonia images, so a model can score by recognising the
//! source; these numbers say how much.

use rustc_hash::FxHashMap;
use serde::Serialize;

use super::{Finding, Severity};
use crate::manifest::{Manifest, Row};

/// A class x category contingency table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Table {
    /// What the columns are (`source`, `view`).
    pub by: String,
    /// Column names.
    pub columns: Vec<String>,
    /// Row (class) names.
    pub classes: Vec<String>,
    /// `counts[class][column]`.
    pub counts: Vec<Vec<u64>>,
    /// Cramér's V of the table (0: independent, 1: the column determines the class).
    pub cramers_v: f64,
}

/// Per class: the source-alone rule's one-vs-rest sensitivity and specificity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassSeparation {
    /// The class.
    pub class: String,
    /// Sources whose most common class it is.
    pub sources: Vec<String>,
    /// Share of the class's images that come from those sources.
    pub sensitivity: f64,
    /// Share of the other classes' images that come from other sources.
    pub specificity: f64,
}

/// The confounding audit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfoundingAudit {
    /// Images in a split.
    pub images: u64,
    /// Class x source.
    pub by_source: Table,
    /// Class x view.
    pub by_view: Table,
    /// Accuracy of predicting the class from the source alone.
    pub source_accuracy: f64,
    /// Accuracy of always predicting the most common class.
    pub majority_baseline: f64,
    /// Per class separation by the source.
    pub per_class: Vec<ClassSeparation>,
}

/// Cramér's V of a contingency table (rows or columns with no count are ignored).
pub fn cramers_v(counts: &[Vec<u64>]) -> f64 {
    let rows: Vec<&Vec<u64>> = counts
        .iter()
        .filter(|r| r.iter().sum::<u64>() > 0)
        .collect();
    let ncols = rows.first().map_or(0, |r| r.len());
    let col_sums: Vec<u64> = (0..ncols)
        .map(|j| rows.iter().map(|r| r[j]).sum())
        .collect();
    let cols: Vec<usize> = (0..ncols).filter(|&j| col_sums[j] > 0).collect();
    let n: u64 = col_sums.iter().sum();
    let k = rows.len().min(cols.len());
    if n == 0 || k < 2 {
        return 0.0;
    }
    let mut chi2 = 0.0;
    for r in &rows {
        let row_sum: u64 = r.iter().sum();
        for &j in &cols {
            let expected = row_sum as f64 * col_sums[j] as f64 / n as f64;
            let d = r[j] as f64 - expected;
            chi2 += d * d / expected;
        }
    }
    (chi2 / (n as f64 * (k - 1) as f64)).sqrt().min(1.0)
}

/// A blank category (e.g. no view recorded) is shown under this name.
pub const BLANK: &str = "(blank)";

fn table<'r>(
    rows: &[Row<'r>],
    classes: &[String],
    by: &str,
    field: fn(Row<'r>) -> &'r str,
) -> Table {
    let key = |r: Row<'r>| -> &'r str {
        let k = field(r);
        if k.is_empty() {
            BLANK
        } else {
            k
        }
    };
    // Categories are few: counted under borrowed names, then laid out in name order.
    let mut tally: FxHashMap<&str, Vec<u64>> = FxHashMap::default();
    let class_of: FxHashMap<&str, usize> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    for &r in rows {
        let column = tally
            .entry(key(r))
            .or_insert_with(|| vec![0; classes.len()]);
        if let Some(&c) = r.label().and_then(|l| class_of.get(l)) {
            column[c] += 1;
        }
    }
    let mut tally: Vec<(&str, Vec<u64>)> = tally.into_iter().collect();
    tally.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let counts: Vec<Vec<u64>> = (0..classes.len())
        .map(|c| tally.iter().map(|(_, n)| n[c]).collect())
        .collect();
    Table {
        by: by.to_string(),
        cramers_v: cramers_v(&counts),
        columns: tally.iter().map(|(k, _)| k.to_string()).collect(),
        classes: classes.to_vec(),
        counts,
    }
}

/// Computes the confounding audit over the records in a split.
pub fn audit(m: &Manifest, classes: &[String]) -> ConfoundingAudit {
    let in_split: Vec<Row<'_>> = m.rows().filter(|r| r.split().is_some()).collect();
    let by_source = table(&in_split, classes, "source", |r| r.source());
    let by_view = table(&in_split, classes, "view", |r| r.view());
    let n: u64 = by_source.counts.iter().flatten().sum();
    // The source-alone rule: each source predicts its most common class (ties: class order).
    let predicted: Vec<usize> = (0..by_source.columns.len())
        .map(|j| {
            (0..classes.len())
                .max_by_key(|&c| (by_source.counts[c][j], std::cmp::Reverse(c)))
                .unwrap_or(0)
        })
        .collect();
    let correct: u64 = predicted
        .iter()
        .enumerate()
        .map(|(j, &c)| by_source.counts[c][j])
        .sum();
    let class_totals: Vec<u64> = by_source.counts.iter().map(|r| r.iter().sum()).collect();
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let per_class = (0..classes.len())
        .map(|c| {
            let mine: Vec<usize> = (0..predicted.len())
                .filter(|&j| predicted[j] == c)
                .collect();
            let tp: u64 = mine.iter().map(|&j| by_source.counts[c][j]).sum();
            let fp: u64 = mine
                .iter()
                .map(|&j| {
                    (0..classes.len())
                        .filter(|&o| o != c)
                        .map(|o| by_source.counts[o][j])
                        .sum::<u64>()
                })
                .sum();
            let others = n - class_totals[c];
            ClassSeparation {
                class: classes[c].clone(),
                sources: mine.iter().map(|&j| by_source.columns[j].clone()).collect(),
                sensitivity: ratio(tp, class_totals[c]),
                specificity: ratio(others - fp, others),
            }
        })
        .collect();
    ConfoundingAudit {
        images: n,
        source_accuracy: ratio(correct, n),
        majority_baseline: ratio(class_totals.iter().copied().max().unwrap_or(0), n),
        by_source,
        by_view,
        per_class,
    }
}

impl ConfoundingAudit {
    /// A warning when the source predicts the class far better than the baseline, or a class
    /// is (nearly) separated from the rest by its sources alone.
    pub fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let gain = self.source_accuracy - self.majority_baseline;
        let separated: Vec<&ClassSeparation> = self
            .per_class
            .iter()
            .filter(|c| !c.sources.is_empty() && c.sensitivity >= 0.9 && c.specificity >= 0.9)
            .collect();
        if self.by_source.cramers_v >= 0.5 || gain >= 0.2 || !separated.is_empty() {
            let mut msg = format!(
                "the label is predictable from the source: Cramér's V {:.2}, source-alone \
                 accuracy {:.3} against a majority baseline of {:.3}",
                self.by_source.cramers_v, self.source_accuracy, self.majority_baseline
            );
            for c in separated {
                msg.push_str(&format!(
                    "; {} is separated by its sources ({}) with sensitivity {:.3} and \
                     specificity {:.3}",
                    c.class,
                    c.sources.join(", "),
                    c.sensitivity,
                    c.specificity
                ));
            }
            out.push(Finding {
                check: "source-confounding",
                severity: Severity::Warning,
                message: msg,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cramers_v_of_known_tables() {
        // Independent: 0. Perfect association: 1.
        assert!(cramers_v(&[vec![10, 10], vec![20, 20]]) < 1e-12);
        assert!((cramers_v(&[vec![10, 0], vec![0, 30]]) - 1.0).abs() < 1e-12);
        // 2x2 [[10, 20], [30, 40]]: chi2 = 0.7937 (scipy.stats.chi2_contingency, no
        // correction), n = 100, V = sqrt(chi2 / n) = 0.0891.
        let v = cramers_v(&[vec![10, 20], vec![30, 40]]);
        assert!((v - 0.089087).abs() < 1e-5, "{v}");
        // Empty rows and columns are ignored; a single class gives 0.
        assert!((cramers_v(&[vec![10, 0, 0], vec![0, 0, 5], vec![0, 0, 0]]) - 1.0).abs() < 1e-12);
        assert_eq!(cramers_v(&[vec![3, 4]]), 0.0);
    }
}
