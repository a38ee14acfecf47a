//! `covidx export --format png|webdataset|hf BUILD DIR`: a build's shards written for other
//! loaders (see [`crate::export`]).

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;

use super::{ExportArgs, ExportFormat};
use crate::export::{Options, Source};

/// Runs the export and prints what it wrote.
pub fn run(args: &ExportArgs, quiet: bool) -> Result<ExitCode> {
    let started = Instant::now();
    let src = Source::open(&args.build)?;
    let opts = Options {
        all_copies: args.all_copies,
        samples_per_shard: args.samples_per_shard,
    };
    let (samples, files) = match args.format {
        ExportFormat::Png => {
            let n = crate::export::png::export(&src, &args.dir, &opts)?;
            (n, n)
        }
        ExportFormat::Webdataset => {
            count(&crate::export::webdataset::export(&src, &args.dir, &opts)?)
        }
        ExportFormat::Hf => count(&crate::export::hf::export(&src, &args.dir, &opts)?),
    };
    if !quiet {
        let secs = started.elapsed().as_secs_f64();
        println!(
            "exported {samples} samples in {files} files to {} in {secs:.2} s ({:.0} samples/s)",
            args.dir.display(),
            samples as f64 / secs.max(1e-9)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// (samples, files) of a sharded export.
fn count(r: &crate::export::Record) -> (usize, usize) {
    let files = r.splits.values().flatten();
    (files.clone().map(|f| f.samples).sum(), files.count())
}
