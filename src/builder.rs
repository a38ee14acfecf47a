//! `covidx build`: the metadata stages wired together (ingest -> label -> locate -> split) and
//! the outputs written atomically: split files, manifest (Parquet + CSV), summary, lock file.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::config::Pipeline;
use crate::fsutil;
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
    let mut records = ingest::read_all(sources_dir, &sources, &mut inputs)?;
    label::apply(pipeline, &sources, &mut records)?;
    ingest::locate(sources_dir, &sources, &mut records, check, &mut inputs);
    let pins = split::load_pins(sources_dir, pipeline, &sources, &mut inputs)?;
    let assignment = split::assign(pipeline, &sources, &mut records, &pins)?;
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
    let (records, assignment, inputs) = plan(&pipeline, &opts.sources, check)?;

    let classes = &pipeline.classes;
    let manifest = record::manifest_frame(&records, classes)?;
    let summary = summary::summarize(&manifest, classes)?;

    let columns = pipeline.output.columns;
    let lines = |idx: &[usize]| -> Vec<u8> {
        idx.iter()
            .map(|&i| split_line(&records[i], classes, columns))
            .collect::<String>()
            .into_bytes()
    };
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("splits/train.txt", lines(&assignment.train)),
        ("splits/test.txt", lines(&assignment.test)),
        ("manifest.parquet", record::manifest_parquet(&manifest)?),
        ("manifest.csv", record::manifest_csv(&manifest)?),
        ("pipeline.toml", pipeline_bytes.clone()),
        ("summary.txt", summary::render(&summary).into_bytes()),
    ];

    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating {}", opts.out.display()))?;
    let lock_path = opts.out.join(LOCK_FILE);
    // An old lock must not vouch for outputs that are being replaced.
    if lock_path.exists() {
        std::fs::remove_file(&lock_path)
            .with_context(|| format!("removing stale {}", lock_path.display()))?;
    }
    let mut outputs = std::collections::BTreeMap::new();
    for (rel, bytes) in &files {
        fsutil::write_atomic(&opts.out.join(rel), bytes)?;
        outputs.insert(rel.to_string(), fsutil::sha256_hex(bytes));
    }
    let lock = Lock {
        format: FORMAT.to_string(),
        tool: format!("covidx {}", env!("CARGO_PKG_VERSION")),
        pipeline: pipeline.name.clone(),
        pipeline_sha256: fsutil::sha256_hex(&pipeline_bytes),
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
    })
}
