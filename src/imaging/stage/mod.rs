//! The image stage of a build: every train/test record decoded, cropped, resized, augmented
//! (training records only) and streamed to safetensors shards, in parallel (rayon) with memory
//! bounded by the images in flight, resumable shard by shard, and byte-identical for any
//! thread count.
//!
//! By concern: [`sample`] turns one image into its samples, `worker` writes one shard on the
//! rayon pool, [`resume`] keeps the finished shards of an interrupted run, [`parts`] runs one
//! part of a partitioned build and merges the parts, [`tables`] writes `quarantine.csv` and
//! `augment.parquet`; this module plans the shards and runs them in order.
//!
//! Shard k of a split holds a fixed slice of that split's records (training records in a seeded
//! shuffled order, test records in split order), so its bytes depend only on the inputs: a
//! rerun keeps every shard whose file still matches and redoes the others.

pub mod parts;
pub mod resume;
pub mod sample;
pub mod tables;
mod worker;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::build_dir::{self, BuildDir};
use crate::config::Pipeline;
use crate::fsutil;
use crate::progress::Reporter;
use crate::record::{Record, Split};
use crate::shards::{Index, Quarantined, ShardProgress};
use crate::split::Assignment;
pub use sample::{params_of, process, process_bytes, record_key, Draw, Facts, Outputs, Sample};
pub use tables::{augment_frame, quarantine_csv, SampleRow};
use worker::ShardJob;

/// How the stage reports and fails.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageOptions {
    /// Fail on the first bad image instead of quarantining it.
    pub strict: bool,
    /// Show progress (a bar on a terminal, periodic lines otherwise).
    pub progress: bool,
}

/// What the stage reads.
pub struct StageInput<'a> {
    /// The validated pipeline.
    pub pipeline: &'a Pipeline,
    /// The `--sources` directory.
    pub sources_dir: &'a Path,
    /// Every candidate record (manifest rows).
    pub records: &'a [Record],
    /// Train and test records in split order.
    pub assignment: &'a Assignment,
    /// The build directory written.
    pub dir: &'a BuildDir,
    /// Hash of everything that determines the shards' bytes; a resume keeps shards only when
    /// it matches.
    pub params: &'a str,
}

/// What the stage produced.
#[derive(Debug)]
pub struct StageOutcome {
    /// The final shard index.
    pub index: Index,
    /// Bad images, by record.
    pub quarantine: Vec<Quarantined>,
    /// One row per written sample: split, shard, and its augmentation parameters.
    pub samples: Vec<SampleRow>,
    /// Shards reused from an earlier, interrupted run.
    pub reused: usize,
    /// Shards written by this run.
    pub written: usize,
    /// Shards taken from the parts of a partitioned build (a merge).
    pub merged: usize,
    /// Every file the stage wrote (relative to the build directory) and its SHA-256.
    pub outputs: BTreeMap<String, String>,
}

/// The records of each split, cut into shards.
struct SplitPlan {
    split: Split,
    copies: u32,
    chunks: Vec<Vec<usize>>,
}

/// Cuts each split into shards of about `shard_mib` (training records first shuffled by a
/// seeded rank, so every shard holds a class mix).
fn plan(pipeline: &Pipeline, keys: &[String], assignment: &Assignment) -> Vec<SplitPlan> {
    let cfg = &pipeline.images;
    let s = cfg.size as u64;
    let mut train = assignment.train.clone();
    train.sort_by_cached_key(|&i| (sample::rank(pipeline.seed, &keys[i], u32::MAX), i));
    [
        (Split::Train, train, cfg.copies),
        (Split::Test, assignment.test.clone(), 0),
    ]
    .into_iter()
    .map(|(split, order, copies)| {
        let per_record = 1 + copies as u64;
        let cap = ((cfg.shard_mib << 20) / (s * s) / per_record).max(1) as usize;
        SplitPlan {
            split,
            copies,
            chunks: order.chunks(cap).map(<[usize]>::to_vec).collect(),
        }
    })
    .collect()
}

/// Runs the image stage for a planned build: writes `shards/`, `quarantine.csv` and
/// `augment.parquet` of `input.dir`.
pub fn run(input: &StageInput<'_>, opts: StageOptions) -> Result<StageOutcome> {
    run_with(input, opts, None)
}

/// Runs the image stage of a merge: every shard comes from the part of `parts` that owns it
/// (checked against the part's hashes), none is decoded; the rest is as [`run`], so the
/// merged build is byte-identical to one written on one machine.
pub fn run_merge(
    input: &StageInput<'_>,
    opts: StageOptions,
    parts: &parts::MergeSet,
) -> Result<StageOutcome> {
    run_with(input, opts, Some(parts))
}

fn run_with(
    input: &StageInput<'_>,
    opts: StageOptions,
    merge: Option<&parts::MergeSet>,
) -> Result<StageOutcome> {
    let (pipeline, dir) = (input.pipeline, input.dir);
    let keys: Vec<String> = input.records.iter().map(record_key).collect();
    let roots = crate::ingest::SourceRoots::new(input.sources_dir, &pipeline.resolved_sources());
    let plans = plan(pipeline, &keys, input.assignment);
    if let Some(m) = merge {
        m.check(input.params, &plans)?;
    }
    let mut global = 0usize;
    let mut resume = resume::Resume::load(dir, input.params);
    let mut index = Index::new(input.params, pipeline.images.size, &pipeline.classes);
    let total: usize = plans.iter().flat_map(|p| &p.chunks).map(Vec::len).sum();
    let reporter = Reporter::new("images", "records", total as u64, opts.progress);
    let delay = std::env::var("COVIDX_SHARD_DELAY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&ms| ms > 0);
    let (mut reused, mut written, mut merged) = (0, 0, 0);
    for plan in &plans {
        std::fs::create_dir_all(dir.shard_split_dir(plan.split)).map_err(|e| {
            anyhow::anyhow!(
                "creating {}: {e}",
                dir.shard_split_dir(plan.split).display()
            )
        })?;
        for (k, chunk) in plan.chunks.iter().enumerate() {
            let g = global;
            global += 1;
            let path = dir.shard(plan.split, &build_dir::shard_file(k));
            let kept = match resume.reusable(plan.split, k, &path) {
                Some(p) => {
                    reused += 1;
                    Some(p.clone())
                }
                None => match merge {
                    Some(m) => {
                        merged += 1;
                        Some(m.take(plan.split, k, g, &path)?)
                    }
                    None => None,
                },
            };
            if let Some(p) = kept {
                stop_if_strict(opts.strict, &p)?;
                reporter.add(chunk.len() as u64);
                resume.finished(plan.split, p);
                if merge.is_some() {
                    resume.save(dir, &mut index, false)?;
                }
                continue;
            }
            let t = Instant::now();
            let shard = worker::write_shard(&ShardJob {
                pipeline,
                records: input.records,
                roots: &roots,
                keys: &keys,
                split: plan.split,
                chunk,
                copies: plan.copies,
                path: &path,
                strict: opts.strict,
                reporter: &reporter,
            })?;
            tracing::info!(
                "{} shard {k}: {} records, {} samples in {:.3?}",
                plan.split.name(),
                chunk.len(),
                shard.shard.samples,
                t.elapsed()
            );
            resume.finished(plan.split, shard);
            written += 1;
            resume.save(dir, &mut index, false)?;
            if let Some(ms) = delay {
                // Testing knob (COVIDX_SHARD_DELAY_MS): widens the window to kill a build.
                std::thread::sleep(Duration::from_millis(ms));
            }
        }
        resume::remove_leftovers(dir, plan.split, plan.chunks.len())?;
    }
    reporter.finish();
    let state = resume.save(dir, &mut index, true)?;
    let mut outcome = finish(
        input,
        &plans,
        &keys,
        resume.current(),
        index,
        (reused, written, merged),
    )?;
    outcome.outputs.extend(state);
    Ok(outcome)
}

/// With `--strict`, the error for a kept (reused or merged) shard that quarantined an image.
fn stop_if_strict(strict: bool, p: &ShardProgress) -> Result<()> {
    if let (true, Some(q)) = (strict, p.quarantined.first()) {
        bail!(
            "{}: {}: {}; --strict stops here",
            q.path,
            q.reason,
            q.detail
        );
    }
    Ok(())
}

/// Collects the stage's results and writes its tables (the index and resume state are
/// already written).
fn finish(
    input: &StageInput<'_>,
    plans: &[SplitPlan],
    keys: &[String],
    progress: &crate::shards::Progress,
    index: Index,
    (reused, written, merged): (usize, usize, usize),
) -> Result<StageOutcome> {
    let (cfg, dir) = (&input.pipeline.images, input.dir);
    let mut quarantine = Vec::new();
    let mut samples = Vec::new();
    let mut outputs = BTreeMap::new();
    for plan in plans {
        let done: &[ShardProgress] = progress
            .splits
            .get(plan.split.name())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for (chunk, p) in plan.chunks.iter().zip(done) {
            quarantine.extend(p.quarantined.iter().cloned());
            let bad: std::collections::HashSet<usize> =
                p.quarantined.iter().map(|q| q.record).collect();
            for &i in chunk.iter().filter(|i| !bad.contains(i)) {
                for c in 0..=plan.copies {
                    samples.push(SampleRow {
                        split: plan.split,
                        shard: p.shard.file.clone(),
                        sample: Sample {
                            record: i,
                            copy: c,
                            params: params_of(cfg, input.pipeline.seed, &keys[i], c),
                        },
                    });
                }
            }
            outputs.insert(
                BuildDir::shard_rel(plan.split, &p.shard.file),
                p.shard.sha256.clone(),
            );
            outputs.insert(
                BuildDir::shard_rel(plan.split, &build_dir::facts_of_shard(&p.shard.file)),
                p.images_sha256.clone(),
            );
        }
    }
    quarantine.sort_by_key(|q| q.record);
    let files = [
        (build_dir::QUARANTINE, quarantine_csv(&quarantine)?),
        (build_dir::AUGMENT, tables::augment_parquet(&samples)?),
    ];
    for (rel, bytes) in &files {
        fsutil::write_atomic(&dir.path(rel), bytes)?;
        outputs.insert(rel.to_string(), fsutil::sha256_hex(bytes));
    }
    Ok(StageOutcome {
        index,
        quarantine,
        samples,
        reused,
        written,
        merged,
        outputs,
    })
}
