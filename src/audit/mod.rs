//! `covidx audit`: what a reviewer should know about a built dataset before trusting it, read
//! from the build directory through the typed layer ([`BuildDir`], [`Manifest`], [`Lock`]).
//!
//! By concern: [`labels`] (raw finding -> parsed -> class or exclusion, per source),
//! [`overlap`] (patients across splits and sources), [`confounding`] (class x source and
//! class x view, Cramér's V, how well the source alone predicts the class), [`report`]
//! (Markdown and JSON). This is the metadata-level audit: it decodes no image.

pub mod confounding;
pub mod labels;
pub mod overlap;
pub mod phash;
pub mod report;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::build_dir::BuildDir;
use crate::config::Pipeline;
use crate::lock::Lock;
use crate::manifest::Manifest;

/// Version of the audit report schema (`audit/report.json`'s `version`).
pub const REPORT_VERSION: &str = "1.0";

/// A finished build, read for auditing.
#[derive(Debug)]
pub struct Build {
    /// The directory.
    pub dir: BuildDir,
    /// Its manifest.
    pub manifest: Manifest,
    /// The pipeline it was built with (`pipeline.toml`).
    pub pipeline: Pipeline,
    /// Its lock file.
    pub lock: Lock,
}

impl Build {
    /// Reads a build directory: its lock, pipeline copy and manifest, with errors naming the
    /// file (a directory that is not a build, a build of another tool version, a damaged
    /// manifest).
    pub fn open(dir: &BuildDir) -> Result<Build> {
        if !dir.root().is_dir() {
            bail!("{} is not a directory", dir.root().display());
        }
        let lock = Lock::read(&dir.lock()).with_context(|| {
            format!(
                "{} is not a finished covidx build (no readable lock file)",
                dir.root().display()
            )
        })?;
        let tool = format!("covidx {}", env!("CARGO_PKG_VERSION"));
        if lock.tool != tool {
            bail!(
                "{}: built by {}, this is {tool}; rebuild it with this version to audit it",
                dir.lock().display(),
                lock.tool
            );
        }
        let (pipeline, _) = Pipeline::load(&dir.pipeline())?;
        let manifest = Manifest::read(&dir.manifest())?;
        Ok(Build {
            dir: dir.clone(),
            manifest,
            pipeline,
            lock,
        })
    }
}

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Likely to bias results.
    Warning,
    /// The dataset is wrong (e.g. a patient in two splits).
    Error,
}

/// One finding of the audit, with the `--fail-on` check it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// `overlap`, `unknown-findings`, `source-confounding`, ...
    pub check: &'static str,
    /// How serious.
    pub severity: Severity,
    /// One sentence for people.
    pub message: String,
}

/// The whole metadata-level audit.
#[derive(Debug, Clone, Serialize)]
pub struct Audit {
    /// Schema version of this report.
    pub version: &'static str,
    /// Pipeline name.
    pub pipeline: String,
    /// Tool that built (and audits) it.
    pub tool: String,
    /// `full` or `metadata-only`.
    pub mode: String,
    /// Class names, in order.
    pub classes: Vec<String>,
    /// Label mapping per source.
    pub labels: labels::LabelAudit,
    /// Patients across splits and sources.
    pub overlap: overlap::OverlapAudit,
    /// Label versus source and view.
    pub confounding: confounding::ConfoundingAudit,
    /// Findings, most serious first.
    pub findings: Vec<Finding>,
}

/// Runs the metadata-level audit of a build.
pub fn audit(build: &Build) -> Audit {
    let rows = &build.manifest.rows;
    let classes = build.pipeline.classes.clone();
    let labels = labels::audit(rows);
    let overlap = overlap::audit(rows);
    let confounding = confounding::audit(rows, &classes);
    let mut findings = Vec::new();
    findings.extend(labels.findings());
    findings.extend(overlap.findings());
    findings.extend(confounding.findings());
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    Audit {
        version: REPORT_VERSION,
        pipeline: build.lock.pipeline.clone(),
        tool: build.lock.tool.clone(),
        mode: build.lock.mode.clone(),
        classes,
        labels,
        overlap,
        confounding,
        findings,
    }
}

/// The `--fail-on` checks this audit knows.
pub const CHECKS: [&str; 3] = ["overlap", "unknown-findings", "source-confounding"];

impl Audit {
    /// The checks of `fail_on` that have a finding of warning or error severity.
    pub fn failed(&self, fail_on: &[String]) -> Vec<String> {
        let mut failed: Vec<String> = fail_on
            .iter()
            .filter(|c| {
                self.findings
                    .iter()
                    .any(|f| f.check == c.as_str() && f.severity >= Severity::Warning)
            })
            .cloned()
            .collect();
        failed.dedup();
        failed
    }
}
