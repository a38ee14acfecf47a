//! Exports of a finished build's shards for other loaders, each checked against the build's
//! lock first:
//! - [`png`]: COVID-Net's `train/` and `test/` folders of PNGs under the split files' names;
//! - [`webdataset`]: tar shards of `<key>.png` + `<key>.cls` + `<key>.json` for the
//!   `webdataset` package (`wds.split_by_node` / `split_by_worker` hand out whole shards);
//! - [`hf`]: Parquet shards with an `image` column and a `ClassLabel`, for
//!   `datasets.load_dataset("parquet", ...)`.
//!
//! The sharded formats write every file to a temp name and rename it, remove shards of an
//! earlier export that the new one does not have, and publish `export.json` (the list of
//! files with their sha256) last, so a reader that finds it finds a whole export.

pub mod hf;
pub mod png;
pub mod webdataset;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::build_dir::BuildDir;
use crate::lock::Lock;
use crate::manifest::{Manifest, Row};
use crate::record::Split;
use crate::shards::{Dataset, SampleRef, Verify};

/// `format` of `export.json`.
pub const FORMAT: &str = "covidx-export";
/// Version of `export.json`.
pub const VERSION: &str = "1";
/// The record of a sharded export, written last.
pub const RECORD: &str = "export.json";

/// Checks that the build's manifest and shard index are the ones its lock vouches for, so a
/// manifest is never paired with shards of another build. Returns the lock.
pub fn check_consistent(dir: &BuildDir) -> Result<Lock> {
    let lock_path = dir.lock();
    let lock = Lock::read(&lock_path).with_context(|| {
        format!(
            "{} has no lock file: the build did not finish (rerun it)",
            dir.root().display()
        )
    })?;
    for rel in [crate::build_dir::MANIFEST, crate::build_dir::SHARD_INDEX] {
        let path = dir.path(rel);
        let Some(want) = lock.outputs.get(rel) else {
            bail!(
                "{}: the build's lock lists no {rel} (a metadata-only build has no shards; \
                 build with images first)",
                lock_path.display()
            );
        };
        let got = crate::fsutil::sha256_file(&path)?;
        if &got != want {
            bail!(
                "{}: sha256 {got}, the lock says {want}: the build directory was changed \
                 after the build (run covidx verify)",
                path.display()
            );
        }
    }
    Ok(lock)
}

/// What to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Also export augmented copies (copy > 0).
    pub all_copies: bool,
    /// Samples per output shard (sharded formats).
    pub samples_per_shard: usize,
}

/// A build opened for export: its lock checked, its manifest read, both splits mapped.
pub struct Source {
    /// The build directory.
    pub dir: BuildDir,
    /// SHA-256 of the build's lock file (names the build in export records).
    pub lock_sha256: String,
    /// The manifest.
    pub manifest: Manifest,
    /// Train and test samples, each shard's sha256 checked on first use.
    pub splits: Vec<Dataset>,
}

impl Source {
    /// Opens the build in `build` for export (see [`check_consistent`]).
    pub fn open(build: &Path) -> Result<Source> {
        let dir = BuildDir::new(build);
        check_consistent(&dir)?;
        let lock_sha256 = crate::fsutil::sha256_file(&dir.lock())?;
        let manifest = Manifest::read(&dir.manifest())?;
        let splits = [Split::Train, Split::Test]
            .into_iter()
            .map(|s| Ok(Dataset::open(&dir, s)?.with_verify(Verify::Sha256)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Source {
            dir,
            lock_sha256,
            manifest,
            splits,
        })
    }

    /// Class names, in label order.
    pub fn classes(&self) -> &[String] {
        &self.splits[0].index().classes
    }

    /// Side of the square images in pixels.
    pub fn size(&self) -> u32 {
        self.splits[0].index().size
    }

    /// The manifest row of a sample, or an error naming the manifest.
    pub fn row(&self, record: u64) -> Result<Row<'_>> {
        self.manifest.get(record).with_context(|| {
            format!(
                "{}: record {record} is not in the manifest",
                self.dir.manifest().display()
            )
        })
    }
}

/// The global sample numbers of `data` to export, in shard order.
pub fn selected(data: &Dataset, opts: &Options) -> Result<Vec<usize>> {
    let mut out = Vec::with_capacity(data.len());
    for i in 0..data.len() {
        if opts.all_copies || data.sample(i)?.copy == 0 {
            out.push(i);
        }
    }
    Ok(out)
}

/// The key of a sample in sharded exports: `<record>_<copy>` (no dot, so WebDataset's
/// key/extension split keeps it whole), unique in a build.
pub fn sample_key(s: &SampleRef<'_>) -> String {
    format!("{:07}_{}", s.record, s.copy)
}

/// PNG bytes of a square grey sample.
pub fn encode_png(side: u32, pixels: &[u8]) -> Result<Vec<u8>> {
    let img = image::GrayImage::from_raw(side, side, pixels.to_vec())
        .context("a shard sample holds S*S pixels")?;
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png)?;
    Ok(buf.into_inner())
}

/// The metadata of a sample that exports carry beside its pixels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleMeta {
    /// Sample key (see [`sample_key`]).
    pub key: String,
    /// Manifest record.
    pub record: u64,
    /// Copy (0 = clean, k > 0 = augmented copy k).
    pub copy: u8,
    /// Class index.
    pub label: usize,
    /// Class name.
    pub class: String,
    /// Split.
    pub split: String,
    /// Pipeline name of the source.
    pub source: String,
    /// Patient key (`source:subject`).
    pub patient: String,
    /// Image name as the split file writes it.
    pub split_image: String,
    /// Image path relative to the sources directory.
    pub path: String,
    /// SHA-256 of the upstream image file.
    pub image_sha256: String,
    /// View.
    pub view: String,
    /// Raw finding.
    pub finding: String,
}

impl SampleMeta {
    /// The metadata of sample `s` of `split`.
    pub fn new(src: &Source, split: Split, s: &SampleRef<'_>) -> Result<SampleMeta> {
        let row = src.row(s.record)?;
        let class = src.classes().get(s.label).with_context(|| {
            format!(
                "record {}: label {} is not a class of the build",
                s.record, s.label
            )
        })?;
        Ok(SampleMeta {
            key: sample_key(s),
            record: s.record,
            copy: s.copy,
            label: s.label,
            class: class.clone(),
            split: split.name().to_string(),
            source: row.source().to_string(),
            patient: row.patient_key().to_string(),
            split_image: row.split_image(),
            path: row.path().to_string(),
            image_sha256: row.sha256().unwrap_or_default().to_string(),
            view: row.view().to_string(),
            finding: row.finding().to_string(),
        })
    }
}

/// One output file of a sharded export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the export directory.
    pub file: String,
    /// Samples in the file.
    pub samples: usize,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the file.
    pub sha256: String,
}

/// `export.json`: what a sharded export holds and which build it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`VERSION`].
    pub version: String,
    /// `webdataset` or `hf`.
    pub kind: String,
    /// The build directory as given.
    pub build: String,
    /// SHA-256 of the build's lock file.
    pub build_lock_sha256: String,
    /// Class names in label order.
    pub classes: Vec<String>,
    /// Image side in pixels.
    pub size: u32,
    /// Whether augmented copies are included.
    pub all_copies: bool,
    /// Files per split, in order.
    pub splits: BTreeMap<String, Vec<FileEntry>>,
}

impl Record {
    /// Reads an `export.json`.
    pub fn load(path: &Path) -> Result<Record> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let r: Record = serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: not an export record", path.display()))?;
        if r.format != FORMAT || r.version != VERSION {
            bail!(
                "{}: {} {}, expected {FORMAT} {VERSION}",
                path.display(),
                r.format,
                r.version
            );
        }
        Ok(r)
    }
}

/// A sharded export format: how its files are named and how one is written.
pub(crate) trait ShardFormat: Sync {
    /// `kind` of the record.
    const KIND: &'static str;
    /// Path, relative to the export directory, of shard `k` of the `n` of `split`.
    fn name(&self, split: Split, k: usize, n: usize) -> String;
    /// True for file names (without folder) that [`ShardFormat::name`] gives.
    fn is_ours(&self, file_name: &str) -> bool;
    /// Writes samples `samples` (global numbers) of `data` to `path`, synced.
    fn write(&self, data: &Dataset, samples: &[usize], path: &Path) -> Result<()>;
}

/// Writes a sharded export in `format`, its shards in parallel, each to a temp name renamed
/// into place; removes stale files of the format; then publishes `export.json`.
pub(crate) fn write_sharded<F: ShardFormat>(
    src: &Source,
    out: &Path,
    opts: &Options,
    format: &F,
) -> Result<Record> {
    if opts.samples_per_shard == 0 {
        bail!("--samples-per-shard must be at least 1");
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut splits = BTreeMap::new();
    let mut keep: Vec<String> = Vec::new();
    for data in &src.splits {
        let split = data.split();
        let chosen = selected(data, opts)?;
        let chunks: Vec<&[usize]> = chosen.chunks(opts.samples_per_shard).collect();
        let n = chunks.len();
        let entries = chunks
            .par_iter()
            .enumerate()
            .map(|(k, samples)| -> Result<FileEntry> {
                let rel = format.name(split, k, n);
                let path = out.join(&rel);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("creating {}", parent.display()))?;
                }
                let tmp = crate::fsutil::temp_sibling(&path);
                let written = format
                    .write(data, samples, &tmp)
                    .with_context(|| format!("writing {}", path.display()));
                if let Err(e) = written {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e);
                }
                let sha256 = crate::fsutil::sha256_file(&tmp)?;
                let bytes = std::fs::metadata(&tmp)?.len();
                std::fs::rename(&tmp, &path)
                    .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
                Ok(FileEntry {
                    file: rel,
                    samples: samples.len(),
                    bytes,
                    sha256,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        keep.extend(entries.iter().map(|e| e.file.clone()));
        splits.insert(split.name().to_string(), entries);
    }
    remove_stale(out, &keep, &|f| format.is_ours(f))?;
    let record = Record {
        format: FORMAT.into(),
        version: VERSION.into(),
        kind: F::KIND.into(),
        build: src.dir.root().display().to_string(),
        build_lock_sha256: src.lock_sha256.clone(),
        classes: src.classes().to_vec(),
        size: src.size(),
        all_copies: opts.all_copies,
        splits,
    };
    let mut json = serde_json::to_vec_pretty(&record)?;
    json.push(b'\n');
    crate::fsutil::write_atomic(&out.join(RECORD), &json)?;
    Ok(record)
}

/// Removes files under `out` (one level of folders deep) that `is_ours` claims and that are
/// not in `keep`: shards of an earlier, larger export, and temp files of a killed one.
fn remove_stale(out: &Path, keep: &[String], is_ours: &dyn Fn(&str) -> bool) -> Result<()> {
    let mut dirs: Vec<PathBuf> = vec![out.to_path_buf()];
    for rel in keep {
        if let Some(p) = Path::new(rel)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            let d = out.join(p);
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
    }
    for d in dirs {
        for entry in std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let entry = entry?;
            let rel = crate::fsutil::rel_string(out, &entry.path());
            let fname = entry.file_name().to_string_lossy().into_owned();
            // `.<name>.tmp-<pid>`: see crate::fsutil::temp_sibling.
            let temp_of = fname
                .strip_prefix('.')
                .and_then(|r| r.split_once(".tmp-"))
                .map(|(base, _)| base);
            let ours = is_ours(&fname) || temp_of.is_some_and(|b| is_ours(b) || b == RECORD);
            if ours && !keep.contains(&rel) && entry.path().is_file() {
                std::fs::remove_file(entry.path())
                    .with_context(|| format!("removing {}", entry.path().display()))?;
            }
        }
    }
    Ok(())
}
