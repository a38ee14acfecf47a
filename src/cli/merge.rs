//! `covidx merge OUT PART... [--pipeline FILE] [--sources DIR]`: the build of a partitioned
//! image stage, from its parts.

use std::process::ExitCode;

use anyhow::Result;

use super::MergeArgs;
use crate::builder::{build, BuildOptions};
use crate::imaging::stage::parts::MergeSet;

/// Merges the parts (pipeline and sources default to those the parts record) and prints the
/// build's report.
pub fn run(args: &MergeArgs, quiet: bool) -> Result<ExitCode> {
    crate::storage::require_local(&args.out, "OUT")?;
    for part in &args.parts {
        crate::storage::require_local(part, "PART")?;
    }
    let parts = MergeSet::load(&args.parts)?;
    let first = parts.first();
    let pipeline = args
        .pipeline
        .clone()
        .unwrap_or_else(|| first.pipeline_path.clone().into());
    let sources = args
        .sources
        .clone()
        .unwrap_or_else(|| first.sources.clone().into());
    let outcome = build(&BuildOptions {
        strict: args.strict,
        progress: !quiet,
        merge: args.parts.clone(),
        ..BuildOptions::new(pipeline, sources, args.out.clone())
    })?;
    super::build::finish(outcome, &args.out, quiet)
}
