//! The label mapping as it was applied: per source, every (raw finding, parsed finding,
//! outcome) with its image and patient counts, where the outcome is the class or the exclusion
//! reason. Findings the mapping did not know are listed, never hidden.

use std::collections::BTreeMap;

use rustc_hash::{FxHashMap, FxHashSet};

use serde::Serialize;

use super::{Finding, Severity};
use crate::manifest::Manifest;

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
pub fn audit(m: &Manifest) -> LabelAudit {
    // Counted under borrowed keys (one hash lookup per row, nothing copied), then merged under
    // the outcome's text, in the order of (source, outcome, parsed, finding).
    type Borrowed<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a str, &'a str);
    let mut counted: FxHashMap<Borrowed<'_>, (u64, FxHashSet<&str>)> = FxHashMap::default();
    for r in m.rows() {
        // Records excluded after labelling (missing image, duplicate, ...) still show the
        // class their finding mapped to; the mapping is what this table audits.
        let why = match r.label() {
            Some(_) => None,
            None => r.exclusion(),
        };
        let key = (r.source(), r.label(), why, r.finding_parsed(), r.finding());
        let e = counted.entry(key).or_default();
        e.0 += 1;
        e.1.insert(r.patient_key());
    }
    type Key = (String, String, String, String);
    let mut merged: BTreeMap<Key, (u64, FxHashSet<&str>)> = BTreeMap::new();
    for ((source, label, why, parsed, finding), (n, patients)) in counted {
        let outcome = match (label, why) {
            (Some(class), _) => class.to_string(),
            (None, Some(why)) => format!("excluded: {why}"),
            (None, None) => "unlabelled".to_string(),
        };
        let key = (
            source.to_string(),
            outcome,
            parsed.to_string(),
            finding.to_string(),
        );
        let e = merged.entry(key).or_default();
        e.0 += n;
        e.1.extend(patients);
    }
    let rows: Vec<LabelRow> = merged
        .into_iter()
        .map(|(k, (n, patients))| LabelRow {
            patients: patients.len() as u64,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ManifestRow;
    use std::collections::BTreeSet;

    /// The plain version (one map of owned keys): the reference the counted version matches.
    fn reference(rows: &[ManifestRow]) -> Vec<LabelRow> {
        type Key = (String, String, String, String);
        let mut images: BTreeMap<Key, u64> = BTreeMap::new();
        let mut patients: BTreeMap<Key, BTreeSet<&str>> = BTreeMap::new();
        for r in rows {
            let outcome = match (&r.label, &r.exclusion) {
                (Some(class), _) => class.to_string(),
                (None, Some(why)) => format!("excluded: {why}"),
                (None, None) => "unlabelled".to_string(),
            };
            let key = (
                r.source.to_string(),
                outcome,
                r.finding_parsed.to_string(),
                r.finding.to_string(),
            );
            *images.entry(key.clone()).or_default() += 1;
            patients.entry(key).or_default().insert(&r.patient_key);
        }
        images
            .into_iter()
            .map(|(k, n)| LabelRow {
                patients: patients[&k].len() as u64,
                source: k.0,
                outcome: k.1,
                parsed: k.2,
                finding: k.3,
                images: n,
            })
            .collect()
    }

    #[test]
    fn the_counted_table_equals_the_reference() {
        let rows = crate::audit::overlap::tests::rows(3000);
        let a = audit(&Manifest::from_rows(&rows));
        assert_eq!(a.rows, reference(&rows));
        assert!(a.rows.len() > 20, "a varied table");
        assert!(!a.unknown.is_empty());
        // A class literally named like an exclusion merges with it, as in the reference.
        let mut odd = rows.clone();
        odd[0].label = Some("excluded: unmapped-finding".into());
        assert_eq!(audit(&Manifest::from_rows(&odd)).rows, reference(&odd));
    }
}
