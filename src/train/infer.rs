//! Using a checkpoint: `covidx eval` (the training metrics on any split of a build, plus the
//! paper's balanced-batch accuracy) and `covidx predict` (class probabilities of raw image
//! files after the build's own preprocessing).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tch::{nn, Device, Kind, Tensor};

use super::amp::Precision;
use super::loader::{clean_samples, for_each_batch, verify_all};
use super::metrics::Metrics;
use super::model::{DenseNet121, Normalize, Trainable};
use super::sampler::Sampler;
use super::trainer::{evaluate, probabilities, read_state, CheckpointState};
use super::weights;
use crate::build_dir::BuildDir;
use crate::config::ImagesConfig;
use crate::manifest::Manifest;
use crate::record::Split;
use crate::shards::Dataset;

/// A model with its weights and what its JSON says.
pub struct Checkpoint {
    /// The variables.
    pub vs: nn::VarStore,
    /// The network.
    pub model: DenseNet121,
    /// Class names, in head order.
    pub classes: Vec<String>,
    /// The JSON beside the weights, when there is one.
    pub state: Option<CheckpointState>,
}

/// The JSON beside a checkpoint's weights (`best.safetensors` -> `best.json`).
pub fn state_path(weights: &Path) -> PathBuf {
    weights.with_extension("json")
}

/// Opens the weights at `path` on `device`. The JSON beside them gives classes and
/// normalisation; a bare safetensors file (e.g. a torchvision export) takes `classes` (else
/// `class0`, `class1`, ... as many as its head has) and `normalize`.
pub fn open(
    path: &Path,
    classes: Option<Vec<String>>,
    normalize: Option<Normalize>,
    device: Device,
) -> Result<Checkpoint> {
    let json = state_path(path);
    let state = if json.is_file() {
        Some(read_state(&json)?)
    } else {
        None
    };
    let classes = match (&state, classes) {
        (_, Some(c)) => c,
        (Some(s), None) => s.classes.clone(),
        (None, None) => {
            let heads = Tensor::read_safetensors(path)
                .with_context(|| format!("{}: not a readable safetensors file", path.display()))?;
            let n = heads
                .iter()
                .find(|(k, _)| weights::canonical(k) == "classifier.weight")
                .map(|(_, t)| t.size()[0])
                .with_context(|| format!("{}: no classifier.weight", path.display()))?;
            (0..n).map(|i| format!("class{i}")).collect()
        }
    };
    let normalize = match (normalize, &state) {
        (Some(n), _) => n,
        (None, Some(s)) => Normalize::parse(&s.normalize)?,
        (None, None) => Normalize::ImageNet,
    };
    let vs = nn::VarStore::new(device);
    let model = DenseNet121::new(&vs, classes.len(), Trainable::Head, normalize);
    let loaded = weights::load(&vs, path)?;
    if let Some(why) = loaded.head_dropped {
        bail!(
            "{}: {why}; give --classes to match its head",
            path.display()
        );
    }
    Ok(Checkpoint {
        vs,
        model,
        classes,
        state,
    })
}

/// What `covidx eval` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    /// The split evaluated.
    pub split: String,
    /// Metrics over its clean samples.
    pub metrics: Metrics,
    /// Accuracy over COVID-balanced batches of the split (the paper's test accuracy), when
    /// the split has COVID-19 and other samples.
    pub balanced_batch_accuracy: Option<f64>,
    /// The share of COVID-19 samples in those batches.
    pub covid_percent: f64,
}

/// The metrics of `ckpt` on `split` of the build in `dir`, and its accuracy over balanced
/// batches (`covid_percent` of every batch replaced by COVID-19 samples, seed `seed`).
pub fn eval(
    ckpt: &Checkpoint,
    dir: &BuildDir,
    split: Split,
    batch: usize,
    covid_percent: f64,
    seed: u64,
    device: Device,
) -> Result<Evaluation> {
    let manifest = Manifest::read(&dir.manifest())?;
    let ds = Dataset::open(dir, split)?;
    verify_all(&ds)?;
    if ds.index().classes != ckpt.classes {
        bail!(
            "the checkpoint's classes {:?} are not the build's {:?}",
            ckpt.classes,
            ds.index().classes
        );
    }
    let metrics = evaluate(
        &ckpt.model,
        &ds,
        &manifest,
        batch,
        (device, Precision::Fp32),
        2,
    )?;
    let clean = clean_samples(&ds)?;
    let labels = super::loader::labels(&ds, clean.iter().copied())?;
    let covid = super::sampler::covid_class(&ckpt.classes);
    let balanced = match Sampler::new(&labels, covid, batch, covid_percent, seed) {
        Ok(sampler) if covid_percent > 0.0 => {
            let batches: Vec<Vec<usize>> = sampler
                .epoch(0)
                .into_iter()
                .map(|b| b.into_iter().map(|j| clean[j]).collect())
                .collect();
            let (mut right, mut all) = (0u64, 0u64);
            for_each_batch(&ds, &batches, (2, 4), device, |b| {
                let (x, y) = b.to_device(device);
                let pred = tch::no_grad(|| {
                    ckpt.model
                        .forward(&ckpt.model.prepare(&x), false)
                        .argmax(-1, false)
                });
                right += pred.eq_tensor(&y).sum(Kind::Int64).int64_value(&[]) as u64;
                all += b.len() as u64;
                Ok(true)
            })?;
            Some(right as f64 / all.max(1) as f64)
        }
        _ => None,
    };
    Ok(Evaluation {
        split: split.name().to_string(),
        metrics,
        balanced_batch_accuracy: balanced,
        covid_percent,
    })
}

/// One image's prediction.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    /// The file.
    pub image: String,
    /// The most probable class.
    pub class: String,
    /// Probability per class, in head order.
    pub probabilities: Vec<(String, f64)>,
}

/// Class probabilities of image files, each decoded, cropped and resized as the image stage
/// makes a clean sample (`size`, `crop_top`), on the checkpoint's device.
pub fn predict(
    ckpt: &Checkpoint,
    files: &[PathBuf],
    size: u32,
    crop_top: f32,
) -> Result<Vec<Prediction>> {
    let cfg = ImagesConfig {
        size,
        crop_top,
        ..ImagesConfig::default()
    };
    let mut out = Vec::new();
    for f in files {
        let samples = crate::imaging::stage::process(f, &cfg, 0, "predict", 0)
            .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
        let (_, _, px) = samples.into_iter().next().context("no clean sample")?;
        let x = Tensor::from_slice(&px).view([1, 1, size as i64, size as i64]);
        let probs = probabilities(&ckpt.model, &x, Precision::Fp32)?.remove(0);
        let best = (0..probs.len()).fold(0, |b, c| if probs[c] > probs[b] { c } else { b });
        out.push(Prediction {
            image: f.display().to_string(),
            class: ckpt.classes[best].clone(),
            probabilities: ckpt
                .classes
                .iter()
                .cloned()
                .zip(probs.iter().copied())
                .collect(),
        });
    }
    Ok(out)
}
