//! A dataset view over a finished build's shards of one split: global sample `i` maps to
//! (shard, slot), and each shard is opened, checked against the index (sample count and
//! sha256) on first use, and kept mapped.

use std::sync::OnceLock;

use anyhow::{bail, Context, Result};

use super::index::{Index, ShardEntry};
use super::reader::Shard;
use crate::build_dir::BuildDir;
use crate::record::Split;

/// How a shard is checked when it is first opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verify {
    /// SHA-256 of the whole file against the index (reads the file once).
    #[default]
    Sha256,
    /// Header and sample count only (for callers that verified the build already).
    HeaderOnly,
}

/// One sample, borrowed from its shard's map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleRef<'a> {
    /// `S*S` pixels.
    pub image: &'a [u8],
    /// Class index.
    pub label: usize,
    /// Manifest record.
    pub record: u64,
    /// Copy index (0 = clean).
    pub copy: u8,
}

/// The samples of one split of a build.
#[derive(Debug)]
pub struct Dataset {
    dir: BuildDir,
    split: Split,
    index: Index,
    /// First global sample of each shard, plus the total at the end.
    starts: Vec<usize>,
    shards: Vec<OnceLock<Shard>>,
    verify: Verify,
}

impl Dataset {
    /// The `split` samples of the build in `dir`; the index must be complete (a build that
    /// was interrupted is refused with a clear error).
    pub fn open(dir: &BuildDir, split: Split) -> Result<Dataset> {
        let path = dir.shard_index();
        let index = Index::load(&path)?;
        if !index.complete {
            bail!(
                "{}: the build that wrote it did not finish; rerun it first",
                path.display()
            );
        }
        let mut starts = vec![0];
        for e in index.entries(split) {
            starts.push(starts.last().unwrap() + e.samples);
        }
        let shards = (0..index.entries(split).len())
            .map(|_| OnceLock::new())
            .collect();
        Ok(Dataset {
            dir: dir.clone(),
            split,
            index,
            starts,
            shards,
            verify: Verify::default(),
        })
    }

    /// Sets how shards are checked on first use (default [`Verify::Sha256`]).
    pub fn with_verify(mut self, verify: Verify) -> Dataset {
        self.verify = verify;
        self
    }

    /// The index read at open.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The split.
    pub fn split(&self) -> Split {
        self.split
    }

    /// Total samples.
    pub fn len(&self) -> usize {
        *self.starts.last().expect("starts has the total")
    }

    /// True when the split holds no sample.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The index entries of the split's shards.
    pub fn entries(&self) -> &[ShardEntry] {
        self.index.entries(self.split)
    }

    /// (shard, slot) of global sample `i`, or `None` past the end.
    pub fn locate(&self, i: usize) -> Option<(usize, usize)> {
        if i >= self.len() {
            return None;
        }
        let k = self.starts.partition_point(|&s| s <= i) - 1;
        Some((k, i - self.starts[k]))
    }

    /// Shard `k`, opened and checked on first use.
    pub fn shard(&self, k: usize) -> Result<&Shard> {
        let cell = self.shards.get(k).with_context(|| {
            format!(
                "shard {k} of {} {} shards",
                self.shards.len(),
                self.split.name()
            )
        })?;
        if let Some(s) = cell.get() {
            return Ok(s);
        }
        let e = &self.entries()[k];
        let path = self.dir.shard(self.split, &e.file);
        let shard = Shard::open(&path)?;
        if shard.len() != e.samples
            || shard.split() != self.split
            || shard.size() != self.index.size
        {
            bail!(
                "{}: holds {} {} samples of {} px, the index says {} {} samples of {} px",
                path.display(),
                shard.len(),
                shard.split().name(),
                shard.size(),
                e.samples,
                self.split.name(),
                self.index.size
            );
        }
        if shard.classes() != self.index.classes {
            bail!("{}: class list differs from the index's", path.display());
        }
        if self.verify == Verify::Sha256 {
            let got = crate::fsutil::sha256_hex(shard.bytes());
            if got != e.sha256 {
                bail!(
                    "{}: sha256 {got}, the index says {}: the shard changed since the build",
                    path.display(),
                    e.sha256
                );
            }
        }
        let _ = cell.set(shard);
        Ok(cell.get().expect("just set"))
    }

    /// Global sample `i`.
    pub fn sample(&self, i: usize) -> Result<SampleRef<'_>> {
        let (k, slot) = self
            .locate(i)
            .with_context(|| format!("sample {i} of a {}-sample split", self.len()))?;
        let s = self.shard(k)?;
        Ok(SampleRef {
            image: s.image(slot),
            label: s.label(slot),
            record: s.record(slot),
            copy: s.copy(slot),
        })
    }
}
