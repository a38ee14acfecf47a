//! The metadata stages' outputs: split files, the manifest (Parquet + CSV), the summary and
//! the copy of the pipeline, each written atomically and hashed for the lock.

use std::collections::BTreeMap;

use anyhow::Result;
use rayon::prelude::*;

use crate::build_dir::{self, BuildDir};
use crate::config::Pipeline;
use crate::fsutil;
use crate::manifest::{self, Manifest};
use crate::record::{Record, Split};
use crate::split::Assignment;
use crate::summary::{self, Summary};
use crate::timed;

/// A COVID-Net split-file line for a record (`patientid filename label`, or a 4th `source`
/// column): the class's output label, and the record's own column count when a pinned line
/// gave it one.
pub fn split_line(r: &Record, pipeline: &Pipeline) -> String {
    let label = pipeline.output_label(r.label.expect("split records are labelled"));
    let image = r.split_image();
    match r.columns.unwrap_or(pipeline.output.columns) {
        4 => format!("{} {} {} {}\n", r.patient, image, label, r.tag),
        _ => format!("{} {} {}\n", r.patient, image, label),
    }
}

/// What [`write`] produced.
#[derive(Debug)]
pub struct Written {
    /// Counts per class and split, and exclusions.
    pub summary: Summary,
    /// Every file written (relative to the build directory) and its SHA-256.
    pub outputs: BTreeMap<String, String>,
    /// The manifest written, typed.
    pub manifest: Manifest,
}

/// Writes the split files, manifest, summary and pipeline copy into `dir`.
pub fn write(
    dir: &BuildDir,
    pipeline: &Pipeline,
    pipeline_bytes: &[u8],
    records: &[Record],
    assignment: &Assignment,
) -> Result<Written> {
    let classes = &pipeline.classes;
    let t = std::time::Instant::now();
    let frame = manifest::frame(records, classes)?;
    tracing::info!("manifest frame: {:.3?}", t.elapsed());
    let t = std::time::Instant::now();
    let lines = |idx: &[usize]| -> Vec<u8> {
        idx.iter()
            .map(|&i| split_line(&records[i], pipeline))
            .collect::<String>()
            .into_bytes()
    };
    // The Parquet and CSV encodings of the manifest are the costly outputs: made side by side
    // with the summary, the split files and the typed manifest (for the audit that ends the
    // build, from the same frame rather than the Parquet read back); then every file is
    // written and hashed in parallel.
    let ((parquet, summary), (csv, (splits, typed))) = rayon::join(
        || {
            let parquet = timed("outputs, parquet", || {
                manifest::parquet_bytes(&frame, manifest::FORMAT, manifest::VERSION)
            });
            let summary = timed("outputs, summary", || summary::summarize(&frame, classes));
            (parquet, summary)
        },
        || {
            rayon::join(
                || timed("outputs, csv", || manifest::csv_parts(&frame)),
                || {
                    let splits = timed("outputs, split files", || {
                        [lines(&assignment.train), lines(&assignment.test)]
                    });
                    let typed = timed("outputs, typed manifest", || {
                        Manifest::from_frame(&frame, build_dir::MANIFEST)
                    });
                    (splits, typed)
                },
            )
        },
    );
    tracing::debug!("outputs, encoded: {:.3?}", t.elapsed());
    let [train, test] = splits;
    let summary = summary?;
    // Each file in parts (the CSV's slices are never joined in memory).
    let files: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (build_dir::split_rel(Split::Train), vec![train]),
        (build_dir::split_rel(Split::Test), vec![test]),
        (build_dir::MANIFEST, vec![parquet?]),
        (build_dir::MANIFEST_CSV, csv?),
        (build_dir::PIPELINE, vec![pipeline_bytes.to_vec()]),
        (
            build_dir::SUMMARY,
            vec![summary::render(&summary).into_bytes()],
        ),
    ];
    let hashes: Vec<Result<(String, String)>> = files
        .par_iter()
        .map(|(rel, parts)| {
            let (written, hash) = rayon::join(
                || fsutil::write_atomic_parts(&dir.path(rel), parts),
                || fsutil::sha256_hex_parts(parts),
            );
            written?;
            Ok((rel.to_string(), hash))
        })
        .collect();
    let outputs = hashes.into_iter().collect::<Result<BTreeMap<_, _>>>()?;
    crate::drop_in_background((frame, files));
    tracing::info!("outputs written: {:.3?}", t.elapsed());
    Ok(Written {
        summary,
        outputs,
        manifest: typed?,
    })
}
