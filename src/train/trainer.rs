//! `covidx train`: DenseNet-121 on a build's shards, COVID-balanced batches, Adam, per-epoch
//! metrics (JSONL + CSV), best and last checkpoints, exact resume.
//!
//! A run directory holds `metrics.jsonl`, `metrics.csv` and, per checkpoint (`last`, `best`),
//! `<name>.safetensors` (weights, torchvision's names), `<name>.adam.safetensors` (optimizer
//! moments) and `<name>.json` ([`CheckpointState`]). `best` is the epoch of highest test
//! accuracy: chosen on the test split, as the paper reported, so it is not an unbiased
//! estimate.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use super::adam::Adam;
use super::amp::{GradScaler, Precision};
use super::loader::{self, clean_samples, for_each_batch, verify_all};
use super::metrics::Metrics;
use super::model::{DenseNet121, Normalize, Trainable};
use super::sampler::{covid_class, Sampler};
use super::weights;
use crate::build_dir::BuildDir;
use crate::manifest::Manifest;
use crate::record::Split;
use crate::shards::Dataset;

/// `format` of a checkpoint's JSON.
pub const CHECKPOINT_FORMAT: &str = "covidx-checkpoint";
/// `version` of a checkpoint's JSON.
pub const CHECKPOINT_VERSION: &str = "1.1";

/// How to train.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// Run directory.
    pub out: PathBuf,
    /// Epochs.
    pub epochs: u64,
    /// Batch size.
    pub batch: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// COVID-19 share of each batch (0: no balancing).
    pub covid_percent: f64,
    /// Seed of the initialisation and the sampler.
    pub seed: u64,
    /// Which layers train.
    pub trainable: Trainable,
    /// Input normalisation.
    pub normalize: Normalize,
    /// Initial weights (torchvision names; CheXNet accepted).
    pub init: Option<PathBuf>,
    /// Continue the run in `out` from its last checkpoint.
    pub resume: bool,
    /// Stop after this many optimizer steps in all (a checkpoint is written there).
    pub max_steps: Option<u64>,
    /// Per-class loss weights.
    pub class_weights: Option<Vec<f64>>,
    /// Device.
    pub device: Device,
    /// Arithmetic of the forward pass.
    pub precision: Precision,
    /// Channels-last (NHWC) convolutions.
    pub channels_last: bool,
    /// Loader threads.
    pub loader_threads: usize,
    /// Show a progress bar.
    pub progress: bool,
}

/// Sampler position and settings, in every checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SamplerState {
    /// Seed.
    pub seed: u64,
    /// Epoch to run next.
    pub epoch: u64,
    /// Step within that epoch to run next.
    pub step: u64,
    /// Batch size.
    pub batch: usize,
    /// COVID-19 share.
    pub covid_percent: f64,
}

/// The JSON beside a checkpoint: what a reader needs to use the weights, and where training
/// stands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointState {
    /// [`CHECKPOINT_FORMAT`].
    pub format: String,
    /// [`CHECKPOINT_VERSION`].
    pub version: String,
    /// `densenet121`.
    pub arch: String,
    /// Class names, in head order.
    pub classes: Vec<String>,
    /// Input side.
    pub size: u32,
    /// Fraction of the image height cropped from the top before the square crop.
    pub crop_top: f64,
    /// `imagenet` or `unit`.
    pub normalize: String,
    /// `head`, `all` or the fraction.
    pub trainable: String,
    /// `fp32`, `bf16` or `fp16` (absent in checkpoints before it was recorded: fp32).
    #[serde(default = "fp32")]
    pub precision: String,
    /// Sampler state.
    pub sampler: SamplerState,
    /// Optimizer steps taken.
    pub optimizer_step: u64,
    /// Learning rate.
    pub lr: f64,
    /// `num_batches_tracked` per batch norm.
    pub batches_tracked: BTreeMap<String, i64>,
    /// Metrics of the last finished epoch (when there is one).
    pub metrics: Option<EpochMetrics>,
    /// Best test accuracy so far, and its epoch.
    pub best: Option<(f64, u64)>,
    /// The build trained on.
    pub build: String,
}

fn fp32() -> String {
    "fp32".into()
}

/// One epoch's line of `metrics.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochMetrics {
    /// Epoch (0-based).
    pub epoch: u64,
    /// Optimizer steps after it.
    pub steps: u64,
    /// Mean training loss.
    pub train_loss: f64,
    /// Training accuracy (of the balanced batches).
    pub train_accuracy: f64,
    /// Test metrics (clean copies).
    pub test: serde_json::Value,
    /// Test accuracy.
    pub test_accuracy: f64,
    /// Training images per second.
    pub images_per_s: f64,
}

/// Loads the CUDA half of libtorch: rustc links with `--as-needed` and drops
/// `libtorch_cuda.so`, so CUDA is registered only when it is opened by hand.
pub fn load_cuda() -> Result<()> {
    let name = c"libtorch_cuda.so";
    // SAFETY: dlopen with a valid C string; the handle is kept for the process's life.
    let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if handle.is_null() {
        // SAFETY: dlerror returns a C string owned by libc, or null.
        let why = unsafe {
            let e = libc::dlerror();
            if e.is_null() {
                "unknown error".to_string()
            } else {
                std::ffi::CStr::from_ptr(e).to_string_lossy().into_owned()
            }
        };
        bail!(
            "cannot load libtorch_cuda.so ({why}): a CUDA device needs the CUDA build of \
             libtorch on the library path (LD_LIBRARY_PATH=<torch>/lib)"
        );
    }
    Ok(())
}

/// Parses `--device`: `cpu`, `cuda`, `cuda:N` or `auto` (CUDA when it loads and has a device).
pub fn device(s: &str) -> Result<Device> {
    match s {
        "cpu" => Ok(Device::Cpu),
        "auto" => Ok(match load_cuda() {
            Ok(()) if tch::Cuda::is_available() => Device::Cuda(0),
            _ => Device::Cpu,
        }),
        _ => {
            let n = match s.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => rest
                    .strip_prefix(':')
                    .and_then(|n| n.parse().ok())
                    .with_context(|| format!("--device {s:?}: cpu, cuda, cuda:N or auto"))?,
                None => bail!("--device {s:?}: cpu, cuda, cuda:N or auto"),
            };
            load_cuda()?;
            if !tch::Cuda::is_available() || n >= tch::Cuda::device_count() as usize {
                bail!("--device {s}: no such CUDA device");
            }
            Ok(Device::Cuda(n))
        }
    }
}

/// The files of checkpoint `name` in `dir`: weights, optimizer state, JSON.
pub fn checkpoint_files(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.safetensors")),
        dir.join(format!("{name}.adam.safetensors")),
        dir.join(format!("{name}.json")),
    )
}

/// Reads a checkpoint's JSON, checking its format.
pub fn read_state(path: &Path) -> Result<CheckpointState> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let s: CheckpointState = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: not a covidx checkpoint state", path.display()))?;
    if s.format != CHECKPOINT_FORMAT || s.version.split('.').next() != Some("1") {
        bail!(
            "{}: {} {} is not a checkpoint this covidx reads",
            path.display(),
            s.format,
            s.version
        );
    }
    Ok(s)
}

/// Class probabilities (one row per image) of u8 images `[n, 1, S, S]`, in eval mode, the
/// forward pass in `precision`.
pub fn probabilities(
    model: &DenseNet121,
    x: &Tensor,
    precision: Precision,
) -> Result<Vec<Vec<f64>>> {
    let device = model.device();
    let p = tch::no_grad(|| {
        precision.run(device, || {
            model
                .forward(&model.prepare(x), false)
                .softmax(-1, Kind::Float)
                .to_device(Device::Cpu)
        })
    })?;
    let k = model.classes();
    let flat: Vec<f32> = Vec::<f32>::try_from(p.flatten(0, -1)).unwrap_or_default();
    Ok(flat
        .chunks(k)
        .map(|r| r.iter().map(|&v| v as f64).collect())
        .collect())
}

/// Metrics of `model` on the clean samples of `ds` (batches of `batch`, forward pass in
/// `precision`).
pub fn evaluate(
    model: &DenseNet121,
    ds: &Dataset,
    manifest: &Manifest,
    batch: usize,
    (device, precision): (Device, Precision),
    threads: usize,
) -> Result<Metrics> {
    let clean = clean_samples(ds)?;
    let batches: Vec<Vec<usize>> = clean.chunks(batch.max(1)).map(|c| c.to_vec()).collect();
    let (mut probs, mut truth, mut sources) = (Vec::new(), Vec::new(), Vec::new());
    for_each_batch(ds, &batches, (threads, 4), device, |b| {
        probs.extend(probabilities(model, &b.to_device(device).0, precision)?);
        truth.extend(b.labels.iter().map(|&l| l as usize));
        for &r in &b.records {
            sources.push(manifest.get(r).map(|m| m.source()).unwrap_or_default());
        }
        Ok(true)
    })?;
    Ok(Metrics::compute(&probs, &truth, &sources, model.classes()))
}

/// Adam (learning rate `lr`) over the trainable variables of `vs`, with float16's loss
/// scale when `precision` is fp16. Convert the model's layout first: the moments take it.
pub fn optimizer(vs: &nn::VarStore, lr: f64, precision: Precision) -> Adam {
    let trainable: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(_, v)| v.requires_grad())
        .collect();
    let mut adam = Adam::new(trainable, lr);
    if precision == Precision::Fp16 {
        adam.scaler = Some(GradScaler::new(vs.device()));
    }
    adam
}

/// One training step on a batch already on the model's device: forward pass and
/// cross-entropy (weighted by `class_weights`) in `precision`, backward, Adam. Returns the
/// logits and the loss.
pub fn step(
    model: &DenseNet121,
    adam: &mut Adam,
    precision: Precision,
    (x, y): (&Tensor, &Tensor),
    class_weights: Option<&Tensor>,
) -> Result<(Tensor, Tensor)> {
    let (logits, loss) = precision.run(model.device(), || {
        let logits = model.forward(&model.prepare(x), true);
        let loss = logits.cross_entropy_loss::<Tensor>(
            y,
            class_weights.map(|w| w.shallow_clone()),
            tch::Reduction::Mean,
            -100,
            0.0,
        );
        (logits, loss)
    })?;
    adam.zero_grad()?;
    adam.loss_for_backward(&loss).backward();
    adam.step()?;
    Ok((logits, loss))
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// Metrics per epoch finished in this invocation.
    pub epochs: Vec<EpochMetrics>,
    /// Optimizer steps in all.
    pub steps: u64,
    /// The run directory.
    pub out: PathBuf,
}

/// Trains on the build in `dir` (see the module documentation).
pub fn train(dir: &BuildDir, cfg: &TrainConfig) -> Result<TrainOutcome> {
    let manifest = Manifest::read(&dir.manifest())?;
    let (pipeline, _) = crate::config::Pipeline::load(&dir.pipeline())
        .with_context(|| format!("reading {}", dir.pipeline().display()))?;
    let train_ds = Dataset::open(dir, Split::Train)?;
    let test_ds = Dataset::open(dir, Split::Test)?;
    verify_all(&train_ds)?;
    verify_all(&test_ds)?;
    let classes = train_ds.index().classes.clone();
    let side = train_ds.index().size as i64;
    let labels = loader::labels(&train_ds, 0..train_ds.len())?;
    if labels.is_empty() {
        bail!("{}: the training split has no sample", dir.root().display());
    }
    let covid = covid_class(&classes);
    let sampler = Sampler::new(&labels, covid, cfg.batch, cfg.covid_percent, cfg.seed)?;
    std::fs::create_dir_all(&cfg.out).with_context(|| format!("creating {}", cfg.out.display()))?;

    if cfg.device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    tch::manual_seed(cfg.seed as i64);
    let vs = nn::VarStore::new(cfg.device);
    let mut model = DenseNet121::new(&vs, classes.len(), cfg.trainable, cfg.normalize);
    let mut tracked: BTreeMap<String, i64> = BTreeMap::new();
    let (mut epoch, mut step_in_epoch, mut best) = (0u64, 0u64, None::<(f64, u64)>);
    let mut resume_from = None;
    if cfg.resume {
        let (w, o, j) = checkpoint_files(&cfg.out, "last");
        let state = read_state(&j).context("--resume")?;
        if state.trainable != cfg.trainable.name() || state.classes != classes {
            bail!(
                "{}: trained with --trainable {} on classes {:?}; this run asks {} on {:?}",
                j.display(),
                state.trainable,
                state.classes,
                cfg.trainable.name(),
                classes
            );
        }
        if state.precision != cfg.precision.name() {
            tracing::warn!(
                "{}: trained in {}, continuing in {}: the sequence is no longer the one an \
                 uninterrupted run takes",
                j.display(),
                state.precision,
                cfg.precision.name()
            );
        }
        weights::load(&vs, &w)?;
        resume_from = Some((o, state.optimizer_step));
        tracked = state.batches_tracked.clone();
        epoch = state.sampler.epoch;
        step_in_epoch = state.sampler.step;
        best = state.best;
    } else if let Some(init) = &cfg.init {
        let l = weights::load(&vs, init)?;
        tracked = l.batches_tracked.clone();
        if let Some(why) = &l.head_dropped {
            tracing::warn!("{}: {why}", init.display());
        }
    }
    // Layout first, then the optimizer: its moments take the variables' layout.
    if cfg.channels_last {
        model.set_channels_last();
    }
    let mut adam = optimizer(&vs, cfg.lr, cfg.precision);
    if let Some((o, step)) = &resume_from {
        adam.load(o, *step)?;
    }
    let class_weights = cfg.class_weights.as_ref().map(|w| {
        Tensor::from_slice(w)
            .to_kind(Kind::Float)
            .to_device(cfg.device)
    });
    let training_norms = model.training_norms();
    let crop_top = pipeline.images.crop_top as f64;
    let state_of = |adam: &Adam,
                    tracked: &BTreeMap<String, i64>,
                    epoch,
                    step,
                    metrics: Option<EpochMetrics>,
                    best| CheckpointState {
        format: CHECKPOINT_FORMAT.into(),
        version: CHECKPOINT_VERSION.into(),
        arch: "densenet121".into(),
        classes: classes.clone(),
        size: side as u32,
        crop_top,
        normalize: cfg.normalize.name().into(),
        trainable: cfg.trainable.name(),
        precision: cfg.precision.name().into(),
        sampler: SamplerState {
            seed: cfg.seed,
            epoch,
            step,
            batch: cfg.batch,
            covid_percent: cfg.covid_percent,
        },
        optimizer_step: adam.step,
        lr: cfg.lr,
        batches_tracked: tracked.clone(),
        metrics,
        best,
        build: dir.root().display().to_string(),
    };
    let save = |name: &str, adam: &Adam, state: &CheckpointState| -> Result<()> {
        let (w, o, j) = checkpoint_files(&cfg.out, name);
        weights::save(&vs, &state.batches_tracked, &w)?;
        adam.save(&o)?;
        crate::fsutil::write_atomic(&j, &serde_json::to_vec_pretty(state)?)
    };

    let per_epoch = sampler.batches_per_epoch() as u64;
    let reporter = crate::progress::Reporter::new(
        "training",
        "batches",
        (cfg.epochs.saturating_sub(epoch) * per_epoch).saturating_sub(step_in_epoch),
        cfg.progress,
    );
    let mut outcome = TrainOutcome {
        epochs: Vec::new(),
        steps: adam.step,
        out: cfg.out.clone(),
    };
    let mut stopped = false;
    while epoch < cfg.epochs && !stopped {
        let batches = sampler.epoch(epoch);
        let todo = &batches[step_in_epoch as usize..];
        // Summed on the device: reading them per step would wait for the GPU every step.
        let mut loss_sum = Tensor::zeros([], (Kind::Double, cfg.device));
        let mut right = Tensor::zeros([], (Kind::Int64, cfg.device));
        let mut seen = 0u64;
        let started = Instant::now();
        let mut done = step_in_epoch;
        for_each_batch(&train_ds, todo, (cfg.loader_threads, 4), cfg.device, |b| {
            if cfg.max_steps.is_some_and(|m| adam.step >= m) {
                stopped = true;
                return Ok(false);
            }
            let (x, y) = b.to_device(cfg.device);
            let (logits, loss) = step(
                &model,
                &mut adam,
                cfg.precision,
                (&x, &y),
                class_weights.as_ref(),
            )?;
            for n in &training_norms {
                *tracked.entry(n.clone()).or_default() += 1;
            }
            let n = b.len() as u64;
            tch::no_grad(|| {
                let _ = loss_sum.g_add_(&(loss.to_kind(Kind::Double) * n as f64));
                let _ = right.g_add_(&logits.argmax(-1, false).eq_tensor(&y).sum(Kind::Int64));
            });
            seen += n;
            done += 1;
            reporter.add(1);
            Ok(true)
        })?;
        outcome.steps = adam.step;
        if stopped || done < per_epoch {
            // Stopped inside the epoch: the last checkpoint continues exactly here.
            save(
                "last",
                &adam,
                &state_of(&adam, &tracked, epoch, done, None, best),
            )?;
            break;
        }
        // Reading the sums waits for the GPU: the epoch's time includes all its work.
        let train_loss = loss_sum.double_value(&[]) / seen.max(1) as f64;
        let train_accuracy = right.int64_value(&[]) as f64 / seen.max(1) as f64;
        let elapsed = started.elapsed().as_secs_f64();
        let test = evaluate(
            &model,
            &test_ds,
            &manifest,
            cfg.batch,
            (cfg.device, cfg.precision),
            cfg.loader_threads,
        )?;
        let m = EpochMetrics {
            epoch,
            steps: adam.step,
            train_loss,
            train_accuracy,
            test_accuracy: test.accuracy,
            test: serde_json::to_value(&test)?,
            images_per_s: seen as f64 / elapsed.max(1e-9),
        };
        append_metrics(&cfg.out, &m, &classes, &test)?;
        epoch += 1;
        step_in_epoch = 0;
        let is_best = best.is_none_or(|(a, _)| m.test_accuracy > a);
        if is_best {
            best = Some((m.test_accuracy, m.epoch));
        }
        let state = state_of(&adam, &tracked, epoch, 0, Some(m.clone()), best);
        save("last", &adam, &state)?;
        if is_best {
            save("best", &adam, &state)?;
        }
        if cfg.progress {
            eprintln!(
                "epoch {}: loss {:.4}, train accuracy {:.4}, test accuracy {:.4}, macro AUROC {}",
                m.epoch,
                m.train_loss,
                m.train_accuracy,
                m.test_accuracy,
                test.macro_auroc.map_or("-".into(), |a| format!("{a:.4}"))
            );
        }
        outcome.epochs.push(m);
    }
    reporter.finish();
    Ok(outcome)
}

/// Appends an epoch to `metrics.jsonl` and `metrics.csv` (header written with the first).
fn append_metrics(out: &Path, m: &EpochMetrics, classes: &[String], test: &Metrics) -> Result<()> {
    let open = |name: &str| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out.join(name))
            .with_context(|| format!("opening {}", out.join(name).display()))
    };
    let mut jsonl = open("metrics.jsonl")?;
    writeln!(jsonl, "{}", serde_json::to_string(m)?)?;
    let csv_path = out.join("metrics.csv");
    let new = !csv_path.exists();
    let mut csv = open("metrics.csv")?;
    if new {
        let mut head = vec![
            "epoch",
            "steps",
            "train_loss",
            "train_accuracy",
            "test_accuracy",
            "macro_auroc",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        for c in classes {
            head.push(format!("sensitivity_{c}"));
            head.push(format!("ppv_{c}"));
        }
        writeln!(csv, "{}", head.join(","))?;
    }
    let f = |v: Option<f64>| v.map_or(String::new(), |x| format!("{x:.6}"));
    let mut row = vec![
        m.epoch.to_string(),
        m.steps.to_string(),
        format!("{:.6}", m.train_loss),
        format!("{:.6}", m.train_accuracy),
        format!("{:.6}", m.test_accuracy),
        f(test.macro_auroc),
    ];
    for c in 0..classes.len() {
        row.push(f(test.sensitivity[c]));
        row.push(f(test.ppv[c]));
    }
    writeln!(csv, "{}", row.join(","))?;
    Ok(())
}
