//! `covidx build PIPELINE --sources DIR --out DIR [--metadata-only | --part K/N | --merge PART...]`.

use std::process::ExitCode;

use anyhow::Result;

use super::BuildArgs;
use crate::builder::{build, build_part, BuildOptions, BuildOutcome};
use crate::imaging::stage::parts::PartOutcome;
use crate::storage;
use crate::summary;

/// Runs the build and prints its summary.
pub fn run(args: &BuildArgs, quiet: bool) -> Result<ExitCode> {
    for part in &args.merge {
        storage::require_local(part, "--merge")?;
    }
    let (sources, fetched) = storage::sources(&args.sources)?;
    if let (Some(t), false) = (fetched, quiet) {
        println!("sources {}: fetched {t}", args.sources.display());
    }
    let out = storage::Output::open(&args.out)?;
    let opts = BuildOptions {
        metadata_only: args.metadata_only,
        images: args.images,
        strict: args.strict,
        progress: !quiet,
        part: args.part,
        merge: args.merge.clone(),
        ..BuildOptions::new(args.pipeline.clone(), sources, out.dir())
    };
    if opts.part.is_some() {
        let outcome = build_part(&opts)?;
        publish(&out, quiet)?;
        if !quiet {
            print_part_report(&outcome, &args.out);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let outcome = build(&opts)?;
    publish(&out, quiet)?;
    finish(outcome, &args.out, quiet)
}

/// Uploads the finished build to a remote `--out` (nothing for a local one).
fn publish(out: &storage::Output, quiet: bool) -> Result<()> {
    if let Some(t) = out.publish()? {
        if !quiet {
            let url = out.remote().map(|r| r.url()).unwrap_or_default();
            println!(
                "published to {url}: {t} (staged in {})",
                out.dir().display()
            );
        }
    }
    Ok(())
}

/// Prints a build's report and turns a failed audit into exit status 1.
pub fn finish(outcome: BuildOutcome, out: &std::path::Path, quiet: bool) -> Result<ExitCode> {
    if !quiet {
        print_report(&outcome, out);
    }
    if !outcome.audit_failed.is_empty() {
        eprintln!(
            "covidx build: the build is written, but its audit failed: {} (see {}; the \
             pipeline's [audit] fail_on decides what fails a build)",
            outcome.audit_failed.join(", "),
            crate::build_dir::BuildDir::new(out)
                .path(crate::build_dir::AUDIT_MD)
                .display()
        );
        return Ok(ExitCode::from(1));
    }
    // The process ends here: freeing a large build's records would only delay the exit.
    std::mem::forget(outcome);
    Ok(ExitCode::SUCCESS)
}

/// Prints what a part wrote.
pub fn print_part_report(outcome: &PartOutcome, out: &std::path::Path) {
    let r = &outcome.record;
    let planned: usize = r.planned.values().sum();
    let samples: usize = r.shards.iter().map(|s| s.progress.shard.samples).sum();
    println!(
        "covidx build: pipeline {:?}, part {}: {} of the build's {planned} shards ({samples} \
         samples)",
        r.pipeline,
        r.part,
        r.shards.len()
    );
    println!(
        "shards reused from an earlier run of this part: {}, written: {}; quarantined images: {}",
        outcome.reused,
        outcome.written,
        outcome.quarantine.len()
    );
    for q in outcome.quarantine.iter().take(10) {
        println!("  quarantined {}: {}: {}", q.path, q.reason, q.detail);
    }
    if !outcome.removed.is_empty() {
        println!(
            "removed {} files that are not this part's (e.g. {})",
            outcome.removed.len(),
            outcome.removed[0]
        );
    }
    println!(
        "wrote {}; when all {} parts are done: covidx merge OUT PART...",
        crate::build_dir::BuildDir::new(out).part_record().display(),
        r.part.n
    );
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
    let a = &outcome.assignment;
    if let Some(list) = &outcome.pipeline.split.pinned_test_list {
        for (tag, n) in &a.left_out {
            println!(
                "left out {n} lines of the pinned test list {list}: they name source {tag:?}, \
                 which this pipeline does not read (split.pinned_absent_tags), so the test \
                 split has {n} fewer lines than the published list"
            );
        }
    }
    if !a.straddling.is_empty() {
        println!(
            "{} patients have records in both train and test (split.pins = \"per-class\"): {}",
            a.straddling.len(),
            a.straddling.join(", ")
        );
    }
    if let Some(img) = &outcome.images {
        println!();
        for (split, entries) in &img.index.splits {
            let samples: usize = entries.iter().map(|e| e.samples).sum();
            println!(
                "{}/{split}: {samples} samples of {s}x{s} in {} shards",
                crate::build_dir::SHARDS,
                entries.len(),
                s = img.index.size
            );
        }
        if img.merged > 0 {
            println!("shards taken from the parts: {}", img.merged);
        }
        println!(
            "shards reused from an interrupted run: {}, written: {}; quarantined images: {}{}",
            img.reused,
            img.written,
            img.quarantine.len(),
            if img.quarantine.is_empty() {
                ""
            } else {
                " (see quarantine.csv)"
            }
        );
        for q in img.quarantine.iter().take(10) {
            println!("  quarantined {}: {}: {}", q.path, q.reason, q.detail);
        }
    }
    if !outcome.removed.is_empty() {
        println!(
            "removed {} outputs of an earlier build that this build does not write (e.g. {})",
            outcome.removed.len(),
            outcome.removed[0]
        );
    }
    let a = &outcome.audit;
    println!(
        "\naudit (metadata): {} findings ({} errors, {} warnings); class x source Cramér's V {:.3}",
        a.findings.len(),
        a.findings
            .iter()
            .filter(|f| f.severity == crate::audit::Severity::Error)
            .count(),
        a.findings
            .iter()
            .filter(|f| f.severity == crate::audit::Severity::Warning)
            .count(),
        a.confounding.by_source.cramers_v
    );
    let dir = crate::build_dir::BuildDir::new(out);
    println!(
        "\nwrote {}, {}, {}, {}",
        crate::build_dir::split_rel(crate::record::Split::Train),
        crate::build_dir::split_rel(crate::record::Split::Test),
        crate::build_dir::MANIFEST,
        dir.lock().display()
    );
}
