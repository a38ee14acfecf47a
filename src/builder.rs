//! `covidx build`: the metadata stages wired together (ingest -> label -> locate -> split) and
//! the outputs written atomically: split files, manifest (Parquet + CSV), summary, lock file.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::config::Pipeline;
use crate::fsutil;
use crate::imaging::stage::{self as image_stage, StageOptions, StageOutcome};
use crate::ingest::{self, ImageCheck};
use crate::label;
use crate::lock::{Lock, FORMAT, LOCK_FILE};
use crate::record::{self, Record};
use crate::split::{self, Assignment};
use crate::summary::{self, Summary};

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
}

/// A COVID-Net split-file line for a record.
pub fn split_line(r: &Record, classes: &[String], columns: u8) -> String {
    let label = &classes[r.label.expect("split records are labelled")];
    let image = r.split_image();
    match columns {
        4 => format!("{} {} {} {}\n", r.patient, image, label, r.tag),
        _ => format!("{} {} {}\n", r.patient, image, label),
    }
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

/// Runs a whole build and writes its outputs.
pub fn build(opts: &BuildOptions) -> Result<BuildOutcome> {
    let (pipeline, pipeline_bytes) = Pipeline::load(&opts.pipeline)?;
    let check = if opts.metadata_only {
        ImageCheck::Exists
    } else {
        ImageCheck::Hash
    };
    if opts.images && opts.metadata_only {
        bail!("--images reads every image: it cannot be combined with --metadata-only");
    }
    let run_images = opts.images || (pipeline.images.enabled && !opts.metadata_only);
    let (mut records, assignment, inputs) = plan(&pipeline, &opts.sources, check)?;

    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating {}", opts.out.display()))?;
    let lock_path = opts.out.join(LOCK_FILE);
    // An old lock must not vouch for outputs that are being replaced.
    if lock_path.exists() {
        std::fs::remove_file(&lock_path)
            .with_context(|| format!("removing stale {}", lock_path.display()))?;
    }
    let pipeline_sha = fsutil::sha256_hex(&pipeline_bytes);
    let images = if run_images {
        let params = fsutil::sha256_hex(
            format!(
                "{} {pipeline_sha} {}",
                env!("CARGO_PKG_VERSION"),
                serde_json::to_string(&inputs)?
            )
            .as_bytes(),
        );
        let stage_opts = StageOptions {
            strict: opts.strict,
            progress: opts.progress,
        };
        let outcome = image_stage::run(
            &pipeline,
            &opts.sources,
            &records,
            &assignment,
            &opts.out,
            &params,
            stage_opts,
        )?;
        for q in &outcome.quarantine {
            records[q.record].image_error = Some(format!("{}: {}", q.reason, q.detail));
        }
        Some(outcome)
    } else {
        None
    };

    let classes = &pipeline.classes;
    let t = std::time::Instant::now();
    let manifest = record::manifest_frame(&records, classes)?;
    let summary = summary::summarize(&manifest, classes)?;
    tracing::info!("manifest + summary: {:.3?}", t.elapsed());
    let t = std::time::Instant::now();

    let columns = pipeline.output.columns;
    let lines = |idx: &[usize]| -> Vec<u8> {
        idx.iter()
            .map(|&i| split_line(&records[i], classes, columns))
            .collect::<String>()
            .into_bytes()
    };
    let mut files: Vec<(&str, Vec<u8>)> = vec![
        ("splits/train.txt", lines(&assignment.train)),
        ("splits/test.txt", lines(&assignment.test)),
        ("manifest.parquet", record::parquet_bytes(&manifest)?),
        ("manifest.csv", record::manifest_csv(&manifest)?),
        ("pipeline.toml", pipeline_bytes.clone()),
        ("summary.txt", summary::render(&summary).into_bytes()),
    ];
    let mut outputs = std::collections::BTreeMap::new();
    if let Some(img) = &images {
        files.push((
            "quarantine.csv",
            image_stage::quarantine_csv(&img.quarantine)?,
        ));
        let aug = image_stage::augment_frame(&img.samples)?;
        files.push(("augment.parquet", record::parquet_bytes(&aug)?));
        // Shard hashes were computed while writing; only the index is read back.
        for (split, entries) in &img.index.splits {
            for e in entries {
                outputs.insert(format!("shards/{split}/{}", e.file), e.sha256.clone());
            }
        }
        let index = fsutil::sha256_file(&opts.out.join("shards/index.json"))?;
        outputs.insert("shards/index.json".to_string(), index);
    }
    for (rel, bytes) in &files {
        fsutil::write_atomic(&opts.out.join(rel), bytes)?;
        outputs.insert(rel.to_string(), fsutil::sha256_hex(bytes));
    }
    tracing::info!("outputs written: {:.3?}", t.elapsed());
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
    fsutil::write_atomic(&lock_path, &lock.to_bytes())?;
    Ok(BuildOutcome {
        pipeline,
        records,
        assignment,
        summary,
        lock,
        images,
    })
}
