//! `covidx build`, the orchestrator: takes the output directory (exclusive lock, never inside
//! the sources), runs the metadata stages (ingest -> label -> locate -> split), the image stage
//! when enabled, writes the metadata outputs, removes outputs of an earlier build that this
//! build did not write, and writes the lock file last over exactly what is there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::build_dir::{self, BuildDir};
use crate::config::Pipeline;
use crate::fsutil;
use crate::imaging::stage::parts::{MergeSet, PartOutcome};
use crate::imaging::stage::{self as image_stage, StageInput, StageOptions, StageOutcome};
use crate::ingest::{self, ImageCheck};
use crate::label;
use crate::lock::{Lock, FORMAT};
use crate::outputs;
use crate::record::Record;
use crate::shards::part::{PartRecord, PartSpec, PART_FORMAT, PART_VERSION};
use crate::split::{self, Assignment};
use crate::summary::Summary;

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Pipeline TOML file.
    pub pipeline: PathBuf,
    /// Directory holding the upstream layouts.
    pub sources: PathBuf,
    /// Output directory.
    pub out: PathBuf,
    /// Only check that images exist; do not read them.
    pub metadata_only: bool,
    /// Run the image stage (shards) even if the pipeline does not enable it.
    pub images: bool,
    /// Fail on the first bad image instead of quarantining it.
    pub strict: bool,
    /// Show image-stage progress.
    pub progress: bool,
    /// Write only part K of N of the image stage (see [`build_part`]).
    pub part: Option<PartSpec>,
    /// Merge these part directories: every shard comes from its part, none is decoded.
    pub merge: Vec<PathBuf>,
}

impl BuildOptions {
    /// Options for a build of `pipeline` from `sources` into `out`, everything else default.
    pub fn new(pipeline: PathBuf, sources: PathBuf, out: PathBuf) -> Self {
        BuildOptions {
            pipeline,
            sources,
            out,
            metadata_only: false,
            images: false,
            strict: false,
            progress: false,
            part: None,
            merge: Vec::new(),
        }
    }
}

impl BuildOptions {
    /// How the image stage reports and fails.
    fn stage_options(&self) -> StageOptions {
        StageOptions {
            strict: self.strict,
            progress: self.progress,
        }
    }
}

/// Everything a build produced.
#[derive(Debug)]
pub struct BuildOutcome {
    /// The validated pipeline.
    pub pipeline: Pipeline,
    /// Every candidate record with its decisions.
    pub records: Vec<Record>,
    /// Train and test record indices in output order.
    pub assignment: Assignment,
    /// Counts.
    pub summary: Summary,
    /// The lock file written.
    pub lock: Lock,
    /// The image stage's result, when it ran.
    pub images: Option<StageOutcome>,
    /// Files of an earlier build in the output directory that this build removed.
    pub removed: Vec<String>,
    /// The metadata-level audit run at the end (`audit/report.{md,json}`).
    pub audit: crate::audit::Audit,
    /// The pipeline's `[audit] fail_on` checks that found a problem (the build is written,
    /// but the command fails).
    pub audit_failed: Vec<String>,
}

/// Runs the metadata stages without writing anything.
pub fn plan(
    pipeline: &Pipeline,
    sources_dir: &Path,
    check: ImageCheck,
) -> Result<(Vec<Record>, Assignment, crate::sources::InputHashes)> {
    if !sources_dir.is_dir() {
        bail!(
            "sources directory {} does not exist (pass --sources DIR; see data/README.md)",
            sources_dir.display()
        );
    }
    let sources = pipeline.resolved_sources();
    let mut inputs = Default::default();
    let t = std::time::Instant::now();
    let mut records = ingest::read_all(sources_dir, &sources, &mut inputs)?;
    tracing::info!("ingest: {} records in {:.3?}", records.len(), t.elapsed());
    let t = std::time::Instant::now();
    label::apply(pipeline, &sources, &mut records)?;
    tracing::info!("label: {:.3?}", t.elapsed());
    let t = std::time::Instant::now();
    ingest::locate(sources_dir, &sources, &mut records, check, &mut inputs);
    tracing::info!("locate images ({check:?}): {:.3?}", t.elapsed());
    let t = std::time::Instant::now();
    let pins = split::load_pins(sources_dir, pipeline, &sources, &mut inputs)?;
    let assignment = split::assign(pipeline, &sources, &mut records, &pins)?;
    tracing::info!("split: {:.3?}", t.elapsed());
    Ok((records, assignment, inputs))
}

/// `path` made absolute with every existing prefix resolved (symlinks included) and `.`/`..`
/// applied, so two spellings of one place compare equal even before its last parts exist.
fn resolved(path: &Path) -> Result<PathBuf> {
    use std::path::Component;
    let abs = std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))?;
    let mut out = PathBuf::new();
    let mut exists = true;
    for c in abs.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => {
                out.push(other);
                if exists {
                    match out.canonicalize() {
                        Ok(real) => out = real,
                        Err(_) => exists = false,
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Refuses an output directory that is the sources directory or lies inside it: a build
/// never writes into its inputs.
pub fn check_out_dir(out: &Path, sources: &Path) -> Result<()> {
    let (o, s) = (resolved(out)?, resolved(sources)?);
    if o.starts_with(&s) {
        bail!(
            "--out {} is {} the sources directory {}: a build never writes into its inputs; \
             choose an output directory outside it",
            out.display(),
            if o == s { "" } else { "inside" },
            sources.display()
        );
    }
    Ok(())
}

/// The hash that decides whether an earlier run's shards can be kept: tool version, the
/// image-facts table version (a run's facts tables are kept with its shards), pipeline and
/// every input's hash.
fn image_params(pipeline_sha: &str, inputs: &crate::sources::InputHashes) -> Result<String> {
    let inputs = serde_json::to_string(inputs)?;
    Ok(fsutil::sha256_hex(
        format!(
            "{} {} {pipeline_sha} {inputs}",
            env!("CARGO_PKG_VERSION"),
            crate::imaging::facts::TABLE_VERSION
        )
        .as_bytes(),
    ))
}

/// Runs a whole build and writes its outputs (with [`BuildOptions::merge`]: the build of a
/// partitioned image stage, from its parts).
pub fn build(opts: &BuildOptions) -> Result<BuildOutcome> {
    if opts.part.is_some() {
        bail!("a part of a partitioned build is run with builder::build_part");
    }
    let (pipeline, pipeline_bytes) = Pipeline::load(&opts.pipeline)?;
    let check = if opts.metadata_only {
        ImageCheck::Exists
    } else {
        ImageCheck::Hash
    };
    if opts.images && opts.metadata_only {
        bail!("--images reads every image: it cannot be combined with --metadata-only");
    }
    let merge = match opts.merge.as_slice() {
        [] => None,
        dirs if opts.metadata_only => bail!(
            "merging {} parts writes their shards: it cannot be combined with --metadata-only",
            dirs.len()
        ),
        dirs => Some(MergeSet::load(dirs)?),
    };
    let run_images =
        opts.images || merge.is_some() || (pipeline.images.enabled && !opts.metadata_only);
    check_out_dir(&opts.out, &opts.sources)?;
    if let Some(m) = &merge {
        let out = resolved(&opts.out)?;
        for d in m.dirs() {
            if resolved(d)? == out {
                bail!(
                    "--out {} is one of the parts being merged; merge into another directory",
                    opts.out.display()
                );
            }
        }
    }
    let dir = BuildDir::new(&opts.out);
    let _held = dir.lock_exclusive()?;
    let (mut records, assignment, inputs) = plan(&pipeline, &opts.sources, check)?;

    // An old lock must not vouch for outputs that are being replaced, and image-stage outputs
    // of an earlier build must not outlive a build that writes none.
    let mut removed = dir.remove_outputs_except(|rel| {
        rel != build_dir::LOCK && (run_images || !is_image_output(rel))
    })?;
    let pipeline_sha = fsutil::sha256_hex(&pipeline_bytes);
    let mut outputs = BTreeMap::new();
    let images = if run_images {
        let params = image_params(&pipeline_sha, &inputs)?;
        let input = StageInput {
            pipeline: &pipeline,
            sources_dir: &opts.sources,
            records: &records,
            assignment: &assignment,
            dir: &dir,
            params: &params,
        };
        let stage_opts = opts.stage_options();
        let outcome = match &merge {
            Some(m) => image_stage::run_merge(&input, stage_opts, m)?,
            None => image_stage::run(&input, stage_opts)?,
        };
        for q in &outcome.quarantine {
            records[q.record].image_error = Some(format!("{}: {}", q.reason, q.detail));
        }
        outputs.extend(outcome.outputs.clone());
        Some(outcome)
    } else {
        None
    };
    let written = outputs::write(&dir, &pipeline, &pipeline_bytes, &records, &assignment)?;
    outputs.extend(written.outputs);
    let (summary, manifest) = (written.summary, written.manifest);
    // Whatever of ours is left and was not written now is an earlier build's.
    removed.extend(
        dir.remove_outputs_except(|rel| {
            outputs.contains_key(rel) || rel == build_dir::AUDIT_CACHE
        })?,
    );
    // The old lock, build.json and audit report are removed but rewritten below: not outputs
    // this build does not write.
    let rewritten = [
        build_dir::LOCK,
        build_dir::BUILD_INFO,
        build_dir::AUDIT_MD,
        build_dir::AUDIT_JSON,
    ];
    removed.retain(|r| !rewritten.contains(&r.as_str()));
    for rel in &removed {
        tracing::info!("removed {rel} (an output of an earlier build this build does not write)");
    }
    let t = std::time::Instant::now();
    let lock = Lock {
        format: FORMAT.to_string(),
        tool: format!("covidx {}", env!("CARGO_PKG_VERSION")),
        pipeline: pipeline.name.clone(),
        pipeline_sha256: pipeline_sha,
        mode: if opts.metadata_only {
            "metadata-only"
        } else {
            "full"
        }
        .to_string(),
        inputs,
        outputs,
    };
    fsutil::write_atomic(&dir.lock(), &lock.to_bytes())?;
    write_build_info(&dir, opts)?;
    tracing::info!("lock and build.json: {:.3?}", t.elapsed());
    let t = std::time::Instant::now();
    // The audit reads the build as written, from memory (the same manifest, pipeline and lock
    // that `audit::Build::open` would read back).
    let build = crate::audit::Build {
        dir: dir.clone(),
        manifest,
        pipeline,
        lock,
    };
    let (audit, audit_failed) = audit_build(&build)?;
    let crate::audit::Build {
        pipeline,
        lock,
        manifest,
        ..
    } = build;
    crate::drop_in_background(manifest);
    tracing::info!("audit (metadata): {:.3?}", t.elapsed());
    Ok(BuildOutcome {
        pipeline,
        records,
        assignment,
        summary,
        lock,
        images,
        removed,
        audit,
        audit_failed,
    })
}

/// Runs part `opts.part` of a partitioned build: the metadata stages (the same in every
/// part), then only the image stage's shards that the part owns, into `opts.out` with its
/// `part.json`. `covidx merge` (a build with [`BuildOptions::merge`]) makes the build.
pub fn build_part(opts: &BuildOptions) -> Result<PartOutcome> {
    let Some(part) = opts.part else {
        bail!("build_part needs BuildOptions::part");
    };
    if opts.metadata_only {
        bail!("--part {part} writes shards: it cannot be combined with --metadata-only");
    }
    if !opts.merge.is_empty() {
        bail!("--part and --merge are separate steps: run the parts, then merge them");
    }
    let (pipeline, pipeline_bytes) = Pipeline::load(&opts.pipeline)?;
    check_out_dir(&opts.out, &opts.sources)?;
    let dir = BuildDir::new(&opts.out);
    let _held = dir.lock_exclusive()?;
    let (records, assignment, inputs) = plan(&pipeline, &opts.sources, ImageCheck::Hash)?;
    let pipeline_sha = fsutil::sha256_hex(&pipeline_bytes);
    let params = image_params(&pipeline_sha, &inputs)?;
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let record = PartRecord {
        format: PART_FORMAT.to_string(),
        version: PART_VERSION.to_string(),
        tool: format!("covidx {}", env!("CARGO_PKG_VERSION")),
        part,
        pipeline: pipeline.name.clone(),
        pipeline_sha256: pipeline_sha,
        pipeline_path: abs(&opts.pipeline).display().to_string(),
        sources: abs(&opts.sources).display().to_string(),
        params: params.clone(),
        planned: BTreeMap::new(),
        complete: false,
        shards: Vec::new(),
    };
    let input = StageInput {
        pipeline: &pipeline,
        sources_dir: &opts.sources,
        records: &records,
        assignment: &assignment,
        dir: &dir,
        params: &params,
    };
    image_stage::parts::run_part(&input, opts.stage_options(), record)
}

/// Writes `build.json`: where the sources and the pipeline were, so `covidx audit` finds the
/// images without being told (outside the lock: it names this machine's folders).
fn write_build_info(dir: &BuildDir, opts: &BuildOptions) -> Result<()> {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let info = crate::audit::BuildInfo {
        format: crate::audit::BUILD_INFO_FORMAT.to_string(),
        version: crate::audit::BUILD_INFO_VERSION.to_string(),
        tool: format!("covidx {}", env!("CARGO_PKG_VERSION")),
        sources: abs(&opts.sources).display().to_string(),
        pipeline: abs(&opts.pipeline).display().to_string(),
    };
    let mut bytes = serde_json::to_vec_pretty(&info)?;
    bytes.push(b'\n');
    fsutil::write_atomic(&dir.path(build_dir::BUILD_INFO), &bytes)
}

/// The metadata-level audit every build runs at its end: writes `audit/report.{md,json}` and
/// returns the audit with the `[audit] fail_on` checks that found a problem.
fn audit_build(build: &crate::audit::Build) -> Result<(crate::audit::Audit, Vec<String>)> {
    let a = crate::timed("audit, all", || {
        crate::audit::audit(build, &crate::audit::Options::default())
    })?;
    crate::audit::write_reports(build, &a, &["md", "json"])?;
    let failed = a.failed(&build.pipeline.audit.fail_on);
    Ok((a, failed))
}

/// True for files only the image stage writes.
fn is_image_output(rel: &str) -> bool {
    build_dir::IMAGE_OUTPUTS.contains(&rel) || rel.starts_with(&format!("{}/", build_dir::SHARDS))
}
