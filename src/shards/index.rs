//! `shards/index.json` (the shard list a finished build vouches for) and
//! `shards/progress.json` (the image stage's resume state), with their versions.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::format::{FORMAT, VERSION};
use crate::record::Split;

/// One shard in the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardEntry {
    /// File name relative to `shards/<split>/`.
    pub file: String,
    /// Number of samples.
    pub samples: usize,
    /// Samples per class, in class order.
    pub class_counts: Vec<u64>,
    /// SHA-256 of the file.
    pub sha256: String,
}

/// `shards/index.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Index {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`VERSION`].
    pub version: String,
    /// Hash of everything that determines the shards' bytes (inputs, pipeline, tool version);
    /// a resumed build keeps shards only when it matches.
    pub params: String,
    /// Image side.
    pub size: u32,
    /// Class names.
    pub classes: Vec<String>,
    /// False while a build is still writing shards.
    pub complete: bool,
    /// Shards per split (`train`, `test`), in order.
    pub splits: BTreeMap<String, Vec<ShardEntry>>,
}

/// Reads a JSON file of ours, checking `format` and `version` before anything else, so a
/// file of another version is reported as such rather than as a field error.
fn load_versioned<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    load_json_format(path, what, FORMAT, VERSION)
}

/// [`Index::load`]'s checks for a JSON file of format `format`, version `version`.
pub(crate) fn load_json_format<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &str,
    format: &str,
    version: &str,
) -> Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: not JSON: not a covidx {what}", path.display()))?;
    let field = |k: &str| value.get(k).and_then(|v| v.as_str()).map(str::to_string);
    match (field("format"), field("version")) {
        (Some(f), Some(v)) if f == format => {
            if v != version {
                bail!(
                    "{}: {what} version {v:?}; this covidx reads version {version:?} (rebuild \
                     with this version)",
                    path.display()
                );
            }
        }
        (f, _) => bail!(
            "{}: format {:?} is not {format:?}: not a covidx {what}",
            path.display(),
            f.unwrap_or_default()
        ),
    }
    serde_json::from_value(value)
        .with_context(|| format!("{}: not a valid covidx {what}", path.display()))
}

/// Pretty JSON with a trailing newline (field order is the struct's: stable bytes).
pub(crate) fn json_bytes<T: Serialize>(v: &T) -> Vec<u8> {
    let mut s = serde_json::to_string_pretty(v).expect("serialises");
    s.push('\n');
    s.into_bytes()
}

impl Index {
    /// A new, incomplete index with no shard.
    pub fn new(params: &str, size: u32, classes: &[String]) -> Index {
        Index {
            format: FORMAT.into(),
            version: VERSION.into(),
            params: params.to_string(),
            size,
            classes: classes.to_vec(),
            complete: false,
            splits: BTreeMap::new(),
        }
    }

    /// Reads and checks an index: errors name the file and say what is wrong (missing, not
    /// JSON, another format or version, a split other than train/test).
    pub fn load(path: &Path) -> Result<Index> {
        let index: Index = load_versioned(path, "shard index")?;
        if let Some(bad) = index.splits.keys().find(|k| split_of(k).is_none()) {
            bail!("{}: split {bad:?} is not train or test", path.display());
        }
        for (split, entries) in &index.splits {
            for e in entries {
                if crate::build_dir::shard_number(&e.file).is_none() {
                    bail!(
                        "{}: {split} shard file {:?} is not a shard name",
                        path.display(),
                        e.file
                    );
                }
                if e.class_counts.len() != index.classes.len() {
                    bail!(
                        "{}: {split}/{}: {} class counts for {} classes",
                        path.display(),
                        e.file,
                        e.class_counts.len(),
                        index.classes.len()
                    );
                }
            }
        }
        Ok(index)
    }

    /// Stable bytes (struct field order, trailing newline).
    pub fn to_bytes(&self) -> Vec<u8> {
        json_bytes(self)
    }

    /// The shards of `split`, in order (empty when it has none).
    pub fn entries(&self, split: Split) -> &[ShardEntry] {
        self.splits
            .get(split.name())
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

/// The split a key of [`Index::splits`] names.
pub fn split_of(name: &str) -> Option<Split> {
    match name {
        "train" => Some(Split::Train),
        "test" => Some(Split::Test),
        _ => None,
    }
}

/// A quarantined record as the image stage records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quarantined {
    /// Manifest row.
    pub record: usize,
    /// Image path relative to `--sources`.
    pub path: String,
    /// Short reason (`corrupt`, `empty`, `wrong-extension`, ...).
    pub reason: String,
    /// Detail.
    pub detail: String,
}

/// A finished shard in the resume state, with the quarantined records of its slice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardProgress {
    /// The shard as the index lists it.
    pub shard: ShardEntry,
    /// Records of the shard's slice whose images were quarantined.
    pub quarantined: Vec<Quarantined>,
    /// SHA-256 of the shard's image-facts table (`shard-NNNNN.images.parquet`); empty in a
    /// state written before covidx recorded them, whose shards are then redone.
    #[serde(default)]
    pub images_sha256: String,
}

/// `shards/progress.json`: every shard finished so far, and the parameters they were written
/// with, so a resumed build keeps only shards of the same inputs and settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`VERSION`].
    pub version: String,
    /// The same parameter hash as the index's.
    pub params: String,
    /// Finished shards per split, in shard order.
    pub splits: BTreeMap<String, Vec<ShardProgress>>,
}

impl Progress {
    /// An empty resume state for `params`.
    pub fn new(params: &str) -> Progress {
        Progress {
            format: FORMAT.into(),
            version: VERSION.into(),
            params: params.to_string(),
            splits: BTreeMap::new(),
        }
    }

    /// Reads and checks a resume state (errors as [`Index::load`]).
    pub fn load(path: &Path) -> Result<Progress> {
        load_versioned(path, "shard progress file")
    }

    /// Stable bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        json_bytes(self)
    }

    /// The index's shard lists.
    pub fn index_splits(&self) -> BTreeMap<String, Vec<ShardEntry>> {
        self.splits
            .iter()
            .map(|(k, v)| (k.clone(), v.iter().map(|p| p.shard.clone()).collect()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_load_reports_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("index.json");
        let err = |bytes: &[u8]| {
            std::fs::write(&p, bytes).unwrap();
            format!("{:#}", Index::load(&p).unwrap_err())
        };
        let mut index = Index::new("abc", 64, &["a".to_string()]);
        index.splits.insert(
            "train".into(),
            vec![ShardEntry {
                file: crate::build_dir::shard_file(0),
                samples: 3,
                class_counts: vec![3],
                sha256: "00".repeat(32),
            }],
        );
        std::fs::write(&p, index.to_bytes()).unwrap();
        assert_eq!(Index::load(&p).unwrap(), index);
        let text = String::from_utf8(index.to_bytes()).unwrap();
        let e = err(text
            .replace("\"version\": \"1\"", "\"version\": \"2\"")
            .as_bytes());
        assert!(
            e.contains("shard index version \"2\"; this covidx reads version \"1\""),
            "{e}"
        );
        let e = err(text.replace("covidx-shards", "other").as_bytes());
        assert!(
            e.contains("format \"other\" is not \"covidx-shards\""),
            "{e}"
        );
        let e = err(b"{oops");
        assert!(e.contains("not JSON"), "{e}");
        let e = err(text.replace("\"train\"", "\"valid\"").as_bytes());
        assert!(e.contains("split \"valid\""), "{e}");
        let e = err(text.replace("\"samples\"", "\"sample_count\"").as_bytes());
        assert!(e.contains("not a valid covidx shard index"), "{e}");
        std::fs::remove_file(&p).unwrap();
        let e = format!("{:#}", Index::load(&p).unwrap_err());
        assert!(e.contains("reading") && e.contains("index.json"), "{e}");
    }
}
