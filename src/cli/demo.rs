//! `covidx demo`: writes the generated miniature sources and builds them with the embedded
//! demo pipeline (full build: images are read and hashed), verifies the lock file and audits
//! the build (`out/audit/report.{md,json}`).

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
    // The metadata audit of the miniature (its planted unknown findings and its confounding).
    let audited = crate::audit::audit(&crate::audit::Build::open(&dir)?);
    let md = dir.path(crate::build_dir::AUDIT_MD);
    fsutil::write_atomic(&md, crate::audit::report::markdown(&audited).as_bytes())?;
    fsutil::write_atomic(
        &dir.path(crate::build_dir::AUDIT_JSON),
        &crate::audit::report::json(&audited),
    )?;
    if !quiet {
        println!("demo sources written to {}", sources.display());
        super::build::print_report(&outcome, &out);
        println!(
            "audit: {} findings, class x source Cramér's V {:.2} ({})",
            audited.findings.len(),
            audited.confounding.by_source.cramers_v,
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
    Ok(if mismatches.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
