//! `covidx eval CHECKPOINT BUILD [--split test]`: the training metrics of a checkpoint on a
//! split, plus the paper's balanced-batch accuracy next to plain accuracy.

use std::process::ExitCode;

use anyhow::Result;

use super::EvalArgs;

/// Runs `covidx eval`.
#[cfg(feature = "train")]
pub fn run(a: &EvalArgs, _quiet: bool) -> Result<ExitCode> {
    use crate::build_dir::BuildDir;
    use crate::record::Split;
    use crate::train::{infer, trainer};

    let split = match a.split.as_str() {
        "test" => Split::Test,
        "train" => Split::Train,
        other => anyhow::bail!("--split {other:?}: test or train"),
    };
    let dir = BuildDir::new(&a.build);
    crate::export::check_consistent(&dir)?;
    let device = trainer::device(&a.device)?;
    let ckpt = infer::open(&a.checkpoint, None, None, device)?;
    let e = infer::eval(&ckpt, &dir, split, a.batch, a.covid_percent, a.seed, device)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&e)?);
        return Ok(ExitCode::SUCCESS);
    }
    let m = &e.metrics;
    println!(
        "{}: {} samples, accuracy {:.4}",
        e.split, m.samples, m.accuracy
    );
    if let Some(b) = e.balanced_batch_accuracy {
        println!(
            "accuracy over COVID-balanced batches (covid_percent {}): {b:.4}",
            e.covid_percent
        );
    }
    let f = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.4}"));
    println!("class                sensitivity  PPV     AUROC");
    for (c, name) in ckpt.classes.iter().enumerate() {
        println!(
            "{name:<20} {:<12} {:<7} {}",
            f(m.sensitivity[c]),
            f(m.ppv[c]),
            f(m.auroc[c])
        );
    }
    println!("macro AUROC {}", f(m.macro_auroc));
    println!(
        "confusion (rows: truth, columns: predicted): {:?}",
        m.confusion
    );
    for (source, (n, acc)) in &m.per_source {
        println!("source {source}: {n} samples, accuracy {acc:.4}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `covidx eval`.
#[cfg(not(feature = "train"))]
pub fn run(_: &EvalArgs, _: bool) -> Result<ExitCode> {
    super::train::without_feature()
}
