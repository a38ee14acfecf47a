//! Patients across splits and sources: a patient in more than one split is an error (it
//! should never happen: the split stage checks it too); the same upstream id in more than one
//! source is listed (it may be one person in two datasets, or a coincidence of numbering);
//! images per patient per split.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{Finding, Severity};
use crate::manifest::ManifestRow;

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
pub fn audit(rows: &[ManifestRow]) -> OverlapAudit {
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
                .entry(r.source.clone())
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
    let per_patient = per_split
        .into_iter()
        .map(|(split, counts)| {
            let images: u64 = counts.iter().sum();
            let mut histogram = [0u64; 5];
            for &n in &counts {
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
        })
        .collect();
    OverlapAudit {
        across_splits,
        shared_ids,
        per_patient,
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
