//! `covidx train BUILD`: DenseNet-121 on the build's shards (see `train::trainer`). Without
//! the `train` feature it says how to get it.

use std::process::ExitCode;

use anyhow::Result;

use super::TrainArgs;

/// Runs `covidx train`.
#[cfg(feature = "train")]
pub fn run(a: &TrainArgs, quiet: bool) -> Result<ExitCode> {
    use crate::build_dir::BuildDir;
    use crate::train::model::{Normalize, Trainable};
    use crate::train::trainer::{self, TrainConfig};

    let dir = BuildDir::new(&a.build);
    super::export::check_consistent(&dir)?;
    let cfg = TrainConfig {
        out: a.out.clone().unwrap_or_else(|| a.build.join("train")),
        epochs: a.epochs,
        batch: a.batch,
        lr: a.lr,
        covid_percent: a.covid_percent,
        seed: a.seed,
        trainable: Trainable::parse(&a.trainable)?,
        normalize: Normalize::parse(&a.normalize)?,
        init: a.init.clone(),
        resume: a.resume,
        max_steps: a.max_steps,
        class_weights: a.class_weights.clone(),
        device: trainer::device(&a.device)?,
        loader_threads: a.loader_threads,
        progress: !quiet,
    };
    let out = trainer::train(&dir, &cfg)?;
    if !quiet {
        println!(
            "{} optimizer steps; metrics in {}",
            out.steps,
            out.out.join("metrics.jsonl").display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `covidx train`.
#[cfg(not(feature = "train"))]
pub fn run(_: &TrainArgs, _: bool) -> Result<ExitCode> {
    without_feature()
}

/// The error of the trainer's commands in a build without the `train` feature.
#[cfg(not(feature = "train"))]
pub fn without_feature() -> Result<ExitCode> {
    anyhow::bail!(
        "this covidx was built without the trainer: run `bash scripts/setup-train.sh` (installs \
         libtorch and builds with --features train)"
    )
}
