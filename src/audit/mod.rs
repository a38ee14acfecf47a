//! `covidx audit`: what a reviewer should know about a built dataset before trusting it, read
//! from the build directory through the typed layer ([`BuildDir`], [`Manifest`], [`Lock`]).
//!
//! By concern, the metadata level: [`labels`] (raw finding -> parsed -> class or exclusion,
//! per source), [`overlap`] (patients across splits and sources), [`confounding`] (class x
//! source and class x view, Cramér's V, how well the source alone predicts the class),
//! [`splits`] (per class and split, the test pool, the pinned list). The image level:
//! [`images`] (the facts of every image, from the build or decoded), [`duplicates`] (exact and
//! near, grouped, split x split and source x source), [`stats`] (per source), [`probe`] (the
//! shortcut probe), and duplicates against another build. [`report`] writes Markdown and
//! JSON, [`html`] the self-contained HTML page.

pub mod confounding;
pub mod duplicates;
pub mod html;
pub mod images;
pub mod labels;
pub mod overlap;
pub mod probe;
pub mod report;
pub mod splits;
pub mod stats;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::build_dir::BuildDir;
use crate::config::Pipeline;
use crate::lock::Lock;
use crate::manifest::Manifest;
use crate::timed;

/// Version of the audit report schema (`audit/report.json`'s `version`).
pub const REPORT_VERSION: &str = "1.1";

/// `format` of `build.json`.
pub const BUILD_INFO_FORMAT: &str = "covidx-build-info";
/// `version` of `build.json`.
pub const BUILD_INFO_VERSION: &str = "1.0";

/// `build.json`: where a build's sources and pipeline were (written by every build, outside
/// the lock: it names folders of the machine that built it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildInfo {
    /// Always [`BUILD_INFO_FORMAT`].
    pub format: String,
    /// Always [`BUILD_INFO_VERSION`].
    pub version: String,
    /// The tool that built it.
    pub tool: String,
    /// The `--sources` folder, absolute.
    pub sources: String,
    /// The pipeline file, absolute.
    pub pipeline: String,
}

impl BuildInfo {
    /// Reads `build.json` of `dir` (`None` when there is none).
    pub fn read(dir: &BuildDir) -> Result<Option<BuildInfo>> {
        let path = dir.path(crate::build_dir::BUILD_INFO);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let info: BuildInfo = serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: not a covidx build.json", path.display()))?;
        if info.format != BUILD_INFO_FORMAT || !info.version.starts_with("1.") {
            bail!(
                "{}: format {:?} version {:?}, this covidx reads {BUILD_INFO_FORMAT} 1.x",
                path.display(),
                info.format,
                info.version
            );
        }
        Ok(Some(info))
    }
}

/// What an audit looks at.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Audit the images too (duplicates, statistics, the probe), not only the metadata.
    pub images: bool,
    /// Where the images are (default: the build's `build.json`).
    pub sources: Option<PathBuf>,
    /// Another build to look for duplicates of this build's images in.
    pub against: Option<PathBuf>,
    /// Show progress while decoding.
    pub progress: bool,
}

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
    /// Per class and split.
    pub splits: splits::SplitAudit,
    /// The image-level audit (`None` for a metadata-level audit).
    pub images: Option<ImageAudit>,
    /// Findings, most serious first.
    pub findings: Vec<Finding>,
}

/// The image-level part of an audit.
#[derive(Debug, Clone, Serialize)]
pub struct ImageAudit {
    /// Where the image facts came from.
    pub provenance: images::Provenance,
    /// Images that could not be used.
    pub unreadable: Vec<images::Unreadable>,
    /// Duplicates.
    pub duplicates: duplicates::DuplicateAudit,
    /// Per-source statistics.
    pub sources: Vec<stats::SourceStats>,
    /// The shortcut probe.
    pub probe: probe::ProbeAudit,
    /// Duplicates between this build and another (`--against`).
    pub against: Option<Against>,
    /// The sources folder the images were read from (for the HTML report's thumbnails).
    #[serde(skip)]
    pub sources_dir: Option<PathBuf>,
    /// The 32x32 thumbnail of every image in a cross-split pair (used when the sources are
    /// not at hand).
    #[serde(skip)]
    pub thumbnails: std::collections::BTreeMap<u64, Vec<u8>>,
}

/// Duplicates of this build's images in another build.
#[derive(Debug, Clone, Serialize)]
pub struct Against {
    /// The other build's directory.
    pub build: String,
    /// Its pipeline name.
    pub pipeline: String,
    /// Its images compared.
    pub images: u64,
    /// Per split of this build: images with a duplicate in the other build.
    pub matched: std::collections::BTreeMap<String, u64>,
    /// Every pair (this build's record as `a`, the other's as `b`).
    pub pairs: Vec<duplicates::Pair>,
}

/// Runs the audit of a build: the metadata level always, the images when `opts.images`.
pub fn audit(build: &Build, opts: &Options) -> Result<Audit> {
    let m = &build.manifest;
    let classes = build.pipeline.classes.clone();
    // The four metadata audits are independent: run side by side.
    let ((labels, overlap), (confounding, splits)) = rayon::join(
        || {
            rayon::join(
                || timed("audit, labels", || labels::audit(m)),
                || timed("audit, overlap", || overlap::audit(m)),
            )
        },
        || {
            rayon::join(
                || timed("audit, confounding", || confounding::audit(m, &classes)),
                || timed("audit, splits", || splits::audit(m, &build.pipeline)),
            )
        },
    );
    let mut findings = Vec::new();
    findings.extend(labels.findings());
    findings.extend(overlap.findings());
    findings.extend(confounding.findings());
    let images = if opts.images {
        let a = image_audit(build, opts)?;
        findings.extend(a.duplicates.findings());
        findings.extend(a.probe.findings());
        if !a.unreadable.is_empty() {
            findings.push(Finding {
                check: "unreadable-images",
                severity: Severity::Warning,
                message: format!(
                    "{} images in scope could not be read (listed in the report); they take \
                     no part in duplicate detection",
                    a.unreadable.len()
                ),
            });
        }
        if let Some(x) = &a.against {
            let test = x.matched.get("test").copied().unwrap_or(0);
            if test > 0 {
                findings.push(Finding {
                    check: "against-duplicates",
                    severity: Severity::Warning,
                    message: format!(
                        "{test} test images have a duplicate in {} ({}): a model pretrained \
                         there may have seen them",
                        x.build, x.pipeline
                    ),
                });
            }
        }
        Some(a)
    } else {
        None
    };
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    Ok(Audit {
        version: REPORT_VERSION,
        pipeline: build.lock.pipeline.clone(),
        tool: build.lock.tool.clone(),
        mode: build.lock.mode.clone(),
        classes,
        labels,
        overlap,
        confounding,
        splits,
        images,
        findings,
    })
}

/// The sources folder to read images from: the override, else `build.json`'s.
fn sources_of(build: &Build, given: Option<&Path>) -> Result<Option<PathBuf>> {
    if let Some(p) = given {
        return Ok(Some(p.to_path_buf()));
    }
    Ok(BuildInfo::read(&build.dir)?
        .map(|i| PathBuf::from(i.sources))
        .filter(|p| p.is_dir()))
}

/// The audited images of a build as duplicate-search items.
fn items<'a>(build: &'a Build, imgs: &'a images::Images) -> Vec<duplicates::Item<'a>> {
    let m = &build.manifest;
    imgs.facts
        .iter()
        .filter_map(|(&record, f)| {
            let r = m.get(record)?;
            Some(duplicates::Item {
                record,
                split: images::scope(r)?,
                source: r.source(),
                facts: f,
            })
        })
        .collect()
}

fn image_audit(build: &Build, opts: &Options) -> Result<ImageAudit> {
    let sources = sources_of(build, opts.sources.as_deref())?;
    let imgs = images::gather(build, sources.as_deref(), opts.progress)?;
    let its = items(build, &imgs);
    let near = build.pipeline.audit.near_bits;
    let dups = duplicates::audit(&its, near);
    let source_stats = stats::audit(&its);
    let m = &build.manifest;
    let probe_items: Vec<probe::ProbeItem<'_>> = its
        .iter()
        .filter(|i| i.split != "test-pool")
        .filter_map(|i| {
            let r = m.row(i.record as usize);
            Some(probe::ProbeItem {
                patient: r.patient_key(),
                source: r.source(),
                class: r.label()?,
                thumb: &i.facts.thumbnail,
            })
        })
        .collect();
    let probe = probe::audit(&probe_items);
    let against = match &opts.against {
        Some(other) => Some(against(&its, other, near, opts.progress)?),
        None => None,
    };
    let thumbnails = dups
        .cross_split_pairs
        .iter()
        .take(html::MAX_PAIRS)
        .flat_map(|p| [p.a, p.b])
        .filter_map(|r| Some((r, imgs.facts.get(&r)?.thumbnail.clone())))
        .collect();
    Ok(ImageAudit {
        provenance: imgs.provenance.clone(),
        unreadable: imgs.unreadable.clone(),
        duplicates: dups,
        sources: source_stats,
        probe,
        against,
        sources_dir: sources,
        thumbnails,
    })
}

/// Duplicates of `ours` in the build at `other` (its images from its own facts or sources).
fn against(
    ours: &[duplicates::Item<'_>],
    other: &Path,
    near: u32,
    progress: bool,
) -> Result<Against> {
    let dir = BuildDir::new(other);
    let theirs = Build::open(&dir).with_context(|| format!("--against {}", other.display()))?;
    let sources = sources_of(&theirs, None)?;
    let imgs = images::gather(&theirs, sources.as_deref(), progress)?;
    let their_items = items(&theirs, &imgs);
    let name = format!("other:{}", theirs.lock.pipeline);
    let mut all: Vec<duplicates::Item<'_>> = ours.to_vec();
    all.extend(
        their_items
            .iter()
            .map(|i| duplicates::Item { split: &name, ..*i }),
    );
    // Links between one of ours (i < n) and one of theirs (j >= n); links within either build
    // are the main audit's business.
    let n = ours.len();
    let linked: Vec<(usize, usize)> = duplicates::links(&all, near)
        .into_iter()
        .filter(|&(i, j)| i < n && j >= n)
        .collect();
    let mut pairs: Vec<duplicates::Pair> = Vec::new();
    let mut matched: std::collections::BTreeMap<String, u64> = Default::default();
    let mut counted = std::collections::BTreeSet::new();
    for &(i, j) in &linked {
        if counted.insert(i) {
            *matched.entry(all[i].split.to_string()).or_default() += 1;
        }
        let p = duplicates::pair_of(&all[i], &all[j]);
        pairs.push(p);
    }
    Ok(Against {
        build: other.display().to_string(),
        pipeline: theirs.lock.pipeline.clone(),
        images: their_items.len() as u64,
        matched,
        pairs,
    })
}

/// Writes the reports of `a` in `formats` (`md`, `json`, `html`) under `BUILD/audit/`;
/// returns the paths written.
pub fn write_reports(build: &Build, a: &Audit, formats: &[&str]) -> Result<Vec<PathBuf>> {
    let dir = &build.dir;
    std::fs::create_dir_all(dir.audit())
        .with_context(|| format!("creating {}", dir.audit().display()))?;
    let mut written = Vec::new();
    for f in formats {
        let (rel, bytes) = match *f {
            "md" => (crate::build_dir::AUDIT_MD, report::markdown(a).into_bytes()),
            "json" => (crate::build_dir::AUDIT_JSON, report::json(a)),
            "html" => (
                crate::build_dir::AUDIT_HTML,
                html::page(build, a)?.into_bytes(),
            ),
            other => bail!("report format {other:?}: the formats are md, json and html"),
        };
        crate::fsutil::write_atomic(&dir.path(rel), &bytes)?;
        written.push(dir.path(rel));
    }
    Ok(written)
}

/// The `--fail-on` checks this audit knows.
pub const CHECKS: [&str; 5] = [
    "overlap",
    "cross-split-duplicates",
    "cross-source-duplicates",
    "unknown-findings",
    "source-confounding",
];

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
