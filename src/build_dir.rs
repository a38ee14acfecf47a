//! The layout of a build's output directory: the one place where the name of every file a build
//! writes is defined. The builder, the image stage, `verify`, `export` and the tests all go
//! through [`BuildDir`]; nothing else spells these names.
//!
//! ```text
//! OUT/
//!   splits/train.txt splits/test.txt   COVID-Net split files
//!   manifest.parquet manifest.csv      one row per candidate record
//!   summary.txt pipeline.toml          counts; the pipeline used
//!   quarantine.csv augment.parquet     image stage: bad images; one row per sample
//!   shards/index.json                  image stage: shard list with hashes
//!   shards/progress.json               image stage: per-shard resume state
//!   shards/{train,test}/shard-NNNNN.safetensors
//!   audit/                             the audit's reports
//!   covidx.lock.json                   hashes of every input and output (written last)
//! ```
//!
//! A part of a partitioned build (`covidx build --part K/N`) writes only its shards under
//! `shards/` and `part.json`, the record of what it wrote; `covidx merge` makes a build
//! directory of the parts.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::record::Split;

/// The split files, as (split, path relative to the build directory).
pub const SPLIT_FILES: [(Split, &str); 2] = [
    (Split::Train, "splits/train.txt"),
    (Split::Test, "splits/test.txt"),
];
/// The Parquet manifest.
pub const MANIFEST: &str = "manifest.parquet";
/// The CSV copy of the manifest.
pub const MANIFEST_CSV: &str = "manifest.csv";
/// The summary table.
pub const SUMMARY: &str = "summary.txt";
/// The copy of the pipeline file used.
pub const PIPELINE: &str = "pipeline.toml";
/// The lock file.
pub const LOCK: &str = "covidx.lock.json";
/// Quarantined images of the image stage.
pub const QUARANTINE: &str = "quarantine.csv";
/// One row per written sample with its augmentation parameters.
pub const AUGMENT: &str = "augment.parquet";
/// The shard folder.
pub const SHARDS: &str = "shards";
/// The shard index.
pub const SHARD_INDEX: &str = "shards/index.json";
/// The image stage's resume state.
pub const SHARD_PROGRESS: &str = "shards/progress.json";
/// The audit's folder.
pub const AUDIT: &str = "audit";
/// The audit's Markdown report.
pub const AUDIT_MD: &str = "audit/report.md";
/// The audit's JSON report.
pub const AUDIT_JSON: &str = "audit/report.json";

/// Files written by every build (metadata stages).
pub const METADATA_OUTPUTS: [&str; 6] = [
    "splits/train.txt",
    "splits/test.txt",
    MANIFEST,
    MANIFEST_CSV,
    SUMMARY,
    PIPELINE,
];
/// Single files written only by the image stage (shards are listed per split).
pub const IMAGE_OUTPUTS: [&str; 4] = [QUARANTINE, AUGMENT, SHARD_INDEX, SHARD_PROGRESS];
/// The audit's HTML report.
pub const AUDIT_HTML: &str = "audit/report.html";
/// The audit's cache of image facts it decoded itself, keyed by file SHA-256 (kept across
/// rebuilds: an entry depends only on the file's bytes).
pub const AUDIT_CACHE: &str = "audit/cache.parquet";
/// Where the build's sources were and how it ran (not reproducible, so not in the lock).
pub const BUILD_INFO: &str = "build.json";
/// A part's record of the shards it wrote (`covidx build --part K/N`; see
/// [`crate::shards::part`]). Only a part directory has one.
pub const PART: &str = "part.json";
/// Files written by `covidx audit` (a rebuild removes them, except the cache: the reports
/// describe the old build).
pub const AUDIT_OUTPUTS: [&str; 4] = [AUDIT_MD, AUDIT_JSON, AUDIT_HTML, AUDIT_CACHE];

/// File name of shard `k` of a split.
pub fn shard_file(k: usize) -> String {
    format!("shard-{k:05}.safetensors")
}

/// File name of the image-facts table of shard `k` (see [`crate::imaging::facts`]).
pub fn facts_file(k: usize) -> String {
    format!("shard-{k:05}{FACTS_SUFFIX}")
}

/// Suffix of a shard's image-facts table.
const FACTS_SUFFIX: &str = ".images.parquet";

/// The image-facts table beside the shard file `shard` (`shard-00012.safetensors` ->
/// `shard-00012.images.parquet`).
pub fn facts_of_shard(shard: &str) -> String {
    let stem = shard.strip_suffix(".safetensors").unwrap_or(shard);
    format!("{stem}{FACTS_SUFFIX}")
}

fn number_of(name: &str, suffix: &str) -> Option<usize> {
    let digits = name.strip_prefix("shard-")?.strip_suffix(suffix)?;
    (digits.len() >= 5 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The shard number of a shard file name (`shard-00012.safetensors` -> 12).
pub fn shard_number(name: &str) -> Option<usize> {
    number_of(name, ".safetensors")
}

/// The shard number of a shard file or of its image-facts table.
pub fn shard_output_number(name: &str) -> Option<usize> {
    shard_number(name).or_else(|| number_of(name, FACTS_SUFFIX))
}

/// True for a temporary file left by an interrupted write of one of our files
/// (`.<name>.tmp-<pid>`, see [`crate::fsutil::temp_sibling`]), or by a replaced file moved
/// aside before its deletion (`.<name>.tmp-<pid>-old`).
pub fn is_temp_of_ours(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.') else {
        return false;
    };
    let Some((base, _pid)) = rest.split_once(".tmp-") else {
        return false;
    };
    // A shard's compaction writes a temporary of a temporary: `..shard-N.safetensors.tmp-P.tmp-Q`.
    let base = base.trim_start_matches('.');
    shard_output_number(base).is_some()
        || METADATA_OUTPUTS
            .iter()
            .chain(IMAGE_OUTPUTS.iter())
            .chain(AUDIT_OUTPUTS.iter())
            .chain([LOCK, BUILD_INFO, PART].iter())
            .any(|f| f.rsplit('/').next() == Some(base))
}

/// A build's output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildDir {
    root: PathBuf,
}

impl BuildDir {
    /// The build directory at `root` (nothing is checked or created).
    pub fn new(root: impl Into<PathBuf>) -> BuildDir {
        BuildDir { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `root/rel` for a name of this module.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// The split file of `split`.
    pub fn split_file(&self, split: Split) -> PathBuf {
        self.path(split_rel(split))
    }

    /// `manifest.parquet`.
    pub fn manifest(&self) -> PathBuf {
        self.path(MANIFEST)
    }

    /// `manifest.csv`.
    pub fn manifest_csv(&self) -> PathBuf {
        self.path(MANIFEST_CSV)
    }

    /// `summary.txt`.
    pub fn summary(&self) -> PathBuf {
        self.path(SUMMARY)
    }

    /// `pipeline.toml`.
    pub fn pipeline(&self) -> PathBuf {
        self.path(PIPELINE)
    }

    /// `covidx.lock.json`.
    pub fn lock(&self) -> PathBuf {
        self.path(LOCK)
    }

    /// `quarantine.csv`.
    pub fn quarantine(&self) -> PathBuf {
        self.path(QUARANTINE)
    }

    /// `augment.parquet`.
    pub fn augment(&self) -> PathBuf {
        self.path(AUGMENT)
    }

    /// `shards/`.
    pub fn shards(&self) -> PathBuf {
        self.path(SHARDS)
    }

    /// `part.json` (a part directory's record).
    pub fn part_record(&self) -> PathBuf {
        self.path(PART)
    }

    /// `shards/index.json`.
    pub fn shard_index(&self) -> PathBuf {
        self.path(SHARD_INDEX)
    }

    /// `shards/progress.json`.
    pub fn shard_progress(&self) -> PathBuf {
        self.path(SHARD_PROGRESS)
    }

    /// `shards/<split>/`.
    pub fn shard_split_dir(&self, split: Split) -> PathBuf {
        self.shards().join(split.name())
    }

    /// `shards/<split>/<file>` for a file name from the index.
    pub fn shard(&self, split: Split, file: &str) -> PathBuf {
        self.shard_split_dir(split).join(file)
    }

    /// The lock-file key of a shard (`shards/<split>/<file>`).
    pub fn shard_rel(split: Split, file: &str) -> String {
        format!("{SHARDS}/{}/{file}", split.name())
    }

    /// `audit/`.
    pub fn audit(&self) -> PathBuf {
        self.path(AUDIT)
    }

    /// Takes the directory for a build: creates it and holds an exclusive lock on it until the
    /// returned guard is dropped, so two builds never write into one directory at once. A
    /// second build gets an error at once.
    pub fn lock_exclusive(&self) -> Result<DirLock> {
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("creating {}", self.root.display()))?;
        let dir =
            File::open(&self.root).with_context(|| format!("opening {}", self.root.display()))?;
        match dir.try_lock() {
            Ok(()) => Ok(DirLock { _dir: dir }),
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "{} is in use by another covidx build (it holds the directory's lock); wait for \
                 it to finish or choose another --out",
                self.root.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("locking {}", self.root.display()))
            }
        }
    }

    /// Every file of ours that exists in the directory, as paths relative to it: the names of
    /// this module, shard files and temporary files of interrupted writes. Anything else in
    /// the directory is not ours and is never listed (nor removed).
    pub fn existing_outputs(&self) -> Result<Vec<String>> {
        let mut found = Vec::new();
        let mut check = |rel: String| {
            let p = self.root.join(&rel);
            if p.symlink_metadata().is_ok_and(|m| m.is_file()) {
                found.push(rel);
            }
        };
        for rel in METADATA_OUTPUTS
            .iter()
            .chain(IMAGE_OUTPUTS.iter())
            .chain(AUDIT_OUTPUTS.iter())
        {
            check(rel.to_string());
        }
        check(LOCK.to_string());
        check(BUILD_INFO.to_string());
        check(PART.to_string());
        let mut dirs = vec![
            String::new(),
            "splits".to_string(),
            SHARDS.to_string(),
            AUDIT.to_string(),
        ];
        for split in [Split::Train, Split::Test] {
            dirs.push(format!("{SHARDS}/{}", split.name()));
        }
        for d in dirs {
            let dir = self.root.join(&d);
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
            };
            for e in entries {
                let e = e.with_context(|| format!("listing {}", dir.display()))?;
                let name = e.file_name().to_string_lossy().into_owned();
                let shard =
                    d.starts_with(&format!("{SHARDS}/")) && shard_output_number(&name).is_some();
                let ours = shard
                    || (is_temp_of_ours(&name) && !crate::fsutil::being_deleted(&dir.join(&name)));
                if ours && e.file_type().is_ok_and(|t| t.is_file()) {
                    found.push(if d.is_empty() {
                        name
                    } else {
                        format!("{d}/{name}")
                    });
                }
            }
        }
        found.sort();
        found.dedup();
        Ok(found)
    }

    /// Removes the files of ours (see [`BuildDir::existing_outputs`]) that `keep` does not
    /// accept, then the shard folders if they are left empty; returns what was removed.
    pub fn remove_outputs_except(&self, keep: impl Fn(&str) -> bool) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for rel in self.existing_outputs()? {
            if !keep(&rel) {
                let p = self.root.join(&rel);
                match std::fs::remove_file(&p) {
                    Ok(()) => removed.push(rel),
                    // Gone since it was listed: nothing left to remove.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e).with_context(|| format!("removing {}", p.display())),
                }
            }
        }
        for split in [Split::Train, Split::Test] {
            let _ = std::fs::remove_dir(self.shard_split_dir(split));
        }
        let _ = std::fs::remove_dir(self.shards());
        let _ = std::fs::remove_dir(self.audit());
        Ok(removed)
    }
}

/// The relative path of a split file.
pub fn split_rel(split: Split) -> &'static str {
    SPLIT_FILES
        .iter()
        .find(|(s, _)| *s == split)
        .map(|(_, p)| *p)
        .expect("every split has a file")
}

/// An exclusive lock on a build directory, released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DirLock {
    _dir: File,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names_round_trip() {
        assert_eq!(shard_file(12), "shard-00012.safetensors");
        assert_eq!(shard_number(&shard_file(12)), Some(12));
        assert_eq!(shard_number("shard-123456.safetensors"), Some(123456));
        assert_eq!(shard_number(&facts_file(12)), None);
        assert_eq!(shard_output_number(&facts_file(12)), Some(12));
        assert_eq!(facts_of_shard(&shard_file(3)), facts_file(3));
        for bad in [
            "shard-12.safetensors",
            "shard-0000x.safetensors",
            "x.safetensors",
        ] {
            assert_eq!(shard_number(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_our_files_are_listed_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let b = BuildDir::new(dir.path());
        for rel in [
            "manifest.csv",
            "augment.parquet",
            "shards/index.json",
            "shards/train/shard-00000.safetensors",
            "shards/train/.shard-00001.safetensors.tmp-42",
            "shards/train/..shard-00001.safetensors.tmp-42.tmp-42",
            ".manifest.csv.tmp-7",
            ".manifest.parquet.tmp-7-old",
            "notes.txt",
            "shards/train/mine.bin",
            "splits/extra.txt",
        ] {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        let ours = b.existing_outputs().unwrap();
        assert_eq!(
            ours,
            [
                ".manifest.csv.tmp-7",
                ".manifest.parquet.tmp-7-old",
                "augment.parquet",
                "manifest.csv",
                "shards/index.json",
                "shards/train/..shard-00001.safetensors.tmp-42.tmp-42",
                "shards/train/.shard-00001.safetensors.tmp-42",
                "shards/train/shard-00000.safetensors",
            ]
        );
        let removed = b.remove_outputs_except(|r| r == "manifest.csv").unwrap();
        assert_eq!(removed.len(), 7);
        for left in [
            "manifest.csv",
            "notes.txt",
            "shards/train/mine.bin",
            "splits/extra.txt",
        ] {
            assert!(dir.path().join(left).exists(), "{left} was removed");
        }
    }

    #[test]
    fn a_replaced_file_being_deleted_is_left_to_its_deletion() {
        let dir = tempfile::tempdir().unwrap();
        let b = BuildDir::new(dir.path());
        let big = vec![1u8; 2 << 20];
        for _ in 0..2 {
            crate::fsutil::write_atomic(&b.path(MANIFEST_CSV), &big).unwrap();
        }
        // The first copy may still be on its way out: the clean-up neither fails on it nor
        // reports it as an earlier build's.
        let removed = b.remove_outputs_except(|r| r == MANIFEST_CSV).unwrap();
        assert!(removed.is_empty(), "{removed:?}");
        crate::fsutil::finish_deletions();
        assert_eq!(b.existing_outputs().unwrap(), [MANIFEST_CSV]);
    }

    #[test]
    fn a_second_lock_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let b = BuildDir::new(dir.path().join("out"));
        let held = b.lock_exclusive().unwrap();
        let err = format!("{:#}", b.lock_exclusive().unwrap_err());
        assert!(err.contains("in use by another covidx build"), "{err}");
        drop(held);
        b.lock_exclusive().unwrap();
    }
}
