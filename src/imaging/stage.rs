//! The image stage of a build: every train/test record decoded, cropped, resized, augmented
//! (training records only) and streamed to safetensors shards, in parallel (rayon) with memory
//! bounded by the images in flight, resumable shard by shard, and byte-identical for any
//! thread count.
//!
//! Shard k of a split holds a fixed slice of that split's records (training records in a seeded
//! shuffled order, test records in split order), so its bytes depend only on the inputs: a
//! rerun keeps every shard whose file still matches the index and redoes the others.

use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::augment::{self, Params};
use super::decode::{decode_into, fit, read_image, release_if_large, DecodeError, SizeHint};
use super::preprocess::{crop_square, resize_region_into};
use crate::config::{ImagesConfig, Pipeline};
use crate::fsutil;
use crate::record::Record;
use crate::shards::{self, Index, ShardEntry, ShardStream};
use crate::split::Assignment;

/// How the stage reports and fails.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageOptions {
    /// Fail on the first bad image instead of quarantining it.
    pub strict: bool,
    /// Show progress (a bar on a terminal, periodic lines otherwise).
    pub progress: bool,
}

/// A record whose image could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// Sampled augmentation of one output sample.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Manifest row.
    pub record: usize,
    /// Copy index (0 = clean).
    pub copy: u32,
    /// Parameters used.
    pub params: Params,
}

/// What the stage produced.
#[derive(Debug)]
pub struct StageOutcome {
    /// The final shard index.
    pub index: Index,
    /// Bad images (also in the index, per shard).
    pub quarantine: Vec<Quarantined>,
    /// One row per written sample: split, shard, and its augmentation parameters.
    pub samples: Vec<(String, String, Sample)>,
    /// Shards reused from an earlier, interrupted run.
    pub reused: usize,
    /// Shards written by this run.
    pub written: usize,
}

/// Entry of a shard in the index, with the quarantined records of its slice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Progress {
    shard: ShardEntry,
    quarantined: Vec<Quarantined>,
}

/// The index's shard lists, derived from the per-split progress.
fn index_splits(
    progress: &std::collections::BTreeMap<String, Vec<Progress>>,
) -> std::collections::BTreeMap<String, Vec<ShardEntry>> {
    progress
        .iter()
        .map(|(k, v)| (k.clone(), v.iter().map(|p| p.shard.clone()).collect()))
        .collect()
}

/// Key that names a record for random draws: stable across manifest order.
pub fn record_key(r: &Record) -> String {
    format!("{}:{}", r.source, r.path)
}

fn rank(seed: u64, key: &str, copy: u32) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"shuffle");
    h.update(seed.to_le_bytes());
    h.update(key.as_bytes());
    h.update(copy.to_le_bytes());
    h.finalize().into()
}

type Outputs = Vec<(u32, Params, Vec<u8>)>;

/// Decodes one record and produces its clean copy and `copies` augmented copies.
pub fn process(
    path: &Path,
    cfg: &ImagesConfig,
    seed: u64,
    key: &str,
    copies: u32,
) -> Result<Outputs, DecodeError> {
    let mut out = Vec::with_capacity(1 + copies as usize);
    process_each(path, cfg, seed, key, copies, &mut |c, p, px| {
        out.push((c, p, px.to_vec()))
    })?;
    Ok(out)
}

/// [`process`], handing each sample (copy, parameters, `S*S` pixels) to `emit` from per-thread
/// buffers, so no buffer is allocated or cleared per image. Samples are emitted only once the
/// image has decoded: an error means none was.
pub fn process_each(
    path: &Path,
    cfg: &ImagesConfig,
    seed: u64,
    key: &str,
    copies: u32,
    emit: &mut dyn FnMut(u32, Params, &[u8]),
) -> Result<(), DecodeError> {
    let bytes = read_image(path)?;
    SCRATCH.with_borrow_mut(|scratch| {
        let result = scratch.samples(&bytes, path, cfg, seed, key, copies, emit);
        for buf in [
            &mut scratch.decoded,
            &mut scratch.level,
            &mut scratch.sample,
        ] {
            release_if_large(buf);
        }
        result
    })
}

/// Per-thread image buffers, reused across records.
#[derive(Default)]
struct Scratch {
    decoded: Vec<u8>,
    level: Vec<u8>,
    sample: Vec<u8>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// A borrowed grayscale image.
type View<'a> = image::ImageBuffer<image::Luma<u8>, &'a [u8]>;

impl Scratch {
    /// Decodes `bytes` (the file at `path`) and emits the clean copy and `copies` augmented
    /// copies (see [`process_each`]).
    #[allow(clippy::too_many_arguments)]
    fn samples(
        &mut self,
        bytes: &[u8],
        path: &Path,
        cfg: &ImagesConfig,
        seed: u64,
        key: &str,
        copies: u32,
        emit: &mut dyn FnMut(u32, Params, &[u8]),
    ) -> Result<(), DecodeError> {
        // The clean copy needs S pixels across the crop, augmented copies a level of up to 2S.
        let hint = SizeHint {
            crop_top: cfg.crop_top,
            min_side: if copies > 0 { 2 * cfg.size } else { cfg.size },
        };
        let (w, h) = decode_into(bytes, path, Some(hint), &mut self.decoded)?;
        let img = View::from_raw(w, h, &self.decoded[..]).expect("decoded size");
        let mut resizer = fast_image_resize::Resizer::new();
        let square = crop_square(w, h, cfg.crop_top);
        let s = cfg.size;
        let sample = &mut self.sample;
        fit(sample, s as usize * s as usize);
        if copies == 0 {
            resize_region_into(&mut resizer, &img, square, s, sample);
            emit(0, Params::IDENTITY, sample);
            return Ok(());
        }
        // One prefiltered level of at most 2S: the clean copy is resized from it, and every
        // augmented copy is one warp from it straight to S (never a full-size warp).
        let side = square.side.min(2 * s);
        let level = &mut self.level;
        fit(level, side as usize * side as usize);
        resize_region_into(&mut resizer, &img, square, side, level);
        if side == s {
            emit(0, Params::IDENTITY, level);
        } else {
            let level_img = View::from_raw(side, side, &level[..]).expect("square level");
            let whole = super::preprocess::Square { x: 0, y: 0, side };
            resize_region_into(&mut resizer, &level_img, whole, s, sample);
            emit(0, Params::IDENTITY, sample);
        }
        let a = &cfg.augment;
        for c in 1..=copies {
            let p = augment::sample(a, seed, key, c);
            augment::warp_into(level, side, s, &p, a.fill, a.fill_value, sample);
            emit(c, p, sample);
        }
        Ok(())
    }
}

struct Reporter {
    bar: Option<indicatif::ProgressBar>,
    plain: bool,
    total: usize,
    done: usize,
    last: Instant,
    start: Instant,
}

impl Reporter {
    fn new(total: usize, enabled: bool) -> Reporter {
        let terminal = std::io::stderr().is_terminal();
        let bar = (enabled && terminal).then(|| {
            let bar = indicatif::ProgressBar::new(total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} images {bar:30} {pos}/{len} {per_sec} ETA {eta}",
                )
                .unwrap(),
            );
            bar
        });
        Reporter {
            bar,
            plain: enabled && !terminal,
            total,
            done: 0,
            last: Instant::now(),
            start: Instant::now(),
        }
    }

    fn add(&mut self, n: usize) {
        self.done += n;
        if let Some(bar) = &self.bar {
            bar.inc(n as u64);
        } else if self.plain
            && (self.last.elapsed() > Duration::from_secs(5) || self.done == self.total)
        {
            let secs = self.start.elapsed().as_secs_f64().max(1e-9);
            eprintln!(
                "images: {}/{} records, {:.1} records/s",
                self.done,
                self.total,
                self.done as f64 / secs
            );
            self.last = Instant::now();
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// One shard to decode and write: a fixed slice of a split's records.
struct ShardJob<'a> {
    pipeline: &'a Pipeline,
    sources_dir: &'a Path,
    records: &'a [Record],
    keys: &'a [String],
    split: &'a str,
    chunk: &'a [usize],
    copies: u32,
    path: &'a Path,
    strict: bool,
    reporter: &'a std::sync::Mutex<Reporter>,
}

/// Aborts a [`ShardStream`]'s hashing when a worker panics, so its thread can be joined.
struct AbortOnUnwind<'a>(&'a ShardStream);

impl Drop for AbortOnUnwind<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.abort();
        }
    }
}

/// Decodes a shard's records on the rayon pool and streams every sample to its planned place
/// in the shard file while another thread hashes the file's completed prefix.
///
/// Slots are planned up front: the records' samples in order (training shards: shuffled by a
/// seeded rank), so a sample's bytes and place depend only on the inputs. Records are taken
/// in the order of their first slot, which keeps the hashed prefix close behind the workers;
/// memory holds only the images in flight. A record that fails to decode is quarantined and
/// its slots are dropped when the shard is finished.
fn write_shard(job: &ShardJob<'_>) -> Result<Progress> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let cfg = &job.pipeline.images;
    let seed = job.pipeline.seed;
    let per_record = 1 + job.copies as usize;
    let mut plan: Vec<(usize, u32)> = (0..job.chunk.len())
        .flat_map(|p| (0..=job.copies).map(move |c| (p, c)))
        .collect();
    if job.split == "train" {
        plan.sort_by_cached_key(|&(p, c)| {
            let i = job.chunk[p];
            (rank(seed, &job.keys[i], c), i, c)
        });
    }
    let mut slot_of = vec![0usize; plan.len()];
    for (slot, &(p, c)) in plan.iter().enumerate() {
        slot_of[p * per_record + c as usize] = slot;
    }
    let mut work: Vec<usize> = (0..job.chunk.len()).collect();
    work.sort_by_key(|&p| {
        slot_of[p * per_record..(p + 1) * per_record]
            .iter()
            .min()
            .copied()
    });
    let label = |p: usize| {
        job.records[job.chunk[p]]
            .label
            .expect("split records are labelled")
    };
    let stream = ShardStream::create(
        job.path,
        cfg.size,
        job.split,
        &job.pipeline.classes,
        plan.iter().map(|&(p, _)| label(p) as i64).collect(),
        plan.iter().map(|&(p, _)| job.chunk[p] as i64).collect(),
        plan.iter().map(|&(_, c)| c as u8).collect(),
    )?;
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let failures: std::sync::Mutex<Vec<(usize, DecodeError)>> = Default::default();
    let io_error: std::sync::Mutex<Option<anyhow::Error>> = Default::default();
    let hash = std::thread::scope(|scope| {
        let hasher = scope.spawn(|| stream.hash());
        let guard = AbortOnUnwind(&stream);
        rayon::scope(|rs| {
            for _ in 0..rayon::current_num_threads() {
                rs.spawn(|_| {
                    while !stop.load(Ordering::Relaxed) {
                        let w = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&p) = work.get(w) else { break };
                        let i = job.chunk[p];
                        let path = job.sources_dir.join(&job.records[i].path);
                        let slots = &slot_of[p * per_record..(p + 1) * per_record];
                        let mut emit = |c: u32, _: Params, px: &[u8]| {
                            if let Err(e) = stream.put(slots[c as usize], px) {
                                *io_error.lock().unwrap() = Some(e);
                                stop.store(true, Ordering::Relaxed);
                            }
                        };
                        match process_each(&path, cfg, seed, &job.keys[i], job.copies, &mut emit) {
                            Ok(()) => {}
                            Err(e) => {
                                slots.iter().for_each(|&slot| stream.fail(slot));
                                failures.lock().unwrap().push((i, e));
                                if job.strict {
                                    stop.store(true, Ordering::Relaxed);
                                }
                            }
                        }
                        job.reporter.lock().unwrap().add(1);
                    }
                });
            }
        });
        drop(guard);
        if stop.load(Ordering::Relaxed) {
            stream.abort();
        }
        hasher.join().expect("shard hasher panicked")
    });
    if let Some(e) = io_error.into_inner().unwrap() {
        return Err(e);
    }
    let mut failures = failures.into_inner().unwrap();
    failures.sort_by_key(|(i, _)| *i);
    if let (true, Some((i, e))) = (job.strict, failures.first()) {
        let r = &job.records[*i];
        bail!("{}: {} ({}); --strict stops here", r.path, e, r.origin());
    }
    let quarantined: Vec<Quarantined> = failures
        .into_iter()
        .map(|(i, e)| {
            let r = &job.records[i];
            tracing::warn!("quarantined {}: {e}", r.path);
            Quarantined {
                record: i,
                path: r.path.clone(),
                reason: e.reason.to_string(),
                detail: e.detail,
            }
        })
        .collect();
    let (sha256, kept) = stream.finish(hash?)?;
    let mut class_counts = vec![0u64; job.pipeline.classes.len()];
    for &slot in &kept {
        class_counts[label(plan[slot].0)] += 1;
    }
    Ok(Progress {
        shard: ShardEntry {
            file: job
                .path
                .file_name()
                .expect("shard file name")
                .to_string_lossy()
                .into_owned(),
            samples: kept.len(),
            class_counts,
            sha256,
        },
        quarantined,
    })
}

/// Runs the image stage for a planned build, writing `out/shards/`.
#[allow(clippy::too_many_arguments)]
pub fn run(
    pipeline: &Pipeline,
    sources_dir: &Path,
    records: &[Record],
    assignment: &Assignment,
    out: &Path,
    params_hash: &str,
    opts: StageOptions,
) -> Result<StageOutcome> {
    let cfg = &pipeline.images;
    let s = cfg.size as usize;
    let shards_dir = out.join("shards");
    let index_path = shards_dir.join("index.json");
    let previous = Index::read(&index_path).filter(|i| i.params == params_hash);
    let mut index = Index {
        format: shards::FORMAT.into(),
        version: shards::VERSION.into(),
        params: params_hash.to_string(),
        size: cfg.size,
        classes: pipeline.classes.clone(),
        complete: false,
        splits: Default::default(),
    };
    let progress_path = shards_dir.join("progress.json");
    let mut previous_progress: std::collections::BTreeMap<String, Vec<Progress>> = previous
        .as_ref()
        .and_then(|_| std::fs::read(&progress_path).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut progress: std::collections::BTreeMap<String, Vec<Progress>> = Default::default();

    let delay = std::env::var("COVIDX_SHARD_DELAY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&ms| ms > 0);
    let mut train: Vec<usize> = assignment.train.clone();
    let keys: Vec<String> = records.iter().map(record_key).collect();
    train.sort_by_cached_key(|&i| (rank(pipeline.seed, &keys[i], u32::MAX), i));
    let plan = [
        ("train", train, cfg.copies),
        ("test", assignment.test.clone(), 0),
    ];
    let total: usize = plan.iter().map(|(_, r, _)| r.len()).sum();
    let reporter = Reporter::new(total, opts.progress);
    let mut outcome = StageOutcome {
        index: index.clone(),
        quarantine: Vec::new(),
        samples: Vec::new(),
        reused: 0,
        written: 0,
    };

    let reporter = std::sync::Mutex::new(reporter);
    for (split, order, copies) in plan {
        let per_record = 1 + copies as usize;
        let cap = ((cfg.shard_mib << 20) as usize / (s * s) / per_record).max(1);
        let dir = shards_dir.join(split);
        std::fs::create_dir_all(&dir)?;
        let old = previous_progress.remove(split).unwrap_or_default();
        let mut entries = Vec::new();
        for (k, chunk) in order.chunks(cap).enumerate() {
            let file = format!("shard-{k:05}.safetensors");
            let path = dir.join(&file);
            let samples_of = |quarantined: &[Quarantined]| -> Vec<Sample> {
                chunk
                    .iter()
                    .filter(|&&i| !quarantined.iter().any(|q| q.record == i))
                    .flat_map(|&i| (0..=copies).map(move |c| (i, c)))
                    .map(|(i, c)| Sample {
                        record: i,
                        copy: c,
                        params: if c == 0 {
                            Params::IDENTITY
                        } else {
                            augment::sample(&cfg.augment, pipeline.seed, &keys[i], c)
                        },
                    })
                    .collect()
            };
            // Resume: keep a finished shard whose bytes still match the index.
            let kept = old.get(k).filter(|p| {
                p.shard.file == file
                    && fsutil::sha256_file(&path).ok().as_deref() == Some(p.shard.sha256.as_str())
            });
            let entry = match kept {
                Some(p) => {
                    if let (true, Some(q)) = (opts.strict, p.quarantined.first()) {
                        bail!(
                            "{}: {}: {}; --strict stops here",
                            q.path,
                            q.reason,
                            q.detail
                        );
                    }
                    reporter.lock().unwrap().add(chunk.len());
                    outcome.reused += 1;
                    (p.clone(), false)
                }
                None => {
                    let t = Instant::now();
                    let entry = write_shard(&ShardJob {
                        pipeline,
                        sources_dir,
                        records,
                        keys: &keys,
                        split,
                        chunk,
                        copies,
                        path: &path,
                        strict: opts.strict,
                        reporter: &reporter,
                    })?;
                    tracing::info!(
                        "{split} shard {k}: {} records, {} samples in {:.3?}",
                        chunk.len(),
                        entry.shard.samples,
                        t.elapsed()
                    );
                    outcome.written += 1;
                    (entry, true)
                }
            };
            let (entry, fresh) = entry;
            outcome.quarantine.extend(entry.quarantined.iter().cloned());
            for smp in samples_of(&entry.quarantined) {
                outcome.samples.push((split.into(), file.clone(), smp));
            }
            entries.push(entry);
            progress.insert(split.into(), entries.clone());
            if fresh {
                index.splits = index_splits(&progress);
                fsutil::write_atomic(&progress_path, &serde_json::to_vec(&progress)?)?;
                fsutil::write_atomic(&index_path, &index.to_bytes())?;
                if let Some(ms) = delay {
                    // Testing knob (COVIDX_SHARD_DELAY_MS): widens the window to kill a build.
                    std::thread::sleep(Duration::from_millis(ms));
                }
            }
        }
        // Shards left over from an earlier build with more shards, and temporary files of a
        // killed one, are removed.
        let n = entries.len();
        for e in std::fs::read_dir(&dir)? {
            let p = e?.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with('.') && name.contains("shard-") && name.contains(".tmp-") {
                std::fs::remove_file(&p)?;
            } else if let Some(k) = name
                .strip_prefix("shard-")
                .and_then(|r| r.strip_suffix(".safetensors"))
                .and_then(|k| k.parse::<usize>().ok())
            {
                if k >= n {
                    std::fs::remove_file(&p)?;
                }
            }
        }
        progress.insert(split.into(), entries);
    }
    reporter.into_inner().unwrap().finish();
    index.splits = index_splits(&progress);
    index.complete = true;
    fsutil::write_atomic(&index_path, &index.to_bytes())?;
    outcome.quarantine.sort_by_key(|q| q.record);
    outcome.index = index;
    Ok(outcome)
}

/// `quarantine.csv`: record, path, reason, detail.
pub fn quarantine_csv(q: &[Quarantined]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["record", "path", "reason", "detail"])?;
    for e in q {
        w.write_record([
            e.record.to_string(),
            e.path.clone(),
            e.reason.clone(),
            e.detail.clone(),
        ])?;
    }
    Ok(w.into_inner()?)
}

/// `augment.parquet`: one row per sample with its split, shard and parameters, so any sample
/// can be regenerated with [`process`].
pub fn augment_frame(samples: &[(String, String, Sample)]) -> Result<DataFrame> {
    let col_f = |name: &str, f: &dyn Fn(&Params) -> f32| {
        Column::new(
            name.into(),
            samples
                .iter()
                .map(|(_, _, s)| f(&s.params))
                .collect::<Vec<_>>(),
        )
    };
    let columns = vec![
        Column::new(
            "record".into(),
            samples
                .iter()
                .map(|(_, _, s)| s.record as u64)
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "copy".into(),
            samples.iter().map(|(_, _, s)| s.copy).collect::<Vec<_>>(),
        ),
        Column::new(
            "split".into(),
            samples
                .iter()
                .map(|(sp, _, _)| sp.as_str())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "shard".into(),
            samples
                .iter()
                .map(|(_, f, _)| f.as_str())
                .collect::<Vec<_>>(),
        ),
        col_f("angle", &|p| p.angle),
        col_f("tx", &|p| p.tx),
        col_f("ty", &|p| p.ty),
        col_f("zx", &|p| p.zx),
        col_f("zy", &|p| p.zy),
        Column::new(
            "flip".into(),
            samples
                .iter()
                .map(|(_, _, s)| s.params.flip)
                .collect::<Vec<_>>(),
        ),
        col_f("gain", &|p| p.gain),
        col_f("shift", &|p| p.shift),
    ];
    Ok(DataFrame::new(samples.len(), columns)?)
}
