//! Lock files (`covidx.lock.json`): what a build read and wrote, by SHA-256, so a rebuild can
//! be verified byte for byte with `covidx verify`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::fsutil;

/// Format name written into every lock file.
pub const FORMAT: &str = "covidx-lock/1";

/// The lock file of one build.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Lock {
    /// Always [`FORMAT`].
    pub format: String,
    /// `covidx <version>`.
    pub tool: String,
    /// Pipeline name.
    pub pipeline: String,
    /// SHA-256 of the pipeline file (also copied to `pipeline.toml` in the output).
    pub pipeline_sha256: String,
    /// `metadata-only` (images checked for existence) or `full` (images read and hashed).
    pub mode: String,
    /// Input files relative to `--sources` -> SHA-256 (metadata, pins, and images when read).
    pub inputs: BTreeMap<String, String>,
    /// Output files relative to the output directory -> SHA-256.
    pub outputs: BTreeMap<String, String>,
}

impl Lock {
    /// Serialises with sorted keys and a trailing newline (stable bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = serde_json::to_string_pretty(self).expect("lock serialises");
        s.push('\n');
        s.into_bytes()
    }

    /// Reads a lock file.
    pub fn read(path: &Path) -> Result<Lock> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let lock: Lock = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a covidx lock file", path.display()))?;
        if lock.format != FORMAT {
            anyhow::bail!(
                "{}: unsupported lock format {:?}",
                path.display(),
                lock.format
            );
        }
        Ok(lock)
    }
}

/// One difference found by [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// `input` or `output`.
    pub side: &'static str,
    /// Path as recorded in the lock.
    pub path: String,
    /// What differs.
    pub what: String,
}

/// Recomputes every hash of a lock: inputs under `sources`, outputs next to the lock file.
/// Returns the mismatches (empty = verified). Hashing runs in parallel.
pub fn verify(lock_path: &Path, sources: &Path) -> Result<(Lock, Vec<Mismatch>)> {
    use rayon::prelude::*;
    let lock = Lock::read(lock_path)?;
    let out_dir = lock_path.parent().unwrap_or(Path::new("."));
    let jobs: Vec<(&'static str, &String, &String, std::path::PathBuf)> = lock
        .inputs
        .iter()
        .map(|(p, h)| ("input", p, h, sources.join(p)))
        .chain(
            lock.outputs
                .iter()
                .map(|(p, h)| ("output", p, h, out_dir.join(p))),
        )
        .collect();
    let mut mismatches: Vec<Mismatch> = jobs
        .par_iter()
        .filter_map(|(side, rel, want, path)| {
            if fsutil::check_relative(rel).is_err() {
                return Some(Mismatch {
                    side,
                    path: (*rel).clone(),
                    what: "path escapes its root; not read".into(),
                });
            }
            let what = match fsutil::sha256_file(path) {
                Ok(got) if &got == *want => return None,
                Ok(got) => format!("sha256 {got}, lock says {want}"),
                Err(_) if !path.exists() => "missing".to_string(),
                Err(e) => format!("unreadable: {e:#}"),
            };
            Some(Mismatch {
                side,
                path: (*rel).clone(),
                what,
            })
        })
        .collect();
    mismatches.sort_by(|a, b| (a.side, &a.path).cmp(&(b.side, &b.path)));
    Ok((lock, mismatches))
}
