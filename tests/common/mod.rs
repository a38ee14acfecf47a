//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod shared_layout;

use std::path::{Path, PathBuf};

/// Path of a file in the crate (pipelines, ...).
pub fn crate_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Real data, or a clear SKIPPED line and `None`.
pub fn shared_or_skip(test: &str) -> Option<PathBuf> {
    let d = shared_layout::shared_data();
    if d.is_none() {
        eprintln!(
            "SKIPPED {test}: ../shared/data not found (set COVIDX_SHARED_DATA to run it on the \
             real upstream metadata)"
        );
    }
    d
}
