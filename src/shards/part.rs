//! Partitioned image stages: which shards part K of N writes, and `part.json`, the record a
//! part leaves beside its shards (what it wrote and hashed; also its resume state).
//!
//! The shards of a build are numbered globally, training shards first, then test shards:
//! global shard g belongs to part `g % N + 1`. The assignment depends only on the shard plan,
//! which depends only on the inputs, so every part (and the merge) computes the same one.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::index::{json_bytes, load_json_format, ShardProgress};
use crate::record::Split;

/// Format name of `part.json`.
pub const PART_FORMAT: &str = "covidx-part";
/// Version of `part.json`; a reader accepts exactly this version.
pub const PART_VERSION: &str = "1";

/// Part K of N (1 <= K <= N), as given to `--part K/N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartSpec {
    /// This part, from 1.
    pub k: usize,
    /// Number of parts.
    pub n: usize,
}

impl PartSpec {
    /// True when global shard `g` (training shards first, then test) belongs to this part.
    pub fn owns(&self, g: usize) -> bool {
        part_of(g, self.n) == self.k
    }
}

/// The part (from 1) of `n` that writes global shard `g`.
pub fn part_of(g: usize, n: usize) -> usize {
    g % n + 1
}

impl FromStr for PartSpec {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<PartSpec> {
        let parsed = s
            .split_once('/')
            .and_then(|(k, n)| Some((k.trim().parse().ok()?, n.trim().parse().ok()?)));
        match parsed {
            Some((k, n)) if n >= 1 && (1..=n).contains(&k) => Ok(PartSpec { k, n }),
            Some((k, n)) => bail!(
                "--part {s}: part {k} of {n} does not exist; parts are numbered 1 to N \
                 (N >= 1)"
            ),
            None => bail!("--part {s}: expected K/N, e.g. 2/8 (part 2 of 8, numbered from 1)"),
        }
    }
}

impl fmt::Display for PartSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

/// A shard a part wrote: its split, number within the split, and what the resume state of a
/// whole build records for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartShard {
    /// `train` or `test`.
    pub split: String,
    /// Shard number within the split.
    pub number: usize,
    /// The shard, its hashes and the records of its slice that were quarantined.
    pub progress: ShardProgress,
}

/// `part.json`: what part K of N of a build wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartRecord {
    /// Always [`PART_FORMAT`].
    pub format: String,
    /// Always [`PART_VERSION`].
    pub version: String,
    /// The tool that wrote it.
    pub tool: String,
    /// Which part.
    pub part: PartSpec,
    /// The pipeline's name.
    pub pipeline: String,
    /// SHA-256 of the pipeline file.
    pub pipeline_sha256: String,
    /// The pipeline file this part was built from (absolute; where `covidx merge` looks first).
    pub pipeline_path: String,
    /// The `--sources` directory (absolute; where `covidx merge` looks first).
    pub sources: String,
    /// The shard index's parameter hash (tool version, pipeline, every input's hash): parts
    /// merge only when theirs are equal.
    pub params: String,
    /// Shards the whole build has, per split.
    pub planned: BTreeMap<String, usize>,
    /// True once the part has written every shard it owns.
    pub complete: bool,
    /// The shards written, in global order.
    pub shards: Vec<PartShard>,
}

impl PartRecord {
    /// Reads and checks a part record (errors name the file: missing, not JSON, another
    /// format or version, a split other than train/test).
    pub fn load(path: &Path) -> Result<PartRecord> {
        let r: PartRecord = load_json_format(path, "part record", PART_FORMAT, PART_VERSION)?;
        for s in r.planned.keys().chain(r.shards.iter().map(|s| &s.split)) {
            if super::index::split_of(s).is_none() {
                bail!("{}: split {s:?} is not train or test", path.display());
            }
        }
        if r.part.n == 0 || !(1..=r.part.n).contains(&r.part.k) {
            bail!("{}: part {} does not exist", path.display(), r.part);
        }
        Ok(r)
    }

    /// Stable bytes (struct field order, trailing newline).
    pub fn to_bytes(&self) -> Vec<u8> {
        json_bytes(self)
    }

    /// The recorded shard `number` of `split`, if this part wrote it.
    pub fn shard(&self, split: Split, number: usize) -> Option<&ShardProgress> {
        self.shards
            .iter()
            .find(|s| s.split == split.name() && s.number == number)
            .map(|s| &s.progress)
    }

    /// Global shard number of shard `number` of `split` in this record's plan.
    pub fn global(&self, split: Split, number: usize) -> usize {
        match split {
            Split::Train => number,
            Split::Test => self.planned.get("train").copied().unwrap_or(0) + number,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_specs_parse_and_own_round_robin() {
        let p: PartSpec = "2/3".parse().unwrap();
        assert_eq!(p, PartSpec { k: 2, n: 3 });
        assert_eq!(p.to_string(), "2/3");
        let owned: Vec<usize> = (0..7).filter(|&g| p.owns(g)).collect();
        assert_eq!(owned, [1, 4]);
        // Every shard has exactly one part, for any N.
        for n in 1..6 {
            for g in 0..20 {
                let owners = (1..=n).filter(|&k| PartSpec { k, n }.owns(g)).count();
                assert_eq!(owners, 1, "g {g} n {n}");
            }
        }
        for bad in ["0/3", "4/3", "1/0", "3", "a/b", "1/3/4", ""] {
            let e = format!("{:#}", bad.parse::<PartSpec>().unwrap_err());
            assert!(e.contains(&format!("--part {bad}")), "{bad}: {e}");
        }
    }
}
