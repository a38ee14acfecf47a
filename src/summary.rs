//! The build summary: images and patients per class per split, the test pool, and excluded
//! records by reason, counted in one pass over the manifest frame.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Result;
use polars::prelude::DataFrame;
use rustc_hash::FxHashSet;

/// Images and patients of one cell of the table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    /// Number of images (records).
    pub images: u64,
    /// Number of distinct patients.
    pub patients: u64,
}

/// Counts of a build, ready to print or to compare in tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Class names in pipeline order.
    pub classes: Vec<String>,
    /// `train` / `test` / `pool` (test pool before a pinned list) -> class -> count.
    pub splits: BTreeMap<String, BTreeMap<String, Count>>,
    /// `split` / `pool` totals over classes (patients counted once).
    pub totals: BTreeMap<String, Count>,
    /// Exclusion reason -> (label or "-") -> records.
    pub excluded: BTreeMap<String, BTreeMap<String, u64>>,
}

impl Summary {
    /// Count for a split (`train`, `test`, `pool`) and class.
    pub fn get(&self, split: &str, class: &str) -> Count {
        self.splits
            .get(split)
            .and_then(|m| m.get(class))
            .copied()
            .unwrap_or_default()
    }

    /// Records excluded for `reason`, over all labels.
    pub fn excluded_total(&self, reason: &str) -> u64 {
        self.excluded
            .get(reason)
            .map(|m| m.values().sum())
            .unwrap_or(0)
    }
}

/// The string column `name` (nulls as `None`).
fn strings<'a>(df: &'a DataFrame, name: &str) -> Result<Vec<Option<&'a str>>> {
    Ok(df.column(name)?.str()?.iter().collect())
}

/// Images and distinct patients (a null patient key counts as one patient, as polars'
/// `n_unique` does) of the rows gathered under one key.
#[derive(Default)]
struct Tally<'a> {
    images: u64,
    patients: FxHashSet<Option<&'a str>>,
}

impl<'a> Tally<'a> {
    fn add(&mut self, patient: Option<&'a str>) {
        self.images += 1;
        self.patients.insert(patient);
    }

    fn count(&self) -> Count {
        Count {
            images: self.images,
            patients: self.patients.len() as u64,
        }
    }
}

/// Computes the summary from a manifest frame (see [`crate::record::manifest_frame`]): one
/// pass over its `split`, `label`, `patient_key`, `test_pool` and `exclusion` columns.
pub fn summarize(manifest: &DataFrame, classes: &[String]) -> Result<Summary> {
    let split = strings(manifest, "split")?;
    let label = strings(manifest, "label")?;
    let patient = strings(manifest, "patient_key")?;
    let exclusion = strings(manifest, "exclusion")?;
    let test_pool: Vec<Option<bool>> = manifest.column("test_pool")?.bool()?.iter().collect();

    let mut by_class: BTreeMap<(&str, &str), Tally> = BTreeMap::new();
    let mut by_split: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut pool_by_class: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut pool = Tally::default();
    let mut excluded: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for i in 0..manifest.height() {
        let lab = label[i].unwrap_or("-");
        if let Some(sp) = split[i] {
            by_class.entry((sp, lab)).or_default().add(patient[i]);
            by_split.entry(sp).or_default().add(patient[i]);
        }
        let pinned_out = matches!(
            exclusion[i],
            None | Some("test-pool-not-pinned") | Some("test-pool-not-drawn")
        );
        if test_pool[i] == Some(true) && pinned_out {
            pool_by_class.entry(lab).or_default().add(patient[i]);
            pool.add(patient[i]);
        }
        if let Some(reason) = exclusion[i] {
            *excluded.entry((reason, lab)).or_default() += 1;
        }
    }

    let mut s = Summary {
        classes: classes.to_vec(),
        ..Summary::default()
    };
    for ((sp, lab), t) in &by_class {
        let cell = s.splits.entry(sp.to_string()).or_default();
        cell.insert(lab.to_string(), t.count());
    }
    for (lab, t) in &pool_by_class {
        let cell = s.splits.entry("pool".into()).or_default();
        cell.insert(lab.to_string(), t.count());
    }
    for (sp, t) in &by_split {
        s.totals.insert(sp.to_string(), t.count());
    }
    s.totals.insert("pool".into(), pool.count());
    for ((reason, lab), n) in excluded {
        s.excluded
            .entry(reason.to_string())
            .or_default()
            .insert(lab.to_string(), n);
    }
    Ok(s)
}

/// Renders the summary as an aligned text table.
pub fn render(s: &Summary) -> String {
    let mut out = String::new();
    let cols = ["train", "test", "pool"];
    let _ = writeln!(
        out,
        "{:<14} {:>19} {:>19} {:>19}",
        "", "train", "test", "test pool"
    );
    let _ = writeln!(
        out,
        "{:<14} {:>9}{:>10} {:>9}{:>10} {:>9}{:>10}",
        "class", "images", "patients", "images", "patients", "images", "patients"
    );
    let row = |out: &mut String, name: &str, cells: [Count; 3]| {
        let _ = writeln!(
            out,
            "{:<14} {:>9}{:>10} {:>9}{:>10} {:>9}{:>10}",
            name,
            cells[0].images,
            cells[0].patients,
            cells[1].images,
            cells[1].patients,
            cells[2].images,
            cells[2].patients
        );
    };
    for class in &s.classes {
        row(&mut out, class, cols.map(|c| s.get(c, class)));
    }
    row(
        &mut out,
        "total",
        cols.map(|c| s.totals.get(c).copied().unwrap_or_default()),
    );
    if !s.excluded.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<24} {:>8}  by label",
            "excluded (reason)", "records"
        );
        for (reason, by_label) in &s.excluded {
            let total: u64 = by_label.values().sum();
            let mut parts: Vec<String> = s
                .classes
                .iter()
                .filter_map(|c| by_label.get(c).map(|n| format!("{c} {n}")))
                .collect();
            if let Some(n) = by_label.get("-") {
                parts.push(format!("no label {n}"));
            }
            let _ = writeln!(out, "{:<24} {:>8}  {}", reason, total, parts.join(", "));
        }
    }
    out
}
