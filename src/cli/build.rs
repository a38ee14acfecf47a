//! `covidx build PIPELINE --sources DIR --out DIR [--metadata-only]`.

use std::process::ExitCode;

use anyhow::Result;

use super::BuildArgs;
use crate::builder::{build, BuildOptions, BuildOutcome};
use crate::summary;

/// Runs the build and prints its summary.
pub fn run(args: &BuildArgs, quiet: bool) -> Result<ExitCode> {
    let outcome = build(&BuildOptions {
        pipeline: args.pipeline.clone(),
        sources: args.sources.clone(),
        out: args.out.clone(),
        metadata_only: args.metadata_only,
    })?;
    if !quiet {
        print_report(&outcome, &args.out);
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the summary table and where the outputs went.
pub fn print_report(outcome: &BuildOutcome, out: &std::path::Path) {
    println!(
        "covidx build: pipeline {:?} ({}), {} candidate records",
        outcome.pipeline.name,
        outcome.lock.mode,
        outcome.records.len()
    );
    print!("{}", summary::render(&outcome.summary));
    println!(
        "\nwrote {}/splits/{{train,test}}.txt, manifest.parquet, manifest.csv, covidx.lock.json",
        out.display()
    );
}
