//! `covidx demo`: writes the generated miniature sources and builds them with the embedded
//! demo pipeline (full build: images are read and hashed), then verifies the lock file.

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
    let (_, mismatches) = lock::verify(&crate::build_dir::BuildDir::new(&out).lock(), &sources)?;
    if !quiet {
        println!("demo sources written to {}", sources.display());
        super::build::print_report(&outcome, &out);
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
    Ok(if mismatches.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
