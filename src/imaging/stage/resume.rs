//! Resume bookkeeping: which shards of an interrupted build can be kept, the resume state
//! written after every finished shard, and the removal of what a killed run left behind.

use std::path::Path;

use anyhow::{Context, Result};

use crate::build_dir::{self, BuildDir};
use crate::fsutil;
use crate::record::Split;
use crate::shards::{Index, Progress, ShardProgress};

/// The resume state of a build: the previous run's finished shards (when written with the same
/// parameters) and this run's.
pub struct Resume {
    previous: Progress,
    current: Progress,
}

impl Resume {
    /// Loads `shards/progress.json` of `dir`; its shards count only when it was written with
    /// `params` (same inputs, pipeline and tool version).
    pub fn load(dir: &BuildDir, params: &str) -> Resume {
        let path = dir.shard_progress();
        let previous = match Progress::load(&path) {
            Ok(p) if p.params == params => p,
            Ok(_) => {
                tracing::info!(
                    "{}: written with other inputs or settings; every shard is redone",
                    path.display()
                );
                Progress::new(params)
            }
            Err(_) if !path.exists() => Progress::new(params),
            Err(e) => {
                tracing::warn!("{e:#}; every shard is redone");
                Progress::new(params)
            }
        };
        Resume {
            previous,
            current: Progress::new(params),
        }
    }

    /// Shard `k` of `split` from the previous run, when its file at `path` and its image-facts
    /// table still have the recorded hashes.
    pub fn reusable(&self, split: Split, k: usize, path: &Path) -> Option<&ShardProgress> {
        let p = self.previous.splits.get(split.name())?.get(k)?;
        files_match(p, path).then_some(p)
    }

    /// Records a finished shard (the next of its split).
    pub fn finished(&mut self, split: Split, shard: ShardProgress) {
        self.current
            .splits
            .entry(split.name().to_string())
            .or_default()
            .push(shard);
    }

    /// This run's state so far.
    pub fn current(&self) -> &Progress {
        &self.current
    }

    /// Writes the resume state and the index (`complete` as given), each atomically; returns
    /// both files (relative to the build directory) with their SHA-256.
    pub fn save(
        &self,
        dir: &BuildDir,
        index: &mut Index,
        complete: bool,
    ) -> Result<Vec<(String, String)>> {
        index.splits = self.current.index_splits();
        index.complete = complete;
        let mut written = Vec::with_capacity(2);
        for (rel, bytes) in [
            (build_dir::SHARD_PROGRESS, self.current.to_bytes()),
            (build_dir::SHARD_INDEX, index.to_bytes()),
        ] {
            fsutil::write_atomic(&dir.path(rel), &bytes)?;
            written.push((rel.to_string(), fsutil::sha256_hex(&bytes)));
        }
        Ok(written)
    }
}

/// True when the shard file at `path` is the one `p` records and it and its image-facts
/// table still have the recorded hashes.
pub fn files_match(p: &ShardProgress, path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let facts = path.with_file_name(build_dir::facts_of_shard(name));
    let same = |path: &Path, sha: &str| fsutil::sha256_file(path).ok().as_deref() == Some(sha);
    p.shard.file == name && same(path, &p.shard.sha256) && same(&facts, &p.images_sha256)
}

/// Removes shards (and their image-facts tables) numbered `n` and above of `split` (left by an earlier build with more
/// shards) and temporary files of killed writes.
pub fn remove_leftovers(dir: &BuildDir, split: Split, n: usize) -> Result<()> {
    let folder = dir.shard_split_dir(split);
    let entries = match std::fs::read_dir(&folder) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", folder.display())),
    };
    for e in entries {
        let p = e
            .with_context(|| format!("listing {}", folder.display()))?
            .path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let stale = build_dir::shard_output_number(name).is_some_and(|k| k >= n);
        if stale || build_dir::is_temp_of_ours(name) {
            std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    Ok(())
}
