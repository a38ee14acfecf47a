//! Patients across splits and sources: a patient in more than one split is an error (it
//! should never happen: the split stage checks it too); the same upstream id in more than one
//! source is listed (it may be one person in two datasets, or a coincidence of numbering);
//! images per patient per split.

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap;
use serde::Serialize;

use super::{Finding, Severity};
use crate::manifest::Manifest;
use crate::record::Split;

/// A patient found in more than one split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SplitOverlap {
    /// Patient key (`source:subject`).
    pub patient: String,
    /// Images per split.
    pub images: BTreeMap<String, u64>,
}

/// An upstream patient id used by more than one source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SharedId {
    /// The id as upstream writes it.
    pub id: String,
    /// The sources using it, with the splits of their records.
    pub sources: BTreeMap<String, BTreeSet<String>>,
}

/// Images per patient in one split.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PerPatient {
    /// Split name.
    pub split: String,
    /// Patients in the split.
    pub patients: u64,
    /// Images in the split.
    pub images: u64,
    /// Most images of one patient.
    pub max: u64,
    /// Mean images per patient.
    pub mean: f64,
    /// Patients with 1, 2, 3, 4 and 5 or more images.
    pub histogram: [u64; 5],
}

/// The overlap audit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OverlapAudit {
    /// Patients in more than one split (train, test; the unused test pool is not a split).
    pub across_splits: Vec<SplitOverlap>,
    /// Upstream ids in more than one source.
    pub shared_ids: Vec<SharedId>,
    /// Images per patient, per split.
    pub per_patient: Vec<PerPatient>,
}

/// Computes the overlap audit from the manifest.
pub fn audit(m: &Manifest) -> OverlapAudit {
    // Counted under borrowed keys with a slot per split; the few patients and ids that are
    // reported are then gathered in order.
    let slot = |s: Split| match s {
        Split::Train => 0,
        Split::Test => 1,
    };
    let kept = || {
        m.rows()
            .filter(|r| r.exclusion().is_none() || r.split().is_some())
    };
    let mut by_patient: FxHashMap<&str, [u64; 2]> = FxHashMap::default();
    // Upstream id -> the first source that has it, and whether another one does too.
    let mut id_sources: FxHashMap<&str, (&str, bool)> = FxHashMap::default();
    for r in kept() {
        if let Some(s) = r.split() {
            by_patient.entry(r.patient_key()).or_default()[slot(s)] += 1;
        }
        if !r.patient().is_empty() {
            let e = id_sources.entry(r.patient()).or_insert((r.source(), false));
            e.1 |= e.0 != r.source();
        }
    }
    let splits_of = |counts: &[u64; 2]| -> BTreeMap<String, u64> {
        [Split::Train, Split::Test]
            .into_iter()
            .filter(|&s| counts[slot(s)] > 0)
            .map(|s| (s.name().to_string(), counts[slot(s)]))
            .collect()
    };
    let mut across: Vec<(&str, &[u64; 2])> = by_patient
        .iter()
        .filter(|(_, c)| c.iter().filter(|&&n| n > 0).count() > 1)
        .map(|(p, c)| (*p, c))
        .collect();
    across.sort_unstable_by_key(|(p, _)| *p);
    let across_splits = across
        .into_iter()
        .map(|(p, c)| SplitOverlap {
            patient: p.to_string(),
            images: splits_of(c),
        })
        .collect();
    let mut ids: BTreeMap<&str, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for r in kept().filter(|r| !r.patient().is_empty() && id_sources[r.patient()].1) {
        let split = r.split().map_or("none", |s| s.name()).to_string();
        ids.entry(r.patient())
            .or_default()
            .entry(r.source().to_string())
            .or_default()
            .insert(split);
    }
    let shared_ids = ids
        .into_iter()
        .map(|(id, sources)| SharedId {
            id: id.to_string(),
            sources,
        })
        .collect();
    let mut splits = [Split::Train, Split::Test];
    splits.sort_by_key(|s| s.name());
    let per_patient = splits
        .into_iter()
        .filter_map(|s| {
            let counts: Vec<u64> = by_patient
                .values()
                .map(|c| c[slot(s)])
                .filter(|&n| n > 0)
                .collect();
            (!counts.is_empty()).then(|| per_patient_of(s.name().to_string(), &counts))
        })
        .collect();
    OverlapAudit {
        across_splits,
        shared_ids,
        per_patient,
    }
}

/// Images per patient in one split, from each patient's image count there.
fn per_patient_of(split: String, counts: &[u64]) -> PerPatient {
    let images: u64 = counts.iter().sum();
    let mut histogram = [0u64; 5];
    for &n in counts {
        histogram[(n.clamp(1, 5) - 1) as usize] += 1;
    }
    PerPatient {
        split,
        patients: counts.len() as u64,
        images,
        max: counts.iter().copied().max().unwrap_or(0),
        mean: images as f64 / counts.len().max(1) as f64,
        histogram,
    }
}

impl OverlapAudit {
    /// An error for patients across splits; information on ids shared by sources.
    pub fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        if !self.across_splits.is_empty() {
            let first: Vec<&str> = self
                .across_splits
                .iter()
                .take(5)
                .map(|o| o.patient.as_str())
                .collect();
            out.push(Finding {
                check: "overlap",
                severity: Severity::Error,
                message: format!(
                    "{} patients are in more than one split (e.g. {})",
                    self.across_splits.len(),
                    first.join(", ")
                ),
            });
        }
        if !self.shared_ids.is_empty() {
            out.push(Finding {
                check: "shared-ids",
                severity: Severity::Info,
                message: format!(
                    "{} upstream patient ids occur in more than one source (e.g. {:?}); covidx \
                     treats them as different patients",
                    self.shared_ids.len(),
                    self.shared_ids[0].id
                ),
            });
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::manifest::ManifestRow;

    /// `n` varied manifest rows: sources, patients in one or both splits, ids shared across
    /// sources, excluded rows with and without a split, labels, findings, empty ids.
    pub(crate) fn rows(n: usize) -> Vec<ManifestRow> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |m: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % m
        };
        (0..n)
            .map(|i| {
                let source = ["cohen", "rsna", "figure1"][next(3) as usize].to_string();
                let patient = match next(10) {
                    0 => String::new(),
                    _ => format!("p{}", next(n as u64 / 4 + 1)),
                };
                let split = [Some(Split::Train), Some(Split::Test), None][next(3) as usize];
                let label = match next(4) {
                    0 => None,
                    k => Some(["normal", "pneumonia", "COVID-19"][k as usize - 1].to_string()),
                };
                let exclusion = match (split, next(3)) {
                    (Some(_), 0) | (None, 0 | 1) => {
                        Some(["unmapped-finding", "view-filtered"][next(2) as usize].to_string())
                    }
                    _ => None,
                };
                let finding = ["Normal", "COVID-19", "Lung Opacity", "Effusion|Mass", ""]
                    [next(5) as usize]
                    .to_string();
                ManifestRow {
                    record: i as u64,
                    patient_key: format!("{source}:{patient}").into(),
                    source: source.into(),
                    patient: patient.into(),
                    finding_parsed: finding.to_lowercase().into(),
                    finding: finding.into(),
                    label: label.map(Into::into),
                    split,
                    exclusion: exclusion.map(Into::into),
                    ..ManifestRow::default()
                }
            })
            .collect()
    }

    /// The plain version (nested maps of owned keys): the reference the counted one matches.
    fn reference(rows: &[ManifestRow]) -> OverlapAudit {
        let mut by_patient: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
        let mut ids: BTreeMap<&str, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
        for r in rows
            .iter()
            .filter(|r| r.exclusion.is_none() || r.split.is_some())
        {
            let split = r.split.map_or("none", |s| s.name()).to_string();
            if r.split.is_some() {
                *by_patient
                    .entry(&r.patient_key)
                    .or_default()
                    .entry(split.clone())
                    .or_default() += 1;
            }
            if !r.patient.is_empty() {
                ids.entry(&r.patient)
                    .or_default()
                    .entry(r.source.to_string())
                    .or_default()
                    .insert(split);
            }
        }
        let across_splits = by_patient
            .iter()
            .filter(|(_, s)| s.len() > 1)
            .map(|(p, s)| SplitOverlap {
                patient: p.to_string(),
                images: s.clone(),
            })
            .collect();
        let shared_ids = ids
            .into_iter()
            .filter(|(_, s)| s.len() > 1)
            .map(|(id, sources)| SharedId {
                id: id.to_string(),
                sources,
            })
            .collect();
        let mut per_split: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for splits in by_patient.values() {
            for (split, &n) in splits {
                per_split.entry(split.clone()).or_default().push(n);
            }
        }
        // (The statistics of a split's counts are shared: the counting is what is compared.)
        let per_patient = per_split
            .into_iter()
            .map(|(split, counts)| per_patient_of(split, &counts))
            .collect();
        OverlapAudit {
            across_splits,
            shared_ids,
            per_patient,
        }
    }

    #[test]
    fn the_counted_audit_equals_the_reference() {
        for n in [0, 1, 50, 3000] {
            let rows = rows(n);
            let a = audit(&Manifest::from_rows(&rows));
            assert_eq!(a, reference(&rows), "{n} rows");
            if n == 3000 {
                assert!(!a.across_splits.is_empty() && !a.shared_ids.is_empty());
                assert_eq!(a.per_patient.len(), 2);
            }
        }
        // Only test rows: one split reported.
        let only_test: Vec<ManifestRow> = rows(200)
            .into_iter()
            .map(|r| ManifestRow {
                split: Some(Split::Test),
                ..r
            })
            .collect();
        assert_eq!(
            audit(&Manifest::from_rows(&only_test)),
            reference(&only_test)
        );
    }
}
