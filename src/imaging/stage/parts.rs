//! The image stage split across machines: part K of N writes only the shards it owns (see
//! [`crate::shards::part`]) and records them in `part.json`; a merge takes every shard from
//! the part that owns it, checking parameters and hashes, instead of decoding it.
//!
//! A part is resumable as a build is: a rerun keeps each shard whose files still have the
//! hashes in `part.json` (written after every shard) and redoes the others.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::resume::files_match;
use super::worker::{self, ShardJob};
use super::{plan, record_key, SplitPlan, StageInput, StageOptions};
use crate::build_dir::{self, BuildDir};
use crate::fsutil;
use crate::progress::Reporter;
use crate::record::Split;
use crate::shards::part::part_of;
use crate::shards::{PartRecord, PartShard, Quarantined, ShardProgress};

/// What a part wrote.
#[derive(Debug)]
pub struct PartOutcome {
    /// The part record written (`part.json`).
    pub record: PartRecord,
    /// Shards kept from an earlier run of this part.
    pub reused: usize,
    /// Shards written by this run.
    pub written: usize,
    /// Bad images of this part's shards.
    pub quarantine: Vec<Quarantined>,
    /// Shard files of other parts or of an earlier build that this part removed.
    pub removed: Vec<String>,
}

/// The shards each split has in the plan.
fn planned(plans: &[SplitPlan]) -> std::collections::BTreeMap<String, usize> {
    plans
        .iter()
        .map(|p| (p.split.name().to_string(), p.chunks.len()))
        .collect()
}

/// Every planned shard as (split plan, number in split, global number), in global order.
fn shards_of(plans: &[SplitPlan]) -> impl Iterator<Item = (&SplitPlan, usize, usize)> {
    plans
        .iter()
        .flat_map(|p| (0..p.chunks.len()).map(move |k| (p, k)))
        .enumerate()
        .map(|(g, (p, k))| (p, k, g))
}

/// Runs part `template.part` of the image stage into `input.dir`: writes the shards the part
/// owns and `part.json` (from `template`, whose `params` must be `input.params`).
pub fn run_part(
    input: &StageInput<'_>,
    opts: StageOptions,
    mut record: PartRecord,
) -> Result<PartOutcome> {
    let (pipeline, dir) = (input.pipeline, input.dir);
    let spec = record.part;
    let keys: Vec<String> = input.records.iter().map(record_key).collect();
    let roots = crate::ingest::SourceRoots::new(input.sources_dir, &pipeline.resolved_sources());
    let plans = plan(pipeline, &keys, input.assignment);
    record.planned = planned(&plans);
    record.complete = false;
    record.shards.clear();
    let previous = match PartRecord::load(&dir.part_record()) {
        Ok(p) if p.params == input.params && p.part == spec => Some(p),
        Ok(p) => {
            tracing::info!(
                "{}: part {} written with other inputs, settings or part count; every shard \
                 is redone",
                dir.part_record().display(),
                p.part
            );
            None
        }
        Err(_) => None,
    };
    let own: Vec<_> = shards_of(&plans)
        .filter(|&(_, _, g)| spec.owns(g))
        .collect();
    let total: usize = own.iter().map(|(p, k, _)| p.chunks[*k].len()).sum();
    let reporter = Reporter::new("images", "records", total as u64, opts.progress);
    let (mut reused, mut written) = (0, 0);
    let mut quarantine = Vec::new();
    for &(plan, k, _) in &own {
        let folder = dir.shard_split_dir(plan.split);
        std::fs::create_dir_all(&folder)
            .with_context(|| format!("creating {}", folder.display()))?;
        let path = dir.shard(plan.split, &build_dir::shard_file(k));
        let kept = previous
            .as_ref()
            .and_then(|p| p.shard(plan.split, k))
            .filter(|p| files_match(p, &path));
        let progress = if let Some(p) = kept {
            reporter.add(plan.chunks[k].len() as u64);
            reused += 1;
            p.clone()
        } else {
            let t = Instant::now();
            let p = worker::write_shard(&ShardJob {
                pipeline,
                records: input.records,
                roots: &roots,
                keys: &keys,
                split: plan.split,
                chunk: &plan.chunks[k],
                copies: plan.copies,
                path: &path,
                strict: opts.strict,
                reporter: &reporter,
            })?;
            tracing::info!(
                "part {spec}: {} shard {k}: {} records, {} samples in {:.3?}",
                plan.split.name(),
                plan.chunks[k].len(),
                p.shard.samples,
                t.elapsed()
            );
            written += 1;
            p
        };
        super::stop_if_strict(opts.strict, &progress)?;
        quarantine.extend(progress.quarantined.iter().cloned());
        record.shards.push(PartShard {
            split: plan.split.name().to_string(),
            number: k,
            progress,
        });
        fsutil::write_atomic(&dir.part_record(), &record.to_bytes())?;
    }
    reporter.finish();
    // Shards of other parts (or of an earlier whole build) must not pass for this part's.
    let mine: BTreeSet<(Split, usize)> = own.iter().map(|(p, k, _)| (p.split, *k)).collect();
    let removed = dir.remove_outputs_except(|rel| {
        if rel == build_dir::PART {
            return true;
        }
        let mut parts = rel.splitn(3, '/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(build_dir::SHARDS), Some(split), Some(name)) => {
                let split = crate::shards::index::split_of(split);
                let number = build_dir::shard_output_number(name);
                matches!((split, number), (Some(s), Some(k)) if mine.contains(&(s, k)))
            }
            _ => false,
        }
    })?;
    record.complete = true;
    fsutil::write_atomic(&dir.part_record(), &record.to_bytes())?;
    quarantine.sort_by_key(|q| q.record);
    Ok(PartOutcome {
        record,
        reused,
        written,
        quarantine,
        removed,
    })
}

/// The parts a merge takes its shards from: every part of one partitioned build, each complete.
#[derive(Debug)]
pub struct MergeSet {
    /// Part directories and their records, in part order (index K-1).
    parts: Vec<(BuildDir, PartRecord)>,
}

impl MergeSet {
    /// Loads `part.json` of every directory and checks that they are the N parts of one
    /// partitioned build, each exactly once and each complete.
    pub fn load(dirs: &[PathBuf]) -> Result<MergeSet> {
        if dirs.is_empty() {
            bail!("a merge needs the part directories (covidx merge OUT PART...)");
        }
        let mut loaded = Vec::with_capacity(dirs.len());
        for d in dirs {
            let dir = BuildDir::new(d);
            let r = PartRecord::load(&dir.part_record()).with_context(|| {
                format!(
                    "{} is not a finished part of a partitioned build (covidx build --part K/N)",
                    d.display()
                )
            })?;
            loaded.push((dir, r));
        }
        let n = loaded[0].1.part.n;
        if let Some((d, r)) = loaded.iter().find(|(_, r)| r.part.n != n) {
            bail!(
                "{} is part {} but {} is part {}: parts of one build have one part count",
                d.root().display(),
                r.part,
                loaded[0].0.root().display(),
                loaded[0].1.part
            );
        }
        let mut slots: Vec<Option<(BuildDir, PartRecord)>> = (0..n).map(|_| None).collect();
        for (d, r) in loaded {
            let slot = &mut slots[r.part.k - 1];
            if let Some((other, _)) = slot {
                bail!(
                    "part {} is given twice: {} and {}",
                    r.part,
                    other.root().display(),
                    d.root().display()
                );
            }
            *slot = Some((d, r));
        }
        let missing: Vec<String> = (1..=n)
            .filter(|k| slots[k - 1].is_none())
            .map(|k| format!("{k}/{n}"))
            .collect();
        if !missing.is_empty() {
            bail!(
                "parts {} are missing: a merge needs all {n} parts",
                missing.join(", ")
            );
        }
        let parts: Vec<(BuildDir, PartRecord)> = slots.into_iter().flatten().collect();
        if let Some((d, r)) = parts.iter().find(|(_, r)| !r.complete) {
            bail!(
                "part {} in {} is not finished (still running, or killed: rerun it and it \
                 resumes)",
                r.part,
                d.root().display()
            );
        }
        Ok(MergeSet { parts })
    }

    /// The part directories.
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.parts.iter().map(|(d, _)| d.root())
    }

    /// The first part's record (pipeline and sources of the partitioned build).
    pub fn first(&self) -> &PartRecord {
        &self.parts[0].1
    }

    /// Checks every part against the merging build: same parameter hash (tool version,
    /// pipeline, inputs), same shard plan, and each planned shard written by the part that
    /// owns it, once.
    pub(super) fn check(&self, params: &str, plans: &[SplitPlan]) -> Result<()> {
        let want = planned(plans);
        for (d, r) in &self.parts {
            if r.params != params {
                bail!(
                    "part {} in {} was built from other inputs, another pipeline or another \
                     covidx version than this merge (parameter hash {}, this build's {params}); \
                     rerun the parts with the merge's pipeline and sources",
                    r.part,
                    d.root().display(),
                    r.params
                );
            }
            if r.planned != want {
                bail!(
                    "part {} in {} planned shards {:?}, this build {want:?}",
                    r.part,
                    d.root().display(),
                    r.planned
                );
            }
            let mut seen = BTreeSet::new();
            for s in &r.shards {
                let split = crate::shards::index::split_of(&s.split).expect("checked at load");
                let g = r.global(split, s.number);
                if s.number >= want.get(&s.split).copied().unwrap_or(0) || !r.part.owns(g) {
                    bail!(
                        "part {} in {} lists {} shard {}, which is not one of its shards",
                        r.part,
                        d.root().display(),
                        s.split,
                        s.number
                    );
                }
                if !seen.insert((s.split.clone(), s.number)) {
                    bail!(
                        "part {} in {} lists {} shard {} twice",
                        r.part,
                        d.root().display(),
                        s.split,
                        s.number
                    );
                }
            }
        }
        for (plan, k, g) in shards_of(plans) {
            let (d, r) = &self.parts[part_of(g, self.parts.len()) - 1];
            if r.shard(plan.split, k).is_none() {
                bail!(
                    "{} shard {k} is missing: part {} in {} should have written it; rerun \
                     that part",
                    plan.split.name(),
                    r.part,
                    d.root().display()
                );
            }
        }
        Ok(())
    }

    /// Puts shard `k` of `split` (global number `g`) at `dest` (and its image-facts table
    /// beside it) from the part that owns it: hard-linked where the file system allows, else
    /// copied, through a temporary name, and checked against the part's recorded hashes
    /// before it is renamed into place. Returns the part's record of the shard.
    pub(super) fn take(
        &self,
        split: Split,
        k: usize,
        g: usize,
        dest: &Path,
    ) -> Result<ShardProgress> {
        let (d, r) = &self.parts[part_of(g, self.parts.len()) - 1];
        let p = r
            .shard(split, k)
            .expect("MergeSet::check found every shard")
            .clone();
        let facts = build_dir::facts_of_shard(&p.shard.file);
        let dest_facts = dest.with_file_name(&facts);
        for (file, sha, to) in [
            (&p.shard.file, &p.shard.sha256, dest),
            (&facts, &p.images_sha256, dest_facts.as_path()),
        ] {
            let from = d.shard(split, file);
            place_checked(&from, to, sha).with_context(|| format!("merging part {}", r.part))?;
        }
        Ok(p)
    }
}

/// Links (or copies) `from` to a temporary sibling of `to`, checks its SHA-256 is `sha`, and
/// renames it to `to`.
fn place_checked(from: &Path, to: &Path, sha: &str) -> Result<()> {
    let tmp = fsutil::temp_sibling(to);
    let _ = std::fs::remove_file(&tmp);
    if std::fs::hard_link(from, &tmp).is_err() {
        std::fs::copy(from, &tmp)
            .with_context(|| format!("copying {} to {}", from.display(), tmp.display()))?;
    }
    let got = fsutil::sha256_file(&tmp);
    match got {
        Ok(got) if got == sha => {}
        other => {
            let _ = std::fs::remove_file(&tmp);
            let got = other.map_err(|e| format!("{e:#}")).unwrap_or_else(|e| e);
            bail!(
                "{}: sha256 {got}, but the part's part.json records {sha}: the file changed \
                 after the part wrote it; rerun that part",
                from.display()
            );
        }
    }
    std::fs::rename(&tmp, to)
        .with_context(|| format!("renaming {} to {}", tmp.display(), to.display()))
}
