//! `covidx audit BUILD [--sources DIR] [--against OTHER] [--format md,json,html]
//! [--fail-on LIST]`: writes `BUILD/audit/report.*`, prints the findings, and exits 1 when a
//! `--fail-on` check found a problem.

use std::process::ExitCode;

use anyhow::{bail, Result};

use super::AuditArgs;
use crate::audit::{self, Build, Options, CHECKS};
use crate::build_dir::BuildDir;

/// Audits the build and writes its reports.
pub fn run(args: &AuditArgs, quiet: bool) -> Result<ExitCode> {
    for f in &args.format {
        if !matches!(f.as_str(), "md" | "json" | "html") {
            bail!("--format {f:?}: the formats are md, json and html");
        }
    }
    for c in &args.fail_on {
        if !CHECKS.contains(&c.as_str()) {
            bail!("--fail-on {c:?}: the checks are {}", CHECKS.join(", "));
        }
    }
    if args.metadata_only && (args.against.is_some() || args.sources.is_some()) {
        bail!("--metadata-only reads no image: it cannot be combined with --sources or --against");
    }
    let dir = BuildDir::new(&args.build);
    let build = Build::open(&dir)?;
    let opts = Options {
        images: !args.metadata_only,
        sources: args.sources.clone(),
        against: args.against.clone(),
        progress: !quiet,
    };
    let a = audit::audit(&build, &opts)?;
    let formats: Vec<&str> = args.format.iter().map(String::as_str).collect();
    let written = audit::write_reports(&build, &a, &formats)?;
    let failed = a.failed(&args.fail_on);
    if !quiet {
        println!(
            "covidx audit: {} ({} images in a split, {} findings)",
            a.pipeline,
            a.confounding.images,
            a.findings.len()
        );
        for f in &a.findings {
            println!("  {:?} {}: {}", f.severity, f.check, f.message);
        }
        println!(
            "class x source: Cramér's V {:.3}; source-alone accuracy {:.3} vs majority {:.3}",
            a.confounding.by_source.cramers_v,
            a.confounding.source_accuracy,
            a.confounding.majority_baseline
        );
        if let Some(im) = &a.images {
            println!(
                "duplicates: {} groups; test images with a duplicate in train: {}",
                im.duplicates.groups.len(),
                im.duplicates.test_in_train
            );
        }
        let paths: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
        println!("wrote {}", paths.join(", "));
    }
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("audit failed: {}", failed.join(", "));
        Ok(ExitCode::from(1))
    }
}
