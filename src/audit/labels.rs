//! The label mapping as it was applied: per source, every (raw finding, parsed finding,
//! outcome) with its image and patient counts, where the outcome is the class or the exclusion
//! reason. Findings the mapping did not know are listed, never hidden.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{Finding, Severity};
use crate::manifest::ManifestRow;

/// One line of the mapping table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LabelRow {
    /// Source name.
    pub source: String,
    /// Raw finding text.
    pub finding: String,
    /// Finding after the parse rule.
    pub parsed: String,
    /// The class, or `excluded: <reason>`.
    pub outcome: String,
    /// Records (images) with this mapping.
    pub images: u64,
    /// Distinct patients with this mapping.
    pub patients: u64,
}

/// The label audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LabelAudit {
    /// Every mapping, by source, then outcome, then parsed and raw finding.
    pub rows: Vec<LabelRow>,
    /// Parsed findings the mapping table does not know (`unmapped-finding`), per source, with
    /// their image counts.
    pub unknown: Vec<LabelRow>,
}

/// Tallies the manifest's label decisions.
pub fn audit(rows: &[ManifestRow]) -> LabelAudit {
    type Key = (String, String, String, String);
    let mut images: BTreeMap<Key, u64> = BTreeMap::new();
    let mut patients: BTreeMap<Key, BTreeSet<&str>> = BTreeMap::new();
    for r in rows {
        let outcome = match (&r.label, &r.exclusion) {
            // Records excluded after labelling (missing image, duplicate, ...) still show the
            // class their finding mapped to; the mapping is what this table audits.
            (Some(class), _) => class.clone(),
            (None, Some(why)) => format!("excluded: {why}"),
            (None, None) => "unlabelled".to_string(),
        };
        let key = (
            r.source.clone(),
            outcome,
            r.finding_parsed.clone(),
            r.finding.clone(),
        );
        *images.entry(key.clone()).or_default() += 1;
        patients.entry(key).or_default().insert(&r.patient_key);
    }
    let rows: Vec<LabelRow> = images
        .into_iter()
        .map(|(k, n)| LabelRow {
            patients: patients[&k].len() as u64,
            source: k.0,
            outcome: k.1,
            parsed: k.2,
            finding: k.3,
            images: n,
        })
        .collect();
    let unknown = rows
        .iter()
        .filter(|r| r.outcome == "excluded: unmapped-finding")
        .cloned()
        .collect();
    LabelAudit { rows, unknown }
}

impl LabelAudit {
    /// One finding per source with unknown findings.
    pub fn findings(&self) -> Vec<Finding> {
        let mut by_source: BTreeMap<&str, (u64, Vec<&str>)> = BTreeMap::new();
        for r in &self.unknown {
            let e = by_source.entry(&r.source).or_default();
            e.0 += r.images;
            if !e.1.contains(&r.parsed.as_str()) {
                e.1.push(&r.parsed);
            }
        }
        by_source
            .into_iter()
            .map(|(source, (images, names))| Finding {
                check: "unknown-findings",
                severity: Severity::Warning,
                message: format!(
                    "{source}: {images} images have findings the label map does not know: {}",
                    names
                        .iter()
                        .take(8)
                        .map(|n| format!("{n:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                        + if names.len() > 8 { ", ..." } else { "" }
                ),
            })
            .collect()
    }
}
