//! Split sanity: images and patients per class and split, what the test pool held and what
//! of it was left unused, and the pinned test list the build checked entry by entry.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::config::Pipeline;
use crate::manifest::Manifest;

/// Images and patients of one class in one split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cell {
    /// Class.
    pub class: String,
    /// `train`, `test` or `test-pool-unused`.
    pub split: String,
    /// Images.
    pub images: u64,
    /// Patients.
    pub patients: u64,
}

/// The split audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SplitAudit {
    /// Per class and split (and the unused part of the test pool).
    pub cells: Vec<Cell>,
    /// Records in the test pool.
    pub test_pool: u64,
    /// Of those, drawn into test.
    pub test_pool_used: u64,
    /// The pinned published test list, when the pipeline has one.
    pub pinned_test_list: Option<String>,
    /// Entries of that list (every one matched a record, or the build would have failed).
    pub pinned_entries: u64,
}

/// Computes the split audit.
pub fn audit(m: &Manifest, pipeline: &Pipeline) -> SplitAudit {
    let mut cells: BTreeMap<(usize, usize), (u64, BTreeSet<&str>)> = BTreeMap::new();
    let class_pos = |c: &str| pipeline.class_index(c).unwrap_or(usize::MAX);
    let (mut pool, mut used) = (0, 0);
    for r in m.rows() {
        let Some(label) = r.label() else { continue };
        let split = match (r.split(), r.test_pool()) {
            (Some(crate::record::Split::Train), _) => 0,
            (Some(crate::record::Split::Test), _) => 1,
            (None, true) => 2,
            (None, false) => continue,
        };
        if r.test_pool() {
            pool += 1;
            used += (split == 1) as u64;
        }
        let e = cells.entry((class_pos(label), split)).or_default();
        e.0 += 1;
        e.1.insert(r.patient_key());
    }
    let split_name = ["train", "test", "test-pool-unused"];
    let list = pipeline.split.pinned_test_list.clone();
    let pinned_entries = if list.is_some() {
        m.rows()
            .filter(|r| r.split() == Some(crate::record::Split::Test))
            .count() as u64
    } else {
        0
    };
    SplitAudit {
        cells: cells
            .into_iter()
            .map(|((c, s), (images, patients))| Cell {
                class: pipeline.classes.get(c).cloned().unwrap_or_default(),
                split: split_name[s].to_string(),
                images,
                patients: patients.len() as u64,
            })
            .collect(),
        test_pool: pool,
        test_pool_used: used,
        pinned_test_list: list,
        pinned_entries,
    }
}
