//! The build summary: images and patients per class per split, the test pool, and excluded
//! records by reason, computed with polars from the manifest.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Result;
use polars::prelude::*;

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

fn strings(df: &DataFrame, name: &str) -> Result<Vec<String>> {
    Ok(df
        .column(name)?
        .str()?
        .iter()
        .map(|s| s.unwrap_or("-").to_string())
        .collect())
}

fn numbers(df: &DataFrame, name: &str) -> Result<Vec<u64>> {
    Ok(df
        .column(name)?
        .cast(&DataType::UInt64)?
        .u64()?
        .iter()
        .map(|v| v.unwrap_or(0))
        .collect())
}

fn counts(lf: LazyFrame, by: Vec<Expr>) -> Result<DataFrame> {
    Ok(lf
        .group_by(by)
        .agg([
            len().alias("images"),
            col("patient_key").n_unique().alias("patients"),
        ])
        .collect()?)
}

/// Computes the summary from a manifest frame (see [`crate::record::manifest_frame`]).
pub fn summarize(manifest: &DataFrame, classes: &[String]) -> Result<Summary> {
    let mut s = Summary {
        classes: classes.to_vec(),
        ..Summary::default()
    };
    let lf = manifest.clone().lazy();
    let in_split = lf.clone().filter(col("split").is_not_null());
    let pool = lf.clone().filter(
        col("test_pool").and(
            col("exclusion")
                .is_null()
                .or(col("exclusion").eq(lit("test-pool-not-pinned")))
                .or(col("exclusion").eq(lit("test-pool-not-drawn"))),
        ),
    );

    let by_class = counts(in_split.clone(), vec![col("split"), col("label")])?;
    let pool_by_class = counts(pool.clone(), vec![col("label")])?;
    for (df, fixed) in [(&by_class, None), (&pool_by_class, Some("pool"))] {
        let labels = strings(df, "label")?;
        let splits = match fixed {
            Some(f) => vec![f.to_string(); labels.len()],
            None => strings(df, "split")?,
        };
        let images = numbers(df, "images")?;
        let patients = numbers(df, "patients")?;
        for i in 0..labels.len() {
            s.splits.entry(splits[i].clone()).or_default().insert(
                labels[i].clone(),
                Count {
                    images: images[i],
                    patients: patients[i],
                },
            );
        }
    }

    let totals = counts(in_split, vec![col("split")])?;
    let (names, images, patients) = (
        strings(&totals, "split")?,
        numbers(&totals, "images")?,
        numbers(&totals, "patients")?,
    );
    for i in 0..names.len() {
        s.totals.insert(
            names[i].clone(),
            Count {
                images: images[i],
                patients: patients[i],
            },
        );
    }
    let pool_total = pool
        .select([
            len().alias("images"),
            col("patient_key").n_unique().alias("patients"),
        ])
        .collect()?;
    s.totals.insert(
        "pool".into(),
        Count {
            images: numbers(&pool_total, "images")?[0],
            patients: numbers(&pool_total, "patients")?[0],
        },
    );

    let excluded = lf
        .filter(col("exclusion").is_not_null())
        .group_by([col("exclusion"), col("label")])
        .agg([len().alias("records")])
        .collect()?;
    let (reasons, labels, n) = (
        strings(&excluded, "exclusion")?,
        strings(&excluded, "label")?,
        numbers(&excluded, "records")?,
    );
    for i in 0..reasons.len() {
        s.excluded
            .entry(reasons[i].clone())
            .or_default()
            .insert(labels[i].clone(), n[i]);
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
