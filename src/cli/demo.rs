//! `covidx demo`: writes the generated miniature sources and builds them with the embedded
//! demo pipeline (full build: images are read and hashed), verifies the lock file and audits
//! the build with its images (`out/audit/report.{md,json,html}`).

use std::process::ExitCode;

use anyhow::Result;

use super::DemoArgs;
use crate::builder::{build, BuildOptions};
use crate::{demo, fsutil, lock};

/// Runs the demo end to end.
pub fn run(args: &DemoArgs, quiet: bool) -> Result<ExitCode> {
    let sources = args.dir.join("sources");
    let out = args.dir.join("out");
    demo::write_sources(&sources)?;
    let pipeline = args.dir.join("demo.toml");
    fsutil::write_atomic(&pipeline, demo::PIPELINE.as_bytes())?;
    let outcome = build(&BuildOptions {
        progress: !quiet,
        ..BuildOptions::new(pipeline, sources.clone(), out.clone())
    })?;
    let dir = crate::build_dir::BuildDir::new(&out);
    let (_, mismatches) = lock::verify(&dir.lock(), &sources)?;
    // The full audit of the miniature (its planted unknown findings, its confounding, its
    // images).
    let build_read = crate::audit::Build::open(&dir)?;
    let opts = crate::audit::Options {
        images: true,
        ..Default::default()
    };
    let audited = crate::audit::audit(&build_read, &opts)?;
    crate::audit::write_reports(&build_read, &audited, &["md", "json", "html"])?;
    let md = dir.path(crate::build_dir::AUDIT_HTML);
    if !quiet {
        println!("demo sources written to {}", sources.display());
        super::build::print_report(&outcome, &out);
        println!(
            "audit: {} findings, class x source Cramér's V {:.2}, test images with a duplicate \
             in train: {} ({})",
            audited.findings.len(),
            audited.confounding.by_source.cramers_v,
            audited
                .images
                .as_ref()
                .map_or(0, |i| i.duplicates.test_in_train),
            md.display()
        );
        println!(
            "verify: {} (covidx verify {}/covidx.lock.json --sources {})",
            if mismatches.is_empty() {
                "all hashes match"
            } else {
                "MISMATCH"
            },
            out.display(),
            sources.display()
        );
    }
    if args.train {
        train_demo(&dir, quiet)?;
    }
    Ok(if mismatches.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `covidx demo --train`: a few epochs of DenseNet-121 (every layer trainable) on the demo's
/// 64 px shards, on the CPU, into `out/train`.
#[cfg(feature = "train")]
fn train_demo(dir: &crate::build_dir::BuildDir, quiet: bool) -> Result<()> {
    use crate::train::model::{Normalize, Trainable};
    use crate::train::trainer::{train, TrainConfig};
    let out = dir.root().join("train");
    // A fresh run each time (the demo's build is fresh too).
    if out.exists() {
        std::fs::remove_dir_all(&out)?;
    }
    let run = train(
        dir,
        &TrainConfig {
            out: out.clone(),
            epochs: 5,
            batch: 16,
            lr: 1e-3,
            covid_percent: 0.3,
            seed: 0,
            trainable: Trainable::All,
            normalize: Normalize::ImageNet,
            init: None,
            resume: false,
            max_steps: None,
            class_weights: None,
            device: tch::Device::Cpu,
            precision: crate::train::amp::Precision::Fp32,
            channels_last: false,
            loader_threads: 2,
            progress: !quiet,
        },
    )?;
    if !quiet {
        if let Some(last) = run.epochs.last() {
            println!(
                "train: {} epochs, {} steps on the CPU; last epoch: loss {:.4}, train accuracy \
                 {:.4}, test accuracy {:.4} ({})",
                run.epochs.len(),
                run.steps,
                last.train_loss,
                last.train_accuracy,
                last.test_accuracy,
                out.join("metrics.jsonl").display()
            );
        }
    }
    Ok(())
}

/// `covidx demo --train` without the `train` feature.
#[cfg(not(feature = "train"))]
fn train_demo(_: &crate::build_dir::BuildDir, _: bool) -> Result<()> {
    super::train::without_feature().map(|_| ())
}
