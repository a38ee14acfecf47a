//! `covidx audit BUILD [--format md,json] [--fail-on LIST]`: writes `BUILD/audit/report.*`,
//! prints the findings, and exits 1 when a `--fail-on` check found a problem.

use std::process::ExitCode;

use anyhow::{bail, Result};

use super::AuditArgs;
use crate::audit::{self, report, Build, CHECKS};
use crate::build_dir::{self, BuildDir};
use crate::fsutil;

/// Audits the build and writes its reports.
pub fn run(args: &AuditArgs, quiet: bool) -> Result<ExitCode> {
    for f in &args.format {
        if !matches!(f.as_str(), "md" | "json") {
            bail!("--format {f:?}: the formats are md and json");
        }
    }
    for c in &args.fail_on {
        if !CHECKS.contains(&c.as_str()) {
            bail!("--fail-on {c:?}: the checks are {}", CHECKS.join(", "));
        }
    }
    let dir = BuildDir::new(&args.build);
    let build = Build::open(&dir)?;
    let a = audit::audit(&build);
    let mut written = Vec::new();
    for f in &args.format {
        let (rel, bytes) = match f.as_str() {
            "md" => (build_dir::AUDIT_MD, report::markdown(&a).into_bytes()),
            _ => (build_dir::AUDIT_JSON, report::json(&a)),
        };
        fsutil::write_atomic(&dir.path(rel), &bytes)?;
        written.push(dir.path(rel).display().to_string());
    }
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
        println!("wrote {}", written.join(", "));
    }
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("audit failed: {}", failed.join(", "));
        Ok(ExitCode::from(1))
    }
}
