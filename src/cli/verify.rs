//! `covidx verify OUT/covidx.lock.json --sources DIR`.

use std::process::ExitCode;

use anyhow::Result;

use super::VerifyArgs;
use crate::lock;

/// Verifies a lock file; exit 0 only when every hash matches.
pub fn run(args: &VerifyArgs, quiet: bool) -> Result<ExitCode> {
    let (lock, mismatches) = lock::verify(&args.lock, &args.sources)?;
    let total = lock.inputs.len() + lock.outputs.len();
    for m in &mismatches {
        println!("DIFFERS {} {}: {}", m.side, m.path, m.what);
    }
    if mismatches.is_empty() {
        if !quiet {
            println!(
                "verified: {} inputs and {} outputs match {} ({}, {})",
                lock.inputs.len(),
                lock.outputs.len(),
                args.lock.display(),
                lock.pipeline,
                lock.tool
            );
        }
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{} of {total} files differ", mismatches.len());
        Ok(ExitCode::from(1))
    }
}
