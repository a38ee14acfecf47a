//! `covidx train BUILD`: DenseNet-121 on the build's shards (see `train::trainer`). Without
//! the `train` feature it says how to get it.

use std::process::ExitCode;

#[cfg(feature = "train")]
use anyhow::Context;
use anyhow::Result;

use super::TrainArgs;

/// Runs `covidx train`.
#[cfg(feature = "train")]
pub fn run(a: &TrainArgs, quiet: bool) -> Result<ExitCode> {
    use crate::build_dir::BuildDir;
    use crate::train::amp::{self, Precision};
    use crate::train::model::{Normalize, Trainable};
    use crate::train::trainer::{self, TrainConfig};

    let device = trainer::device(&a.device)?;
    let precision = Precision::parse(&a.precision, device)?;
    let channels_last = amp::channels_last(&a.channels_last, device)?;
    if a.bench {
        return bench(a, device, precision, channels_last);
    }
    let build = a
        .build
        .as_ref()
        .expect("clap requires BUILD without --synthetic");
    let dir = BuildDir::new(build);
    crate::export::check_consistent(&dir)?;
    let cfg = TrainConfig {
        out: a.out.clone().unwrap_or_else(|| build.join("train")),
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
        device,
        precision,
        channels_last,
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

/// `covidx train --bench`: one measurement, on BUILD's shards or synthetic ones.
#[cfg(feature = "train")]
fn bench(
    a: &TrainArgs,
    device: tch::Device,
    precision: crate::train::amp::Precision,
    channels_last: bool,
) -> Result<ExitCode> {
    use crate::build_dir::BuildDir;
    use crate::train::bench::{self, BenchConfig};
    use crate::train::model::Trainable;

    let cfg = BenchConfig {
        batch: a.batch,
        warmup: a.warmup,
        steps: a.bench_steps.max(1),
        trainable: Trainable::parse(&a.trainable)?,
        precision,
        channels_last,
        device,
        loader_threads: a.loader_threads,
    };
    let tmp;
    let dir = match (&a.build, a.synthetic) {
        (Some(b), false) => BuildDir::new(b),
        (None, true) => {
            tmp = tempfile::tempdir().context("creating a folder for the synthetic shards")?;
            // Enough distinct images that batches do not sit in the CPU's caches.
            let n = (a.batch * 64).max(1024);
            bench::synthetic_build(tmp.path(), a.size, n)?
        }
        _ => anyhow::bail!("--bench takes BUILD or --synthetic, not both"),
    };
    let report = if a.loader_only {
        bench::loader_speed(&dir, &cfg)?
    } else {
        bench::train_speed(&dir, &cfg)?
    };
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", report.line());
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
