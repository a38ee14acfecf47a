//! `covidx train --bench`: steady-state training speed (images/s after warm-up, time per
//! step, how long each step waited for the loader, device memory) of the real step (loader,
//! copy, forward, loss, backward, fused Adam) on a build's shards or on synthetic ones; and
//! `--loader-only`: the loader alone (shards to assembled u8 batches), images/s.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tch::{nn, Device, Kind, Tensor};

use super::amp::Precision;
use super::loader::{for_each_batch, verify_all};
use super::model::{DenseNet121, Normalize, Trainable};
use super::sampler::{covid_class, Sampler};
use super::trainer;
use crate::build_dir::{shard_file, BuildDir};
use crate::record::Split;
use crate::shards::{encode, Dataset, Index, ShardData, ShardEntry};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Batch size.
    pub batch: usize,
    /// Untimed steps first (cuDNN's algorithm search, allocator warm-up).
    pub warmup: usize,
    /// Timed steps.
    pub steps: usize,
    /// Which layers train.
    pub trainable: Trainable,
    /// Forward-pass arithmetic.
    pub precision: Precision,
    /// Channels-last convolutions.
    pub channels_last: bool,
    /// Device.
    pub device: Device,
    /// Loader threads.
    pub loader_threads: usize,
}

/// One measurement.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// `train` or `loader`.
    pub what: String,
    /// Device, e.g. `Cuda(0)`.
    pub device: String,
    /// Image side.
    pub size: u32,
    /// Batch size.
    pub batch: usize,
    /// Forward-pass arithmetic.
    pub precision: String,
    /// Channels-last convolutions.
    pub channels_last: bool,
    /// Trainable part.
    pub trainable: String,
    /// Loader threads.
    pub loader_threads: usize,
    /// Timed steps (batches).
    pub steps: usize,
    /// Images per second over the timed steps.
    pub images_per_s: f64,
    /// Milliseconds per step.
    pub step_ms: f64,
    /// Milliseconds per timed step the step waited for its batch.
    pub data_wait_ms_per_step: f64,
    /// Device memory in use after the timed steps (whole device, `cudaMemGetInfo`), MiB.
    pub device_memory_used_mib: Option<f64>,
}

impl BenchReport {
    /// One line for people.
    pub fn line(&self) -> String {
        if self.what == "loader" {
            return format!(
                "loader: {:.1} images/s ({} px, batch {}, {} batches on {}, {} threads): {:.3} \
                 ms/batch waiting for data",
                self.images_per_s,
                self.size,
                self.batch,
                self.steps,
                self.device,
                self.loader_threads,
                self.data_wait_ms_per_step
            );
        }
        let mem = self.device_memory_used_mib.map_or(String::new(), |m| {
            format!(", {m:.0} MiB device memory in use")
        });
        format!(
            "{}: {:.1} images/s ({} px, batch {}, {}{}, --trainable {}, {} on {}, {} loader \
             threads): {:.2} ms/step, {:.3} ms/step waiting for data{}",
            self.what,
            self.images_per_s,
            self.size,
            self.batch,
            self.precision,
            if self.channels_last {
                ", channels-last"
            } else {
                ""
            },
            self.trainable,
            self.steps,
            self.device,
            self.loader_threads,
            self.step_ms,
            self.data_wait_ms_per_step,
            mem
        )
    }
}

/// Writes a synthetic build under `dir` with only what training reads: `shards/index.json`
/// and train/test shards of `n` seeded random images of side `size` (3 classes, a third of
/// them COVID-19). The shards are real files, so the loader maps them as it maps a build's.
pub fn synthetic_build(dir: &Path, size: u32, n: usize) -> Result<BuildDir> {
    let build = BuildDir::new(dir);
    let classes: Vec<String> = ["normal", "pneumonia", "COVID-19"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut index = Index::new("synthetic", size, &classes);
    let per_shard = 512usize;
    let mut rng = crate::imaging::augment::Rng::new(0, "covidx-bench", 0);
    for split in [Split::Train, Split::Test] {
        let count = if split == Split::Train { n } else { n / 4 + 1 };
        std::fs::create_dir_all(build.shard_split_dir(split))?;
        let mut entries = Vec::new();
        let mut start = 0;
        while start < count {
            let m = per_shard.min(count - start);
            let side = size as usize;
            let mut images = vec![0u8; m * side * side];
            for chunk in images.chunks_mut(8) {
                let r = rng.next_u64().to_le_bytes();
                chunk.copy_from_slice(&r[..chunk.len()]);
            }
            let labels: Vec<i64> = (0..m).map(|i| ((start + i) % 3) as i64).collect();
            let data = ShardData {
                size,
                images,
                record: (start..start + m).map(|r| r as i64).collect(),
                copy: vec![0; m],
                labels,
            };
            let bytes = encode(&data, split.name(), &classes);
            let file = shard_file(entries.len());
            let path = build.shard(split, &file);
            std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
            let mut class_counts = vec![0u64; 3];
            for &l in &data.labels {
                class_counts[l as usize] += 1;
            }
            entries.push(ShardEntry {
                file,
                samples: m,
                class_counts,
                sha256: crate::fsutil::sha256_hex(&bytes),
            });
            start += m;
        }
        index.splits.insert(split.name().to_string(), entries);
    }
    index.complete = true;
    std::fs::write(build.shard_index(), index.to_bytes())?;
    Ok(build)
}

/// The first `need` COVID-balanced batches of `ds` (the trainer's sampler, as many epochs
/// as it takes).
fn enough_batches(ds: &Dataset, batch: usize, need: usize) -> Result<Vec<Vec<usize>>> {
    let labels = super::loader::labels(ds, 0..ds.len())?;
    let sampler = Sampler::new(&labels, covid_class(&ds.index().classes), batch, 0.3, 0)?;
    let mut all = Vec::with_capacity(need);
    let mut epoch = 0;
    while all.len() < need {
        let more = sampler.epoch(epoch);
        if more.is_empty() {
            bail!("the training split is too small for {need} batches");
        }
        all.extend(more);
        epoch += 1;
    }
    all.truncate(need);
    Ok(all)
}

fn wait_for(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Runs `work` on `cfg.warmup` untimed, then `cfg.steps` timed batches of the train split of
/// `dir` (every shard is read whole by its sha256 check first, so the page cache, not the
/// disk, is measured), `ahead` batches in flight; returns the side, the timed seconds (the device synchronised at both
/// ends) and how long the timed steps waited for their batches.
fn timed(
    dir: &BuildDir,
    cfg: &BenchConfig,
    ahead: usize,
    mut work: impl FnMut(&super::loader::Batch) -> Result<()>,
) -> Result<(u32, f64, Duration)> {
    let ds = Dataset::open(dir, Split::Train)?;
    verify_all(&ds)?;
    let all = enough_batches(&ds, cfg.batch, cfg.warmup + cfg.steps)?;
    let (mut done, mut wait) = (0usize, Duration::ZERO);
    let (mut timed_from, mut left_step) = (None::<Instant>, None::<Instant>);
    for_each_batch(&ds, &all, (cfg.loader_threads, ahead), cfg.device, |b| {
        if done == cfg.warmup {
            wait_for(cfg.device);
            timed_from = Some(Instant::now());
        } else if let (Some(_), Some(left)) = (timed_from, left_step) {
            wait += left.elapsed();
        }
        work(b)?;
        done += 1;
        left_step = Some(Instant::now());
        Ok(true)
    })?;
    wait_for(cfg.device);
    let elapsed = timed_from.map_or(0.0, |t| t.elapsed().as_secs_f64());
    Ok((ds.index().size, elapsed, wait))
}

/// Measures training steps on the train split of `dir`.
pub fn train_speed(dir: &BuildDir, cfg: &BenchConfig) -> Result<BenchReport> {
    if cfg.device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    let classes = Index::load(&dir.shard_index())?.classes.len();
    tch::manual_seed(0);
    let vs = nn::VarStore::new(cfg.device);
    let mut model = DenseNet121::new(&vs, classes, cfg.trainable, Normalize::ImageNet);
    if cfg.channels_last {
        model.set_channels_last();
    }
    let mut adam = trainer::optimizer(&vs, 1e-3, cfg.precision);
    let mut loss_sum = Tensor::zeros([], (Kind::Float, cfg.device));
    let (size, elapsed, wait) = timed(dir, cfg, 4, |b| {
        let (x, y) = b.to_device(cfg.device);
        let (_, loss) = trainer::step(&model, &mut adam, cfg.precision, (&x, &y), None)?;
        tch::no_grad(|| {
            let _ = loss_sum.g_add_(&loss.to_kind(Kind::Float));
        });
        Ok(())
    })?;
    if !loss_sum.double_value(&[]).is_finite() {
        bail!("the benchmark's loss is not finite");
    }
    Ok(report("train", cfg, size, elapsed, wait, cfg.steps))
}

/// Measures the loader alone on the train split of `dir`: batches assembled (in pinned
/// memory for a CUDA device, and copied there) and dropped.
pub fn loader_speed(dir: &BuildDir, cfg: &BenchConfig) -> Result<BenchReport> {
    let (size, elapsed, wait) = timed(dir, cfg, 8, |b| {
        if cfg.device.is_cuda() {
            let _ = std::hint::black_box(b.to_device(cfg.device));
        } else {
            std::hint::black_box(&b.images);
        }
        Ok(())
    })?;
    Ok(report("loader", cfg, size, elapsed, wait, cfg.steps))
}

fn report(
    what: &str,
    cfg: &BenchConfig,
    size: u32,
    elapsed: f64,
    wait: Duration,
    steps: usize,
) -> BenchReport {
    let steps_f = steps.max(1) as f64;
    BenchReport {
        what: what.into(),
        device: format!("{:?}", cfg.device),
        size,
        batch: cfg.batch,
        precision: cfg.precision.name().into(),
        channels_last: cfg.channels_last,
        trainable: cfg.trainable.name(),
        loader_threads: cfg.loader_threads,
        steps,
        images_per_s: (steps * cfg.batch) as f64 / elapsed.max(1e-9),
        step_ms: elapsed * 1e3 / steps_f,
        data_wait_ms_per_step: wait.as_secs_f64() * 1e3 / steps_f,
        device_memory_used_mib: if cfg.device.is_cuda() {
            super::ffi::device_memory_used().map(|b| b as f64 / (1024.0 * 1024.0))
        } else {
            None
        },
    }
}
